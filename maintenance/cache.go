package maintenance

import (
	"sort"
	"strings"
	"sync"

	"aura/crdt"
)

// Cache invalidation by epoch floors (the seed's "Cache Invalidation",
// DESIGN §6). Derived views a device keeps, and what invalidates them:
//
//	key                 view                                   invalidated by (floor = the fact's epoch)
//	kv/K                the value of application key K         Put K, Delete K
//	kv-prefix/P         the keys under prefix P ("" and every  Put or Delete of a key under P
//	                    "/"-terminated prefix of a key)
//	members             devices, names, capabilities           Genesis, DeviceAdded, DeviceRemoved,
//	                                                           CapabilityGrant, AdminReplaced, DeviceMetadata
//	snapshots           the snapshot list                      SnapshotProposed, SnapshotVote,
//	                                                           SnapshotCompleted, SnapshotAbandoned
//	blobs               the blob list                          BlobStored, BlobTombstoned
//	any key             (operator's choice)                    CacheInvalidated{keys, epoch_floor}
//
// A restore rebuilds the whole state: it invalidates every key at the
// current epoch (AllKeys).
//
// Floors are purely local, max wins: each device keeps key → the highest
// floor any invalidation of it named, from its own writes and from facts
// it received. Nothing about the cache is replicated.
//
// The rule (the seed's, exactly): an entry of key k may be served at
// identity epoch e only when e > floor(k), and only when it was computed
// after the last invalidation of k; otherwise it is recomputed from the
// authoritative state. So an invalidation at the current epoch (floor =
// e) makes k uncacheable — every read recomputes — until the identity
// epoch moves past it; an invalidation at an older epoch only drops the
// entries computed before it.

// AllKeys invalidates every key.
const AllKeys = "*"

// Invalidation is one CacheInvalidated, emitted by a mutation.
type Invalidation struct {
	Keys  []string
	Floor uint64
}

// InvalidationsOf lists what facts invalidate, in their order.
func InvalidationsOf(facts []*crdt.Fact) []Invalidation {
	var out []Invalidation
	for _, f := range facts {
		if keys := invalidatedKeys(f); len(keys) > 0 {
			out = append(out, Invalidation{Keys: keys, Floor: f.Epoch})
		}
	}
	return out
}

func invalidatedKeys(f *crdt.Fact) []string {
	switch f.Kind {
	case crdt.KindPut, crdt.KindDelete:
		b, err := f.DecodeBody()
		if err != nil {
			return nil
		}
		var key string
		switch v := b.(type) {
		case *crdt.Put:
			key = v.Key
		case *crdt.Delete:
			key = v.Key
		}
		return append([]string{"kv/" + key}, prefixKeys(key)...)
	case crdt.KindGenesis, crdt.KindDeviceAdded, crdt.KindDeviceRemoved, crdt.KindCapabilityGrant, crdt.KindAdminReplaced, crdt.KindDeviceMetadata:
		return []string{"members"}
	case crdt.KindSnapshotProposed, crdt.KindSnapshotVote, crdt.KindSnapshotCompleted, crdt.KindSnapshotAbandoned:
		return []string{"snapshots"}
	case crdt.KindBlobStored, crdt.KindBlobTombstoned:
		return []string{"blobs"}
	case crdt.KindCacheInvalidated:
		b, err := f.DecodeBody()
		if ci, ok := b.(*crdt.CacheInvalidated); err == nil && ok {
			return ci.Keys
		}
	}
	return nil
}

// prefixKeys are the kv-prefix keys a key lies under: "" and each prefix
// ending in "/".
func prefixKeys(key string) []string {
	out := []string{"kv-prefix/"}
	for i := 0; i < len(key); i++ {
		if key[i] == '/' {
			out = append(out, "kv-prefix/"+key[:i+1])
		}
	}
	return out
}

// CacheStats count what the cache did.
type CacheStats struct {
	Hits, Misses, Recomputes uint64
}

// Cache is a device's derived-data cache under the rule above. Get takes
// the current identity epoch (the caller's input) and a function that
// computes the entry from authoritative state. Safe for concurrent use.
type Cache[V any] struct {
	mu      sync.Mutex
	floors  map[string]uint64
	gen     map[string]uint64 // invalidations of each key so far
	genAll  uint64            // invalidations of AllKeys so far
	floorAl uint64            // floor of AllKeys
	entries map[string]cacheEntry[V]
	stats   CacheStats
}

type cacheEntry[V any] struct {
	v        V
	gen, all uint64
}

// NewCache returns an empty cache.
func NewCache[V any]() *Cache[V] {
	return &Cache[V]{floors: map[string]uint64{}, gen: map[string]uint64{}, entries: map[string]cacheEntry[V]{}}
}

// Invalidate applies invalidations: floors rise (max wins), and entries
// computed before them are never served again.
func (c *Cache[V]) Invalidate(invs ...Invalidation) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, inv := range invs {
		for _, k := range inv.Keys {
			if k == AllKeys {
				c.genAll++
				c.floorAl = max(c.floorAl, inv.Floor)
				continue
			}
			c.gen[k]++
			c.floors[k] = max(c.floors[k], inv.Floor)
		}
	}
}

// Floor is the epoch floor of key.
func (c *Cache[V]) Floor(key string) uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return max(c.floors[key], c.floorAl)
}

// Servable is the seed's rule: an entry may be served at epoch only when
// epoch exceeds its key's floor.
func Servable(epoch, floor uint64) bool { return epoch > floor }

// Get returns key's entry at identity epoch epoch: the cached one when the
// rule allows (a hit), else compute's, freshly (a miss; kept for later
// reads when the rule will allow serving it).
func (c *Cache[V]) Get(key string, epoch uint64, compute func() V) (v V, hit bool) {
	c.mu.Lock()
	floor := max(c.floors[key], c.floorAl)
	e, ok := c.entries[key]
	if ok && Servable(epoch, floor) && e.gen == c.gen[key] && e.all == c.genAll {
		c.stats.Hits++
		c.mu.Unlock()
		return e.v, true
	}
	c.stats.Misses++
	gen, all := c.gen[key], c.genAll
	c.mu.Unlock()
	v = compute()
	c.mu.Lock()
	c.stats.Recomputes++
	// Kept only when nothing invalidated the key while it was computed.
	if gen == c.gen[key] && all == c.genAll {
		c.entries[key] = cacheEntry[V]{v: v, gen: gen, all: all}
	}
	c.mu.Unlock()
	return v, false
}

// CacheKeyInfo is one key's floor and whether an entry is held.
type CacheKeyInfo struct {
	Key    string
	Floor  uint64
	Cached bool
}

// Keys lists the keys with a floor or an entry, sorted.
func (c *Cache[V]) Keys() []CacheKeyInfo {
	c.mu.Lock()
	defer c.mu.Unlock()
	seen := map[string]bool{}
	var out []CacheKeyInfo
	add := func(k string) {
		if seen[k] {
			return
		}
		seen[k] = true
		e, ok := c.entries[k]
		out = append(out, CacheKeyInfo{Key: k, Floor: max(c.floors[k], c.floorAl), Cached: ok && e.gen == c.gen[k] && e.all == c.genAll})
	}
	for k := range c.floors {
		add(k)
	}
	for k := range c.entries {
		add(k)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out
}

// Stats returns the counters.
func (c *Cache[V]) Stats() CacheStats {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.stats
}

// ValidCacheKey reports whether an operator-given key names a view above
// (or any key under kv/ or kv-prefix/).
func ValidCacheKey(k string) bool {
	switch {
	case k == "members", k == "snapshots", k == "blobs", k == AllKeys:
		return true
	case strings.HasPrefix(k, "kv/"), strings.HasPrefix(k, "kv-prefix/"):
		return true
	}
	return false
}
