package sim

import (
	"testing"

	"aura/maintenance"
)

// A core call that trips the fold cross-check is reported as the
// fold-order invariant on that device, not a crash of the run.
func TestFoldMismatchIsAViolation(t *testing.T) {
	s := &sim{tr: newTracer(nil), res: &Result{}, violated: map[string]bool{}}
	d := &device{name: "d1", armed: -1}
	ok := s.call(d, "receive", func() { panic(&maintenance.FoldMismatch{Detail: "live state differs"}) })
	if ok || len(s.res.Violations) != 1 || s.res.Violations[0].Invariant != "fold-order" || s.res.Violations[0].Device != "d1" {
		t.Fatalf("call ok %v, violations %+v", ok, s.res.Violations)
	}
}
