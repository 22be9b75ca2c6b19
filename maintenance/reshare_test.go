package maintenance

import (
	"errors"
	"slices"
	"testing"

	"aura/crdt"
	"aura/threshold"
)

// TestPlanReshareAfterRemoval: after a removal every remaining member is
// invited with the share the key gives it, the removed holder is named,
// the key's M is kept by default, and an M the remaining devices cannot
// meet is refused with ErrReshareThreshold.
func TestPlanReshareAfterRemoval(t *testing.T) {
	c := newCluster(t, 4, 3)
	st := c.reps[0].State()
	if NeedsReshare(st) {
		t.Fatal("a reshare is needed before any removal")
	}
	gone := c.reps[2].Device()
	out, err := c.reps[0].Write(c.now, &crdt.DeviceRemoved{Device: gone})
	c.must(err)
	c.deliver(0, out)
	st = c.reps[1].State()
	if !NeedsReshare(st) {
		t.Fatal("no reshare needed after removing a share holder")
	}
	plan, err := PlanReshare(st, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(plan.Devices) != 3 || slices.Contains(plan.Devices, gone) || plan.Threshold != 3 {
		t.Fatalf("plan: %d devices, threshold %d", len(plan.Devices), plan.Threshold)
	}
	if len(plan.Removed) != 1 || plan.Removed[0] != gone {
		t.Fatalf("removed %v", plan.Removed)
	}
	gk := st.GroupKey()
	for i, d := range plan.Devices {
		if h := plan.Holders[i]; h < 0 || gk.Participants[h] != d {
			t.Fatalf("device %s: holder index %d", d.Short(), h)
		}
	}
	if _, err := PlanReshare(st, 4); !errors.Is(err, ErrReshareThreshold) {
		t.Fatalf("threshold 4 of 3 devices: %v", err)
	}
	if _, err := PlanReshare(st, 1); !errors.Is(err, ErrReshareThreshold) {
		t.Fatalf("threshold 1: %v", err)
	}
	if p, err := PlanReshare(st, 2); err != nil || p.Threshold != 2 {
		t.Fatalf("threshold 2: %v", err)
	}
}

// TestShareForPicksTheCurrentKeysShare: once a reshared key is published,
// a device votes with the share of that key at its own index, not the
// old one, and with none when the new key leaves it out.
func TestShareForPicksTheCurrentKeysShare(t *testing.T) {
	c := newCluster(t, 3, 2)
	old := []*threshold.Share{c.reps[0].Share(), c.reps[1].Share(), c.reps[2].Share()}
	st := c.reps[0].State()
	if got := ShareFor(st, c.reps[1].Device(), old); got != old[1] {
		t.Fatal("the current key's share was not picked")
	}
	if got := ShareFor(st, c.reps[1].Device(), []*threshold.Share{old[0]}); got != nil {
		t.Fatal("another device's share was picked")
	}
	key, shares, err := threshold.Deal(threshold.NewBN256(), threshold.SeededReader([]byte("new")), 2, 2)
	c.must(err)
	out, err := c.reps[0].PublishGroupKey(key, []crdt.DeviceID{c.reps[1].Device(), c.reps[0].Device()})
	c.must(err)
	c.deliver(0, out)
	st = c.reps[2].State()
	if got := ShareFor(st, c.reps[0].Device(), []*threshold.Share{old[0], shares[1]}); got != shares[1] {
		t.Fatal("the new key's share was not picked")
	}
	if got := ShareFor(st, c.reps[2].Device(), []*threshold.Share{old[2]}); got != nil {
		t.Fatal("a share of the old key was picked for a device the new key leaves out")
	}
}
