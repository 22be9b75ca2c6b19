package sim

import (
	"bufio"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
)

// Main is `aura-cli sim`: it parses args (without the command name),
// runs the seeds and prints the summary table (or, with --json, one JSON
// document) on stdout. It returns the exit code: 0 when every seed held
// every invariant, 1 when one failed (the failing seeds are reported with
// their fault schedule and the command that replays them) or on bad usage,
// like every other aura-cli command.
func Main(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("aura-cli sim", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		cfg      Config
		seed     uint64
		seeds    int
		faults   string
		defects  string
		duration string
		trace    string
		asJSON   bool
	)
	fs.IntVar(&cfg.Nodes, "nodes", 5, "devices in the threshold group")
	fs.IntVar(&cfg.Threshold, "threshold", 0, "M of the M-of-N snapshot key (default nodes/2+1)")
	fs.Uint64Var(&seed, "seed", 1, "first seed")
	fs.IntVar(&seeds, "seeds", 1, "number of seeds to run (seed, seed+1, ...)")
	fs.StringVar(&faults, "faults", "chaos", "fault spec (see below)")
	fs.IntVar(&cfg.Events, "events", 2000, "device-events of each run's active phase")
	fs.StringVar(&duration, "duration", "", "cap on each run's active phase in virtual time, e.g. 120s")
	fs.StringVar(&trace, "trace", "", "write the trace of every run to `FILE`")
	fs.StringVar(&defects, "defects", "", "switch on deliberate defects ("+defectNames+") to see the checks fail")
	fs.IntVar(&cfg.Parallel, "parallel", 1, "seeds run at once")
	fs.BoolVar(&cfg.Workload.SerialProposals, "serial-proposals", false, "operators propose only while no snapshot round is open anywhere")
	fs.Int64Var(&cfg.Workload.Watermark, "watermark", defaultWatermark, "journal `BYTES` past which devices propose a snapshot by themselves (negative: off)")
	fs.BoolVar(&cfg.Workload.Reshare.On, "reshare", false, "remove a device at setup and reshare the key under the faults (retried until it succeeds); the removed device keeps voting with its old share")
	fs.BoolVar(&cfg.Workload.Keygen, "keygen", false, "run the key generation session under the faults (retried until it succeeds) instead of a trusted dealer")
	fs.BoolVar(&cfg.Workload.Rekey, "rekey", false, "the admin runs a key generation under the session gate while the identity epoch moves (session.go)")
	fs.BoolVar(&cfg.Workload.HardFork, "hard-fork", false, "activate a hard fork at setup that one device is not ready for (session.go)")
	fs.Func("propose-every", "mean `DURATION` between operator snapshot proposals (default 6s; negative: none)", func(v string) error {
		if strings.HasPrefix(v, "-") {
			cfg.Workload.ProposeEvery = -1
			return nil
		}
		ms, err := parseMillis(v)
		if err == nil && ms == 0 {
			err = errors.New("want a positive duration, or a negative one for none")
		}
		cfg.Workload.ProposeEvery = ms
		return err
	})
	fs.Func("absent", "take one device away while the others complete K snapshots; `SPEC` is K[:quiet][:restarts=R] (quiet: it writes nothing offline; it restarts R times while away)", func(v string) error {
		a, err := ParseAbsence(v)
		cfg.Workload.Absence = a
		return err
	})
	fs.Func("admin-replace", "`K` devices ask at once to replace the admin, the others approve one at random (no fresh devices then)", func(v string) error {
		k, err := strconv.Atoi(v)
		if err == nil && k < 1 {
			err = errors.New("want a positive number of candidates")
		}
		cfg.Workload.Admin, cfg.Workload.Fresh = AdminWorkload{Candidates: k}, -1
		return err
	})
	fs.Float64Var(&cfg.Workload.Contend, "contend", 0, "share `P` of writes that go to keys every device writes (a quarter deletes, half in same-instant pairs that tie on Lamport time)")
	fs.Func("grants", "mean `DURATION` between the admin's membership acts: a capability granted at a new epoch, or a Byzantine device removed (default none)", func(v string) error {
		ms, err := parseMillis(v)
		cfg.Workload.GrantEvery = ms
		return err
	})
	fs.String("home", "", "ignored: the simulator touches no node")
	fs.BoolVar(&asJSON, "json", false, "print one JSON document instead of the table")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: aura-cli sim [--nodes N] [--seed S] [--seeds K] [--faults SPEC] [--events E] [--duration D] [--trace FILE] [--json]\n\n")
		fmt.Fprintf(stderr, "Runs the deterministic simulator: N devices running the real crdt, threshold and\n")
		fmt.Fprintf(stderr, "maintenance code over a virtual network and clock, with injected faults; checks\n")
		fmt.Fprintf(stderr, "the invariants after every run. The same seed replays the same run bit for bit.\n\n")
		printFlags(stderr, fs)
		fmt.Fprintf(stderr, "\n%s\n", FaultSyntax)
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 1
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "aura-cli sim: unexpected argument %q\n", fs.Arg(0))
		fs.Usage()
		return 1
	}
	if cfg.Nodes < 2 || cfg.Nodes > 64 {
		fmt.Fprintf(stderr, "aura-cli sim: --nodes %d: want from 2 to 64 devices\n", cfg.Nodes)
		return 1
	}
	if cfg.Events < 1 {
		fmt.Fprintf(stderr, "aura-cli sim: --events %d: want at least 1\n", cfg.Events)
		return 1
	}
	if cfg.Workload.Contend < 0 || cfg.Workload.Contend > 1 {
		fmt.Fprintf(stderr, "aura-cli sim: --contend %g: want a share in [0, 1]\n", cfg.Workload.Contend)
		return 1
	}
	if cfg.Parallel < 1 {
		fmt.Fprintf(stderr, "aura-cli sim: --parallel %d: want at least 1\n", cfg.Parallel)
		return 1
	}
	var err error
	if cfg.Faults, err = ParseFaults(faults); err != nil {
		fmt.Fprintf(stderr, "aura-cli sim: %v\n", err)
		return 1
	}
	if cfg.Defects, err = ParseDefects(defects); err != nil {
		fmt.Fprintf(stderr, "aura-cli sim: --defects: %v\n", err)
		return 1
	}
	if duration != "" {
		if cfg.Duration, err = parseMillis(duration); err != nil {
			fmt.Fprintf(stderr, "aura-cli sim: --duration %s: %v\n", duration, err)
			return 1
		}
	}
	if seeds < 1 {
		fmt.Fprintf(stderr, "aura-cli sim: --seeds %d: want at least 1\n", seeds)
		return 1
	}
	cfg.Seed = seed
	if trace != "" {
		f, err := os.Create(trace)
		if err != nil {
			fmt.Fprintf(stderr, "aura-cli sim: %v\n", err)
			return 1
		}
		bw := bufio.NewWriterSize(f, 1<<20)
		cfg.TraceWriter = bw
		defer func() {
			if err := bw.Flush(); err != nil {
				fmt.Fprintf(stderr, "aura-cli sim: write trace: %v\n", err)
			}
			if err := f.Close(); err != nil {
				fmt.Fprintf(stderr, "aura-cli sim: write trace: %v\n", err)
			}
		}()
	}
	sum := Sweep(cfg, seeds)
	if sum.Err != nil {
		fmt.Fprintf(stderr, "aura-cli sim: %v\n", sum.Err)
		return 1
	}
	if asJSON {
		if err := writeJSON(stdout, sum); err != nil {
			fmt.Fprintf(stderr, "aura-cli sim: %v\n", err)
			return 1
		}
	} else {
		sum.WriteTable(stdout)
	}
	if len(sum.Failed) > 0 {
		return 1
	}
	return 0
}

// printFlags lists the flags in the --flag style of every aura-cli command.
func printFlags(w io.Writer, fs *flag.FlagSet) {
	fs.VisitAll(func(f *flag.Flag) {
		name, usage := flag.UnquoteUsage(f)
		arg := "--" + f.Name
		if name != "" {
			arg += " " + name
		}
		def := ""
		if f.DefValue != "" && f.DefValue != "false" && f.DefValue != "0" {
			def = fmt.Sprintf(" (default %s)", f.DefValue)
		}
		fmt.Fprintf(w, "  %-28s %s%s\n", arg, usage, def)
	})
}

type jsonRun struct {
	Seed       uint64   `json:"seed"`
	OK         bool     `json:"ok"`
	Violations []string `json:"violations,omitempty"`
	Schedule   []string `json:"schedule,omitempty"`
	Replay     string   `json:"replay,omitempty"`
	TraceHash  string   `json:"trace_sha256"`
	Stats      Stats    `json:"stats"`
}

func writeJSON(w io.Writer, s Summary) error {
	out := struct {
		Nodes     int       `json:"nodes"`
		Threshold int       `json:"threshold"`
		Events    int       `json:"events"`
		Faults    string    `json:"faults"`
		Defects   string    `json:"defects,omitempty"`
		Seeds     int       `json:"seeds"`
		Passed    int       `json:"passed"`
		Runs      []jsonRun `json:"runs"`
		Totals    Stats     `json:"totals"`
	}{Nodes: s.Config.Nodes, Threshold: s.Config.Threshold, Events: s.Config.Events, Faults: s.Config.Faults.String(),
		Defects: s.Config.Defects.String(), Seeds: s.Seeds, Passed: s.Passed, Totals: s.Totals}
	for _, r := range s.Results {
		j := jsonRun{Seed: r.Seed, OK: !r.Failed(), TraceHash: fmt.Sprintf("%x", r.TraceHash), Stats: r.Stats}
		if r.Failed() {
			for _, v := range r.Violations {
				j.Violations = append(j.Violations, v.String())
			}
			j.Schedule = r.Schedule
			j.Replay = r.Command()
		}
		out.Runs = append(out.Runs, j)
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(out)
}
