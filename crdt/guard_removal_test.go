package crdt

import (
	"errors"
	"testing"
)

// TestGuardWaitsForRemovalAtItsEpoch: a fact at an epoch whose membership
// the state does not know whole waits, even when its author holds the
// capability by what is known: the removal that opens that epoch may
// still arrive, and the verdict must not depend on arrival order. (Found
// by the simulator's oracle, seed 111 of the contend mix: a removed
// Byzantine device's vote at the removal's epoch reached one device before
// the removal and counted there only.)
func TestGuardWaitsForRemovalAtItsEpoch(t *testing.T) {
	s := newScenario(t, 3)
	victim := s.dev(2)
	// The removed device writes at the epoch its removal opens.
	late := s.write(2, s.epoch+1, &Put{Key: "late", Value: []byte("after removal")})
	removal := s.write(0, s.epoch+1, &DeviceRemoved{Device: victim})

	before := s.reduce(s.facts[:len(s.facts)-2])
	if err := before.Apply(late); !errors.Is(err, ErrNotYet) {
		t.Fatalf("a fact beyond the known membership: got %v, want ErrNotYet", err)
	}
	if err := before.Apply(removal); err != nil {
		t.Fatal(err)
	}
	if _, ok := before.Value("late"); ok {
		t.Fatal("the removed device's write at its removal epoch counts when it arrived first")
	}
	after := s.reduce(s.facts[:len(s.facts)-2])
	if err := after.Apply(removal); err != nil {
		t.Fatal(err)
	}
	if err := after.Apply(late); !errors.Is(err, ErrUnauthorized) {
		t.Fatalf("the removed device's write: got %v, want ErrUnauthorized", err)
	}
	if before.Digest() != after.Digest() {
		t.Fatal("the fold depends on whether the write or the removal came first")
	}
}
