package sim

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"

	"github.com/ipfs/go-cid"

	"aura/blobstore/unixfs"
	"aura/crdt"
	"aura/maintenance"
)

// blobStore is a device's blob storage: UnixFS blocks built by
// aura/blobstore/unixfs (the node blobstore's layout, so equal bytes get the
// node's CIDs, a blob over 1 MiB is several blocks and a fetch moves them
// one by one), pins, and a collection that keeps exactly what pinned roots
// reach. Like the node's Pebble store it survives crashes. Block bytes are
// never modified, so devices share the slices a fetch copies.
//
// It is the maintenance.Blobs the core writes snapshot state blobs to and
// the maintenance.BlobApplier the core's blob plan is applied through.
type blobStore struct {
	blocks  map[string][]byte // cid.KeyString() → bytes
	pins    map[string]bool   // string(binary CID) of pinned roots
	fetched []string          // blocks fetched from peers since blob-integrity last looked (tamper.go)
}

var (
	_ maintenance.Blobs       = (*blobStore)(nil)
	_ maintenance.BlobApplier = (*blobStore)(nil)
)

func newBlobStore() *blobStore {
	return &blobStore{blocks: map[string][]byte{}, pins: map[string]bool{}}
}

// Put imports data as the node's blobstore does (unpinned, as there).
func (b *blobStore) Put(data []byte) ([]byte, error) {
	root, _, err := unixfs.Import(bytes.NewReader(data), unixfs.Layout{}, func(c cid.Cid, blk []byte) error {
		if _, ok := b.blocks[c.KeyString()]; !ok {
			b.blocks[c.KeyString()] = blk
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return root.Bytes(), nil
}

func (b *blobStore) getBlock(c cid.Cid) ([]byte, error) {
	blk, ok := b.blocks[c.KeyString()]
	if !ok {
		return nil, fmt.Errorf("block %s: %w", c, unixfs.ErrMissing)
	}
	return blk, nil
}

// Get reassembles a blob held completely.
func (b *blobStore) Get(raw []byte) ([]byte, error) {
	c, err := cid.Cast(raw)
	if err != nil {
		return nil, fmt.Errorf("blob %x: %w", raw, err)
	}
	data, err := unixfs.Cat(c, b.getBlock)
	if errors.Is(err, unixfs.ErrMissing) {
		return nil, fmt.Errorf("blob %s: %w", c, maintenance.ErrBlobMissing)
	}
	return data, err
}

// walk visits the CIDs of the DAG under root that are held, breadth first,
// and reports whether every block was held.
func (b *blobStore) walk(root []byte, visit func(k string)) bool {
	c, err := cid.Cast(root)
	if err != nil {
		return false
	}
	complete := true
	queue := []cid.Cid{c}
	seen := map[string]bool{}
	for len(queue) > 0 {
		c := queue[0]
		queue = queue[1:]
		k := c.KeyString()
		if seen[k] {
			continue
		}
		seen[k] = true
		blk, ok := b.blocks[k]
		if !ok {
			complete = false
			continue
		}
		if visit != nil {
			visit(k)
		}
		links, err := unixfs.Links(c, blk)
		if err != nil {
			complete = false
			continue
		}
		queue = append(queue, links...)
	}
	return complete
}

// has reports whether the whole blob is held.
func (b *blobStore) has(root []byte) bool { return b.walk(root, nil) }

// holdsAny reports whether any block of the blob (its root first) is held.
func (b *blobStore) holdsAny(root []byte) bool {
	c, err := cid.Cast(root)
	if err != nil {
		return false
	}
	_, ok := b.blocks[c.KeyString()]
	return ok
}

func (b *blobStore) pin(root []byte) { b.pins[string(root)] = true }

// KeepNewest is blobstore.Store.KeepNewest.
func (b *blobStore) KeepNewest(roots [][]byte, n int) error {
	for i, r := range roots {
		if i < n {
			b.pins[string(r)] = true
		} else {
			delete(b.pins, string(r))
		}
	}
	return nil
}

// Delete unpins.
func (b *blobStore) Delete(cids [][]byte) error {
	for _, c := range cids {
		delete(b.pins, string(c))
	}
	return nil
}

// Collect drops every block no pinned root reaches; it returns nil, the
// figures are in collect.
func (b *blobStore) Collect() error {
	b.collect()
	return nil
}

func (b *blobStore) collect() (blocks int, bytes int64) {
	live := map[string]bool{}
	for r := range b.pins {
		b.walk([]byte(r), func(k string) { live[k] = true })
	}
	for k, blk := range b.blocks {
		if !live[k] {
			blocks++
			bytes += int64(len(blk))
			delete(b.blocks, k)
		}
	}
	return blocks, bytes
}

// fetch copies the blocks of root that b lacks from src, each checked
// against its CID (unless verify is false: the skip-block-check defect),
// the way the node's Fetch does over /aura/blocks/1, and returns how many
// it copied. It does not pin.
func (b *blobStore) fetch(src *blobStore, root []byte, verify bool) (int, error) {
	c, err := cid.Cast(root)
	if err != nil {
		return 0, err
	}
	moved := 0
	queue := []cid.Cid{c}
	for len(queue) > 0 {
		c := queue[0]
		queue = queue[1:]
		blk, ok := b.blocks[c.KeyString()]
		if !ok {
			if blk, ok = src.blocks[c.KeyString()]; !ok {
				return moved, fmt.Errorf("block %s: %w", c, maintenance.ErrBlobMissing)
			}
			if verify && !unixfs.Verify(c, blk) {
				return moved, fmt.Errorf("block %s does not match its CID", c)
			}
			b.blocks[c.KeyString()] = blk
			b.fetched = append(b.fetched, c.KeyString())
			moved++
		}
		links, err := unixfs.Links(c, blk)
		if err != nil {
			return moved, err
		}
		queue = append(queue, links...)
	}
	return moved, nil
}

// ---- the driver: plan, workload, invariants ----

// blobTruth is what the ground truth knows of an account blob.
type blobTruth struct {
	cid        []byte
	size       int
	tombstones []authorSeq // every BlobTombstoned fact naming it
}

// blobFact records BlobStored and BlobTombstoned facts in the ground
// truth (called for every fact signed).
func (t *truth) blobFact(f *crdt.Fact) {
	if f.Kind != crdt.KindBlobTombstoned {
		return
	}
	body, err := f.DecodeBody()
	if err != nil {
		return
	}
	k := string(body.(*crdt.BlobTombstoned).CID)
	bt := t.blobs[k]
	if bt == nil {
		return // not a blob the workload stored
	}
	bt.tombstones = append(bt.tombstones, authorSeq{f.Author, f.Seq})
}

// coveredBy reports whether a tombstone of the blob is under frontier.
func (bt *blobTruth) coveredBy(frontier crdt.VersionVector) bool {
	for _, t := range bt.tombstones {
		if frontier[t.a] >= t.seq {
			return true
		}
	}
	return false
}

// applyBlobs applies the core's blob plan to d's blob store, with the
// defects, and checks the blob invariants around it.
func (s *sim) applyBlobs(d *device, p *maintenance.BlobPlan, via string) {
	held := s.heldBlobs(d)
	if p != nil {
		plan := *p
		if s.cfg.Defects.KeepTombstoned && d.honest() {
			plan.Delete = nil
		}
		before := len(d.blobs.blocks)
		if err := plan.Apply(d.blobs); err != nil {
			s.violate("internal", d.name, "apply blob plan: %v", err)
		}
		s.res.Stats.BlocksCollected += before - len(d.blobs.blocks)
	}
	if s.cfg.Defects.DeleteOnTombstone && d.honest() && d.rep != nil {
		// The driver deletes what its live state says is tombstoned,
		// without waiting for a snapshot to cover the tombstone.
		var del [][]byte
		for _, bt := range held {
			if r := d.rep.State().Blobs[crdt.BlobKey(bt.cid)]; r != nil && r.Tombstone != 0 {
				del = append(del, bt.cid)
			}
		}
		if len(del) > 0 {
			_ = d.blobs.Delete(del)
			d.blobs.collect()
			s.trace("%s DEFECT deleted %d tombstoned blobs before a snapshot covered them", d.name, len(del))
		}
	}
	s.checkBlobs(d, held, via)
}

// heldBlobs lists the workload's blobs d holds completely, in the order
// they were stored.
func (s *sim) heldBlobs(d *device) []*blobTruth {
	var out []*blobTruth
	for _, k := range s.truth.blobOrder {
		bt := s.truth.blobs[k]
		if d.blobs.has(bt.cid) {
			out = append(out, bt)
		}
	}
	return out
}

// checkBlobs: no blob that d held before (held) is gone unless a tombstone
// of it is under the frontier of the snapshot d rests on (blob-deleted-
// early); and no blob with such a tombstone is left on d (blob-not-freed).
func (s *sim) checkBlobs(d *device, held []*blobTruth, via string) {
	if !d.honest() || d.rep == nil {
		return
	}
	pid, base := d.rep.Base()
	var frontier crdt.VersionVector
	if base != nil {
		frontier = base.Frontier
	}
	for _, bt := range held {
		if d.blobs.has(bt.cid) {
			continue
		}
		s.res.Stats.BlobsFreed++
		if !bt.coveredBy(frontier) {
			s.violate("blob-deleted-early", d.name, "blob %s deleted (%s) though no tombstone of it is under the frontier of the snapshot this device rests on (%x)",
				cidString(bt.cid), via, pid[:4])
		}
	}
	if base == nil {
		return
	}
	for _, k := range s.truth.blobOrder {
		bt := s.truth.blobs[k]
		if bt.coveredBy(frontier) && d.blobs.holdsAny(bt.cid) {
			s.violate("blob-not-freed", d.name, "blob %s is still stored (%s) though snapshot %x covers its tombstone",
				cidString(bt.cid), via, pid[:4])
		}
	}
}

func cidString(raw []byte) string {
	c, err := cid.Cast(raw)
	if err != nil {
		return fmt.Sprintf("%x", raw)
	}
	s := c.String()
	return s[len(s)-8:]
}

// blobBytes draws the contents of the next blob the workload stores (its
// own stream, from the seed and the blob's number).
func (s *sim) blobBytes(n int) []byte {
	var seed [32]byte
	copy(seed[:], s.seedBytes("blob", len(s.truth.blobOrder)))
	b := make([]byte, n)
	_, _ = rand.NewChaCha8(seed).Read(b) // never fails
	return b
}

// blobSize draws a blob size: mostly small (one raw block), some around
// the 1 MiB chunk boundary, a few spanning three chunks (a root and leaves).
func (s *sim) blobSize() int {
	r := s.workRng
	switch x := r.Float64(); {
	case x < 0.8:
		return r.IntN(4096)
	case x < 0.93:
		return unixfs.ChunkSize - 1 + r.IntN(3)
	default:
		return 2*unixfs.ChunkSize + 1 + r.IntN(4096)
	}
}

func (s *sim) onBlob(e *event) {
	d := s.devs[e.dev]
	if !s.alive(d, e.inc) || s.phase != phaseActive {
		return
	}
	s.at(s.expDelay(s.workRng, s.cfg.Workload.BlobEvery), &event{kind: evBlob, dev: d.idx, inc: d.inc})
	s.res.Stats.DeviceEvents++
	live := s.liveBlobs(d)
	switch x := s.workRng.Float64(); {
	case x < 0.4 || len(live) == 0:
		s.blobPut(d)
	case x < 0.75:
		s.blobFetch(d, live)
	default:
		s.blobTombstone(d, live[s.workRng.IntN(len(live))])
	}
}

// liveBlobs lists the workload's blobs live in d's state, in store order.
func (s *sim) liveBlobs(d *device) []*blobTruth {
	var out []*blobTruth
	st := d.rep.State()
	for _, k := range s.truth.blobOrder {
		bt := s.truth.blobs[k]
		if r := st.Blobs[crdt.BlobKey(bt.cid)]; r != nil && r.Tombstone == 0 {
			out = append(out, bt)
		}
	}
	return out
}

// blobPut is `aura-cli blob put`: store and pin the bytes, then append
// BlobStored.
func (s *sim) blobPut(d *device) {
	n := s.blobSize()
	data := s.blobBytes(n)
	c, err := d.blobs.Put(data)
	if err != nil {
		s.violate("internal", d.name, "blob put: %v", err)
		return
	}
	d.blobs.pin(c)
	if s.truth.blobs[string(c)] == nil {
		s.truth.blobs[string(c)] = &blobTruth{cid: c, size: n}
		s.truth.blobOrder = append(s.truth.blobOrder, string(c))
	}
	var out maintenance.Output
	if !s.call(d, "write", func() { out, err = d.rep.Write(s.devNow(d), &crdt.BlobStored{CID: c, Size: uint64(n)}) }) {
		return
	}
	if err != nil {
		s.trace("%s blob put %s refused: %v", d.name, cidString(c), err)
		return
	}
	s.res.Stats.BlobsStored++
	s.trace("%s blob put %s size=%d buffered=%t", d.name, cidString(c), n, len(out.Publish) == 0)
	s.handleOutput(d, out, "blob put")
}

// blobFetch is `aura-cli blob get`: fetch a live blob d lacks from a
// reachable device holding it, and pin it.
func (s *sim) blobFetch(d *device, live []*blobTruth) {
	var want []*blobTruth
	for _, bt := range live {
		if !d.blobs.has(bt.cid) {
			want = append(want, bt)
		}
	}
	if len(want) == 0 {
		return
	}
	bt := want[s.workRng.IntN(len(want))]
	off := s.workRng.IntN(len(s.devs))
	for i := range s.devs {
		p := s.devs[(off+i)%len(s.devs)]
		if p == d || !p.up || !s.linkUp(d, p) || !p.blobs.has(bt.cid) {
			continue
		}
		d.blobs.pin(bt.cid) // pinned first: a partial fetch is kept to resume
		moved, err := d.blobs.fetch(p.blobs, bt.cid, !s.cfg.Defects.SkipBlockCheck)
		s.checkFetched(d, p.name)
		if err != nil || !d.blobs.has(bt.cid) {
			s.violate("internal", d.name, "blob get %s from %s: %v", cidString(bt.cid), p.name, err)
			return
		}
		s.res.Stats.BlobsFetched++
		s.trace("%s blob get %s from %s: %d blocks", d.name, cidString(bt.cid), p.name, moved)
		return
	}
	s.trace("%s blob get %s: no reachable device holds it", d.name, cidString(bt.cid))
}

// blobTombstone is `aura-cli blob rm`: append BlobTombstoned. The bytes
// stay until a snapshot covers the tombstone.
func (s *sim) blobTombstone(d *device, bt *blobTruth) {
	var out maintenance.Output
	var err error
	if !s.call(d, "write", func() { out, err = d.rep.Write(s.devNow(d), &crdt.BlobTombstoned{CID: bt.cid}) }) {
		return
	}
	if err != nil {
		s.trace("%s blob rm %s refused: %v", d.name, cidString(bt.cid), err)
		return
	}
	s.res.Stats.BlobsTombstoned++
	s.trace("%s blob rm %s buffered=%t", d.name, cidString(bt.cid), len(out.Publish) == 0)
	s.handleOutput(d, out, "blob rm")
}

// checkBlobsFinal runs the blob-not-freed check on every honest device
// that is up, at the end (deletions were checked as they happened).
func (s *sim) checkBlobsFinal(label string) {
	for _, d := range s.honestUp() {
		s.checkBlobs(d, nil, label)
	}
}
