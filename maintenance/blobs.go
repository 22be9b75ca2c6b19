package maintenance

import (
	"fmt"
	"sort"

	"aura/crdt"
)

// BlobPlan is what the core decides about a device's blob storage after it
// collected or restored a snapshot (DESIGN §5: keep the newest snapshot
// blobs pinned, delete the stored blobs whose tombstones predate the
// snapshot). It is a whole desired state, not a delta: applying it twice,
// or an older plan after a newer one's snapshot roots, changes nothing
// more. CIDs are binary.
type BlobPlan struct {
	// Keep are the snapshot state blobs to keep pinned, newest first: the
	// one this device's journal rests on (the state below its pruned facts
	// lives only there), then the newest other completed snapshots, up to
	// Config.KeepSnapshots in all. A root need not be held: pinning it
	// protects a later fetch.
	Keep [][]byte
	// Release are the state blobs of the other, older completed snapshots,
	// newest first: unpin them, their storage goes at the next collection.
	Release [][]byte
	// Delete are account blobs (BlobStored) whose tombstone the snapshot
	// this device rests on covers: the tombstone fact is under its frontier,
	// so every device that rests on it or restores from it sees the blob
	// deleted. Unpin them; their storage goes at the next collection.
	Delete [][]byte
}

// BlobApplier is a device's blob storage as a driver hands it to a plan:
// the node implements it over blobstore.Store, the simulator over its
// memory block store.
type BlobApplier interface {
	// KeepNewest takes snapshot roots newest first, keeps the first n pinned
	// and unpins the rest, in one durable write (blobstore.Store.KeepNewest).
	// Pins of roots not listed are left alone.
	KeepNewest(roots [][]byte, n int) error
	// Delete unpins the blobs (one durable write). Blocks another pinned
	// blob uses stay.
	Delete(cids [][]byte) error
	// Collect frees the storage of every block no pinned root reaches. A
	// driver may run it in the background; it must not lose a block of a
	// pinned root.
	Collect() error
}

// Apply carries out the plan, in this order: the snapshot pins first (so a
// crash before the rest leaves the blob the journal rests on pinned), then
// the deletions, then one collection that frees what both released. Every
// step is idempotent; after a restart Replica.BlobPlan gives the plan
// again, so a crash between the core's GC and Apply loses nothing.
func (p *BlobPlan) Apply(a BlobApplier) error {
	roots := append(append([][]byte(nil), p.Keep...), p.Release...)
	if len(roots) > 0 {
		if err := a.KeepNewest(roots, len(p.Keep)); err != nil {
			return fmt.Errorf("apply blob plan: keep snapshot blobs: %w", err)
		}
	}
	if len(p.Delete) > 0 {
		if err := a.Delete(p.Delete); err != nil {
			return fmt.Errorf("apply blob plan: delete tombstoned blobs: %w", err)
		}
	}
	if err := a.Collect(); err != nil {
		return fmt.Errorf("apply blob plan: collect: %w", err)
	}
	return nil
}

// BlobPlan returns the plan for this replica's storage as it stands: the
// snapshot blobs to keep and release, and the account blobs to delete.
// Output.Blobs carries it after every GC and restore; a driver also applies
// it once after Open.
func (r *Replica) BlobPlan() BlobPlan {
	var p BlobPlan
	seen := map[string]bool{}
	live := map[string]bool{}
	for k, b := range r.state.Blobs {
		if b.Tombstone == 0 {
			live[k] = true
		}
	}
	var list []*crdt.SnapshotCompleted
	for _, c := range r.state.Completed {
		cc := c.Completed
		list = append(list, &cc)
	}
	sort.Slice(list, func(i, j int) bool { return crdt.NewerSnapshot(list[i], list[j]) })
	if r.base != nil {
		k := r.base.Snapshot.BlobCID
		p.Keep = append(p.Keep, k)
		seen[crdt.BlobKey(k)] = true
	}
	for _, c := range list {
		k := c.Snapshot.BlobCID
		if seen[crdt.BlobKey(k)] || len(k) == 0 {
			continue
		}
		seen[crdt.BlobKey(k)] = true
		switch {
		case len(p.Keep) < r.cfg.KeepSnapshots:
			p.Keep = append(p.Keep, k)
		case !live[crdt.BlobKey(k)]:
			// An account blob with a snapshot's bytes keeps its own pin.
			p.Release = append(p.Release, k)
		}
	}
	if r.baseSt != nil {
		var del []string
		for k, b := range r.baseSt.Blobs {
			// Never a snapshot blob, whatever a tombstone names: the journal
			// rests on them.
			if b.Tombstone != 0 && !seen[k] {
				del = append(del, k)
			}
		}
		sort.Strings(del)
		for _, k := range del {
			if c, err := crdt.BlobKeyCID(k); err == nil {
				p.Delete = append(p.Delete, c)
			}
		}
	}
	return p
}

// newlyCovered counts the blobs of del that prev (the state of the
// snapshot rested on before) did not hold tombstoned: what this GC deleted.
func newlyCovered(prev *crdt.State, del [][]byte) int {
	n := 0
	for _, c := range del {
		if prev != nil {
			if o := prev.Blobs[crdt.BlobKey(c)]; o != nil && o.Tombstone != 0 {
				continue
			}
		}
		n++
	}
	return n
}
