package node

import (
	"sync"

	"github.com/ipfs/go-cid"

	"aura/blobstore"
	"aura/maintenance"
)

// The node's side of the blob plan (maintenance.BlobPlan): the core decides
// which snapshot blobs stay pinned and which account blobs go; the node
// carries it out on the blobstore through maintenance.BlobPlan.Apply, the
// same steps in the same order as the simulator.

// nodeBlobs is maintenance.BlobApplier over the node's blobstore.
type nodeBlobs struct{ n *Node }

var _ maintenance.BlobApplier = nodeBlobs{}

// KeepNewest is blobstore.Store.KeepNewest (one durable write). CIDs that
// do not parse are skipped, with a warning.
func (a nodeBlobs) KeepNewest(roots [][]byte, k int) error {
	var keep, release []cid.Cid
	for i, r := range roots {
		c, err := cid.Cast(r)
		if err != nil {
			a.n.log.Warn("blob plan: skip a snapshot blob CID that does not parse", "cid", r, "err", err)
			continue
		}
		if i < k {
			keep = append(keep, c)
		} else {
			release = append(release, c)
		}
	}
	if len(keep) == 0 {
		// blobstore.KeepNewest reads n <= 0 as its default.
		return a.n.blobs.UnpinAll(release)
	}
	return a.n.blobs.KeepNewest(append(keep, release...), len(keep))
}

// Delete unpins the tombstoned blobs in one durable write; their blocks go
// at the collection that follows.
func (a nodeBlobs) Delete(cids [][]byte) error {
	var list []cid.Cid
	for _, r := range cids {
		if c, err := cid.Cast(r); err == nil {
			list = append(list, c)
		}
	}
	return a.n.blobs.UnpinAll(list)
}

// Collect starts a blob GC in the background (coalesced: one runs at a
// time, and one more after it when asked again meanwhile). blobstore.GC
// keeps every block a pinned root reaches and compacts the freed range, so
// the disk space comes back.
func (a nodeBlobs) Collect() error {
	a.n.collectBlobs()
	return nil
}

// applyBlobPlan carries out the core's blob plan.
func (n *Node) applyBlobPlan(p *maintenance.BlobPlan) {
	if p == nil {
		return
	}
	if err := p.Apply(nodeBlobs{n}); err != nil {
		n.log.Warn("blob plan", "err", err)
	}
}

// blobGC coalesces the node's background blob collections and keeps their
// figures.
type blobGC struct {
	mu      sync.Mutex
	running bool
	again   bool
	runs    uint64
	last    blobstore.GCStats
	freed   int64 // bytes freed by every collection since start
}

func (n *Node) collectBlobs() {
	g := &n.bgc
	g.mu.Lock()
	if n.closed.Load() {
		g.mu.Unlock()
		return
	}
	if g.running {
		g.again = true
		g.mu.Unlock()
		return
	}
	g.running = true
	g.mu.Unlock()
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		for {
			st, err := n.blobs.GC(n.ctx)
			if err != nil && n.ctx.Err() == nil {
				n.log.Warn("blob GC", "err", err)
			}
			if err == nil {
				// Which snapshot blobs are held changed: the list is recomputed.
				n.cache.Invalidate(maintenance.Invalidation{Keys: []string{"snapshots"}})
			}
			if err == nil && st.Blocks > 0 {
				n.log.Info("blob GC", "blocks", st.Blocks, "bytes_freed", st.BytesFreed, "kept", st.Kept)
			}
			g.mu.Lock()
			if err == nil {
				g.runs++
				g.last = st
				g.freed += st.BytesFreed
			}
			if !g.again || n.ctx.Err() != nil {
				g.running = false
				g.mu.Unlock()
				return
			}
			g.again = false
			g.mu.Unlock()
		}
	}()
}
