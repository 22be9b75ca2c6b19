package crdt

import (
	"testing"

	"pgregory.net/rapid"
)

// NewerSnapshot is a strict total order on completions of different
// rounds: irreflexive, antisymmetric, total and transitive.
func TestNewerSnapshotIsTotal(t *testing.T) {
	a, b := DeviceID{1}, DeviceID{2}
	gen := rapid.Custom(func(t *rapid.T) *SnapshotCompleted {
		var id [16]byte
		id[0] = rapid.Byte().Draw(t, "id0")
		id[15] = rapid.Byte().Draw(t, "id15")
		return &SnapshotCompleted{ProposalID: id, Snapshot: SnapshotV1{
			Epoch:    rapid.Uint64Range(0, 2).Draw(t, "epoch"),
			Frontier: VersionVector{a: rapid.Uint64Range(0, 3).Draw(t, "a"), b: rapid.Uint64Range(0, 3).Draw(t, "b")},
		}}
	})
	rapid.Check(t, func(t *rapid.T) {
		x, y, z := gen.Draw(t, "x"), gen.Draw(t, "y"), gen.Draw(t, "z")
		if NewerSnapshot(x, x) {
			t.Fatal("a snapshot is newer than itself")
		}
		if x.ProposalID != y.ProposalID && NewerSnapshot(x, y) == NewerSnapshot(y, x) {
			t.Fatalf("no single newest of %x and %x", x.ProposalID[:1], y.ProposalID[:1])
		}
		if NewerSnapshot(x, y) && NewerSnapshot(y, z) && !NewerSnapshot(x, z) {
			t.Fatal("not transitive")
		}
	})
}

// Equal epoch and frontier size: the proposal id decides, so two devices
// meeting the same completions in any order name the same newest.
func TestNewestSnapshotTieBreak(t *testing.T) {
	d := DeviceID{7}
	mk := func(id byte) SnapshotCompleted {
		return SnapshotCompleted{ProposalID: [16]byte{id}, Snapshot: SnapshotV1{Epoch: 1, Frontier: VersionVector{d: 5}}}
	}
	for _, order := range [][]byte{{3, 1, 2}, {2, 3, 1}, {1, 2, 3}} {
		s := &State{Completed: map[[16]byte]*CompletedRef{}}
		for _, id := range order {
			s.Completed[[16]byte{id}] = &CompletedRef{Completed: mk(id)}
		}
		if got := s.NewestSnapshot(); got.ProposalID[0] != 1 {
			t.Fatalf("order %v: newest %x, want 01", order, got.ProposalID[:1])
		}
	}
}
