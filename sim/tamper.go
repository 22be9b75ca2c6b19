package sim

import (
	"sort"

	"github.com/ipfs/go-cid"

	"aura/blobstore/unixfs"
)

// Tampered snapshot blobs (Byzantine mode "tamper"): when an honest device
// restores, every Byzantine device with the mode that it can reach offers
// the snapshot blob first, a copy of its blocks (as some device holds
// them) with one byte of one block flipped. The driver's fetch checks
// every block against its CID, as the node's does, and must refuse the
// copy; the device then fetches from honest holders as usual. The
// blob-integrity invariant checks every block a device fetched from a
// peer against its CID (the skip-block-check defect proves it fires: the
// tampered block is kept, and no restore from it can succeed).

// tamperedOffers lets the reachable tampering Byzantine devices offer d
// their copy of root.
func (s *sim) tamperedOffers(d *device, root []byte) {
	for _, p := range s.devs {
		if p.honest() || p.byz.modes&ByzTamper == 0 || !p.up || p.rep == nil || !s.linkUp(d, p) {
			continue
		}
		t := s.tamperedCopy(root)
		if t == nil {
			return // nobody holds the blob: nothing to tamper with
		}
		s.res.Stats.TamperedOffers++
		s.res.Stats.ByzActs++
		moved, err := d.blobs.fetch(t, root, !s.cfg.Defects.SkipBlockCheck)
		if err != nil {
			s.res.Stats.TamperedRefused++
		}
		s.trace("%s byz offers %s a tampered snapshot blob %s: %d blocks taken, %v", p.name, d.name, cidString(root), moved, err)
		s.checkFetched(d, p.name)
	}
}

// tamperedCopy is a blob store holding root's blocks as the first device
// that holds them all does, its last block (breadth first: a leaf) with
// one byte flipped; nil when no device holds the blob.
func (s *sim) tamperedCopy(root []byte) *blobStore {
	for _, p := range s.devs {
		if !p.blobs.has(root) {
			continue
		}
		t := newBlobStore()
		var last string
		p.blobs.walk(root, func(k string) {
			t.blocks[k] = p.blobs.blocks[k]
			last = k
		})
		blk := append([]byte(nil), t.blocks[last]...)
		if len(blk) == 0 {
			return nil
		}
		blk[len(blk)/2] ^= 0x5a
		t.blocks[last] = blk
		return t
	}
	return nil
}

// checkFetched is blob-integrity: every block d fetched from a peer
// (from names it) since the last look matches its CID.
func (s *sim) checkFetched(d *device, from string) {
	keys := d.blobs.fetched
	d.blobs.fetched = nil
	if !d.honest() || len(keys) == 0 {
		return
	}
	sort.Strings(keys)
	for _, k := range keys {
		blk, ok := d.blobs.blocks[k]
		if !ok {
			continue
		}
		c, err := cid.Cast([]byte(k))
		if err != nil || !unixfs.Verify(c, blk) {
			s.violate("blob-integrity", d.name, "holds block %s fetched from %s, whose bytes do not match its CID", c, from)
			return
		}
	}
}
