package node

import (
	"fmt"

	"aura/crdt"
	"aura/maintenance"
)

// The node's derived-data cache (maintenance.Cache, whose doc has the key
// table and the exact serving rule). Views cached: "members" (device
// names) and "snapshots" (the snapshot list). Invalidations are applied
// under n.mu in the same critical section as the mutation that causes
// them, so no read can see a view older than the state it reads.

// invalidateLocked applies what facts just applied (written or received)
// invalidate, and everything after a restore. n.mu is held.
func (n *Node) invalidateLocked(out maintenance.Output, res *crdt.IngestResult) {
	invs := maintenance.InvalidationsOf(out.Publish)
	if res != nil {
		// What the state folded: new facts and pending ones whose gap
		// filled; a chain moved by an equivocation may change anything.
		invs = append(invs, maintenance.InvalidationsOf(res.Added)...)
		invs = append(invs, maintenance.InvalidationsOf(res.Chained)...)
		if len(res.Rechained) > 0 {
			invs = append(invs, maintenance.Invalidation{Keys: []string{maintenance.AllKeys}, Floor: n.rep.State().Epoch})
		}
	}
	for _, e := range out.Events {
		if e.Kind == maintenance.EventRestored {
			invs = append(invs, maintenance.Invalidation{Keys: []string{maintenance.AllKeys}, Floor: n.rep.State().Epoch})
		}
	}
	if len(invs) > 0 {
		n.cache.Invalidate(invs...)
	}
}

// cachedLocked serves view key under the rule, computing it when it may
// not be served. n.mu is held.
func cachedLocked[V any](n *Node, key string, compute func() V) V {
	v, _ := n.cache.Get(key, n.rep.State().Epoch, func() any { return compute() })
	return v.(V)
}

// CacheKey is one key of `aura-cli cache status`.
type CacheKey struct {
	Key    string `json:"key"`
	Floor  uint64 `json:"floor"`
	Cached bool   `json:"cached"`
}

// CacheStatus is `aura-cli cache status`.
type CacheStatus struct {
	Epoch      uint64     `json:"identity_epoch"`
	Keys       []CacheKey `json:"keys"`
	Hits       uint64     `json:"hits"`
	Misses     uint64     `json:"misses"`
	Recomputes uint64     `json:"recomputes"`
}

// CacheStatus reports the cache's floors and counters.
func (n *Node) CacheStatus() CacheStatus {
	n.mu.Lock()
	epoch := n.rep.State().Epoch
	n.mu.Unlock()
	st := n.cache.Stats()
	s := CacheStatus{Epoch: epoch, Keys: []CacheKey{}, Hits: st.Hits, Misses: st.Misses, Recomputes: st.Recomputes}
	for _, k := range n.cache.Keys() {
		s.Keys = append(s.Keys, CacheKey{Key: k.Key, Floor: k.Floor, Cached: k.Cached})
	}
	return s
}

// InvalidateCache appends CacheInvalidated for keys at the current
// identity epoch (capability write): every device raises those floors.
func (n *Node) InvalidateCache(keys []string) (crdt.FactID, error) {
	if len(keys) == 0 {
		return crdt.FactID{}, errorf(ErrBadRequest, "name at least one cache key (see `aura-cli cache status`)")
	}
	for _, k := range keys {
		if !maintenance.ValidCacheKey(k) {
			return crdt.FactID{}, errorf(ErrBadRequest, "%q is not a cache key: use members, snapshots, blobs, kv/KEY, kv-prefix/PREFIX or *", k)
		}
	}
	n.mu.Lock()
	epoch := n.rep.State().Epoch
	n.mu.Unlock()
	id, err := n.write(&crdt.CacheInvalidated{Keys: keys, EpochFloor: epoch})
	if err != nil {
		return id, fmt.Errorf("invalidate: %w", err)
	}
	return id, nil
}
