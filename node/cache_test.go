package node

import (
	"context"
	"testing"
	"time"
)

// The node's views follow the cache rule: cached while the epoch exceeds
// the floor, recomputed after a mutation at the current epoch until the
// epoch moves, and an operator invalidation reaches every device.
func TestNodeCacheFollowsEpochFloors(t *testing.T) {
	ns := newNodes(t, 2)
	formAccount(t, ns, 1)
	a, b := ns[0], ns[1]
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if _, err := a.Keygen(ctx, 2); err != nil {
		t.Fatal(err)
	}
	a.Snapshots()
	before := a.cache.Stats()
	a.Snapshots()
	if s := a.cache.Stats(); s.Hits != before.Hits+1 {
		t.Fatalf("the snapshot list was not served from the cache: %+v → %+v", before, s)
	}
	if _, err := a.Propose(); err != nil {
		t.Fatal(err)
	}
	// SnapshotProposed invalidated "snapshots" at the current epoch: every
	// read recomputes, and sees the proposal.
	for i := 0; i < 2; i++ {
		before = a.cache.Stats()
		if len(a.Snapshots()) == 0 {
			t.Fatal("the recomputed list lacks the proposal")
		}
		if s := a.cache.Stats(); s.Hits != before.Hits {
			t.Fatal("served the snapshot list at the epoch of its floor")
		}
	}
	if _, err := a.InvalidateCache([]string{"members"}); err != nil {
		t.Fatal(err)
	}
	if _, err := a.InvalidateCache([]string{"bogus"}); err == nil {
		t.Fatal("an unknown cache key was accepted")
	}
	epoch := a.Status().IdentityEpoch
	waitFor(t, 20*time.Second, "b to raise the members floor", func() bool {
		for _, k := range b.CacheStatus().Keys {
			if k.Key == "members" && k.Floor == epoch {
				return true
			}
		}
		return false
	})
}
