package blobstore

import (
	"fmt"
	"sync"

	"github.com/cockroachdb/pebble"
	mh "github.com/multiformats/go-multihash"

	"aura/directio"
)

// seqsPerBatch is how many block numbers a batch-mode sink reserves at a
// time; unused ones are gaps, which cost nothing.
const seqsPerBatch = 1 << 16

// packQueue is how many blocks a sink may have queued for its writer.
const packQueue = 8

// sink writes blocks for one Put, PutMany, fetch or GC rewrite.
//
// Pack mode (a Store with a pack directory): block bytes go to a pack
// file, written by the sink's own goroutine so that the caller (hashing,
// decrypting, reading the network) does not wait on the disk. Every
// stageBytes the pack is sealed; a second goroutine finishes it (fsyncs it
// and its name) while the writer goes on with the next, and only then
// commits the catalogue entries of its blocks. A crash between the two
// leaves a pack that no entry points to; GC removes it.
//
// Batch mode (no pack directory): blocks and catalogue entries go into a
// Pebble batch committed every stageBytes.
type sink struct {
	s       *Store
	release func([]byte) // called with each block's data once written, if set
	staged  map[string]struct{}
	wrote   bool // something was committed without sync
	closed  bool

	// pack mode
	cur     *packFile
	ops     chan packOp
	commits chan *packFile // sealed packs, from writePacks to commitPacks
	wg      sync.WaitGroup
	mu      sync.Mutex
	err     error // first error of the writer

	// batch mode
	batch      *pebble.Batch
	batchBytes int
	next, end  uint64 // reserved block numbers
}

// packOp is one job of a sink's writer: append data to p, or (seal) finish
// p and commit its entries.
type packOp struct {
	p       *packFile
	data    []byte
	release func([]byte)
	seal    bool
}

type entry struct {
	h   mh.Multihash
	loc location
}

func (s *Store) newSink() *sink {
	return &sink{s: s, staged: make(map[string]struct{})}
}

// has reports whether a block was added to this sink.
func (k *sink) has(h mh.Multihash) bool {
	_, ok := k.staged[string(h)]
	return ok
}

func (k *sink) asyncErr() error {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.err
}

func (k *sink) setErr(err error) {
	k.mu.Lock()
	if k.err == nil {
		k.err = err
	}
	k.mu.Unlock()
}

// add writes a block (once per multihash). data may be reused once add
// returns, unless release is set: then the sink calls it when done with
// data.
func (k *sink) add(h mh.Multihash, data []byte) error {
	if k.has(h) {
		k.done(data)
		return nil
	}
	k.staged[string(h)] = struct{}{}
	if k.s.packs == nil {
		err := k.addBatch(h, data)
		k.done(data)
		return err
	}
	return k.addPack(h, data)
}

func (k *sink) done(data []byte) {
	if k.release != nil {
		k.release(data)
	}
}

func (k *sink) addBatch(h mh.Multihash, data []byte) error {
	if k.batch == nil {
		k.batch = k.s.db.NewBatch()
	}
	if k.next == k.end {
		k.next = k.s.allocSeq(seqsPerBatch)
		k.end = k.next + seqsPerBatch
	}
	seq := k.next
	k.next++
	if err := k.batch.Set(k.s.blockKey(seq), data, nil); err != nil {
		return err
	}
	if err := k.batch.Set(k.s.catalogKey(h), location{size: len(data), seq: seq}.encode(), nil); err != nil {
		return err
	}
	k.batchBytes += len(data)
	if k.batchBytes >= stageBytes {
		return k.commitBatch(pebble.NoSync)
	}
	return nil
}

func (k *sink) commitBatch(opt *pebble.WriteOptions) error {
	if k.batch == nil || k.batch.Empty() {
		return nil
	}
	err := k.batch.Commit(opt)
	k.batch.Close()
	k.batch = nil
	k.batchBytes = 0
	if err != nil {
		return fmt.Errorf("blobstore: write blocks: %w", err)
	}
	k.wrote = true
	return nil
}

func (k *sink) addPack(h mh.Multihash, data []byte) error {
	if err := k.asyncErr(); err != nil {
		k.done(data)
		return err
	}
	if k.cur == nil {
		p, err := k.s.packs.create()
		if err != nil {
			k.done(data)
			return err
		}
		k.cur = p
	}
	release := k.release
	if release == nil { // the caller reuses data: the writer gets a copy
		buf := getBuf(len(data))
		copy(buf, data)
		data, release = buf, putBuf
	}
	p := k.cur
	if pad := padFor(p.size, len(data)); pad > 0 {
		k.send(packOp{p: p, data: zeros[:pad], release: func([]byte) {}})
		p.size += int64(pad)
	}
	p.entries = append(p.entries, entry{h: h, loc: location{size: len(data), pack: p.num, off: p.size}})
	p.size += int64(len(data))
	k.wrote = true
	k.send(packOp{p: p, data: data, release: release})
	if p.size >= stageBytes {
		k.seal()
	}
	return nil
}

// padFor is how many zero bytes go before a block of n bytes at offset
// off of a pack: enough to start a large block that fills whole alignment
// units on a unit boundary, so that it is written to the disk straight from
// its buffer (directio), uncopied. Small blocks are not padded.
func padFor(off int64, n int) int {
	if n < 64<<10 || n%directio.Align != 0 {
		return 0
	}
	return int(-off & (directio.Align - 1))
}

var zeros [directio.Align]byte

func (k *sink) send(op packOp) {
	if k.ops == nil {
		k.ops = make(chan packOp, packQueue)
		k.commits = make(chan *packFile, 1)
		k.wg.Go(k.writePacks)
		k.wg.Go(k.commitPacks)
	}
	k.ops <- op
}

// seal hands the current pack to the writer to finish and commit.
func (k *sink) seal() {
	if p := k.cur; p != nil {
		k.cur = nil
		k.send(packOp{p: p, seal: true})
	}
}

// writePacks is the sink's writer: it appends blocks to their packs and
// hands each sealed pack to commitPacks, so that writing the next one
// overlaps the syncs. After an error it only releases buffers and deletes
// the packs it was given.
func (k *sink) writePacks() {
	defer close(k.commits)
	d := k.s.packs
	for op := range k.ops {
		failed := k.asyncErr() != nil
		switch {
		case op.seal && failed:
			op.p.discard(d)
		case op.seal:
			k.commits <- op.p
		case !failed:
			if _, err := op.p.w.Write(op.data); err != nil {
				k.setErr(fmt.Errorf("blobstore: write pack: %w", err))
			}
		}
		if op.data != nil {
			op.release(op.data)
		}
	}
}

// commitPacks finishes the packs writePacks hands over, in order, and
// commits their entries.
func (k *sink) commitPacks() {
	for p := range k.commits {
		if k.asyncErr() != nil {
			p.discard(k.s.packs)
			continue
		}
		if err := k.commitPack(p); err != nil {
			k.setErr(err)
		}
	}
}

// commitPack finishes a pack, then commits its catalogue entries (without
// sync).
func (k *sink) commitPack(p *packFile) error {
	if err := p.finish(k.s.packs); err != nil {
		p.discard(k.s.packs)
		return err
	}
	b := k.s.db.NewBatchWithSize(64 * len(p.entries))
	defer b.Close()
	for _, e := range p.entries {
		if err := b.Set(k.s.catalogKey(e.h), e.loc.encode(), nil); err != nil {
			return err
		}
	}
	k.s.catMu.Lock()
	err := b.Commit(pebble.NoSync)
	k.s.catMu.Unlock()
	if err != nil {
		return fmt.Errorf("blobstore: write catalogue: %w", err)
	}
	return nil
}

// close stores everything added and stops the writer; a second close is a
// no-op. With sync, all the sink wrote is durable when it returns nil;
// without, the caller syncs (Store.syncWAL) after closing its sinks.
func (k *sink) close(sync bool) error {
	if k.closed {
		return nil
	}
	k.closed = true
	var err error
	if k.s.packs == nil {
		opt := pebble.NoSync
		if sync {
			opt = pebble.Sync
		}
		err = k.commitBatch(opt)
	} else {
		k.seal()
		if k.ops != nil {
			close(k.ops)
			k.wg.Wait()
			k.ops = nil
		}
		err = k.asyncErr()
	}
	if err != nil {
		return err
	}
	if sync && k.wrote {
		return k.s.syncWAL()
	}
	return nil
}

// syncWAL makes every batch committed so far durable.
func (s *Store) syncWAL() error {
	if err := s.db.LogData(nil, pebble.Sync); err != nil {
		return fmt.Errorf("blobstore: sync: %w", err)
	}
	return nil
}
