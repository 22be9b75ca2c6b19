package maintenance

import (
	"fmt"
	"testing"

	"pgregory.net/rapid"
)

// A served entry always equals a fresh recomputation, and a hit happens
// only when the epoch exceeds the key's floor — whatever the sequence of
// writes (each invalidating its key at the current epoch), epoch changes,
// operator invalidations and reads.
func TestCacheServesOnlyFreshEntries(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		c := NewCache[string]()
		state := map[string]string{}
		epoch := uint64(1)
		keys := []string{"kv/a", "kv/b", "members"}
		for i := rapid.IntRange(1, 200).Draw(t, "steps"); i > 0; i-- {
			k := rapid.SampledFrom(keys).Draw(t, "key")
			switch rapid.IntRange(0, 4).Draw(t, "op") {
			case 0: // a mutation of the authoritative state
				state[k] = fmt.Sprint(rapid.Int().Draw(t, "v"))
				c.Invalidate(Invalidation{Keys: []string{k}, Floor: epoch})
			case 1: // the identity epoch moves
				epoch++
			case 2: // an operator invalidation, at some epoch up to the current
				c.Invalidate(Invalidation{Keys: []string{k}, Floor: rapid.Uint64Range(0, epoch).Draw(t, "floor")})
			case 3: // a restore
				state[k] = "restored"
				c.Invalidate(Invalidation{Keys: []string{AllKeys}, Floor: epoch})
			default:
				want := state[k]
				got, hit := c.Get(k, epoch, func() string { return state[k] })
				if got != want {
					t.Fatalf("served %q for %s, a fresh recomputation gives %q", got, k, want)
				}
				if hit && !Servable(epoch, c.Floor(k)) {
					t.Fatalf("hit for %s at epoch %d with floor %d", k, epoch, c.Floor(k))
				}
			}
		}
	})
}

// The rule at the edges: an invalidation at the current epoch makes every
// read recompute until the epoch moves; then the entry is served again.
func TestCacheInvalidationAtCurrentEpoch(t *testing.T) {
	c := NewCache[int]()
	n := 0
	compute := func() int { n++; return n }
	c.Invalidate(Invalidation{Keys: []string{"members"}, Floor: 3})
	for i := 0; i < 3; i++ {
		if _, hit := c.Get("members", 3, compute); hit {
			t.Fatal("served at the epoch of the floor")
		}
	}
	// Past the floor, the entry last computed (after the invalidation) is
	// served.
	if v, hit := c.Get("members", 4, compute); !hit || v != n {
		t.Fatalf("read at epoch 4: %d %v, want the cached %d", v, hit, n)
	}
	// An invalidation at an older epoch drops the entry but does not stop
	// caching.
	c.Invalidate(Invalidation{Keys: []string{"members"}, Floor: 2})
	if _, hit := c.Get("members", 4, compute); hit {
		t.Fatal("served an entry computed before an invalidation")
	}
	if v, hit := c.Get("members", 4, compute); !hit || v != n {
		t.Fatalf("after recomputing: %d %v", v, hit)
	}
	if s := c.Stats(); s.Hits != 2 || s.Misses != 4 || s.Recomputes != 4 {
		t.Fatalf("stats %+v", s)
	}
	if !ValidCacheKey("kv/x") || !ValidCacheKey("snapshots") || ValidCacheKey("bogus") {
		t.Fatal("ValidCacheKey")
	}
}
