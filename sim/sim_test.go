package sim

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"strings"
	"testing"
)

// mixes are the fault mixes the sweep runs, each on 5 and on 7 devices;
// every one must pass. Between them they switch on every fault the
// simulator has: loss, duplication, reordering, delay, partitions,
// crashes (between events and inside core calls), offline periods, clock
// skew, and one or two Byzantine devices doing everything Byzantine. New
// mixes go at the end: a mix's seeds are numbered from its index.
var mixes = []struct {
	name, spec string
	serial     bool // Workload.SerialProposals
	keygen     bool // Workload.Keygen: the key comes from the key generation session (dearer: a fifth of the seeds)
	contend    bool // contendedWorkload: shared keys, ties, deletes, grants and removals
}{
	// The runs are short (a few hundred events, 10-20 virtual seconds),
	// so the schedule faults come at higher rates than the presets'.
	{name: "none", spec: "none"},
	{name: "net", spec: "net,loss=0.1"},
	{name: "churn", spec: "partition=0.1,crash=0.04,offline=0.04"},
	{name: "skew", spec: "net,skew=2s"},
	{name: "chaos", spec: "net,partition=0.1,crash=0.04,offline=0.04,skew=500ms"},
	{name: "byz", spec: "net,partition=0.1,crash=0.04,offline=0.04,skew=500ms,byz=1:all"},
	// Every crash between events, then every crash inside a core call.
	{name: "crash-between", spec: "net,partition=0.05,crash=0.08,midcall=0,offline=0.04"},
	{name: "crash-midcall", spec: "net,partition=0.05,crash=0.08,midcall=1,offline=0.04,skew=500ms"},
	// Two Byzantine devices: with 5 devices the honest ones hold exactly M
	// shares.
	{name: "byz2", spec: "net,partition=0.1,crash=0.04,offline=0.04,skew=500ms,byz=2:all"},
	// Operators who wait for the open round before proposing.
	{name: "chaos-serial", spec: "net,partition=0.1,crash=0.04,offline=0.04,skew=500ms", serial: true},
	// The group key from the product's key generation session under the
	// faults, then the usual run (keygen_test.go checks the session itself).
	{name: "chaos-keygen", spec: "net,partition=0.1,crash=0.04,offline=0.04,skew=500ms,byz=1:all", keygen: true},
	// Contention (shared keys written by every device, ties on Lamport
	// time, deletes), the admin's grants and removals across epochs,
	// crashes aimed at fence releases, and a Byzantine device doing all
	// it can (backdated writes, proposals in another's name, tampered
	// snapshot blobs among them): the oracle's and exactly-once's mix.
	{name: "contend", spec: "net,partition=0.05,crash=0.06,release=0.8,offline=0.04,skew=500ms,byz=1:all", contend: true},
}

// contendedWorkload switches on the workloads of the "contend" mix.
func contendedWorkload(w *Workload) {
	w.Contend, w.GrantEvery = 0.4, 3000
}

// regressions are seeds that once failed, each with the exact command
// that found it; every one must pass now. They were found on the
// workload before the blob workload joined it (commit 5f0a3d3), which
// shifted the random streams: on today's workload they no longer replay
// the failure against the unfixed core, so the core tests pin the fixes
// (maintenance/fork_test.go, crdt/journal_settle_test.go) and these stay
// as coverage of the shapes that found them.
var regressions = []struct {
	name    string
	nodes   int
	events  int
	spec    string
	seed    uint64
	wm      int64   // Workload.Watermark (0: the default)
	keygen  bool    // Workload.Keygen
	failure string  // what it reported, and what fixed it
	contend float64 // Workload.Contend
	grants  int64   // Workload.GrantEvery
}{
	{"snapshot-fork", 5, 2000, "loss=0.05,dup=0.02,reorder=0.1,delay=50ms,partition=0.02,crash=0.01,midcall=0.5,offline=0.01,skew=500ms", 149, 0, false,
		"issue 10: snapshot-fork (two completed snapshots with incomparable frontiers: a voter of the first restarted, " +
			"lost its in-memory vote lock and voted for the second), then divergence and lost writes; fixed by the cover rule (maintenance/doc.go)", 0, 0},
	{"completion-heads", 7, 400, "loss=0.05,dup=0.02,reorder=0.1,delay=50ms,partition=0.1,crash=0.04,midcall=0.5,offline=0.04,skew=500ms,byz=1:all", 211003, 12 << 10, true,
		"snapshot-frontier (a completion whose chain heads do not hash to its signed prefix hash: the completer's journal had re-chained an " +
			"equivocator's slot after it voted); fixed by tryComplete judging its heads and digest against the signed ones", 0, 0},
	{"equivocation-settle", 7, 400, "loss=0.05,dup=0.02,reorder=0.1,delay=50ms,partition=0.1,crash=0.04,midcall=0.5,offline=0.04,skew=500ms,byz=1:all", 20032, 12 << 10, false,
		"convergence (a device kept the higher id of a Byzantine equivocation for good: a crash inside Receive fell between the ingest " +
			"commit and the batch that moves the lower id into the slot); fixed by crdt.OpenJournal settling such evidence", 0, 0},
	{"removal-epoch", 5, 400, "loss=0.05,dup=0.02,reorder=0.1,delay=50ms,partition=0.05,crash=0.06,midcall=0.5,release=0.8,offline=0.04,skew=500ms,byz=1:all", 111, 12 << 10, false,
		"oracle and convergence (a Byzantine device's vote at the epoch its removal opened reached d1 before the removal: the guard judged it by " +
			"the membership known then and counted it, the others refused it); fixed by crdt's guard parking every fact at an epoch whose membership " +
			"is not known whole (crdt/guard_removal_test.go)", 0.4, 3000},
	{"release-pruned", 5, 2000, "loss=0.05,dup=0.02,reorder=0.1,delay=50ms,partition=0.02,crash=0.01,midcall=0.5,release=0.5,offline=0.01,skew=500ms,byz=1:all", 60, 0, false,
		"exactly-once (a release crashed after committing a buffered write and before dropping its entry; a restore then pruned the fact, and the " +
			"next release, not finding it at the recorded seq, committed it again); fixed by Replica.Open settling the buffer " +
			"(maintenance/snapshot_test.go TestReleaseInterruptedThenPrunedCommitsOnce)", 0.3, 5000},
}

func mustFaults(t testing.TB, spec string) Faults {
	t.Helper()
	f, err := ParseFaults(spec)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// small is the shape of the quick runs: 5 devices, a few hundred events,
// a watermark low enough to trigger in them.
func small(t testing.TB, spec string, seed uint64) Config {
	return Config{Nodes: 5, Seed: seed, Events: 400, Faults: mustFaults(t, spec),
		Workload: Workload{Watermark: 12 << 10}}
}

func TestMixesQuick(t *testing.T) {
	for _, m := range mixes {
		t.Run(m.name, func(t *testing.T) {
			t.Parallel()
			for seed := uint64(1); seed <= 2; seed++ {
				cfg := small(t, m.spec, seed)
				cfg.Workload.SerialProposals, cfg.Workload.Keygen = m.serial, m.keygen
				if m.contend {
					contendedWorkload(&cfg.Workload)
				}
				r, err := Run(cfg)
				if err != nil {
					t.Fatal(err)
				}
				if r.Failed() {
					t.Fatalf("%s", r.Report())
				}
				if r.Stats.ActiveEvents < 400 || r.Stats.Writes == 0 {
					t.Fatalf("seed %d did little: %+v", seed, r.Stats)
				}
			}
		})
	}
}

// TestRegressionSeeds replays the seeds that once failed, with the
// command that found them.
func TestRegressionSeeds(t *testing.T) {
	for _, c := range regressions {
		t.Run(fmt.Sprintf("%s-%d", c.name, c.seed), func(t *testing.T) {
			t.Parallel()
			w := Workload{Watermark: c.wm, Keygen: c.keygen, Contend: c.contend, GrantEvery: c.grants}
			r, err := Run(Config{Nodes: c.nodes, Seed: c.seed, Events: c.events, Faults: mustFaults(t, c.spec), Workload: w})
			if err != nil {
				t.Fatal(err)
			}
			if r.Failed() {
				t.Fatalf("regression (%s) is back:\n%s", c.failure, r.Report())
			}
			if r.Stats.Completed < 2 || r.Stats.Restores == 0 {
				t.Fatalf("seed %d no longer exercises what it found (snapshots %d, restores %d): replace it", c.seed, r.Stats.Completed, r.Stats.Restores)
			}
		})
	}
}

// sweepSeeds is how many seeds TestSeedSweep runs per mix and device
// count (fewer with -short). The budget: the whole sim package under
// -race in about 4 minutes on 2 cores; sim/doc.go gives the long sweep to
// run before a release.
const sweepSeeds, sweepSeedsShort = 15, 3

// TestSeedSweep runs every fault mix on 5 and on 7 devices over a range
// of seeds, plus a few full-length runs of the presets, and fails on any
// violation, naming the seed and the command that replays it.
func TestSeedSweep(t *testing.T) {
	perCell := sweepSeeds
	if testing.Short() {
		perCell = sweepSeedsShort
	}
	type cell struct {
		name string
		cfg  Config
		n    int
	}
	var cells []cell
	for i, m := range mixes {
		for _, nodes := range []int{5, 7} {
			cfg := small(t, m.spec, uint64(1000*(i+1)+100_000*(nodes-5)))
			cfg.Nodes = nodes
			cfg.Workload.SerialProposals, cfg.Workload.Keygen = m.serial, m.keygen
			if m.contend {
				contendedWorkload(&cfg.Workload)
			}
			n := perCell
			if m.keygen {
				n = max(1, perCell/5)
			}
			cells = append(cells, cell{fmt.Sprintf("%s/n%d", m.name, nodes), cfg, n})
		}
	}
	// Full-length runs as `aura-cli sim` makes them (2000 events, default
	// workload, the presets' own rates): the shape seed 149 was found in.
	for _, p := range []string{"chaos", "all"} {
		for _, nodes := range []int{5, 7} {
			cfg := Config{Nodes: nodes, Seed: uint64(500_000 + 1000*nodes), Events: 2000, Faults: mustFaults(t, p)}
			cells = append(cells, cell{fmt.Sprintf("long-%s/n%d", p, nodes), cfg, max(1, perCell/7)})
		}
	}
	for _, c := range cells {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			sum := Sweep(c.cfg, c.n)
			if sum.Err != nil {
				t.Fatal(sum.Err)
			}
			if len(sum.Failed) > 0 {
				var b strings.Builder
				sum.WriteTable(&b)
				t.Fatalf("%d of %d seeds failed:\n%s", len(sum.Failed), c.n, b.String())
			}
			st := sum.Totals
			t.Logf("%d seeds: %d device-events, %d writes (%d buffered), %d snapshots, %d GCs, %d restores, %d fresh devices, %d crashes, %d partitions, %d offline periods, %d Byzantine acts",
				c.n, st.DeviceEvents, st.Writes, st.Buffered, st.Completed, st.GCs, st.Restores, st.Admitted, st.Crashes, st.Partitions, st.Offlines, st.ByzActs)
		})
	}
}

// TestDeterminism: the same seed twice gives the same trace, byte for
// byte; another seed gives another; a parallel sweep gives what a serial
// one does.
func TestDeterminism(t *testing.T) {
	cfg := small(t, "chaos,byz=1:badpartial+stranger", 42)
	cfg.Events = 600
	run := func(c Config) (Result, []byte) {
		var buf bytes.Buffer
		c.TraceWriter = &buf
		r, err := Run(c)
		if err != nil {
			t.Fatal(err)
		}
		return r, buf.Bytes()
	}
	a, ta := run(cfg)
	b, tb := run(cfg)
	if a.TraceHash != b.TraceHash || !bytes.Equal(ta, tb) {
		la, lb := strings.Split(string(ta), "\n"), strings.Split(string(tb), "\n")
		for i := range min(len(la), len(lb)) {
			if la[i] != lb[i] {
				t.Fatalf("traces of one seed differ at line %d:\n%s\n%s", i+1, la[i], lb[i])
			}
		}
		t.Fatalf("traces of one seed differ in length: %d vs %d lines", len(la), len(lb))
	}
	if sha256.Sum256(ta) != a.TraceHash {
		t.Fatal("TraceHash is not the hash of the trace")
	}
	if a.Stats.Crashes+a.Stats.Partitions+a.Stats.Offlines == 0 || a.Stats.Lost == 0 || a.Stats.ByzActs == 0 {
		t.Fatalf("the run injected too few faults to mean much: %+v", a.Stats)
	}
	cfg.Seed = 43
	if c, _ := run(cfg); c.TraceHash == a.TraceHash {
		t.Fatal("two seeds gave the same trace")
	}
	cfg.Seed = 42
	serial := Sweep(cfg, 4)
	cfg.Parallel = 2
	par := Sweep(cfg, 4)
	for i := range serial.Results {
		if serial.Results[i].TraceHash != par.Results[i].TraceHash {
			t.Fatalf("seed %d: parallel sweep traced differently", serial.Results[i].Seed)
		}
	}
	if serial.Results[0].TraceHash != a.TraceHash {
		t.Fatal("Sweep's first run differs from Run")
	}
}

// TestDefectsAreCaught proves the invariants can fail: with a deliberate
// defect on, the simulator finds a violation of the expected invariant
// within a bounded number of seeds, and reports the seed.
func TestDefectsAreCaught(t *testing.T) {
	cases := []struct {
		name   string
		defect Defects
		faults string
		want   string // the invariant that must fire
		absent Absence
		tune   func(*Config)
	}{
		{"prune-above-frontier", Defects{PruneAboveFrontier: true}, "net", "gc-frontier", Absence{}, nil},
		{"skip-threshold-verify", Defects{SkipThresholdVerify: true}, "byz=1:unauth", "snapshot-signature", Absence{}, nil},
		{"lose-meta-on-crash", Defects{LoseMetaOnCrash: true}, "churn,crash=0.03", "no-write-lost", Absence{}, nil},
		{"delete-on-tombstone", Defects{DeleteOnTombstone: true}, "net", "blob-deleted-early", Absence{}, nil},
		{"keep-tombstoned", Defects{KeepTombstoned: true}, "net", "blob-not-freed", Absence{}, nil},
		{"restore-own-newest", Defects{RestoreOwnNewest: true}, "net", "restore-newest", Absence{Snapshots: 2}, nil},
		{"cache-no-invalidate", Defects{CacheNoInvalidate: true}, "net", "cache-stale", Absence{}, nil},
		// A guard that ignores the epoch of a grant lets backdated writes in.
		{"grant-epoch-ignored", Defects{GrantEpochIgnored: true}, "net,byz=1:backdate", "oracle", Absence{}, nil},
		// A release that loses the seq it recorded commits a write twice
		// when a crash interrupts it.
		{"buffer-seq-lost", Defects{BufferSeqLost: true}, "net,crash=0.02,release=1", "exactly-once", Absence{}, func(c *Config) {
			c.Workload.WriteEvery, c.Workload.ProposeEvery = 250, 3000 // more writes behind more fences
		}},
		{"accept-foreign-proposal", Defects{ForeignProposal: true}, "net,byz=1:impersonate", "proposal-authentic", Absence{}, nil},
		{"skip-block-check", Defects{SkipBlockCheck: true}, "net,byz=1:tamper", "blob-integrity", Absence{}, nil},
		// Last-writer-wins ties broken by arrival.
		{"lww-tie-arrival", Defects{LWWTieArrival: true}, "net", "oracle", Absence{}, func(c *Config) { contendedWorkload(&c.Workload) }},
	}
	const maxSeeds = 10
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			for seed := uint64(1); seed <= maxSeeds; seed++ {
				cfg := small(t, c.faults, seed)
				if c.absent.Snapshots > 0 {
					cfg = absentRun(t, c.faults, seed, c.absent)
				}
				if c.tune != nil {
					c.tune(&cfg)
				}
				cfg.Defects = c.defect
				r, err := Run(cfg)
				if err != nil {
					t.Fatal(err)
				}
				for _, v := range r.Violations {
					if c.want == "" || v.Invariant == c.want {
						t.Logf("defect %s caught at seed %d: %s\nreplay: %s", c.name, seed, v, r.Command())
						// The control: the same seed without the defect passes.
						cfg.Defects = Defects{}
						if r, err := Run(cfg); err != nil || r.Failed() {
							t.Fatalf("seed %d fails without the defect too: %v\n%s", seed, err, r.Report())
						}
						return
					}
				}
			}
			t.Fatalf("defect %s went unnoticed for %d seeds", c.name, maxSeeds)
		})
	}
}

func TestParseFaults(t *testing.T) {
	f, err := ParseFaults("loss=0.05,dup=0.02,reorder=0.1,delay=50ms,partition=0.01,crash=0.005,skew=200ms,byz=1:badpartial+lie+equivocate+unauth")
	if err != nil {
		t.Fatal(err)
	}
	want := Faults{Loss: 0.05, Dup: 0.02, Reorder: 0.1, Delay: 50, Partition: 0.01, Crash: 0.005, Skew: 200,
		Byzantine: 1, Byz: ByzBadPartial | ByzLie | ByzEquivocate | ByzUnauth}
	if f != want {
		t.Fatalf("parsed %+v, want %+v", f, want)
	}
	again, err := ParseFaults(f.String())
	if err != nil || again != f {
		t.Fatalf("round trip of %q: %+v, %v", f.String(), again, err)
	}
	for _, p := range PresetNames() {
		if _, err := ParseFaults(p); err != nil {
			t.Fatalf("preset %s: %v", p, err)
		}
	}
	if f, _ := ParseFaults("chaos,loss=0"); f.Loss != 0 || f.Crash == 0 {
		t.Fatalf("later terms must win: %+v", f)
	}
	if f, err := ParseFaults("crash=0.1,release=0.3,byz=1:backdate+impersonate+tamper"); err != nil || f.Release != 0.3 || f.Byz != ByzBackdate|ByzImpersonate|ByzTamper {
		t.Fatalf("release and the new Byzantine modes: %+v, %v", f, err)
	} else if again, err := ParseFaults(f.String()); err != nil || again != f {
		t.Fatalf("round trip of %q: %+v, %v", f.String(), again, err)
	}
	if f, _ := ParseFaults("byz=2"); f.Byz != ByzAll || f.Byzantine != 2 {
		t.Fatalf("byz=2: %+v", f)
	}
	for _, bad := range []string{"loss=2", "nosuch=1", "byz=x", "byz=1:nosuch", "delay=fast", "nosuchpreset", "release=2", "midcall-skip=nosuch"} {
		if _, err := ParseFaults(bad); err == nil {
			t.Errorf("%q parsed", bad)
		}
	}
	if _, err := Run(Config{Nodes: 4, Threshold: 3, Faults: Faults{Byzantine: 2}}); err == nil {
		t.Error("accepted more Byzantine devices than the honest threshold allows")
	}
}

func TestMainCommand(t *testing.T) {
	var out, errb bytes.Buffer
	code := Main([]string{"--seed", "7", "--seeds", "2", "--events", "300", "--faults", "net"}, &out, &errb)
	if code != 0 {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, out.String(), errb.String())
	}
	if !strings.Contains(out.String(), "2/2 passed") || !strings.Contains(out.String(), "seed") {
		t.Fatalf("no summary table:\n%s", out.String())
	}
	out.Reset()
	code = Main([]string{"--seed", "1", "--events", "300", "--faults", "none", "--defects", "prune-above-frontier", "--json"}, &out, &errb)
	if code != 1 || !strings.Contains(out.String(), `"replay": "aura-cli sim --seed 1`) {
		t.Fatalf("a failing seed must exit 1 and print its replay command; exit %d:\n%s", code, out.String())
	}
	// Bad usage exits 1 with the reason, like every aura-cli command.
	for _, args := range [][]string{{"--faults", "nosuch"}, {"--seeds", "0"}, {"extra"}, {"--nodes", "1"}, {"--nodes", "0"}, {"--events", "0"}} {
		errb.Reset()
		if code := Main(args, &out, &errb); code != 1 || errb.Len() == 0 {
			t.Errorf("%v: exit %d (stderr %q), want 1 and the reason", args, code, errb.String())
		}
	}
}

// BenchmarkSim7x10k: 7 devices, 10,000 device-events of chaos per run.
// Reports simulated device-events per second (quiesce and probes
// included) and how many such seeds fit in a minute on one core.
func BenchmarkSim7x10k(b *testing.B) {
	f := mustFaults(b, "chaos")
	events, failed := 0, 0
	seed := uint64(0)
	for b.Loop() {
		seed++
		r, err := Run(Config{Nodes: 7, Seed: seed, Events: 10_000, Faults: f, NoFoldCheck: true})
		if err != nil {
			b.Fatal(err)
		}
		if r.Failed() { // a throughput figure, not a check: report and go on
			failed++
			b.Logf("%s", r.Report())
		}
		events += r.Stats.DeviceEvents
	}
	sec := b.Elapsed().Seconds()
	b.ReportMetric(float64(events)/sec, "device-events/s")
	b.ReportMetric(60*float64(seed)/sec, "seeds/min")
	b.ReportMetric(float64(failed), "failed-seeds")
}

func ExampleRun() {
	f, _ := ParseFaults("net,crash=0.01")
	r, err := Run(Config{Nodes: 5, Seed: 1, Events: 300, Faults: f})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(r.Failed())
	// Output: false
}

// TestReplayCommand: the command a failing run prints replays it exactly.
func TestReplayCommand(t *testing.T) {
	cfg := small(t, "chaos", 3)
	cfg.Defects = Defects{PruneAboveFrontier: true}
	r, err := Run(cfg)
	if err != nil || !r.Failed() {
		t.Fatalf("want a failing run: %v", err)
	}
	args := strings.Fields(strings.TrimPrefix(r.Command(), "aura-cli sim "))
	for i, a := range args {
		args[i] = strings.Trim(a, "'")
	}
	var out, errb bytes.Buffer
	if code := Main(append(args, "--json"), &out, &errb); code != 1 {
		t.Fatalf("replay of %q: exit %d: %s", r.Command(), code, errb.String())
	}
	if want := fmt.Sprintf(`"trace_sha256": "%x"`, r.TraceHash); !strings.Contains(out.String(), want) {
		t.Fatalf("replay of %q traced differently:\n%s", r.Command(), out.String())
	}
}
