package sim

import (
	"fmt"
	"io"
	"strings"
	"sync"
)

// Summary is the outcome of a sweep over seeds.
type Summary struct {
	Config  Config // the base config (Seed is the first seed)
	Seeds   int
	Passed  int
	Results []Result // in seed order
	Failed  []Result // the failing ones, in seed order
	Totals  Stats
	Err     error // a bad Config: nothing ran
}

// Sweep runs seeds cfg.Seed, cfg.Seed+1, … (seeds of them), cfg.Parallel
// at a time (each run on its own, deterministic), and sums them up. A
// TraceWriter forces one at a time so that traces do not interleave.
func Sweep(cfg Config, seeds int) Summary {
	sum := Summary{Config: cfg, Seeds: seeds}
	full, err := cfg.withDefaults()
	if err != nil {
		sum.Err = err
		return sum
	}
	sum.Config = full
	results := make([]Result, seeds)
	errs := make([]error, seeds)
	workers := full.Parallel
	if cfg.TraceWriter != nil {
		workers = 1
	}
	workers = max(1, min(workers, seeds))
	var wg sync.WaitGroup
	next := make(chan int)
	for range workers {
		wg.Go(func() {
			for i := range next {
				c := full
				c.Seed = full.Seed + uint64(i)
				results[i], errs[i] = Run(c)
			}
		})
	}
	for i := range seeds {
		next <- i
	}
	close(next)
	wg.Wait()
	for i, r := range results {
		if errs[i] != nil {
			sum.Err = errs[i]
			return sum
		}
		sum.Results = append(sum.Results, r)
		sum.Totals.add(r.Stats)
		if r.Failed() {
			sum.Failed = append(sum.Failed, r)
		} else {
			sum.Passed++
		}
	}
	return sum
}

// WriteTable prints the summary table: one row per seed (only the failing
// ones past 25 seeds), a total row, and a report of each failure.
func (s Summary) WriteTable(w io.Writer) {
	if s.Err != nil {
		fmt.Fprintf(w, "aura sim: %v\n", s.Err)
		return
	}
	c := s.Config
	last := c.Seed + uint64(s.Seeds) - 1
	fmt.Fprintf(w, "aura sim: nodes=%d threshold=%d events=%d faults=%s seeds %d..%d\n",
		c.Nodes, c.Threshold, c.Events, c.Faults, c.Seed, last)
	if c.Defects.any() {
		fmt.Fprintf(w, "deliberate defects: %s\n", c.Defects)
	}
	const head = "%8s %8s %8s %7s %6s %6s %5s %6s %7s %6s %6s %6s  %s\n"
	const row = "%8v %8d %8.1f %7d %6d %6d %5d %6d %7d %6d %6d %6d  %s\n"
	fmt.Fprintf(w, head, "seed", "events", "virt-s", "writes", "props", "snaps", "gcs", "restor", "crashes", "parts", "offl", "byz", "result")
	line := func(label any, st Stats, verdict string) {
		fmt.Fprintf(w, row, label, st.DeviceEvents, float64(st.VirtualMs)/1000, st.Writes, st.Proposals, st.Completed,
			st.GCs, st.Restores, st.Crashes, st.Partitions, st.Offlines, st.ByzActs, verdict)
	}
	for _, r := range s.Results {
		if s.Seeds > 25 && !r.Failed() {
			continue
		}
		verdict := "ok"
		if r.Failed() {
			var inv []string
			seen := map[string]bool{}
			for _, v := range r.Violations {
				if !seen[v.Invariant] {
					seen[v.Invariant] = true
					inv = append(inv, v.Invariant)
				}
			}
			verdict = "FAIL " + strings.Join(inv, ",")
		}
		line(r.Seed, r.Stats, verdict)
	}
	line("total", s.Totals, fmt.Sprintf("%d/%d passed", s.Passed, s.Seeds))
	for _, r := range s.Failed {
		fmt.Fprintln(w)
		fmt.Fprint(w, r.Report())
	}
}
