package sim

import (
	"testing"

	"aura/crdt"
)

// TestSnapshotForkCheckFires proves the completion-time snapshot-fork
// check can fail (no driver defect can make honest cores fork, so it is
// fed two completions directly): incomparable frontiers are named, a
// successor and a repeat of the same completion are not.
func TestSnapshotForkCheckFires(t *testing.T) {
	s := &sim{tr: newTracer(nil), res: &Result{}, violated: map[string]bool{}, now: t0}
	var a, b crdt.DeviceID
	a[0], b[0] = 1, 2
	done := func(id byte, fa, fb uint64) *crdt.SnapshotCompleted {
		return &crdt.SnapshotCompleted{ProposalID: [16]byte{id},
			Snapshot: crdt.SnapshotV1{Frontier: crdt.VersionVector{a: fa, b: fb}}}
	}
	s.checkComparable("d0", done(1, 5, 3))
	s.checkComparable("d0", done(2, 6, 3)) // covers the first
	s.checkComparable("d1", done(1, 5, 3)) // the same completion again
	if len(s.res.Violations) != 0 {
		t.Fatalf("comparable completions named: %v", s.res.Violations)
	}
	s.checkComparable("d2", done(3, 4, 9)) // neither covers the other
	if len(s.res.Violations) != 1 || s.res.Violations[0].Invariant != "snapshot-fork" {
		t.Fatalf("incomparable completions not named: %v", s.res.Violations)
	}
}
