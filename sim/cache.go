package sim

import (
	"fmt"
	"sort"
	"strings"

	"aura/crdt"
	"aura/maintenance"
)

// Each device keeps the derived-data cache the node keeps
// (maintenance.Cache under the core's key table and serving rule), for
// two views: "members" and "snapshots". The driver applies the core's
// invalidations (maintenance.InvalidationsOf) for every fact a call wrote
// or took in, and AllKeys after a restore; the cache is lost in a crash.
// After every tick the device reads both views through it, and the
// invariants check:
//   - cache-stale: a served entry equals a fresh recomputation from the
//     replica's state;
//   - cache-floor: an entry is served (a hit) only while the device's
//     identity epoch exceeds the key's floor.

var cacheViews = []string{"members", "snapshots"}

func cacheView(d *device, key string) string {
	st := d.rep.State()
	switch key {
	case "members":
		var b strings.Builder
		for _, m := range st.MemberList() {
			fmt.Fprintf(&b, "%s:%d:%d ", m.Short(), st.Members[m].Added, st.Members[m].Removed)
		}
		return b.String()
	default:
		var ids []string
		for id := range st.Proposals {
			ids = append(ids, fmt.Sprintf("p%x", id[:4]))
		}
		for id := range st.Completed {
			ids = append(ids, fmt.Sprintf("c%x", id[:4]))
		}
		sort.Strings(ids)
		return strings.Join(ids, " ")
	}
}

// cacheInvalidate applies what a call's output and the facts it took in
// invalidate.
func (s *sim) cacheInvalidate(d *device, out maintenance.Output, received []*crdt.Fact, rechained bool) {
	if d.cache == nil || s.cfg.Defects.CacheNoInvalidate {
		return
	}
	invs := maintenance.InvalidationsOf(out.Publish)
	invs = append(invs, maintenance.InvalidationsOf(received)...)
	if rechained && d.rep != nil {
		// An equivocation moved a chain onto the other fact: anything
		// may have changed.
		invs = append(invs, maintenance.Invalidation{Keys: []string{maintenance.AllKeys}, Floor: d.rep.State().Epoch})
	}
	for _, ev := range out.Events {
		if ev.Kind == maintenance.EventRestored && d.rep != nil {
			invs = append(invs, maintenance.Invalidation{Keys: []string{maintenance.AllKeys}, Floor: d.rep.State().Epoch})
		}
	}
	if len(invs) > 0 {
		d.cache.Invalidate(invs...)
	}
}

// cacheRead reads every view through the device's cache and checks the
// rule and the result.
func (s *sim) cacheRead(d *device) {
	if d.cache == nil || d.rep == nil || d.rep.Account().IsZero() || !d.honest() {
		return
	}
	epoch := d.rep.State().Epoch
	for _, k := range cacheViews {
		v, hit := d.cache.Get(k, epoch, func() string { return cacheView(d, k) })
		if hit {
			s.res.Stats.CacheHits++
			if f := d.cache.Floor(k); !maintenance.Servable(epoch, f) {
				s.violate("cache-floor", d.name, "served %s at epoch %d, floor %d", k, epoch, f)
			}
		}
		if fresh := cacheView(d, k); v != fresh {
			s.violate("cache-stale", d.name, "served %s = %q, a fresh recomputation gives %q", k, v, fresh)
		}
	}
}

// changedBy lists the facts an ingest folded into the state: new chain
// facts and pending ones whose gap filled (Chained), plus the new ones.
func changedBy(res crdt.IngestResult) []*crdt.Fact {
	return append(append([]*crdt.Fact(nil), res.Added...), res.Chained...)
}
