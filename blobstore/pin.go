package blobstore

import (
	"bytes"
	"cmp"
	"context"
	"fmt"
	"math"
	"slices"

	"github.com/cockroachdb/pebble"
	"github.com/ipfs/go-cid"
	mh "github.com/multiformats/go-multihash"
)

// Pin records root as pinned (durably): GC keeps every block of its DAG
// that is held. The blob need not be complete, or present at all: pinning a
// root before fetching it protects a partial fetch from GC.
func (s *Store) Pin(root cid.Cid) error {
	if err := checkCID(root); err != nil {
		return fmt.Errorf("pin %s: %w", root, err)
	}
	return s.setPins([]cid.Cid{root}, nil)
}

// Unpin removes the pin of root (no error if it was not pinned). Its blocks
// go at the next GC unless another pinned DAG shares them.
func (s *Store) Unpin(root cid.Cid) error {
	return s.setPins(nil, []cid.Cid{root})
}

// KeepNewest takes roots newest first and keeps the first n pinned and the
// rest unpinned (n <= 0 means DefaultKeep). Pins of roots not in the list
// are left alone. The change is one durable write.
func (s *Store) KeepNewest(roots []cid.Cid, n int) error {
	if n <= 0 {
		n = DefaultKeep
	}
	n = min(n, len(roots))
	for _, r := range roots[:n] {
		if err := checkCID(r); err != nil {
			return fmt.Errorf("keep %s: %w", r, err)
		}
	}
	return s.setPins(roots[:n], roots[n:])
}

// UnpinAll removes the pins of roots in one durable write.
func (s *Store) UnpinAll(roots []cid.Cid) error {
	return s.setPins(nil, roots)
}

func (s *Store) setPins(pin, unpin []cid.Cid) error {
	s.gcMu.RLock()
	defer s.gcMu.RUnlock()
	return s.writePins(pin, unpin)
}

// writePins writes pins and unpins in one synced batch; gcMu is held.
func (s *Store) writePins(pin, unpin []cid.Cid) error {
	b := s.db.NewBatch()
	defer b.Close()
	for _, c := range unpin {
		if err := b.Delete(s.key(kindPin, c.Bytes()), nil); err != nil {
			return err
		}
	}
	for _, c := range pin {
		if err := b.Set(s.key(kindPin, c.Bytes()), nil, nil); err != nil {
			return err
		}
	}
	if err := b.Commit(pebble.Sync); err != nil {
		return fmt.Errorf("blobstore: write pins: %w", err)
	}
	return nil
}

// Pins lists the pinned roots in key order.
func (s *Store) Pins() ([]cid.Cid, error) {
	lo := s.key(kindPin, nil)
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: s.key(kindPin+1, nil)})
	if err != nil {
		return nil, err
	}
	defer it.Close()
	var out []cid.Cid
	for ok := it.First(); ok; ok = it.Next() {
		c, err := cid.Cast(it.Key()[len(lo):])
		if err != nil {
			return nil, fmt.Errorf("blobstore: corrupt pin key %x: %w", it.Key(), err)
		}
		out = append(out, c)
	}
	return out, it.Error()
}

// Stats are the figures of what a Store holds.
type Stats struct {
	Blocks int   // blocks held
	Bytes  int64 // their total size
	Pins   int   // pinned roots
}

// Stats counts the blocks, bytes and pins held (a scan of the catalogue and
// the pins; block bytes are not read).
func (s *Store) Stats() (Stats, error) {
	var st Stats
	lo, hi := s.catalogRange()
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: hi})
	if err != nil {
		return st, err
	}
	for ok := it.First(); ok; ok = it.Next() {
		loc, err := decodeLocation(it.Value())
		if err != nil {
			it.Close()
			return st, fmt.Errorf("%w at key %x", err, it.Key())
		}
		st.Blocks++
		st.Bytes += int64(loc.size)
	}
	if err := it.Close(); err != nil {
		return st, err
	}
	pins, err := s.Pins()
	st.Pins = len(pins)
	return st, err
}

// GCStats reports what a GC removed.
type GCStats struct {
	Blocks     int   // blocks deleted
	BytesFreed int64 // their total size
	Kept       int   // blocks kept (reachable from a pin)
	// PacksRemoved is how many pack files GC deleted; Moved is how many
	// live bytes it copied out of sparse packs first.
	PacksRemoved int
	Moved        int64
}

// GC deletes every block not reachable from a pinned root and gives the
// disk space back: it deletes the pack files no live block is in, copies
// the live blocks out of packs that are mostly garbage (then deletes
// those), and range-deletes and compacts block bytes held in Pebble. It
// waits for running Put and Fetch calls and blocks new ones until it is
// done. Besides the unreachable blocks, it drops block bytes no catalogue
// entry points to (left by a crash in the middle of a write).
func (s *Store) GC(ctx context.Context) (GCStats, error) {
	s.gcMu.Lock()
	defer s.gcMu.Unlock()
	var st GCStats
	pins, err := s.Pins()
	if err != nil {
		return st, err
	}
	live := make(map[string]struct{})
	for _, root := range pins {
		err := s.walkLocal(ctx, root, func(c cid.Cid, held bool, _ int) bool {
			if held {
				live[string(c.Hash())] = struct{}{}
			}
			return true
		})
		if err != nil {
			return st, fmt.Errorf("blobstore: gc: walk pin %s: %w", root, err)
		}
	}

	lo, hi := s.catalogRange()
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: hi})
	if err != nil {
		return st, err
	}
	b := s.db.NewBatch()
	defer b.Close()
	var liveSeqs []uint64
	inPack := make(map[uint64][]entry) // live blocks by pack
	deadLo, deadHi := uint64(math.MaxUint64), uint64(0)
	for ok := it.First(); ok; ok = it.Next() {
		if err := ctx.Err(); err != nil {
			it.Close()
			return st, err
		}
		loc, err := decodeLocation(it.Value())
		if err != nil {
			it.Close()
			return st, fmt.Errorf("%w at key %x", err, it.Key())
		}
		h := it.Key()[len(lo):]
		if _, keep := live[string(h)]; keep {
			st.Kept++
			if loc.pack != 0 {
				inPack[loc.pack] = append(inPack[loc.pack], entry{h: mh.Multihash(bytes.Clone(h)), loc: loc})
			} else {
				liveSeqs = append(liveSeqs, loc.seq)
			}
			continue
		}
		if err := b.Delete(it.Key(), nil); err != nil {
			it.Close()
			return st, err
		}
		st.Blocks++
		st.BytesFreed += int64(loc.size)
		if loc.pack == 0 {
			deadLo, deadHi = min(deadLo, loc.seq), max(deadHi, loc.seq)
		}
	}
	if err := it.Close(); err != nil {
		return st, err
	}
	if st.Blocks > 0 {
		if err := s.dropPebbleBlocks(b, liveSeqs); err != nil {
			return st, err
		}
		if err := b.Commit(pebble.Sync); err != nil {
			return st, fmt.Errorf("blobstore: gc: delete: %w", err)
		}
		if deadLo <= deadHi {
			if err := s.db.Compact(s.blockKey(deadLo), s.blockKey(deadHi+1), true); err != nil {
				return st, fmt.Errorf("blobstore: gc: compact blocks: %w", err)
			}
		}
		if err := s.db.Compact(lo, hi, true); err != nil {
			return st, fmt.Errorf("blobstore: gc: compact catalogue: %w", err)
		}
	}
	if s.packs != nil {
		if err := s.sweepPacks(ctx, inPack, &st); err != nil {
			return st, fmt.Errorf("blobstore: gc: %w", err)
		}
	}
	return st, nil
}

// dropPebbleBlocks range-deletes the bytes of every block number not in
// use: cheap to write, and Pebble drops whole sstables under a range
// tombstone without reading them.
func (s *Store) dropPebbleBlocks(b *pebble.Batch, liveSeqs []uint64) error {
	slices.Sort(liveSeqs)
	var next uint64
	for _, q := range liveSeqs {
		if q > next {
			if err := b.DeleteRange(s.blockKey(next), s.blockKey(q), nil); err != nil {
				return err
			}
		}
		next = q + 1
	}
	_, blockHi := s.blockRange()
	return b.DeleteRange(s.blockKey(next), blockHi, nil)
}

// sweepPacks deletes the pack files with no live block (inPack lists the
// live blocks of each pack), after copying the live blocks of packs less
// than half full of them into new packs, committed durably first.
func (s *Store) sweepPacks(ctx context.Context, inPack map[uint64][]entry, st *GCStats) error {
	files, err := s.packs.list()
	if err != nil {
		return err
	}
	var drop, sparse []uint64
	for num, size := range files {
		var liveBytes int64
		for _, e := range inPack[num] {
			liveBytes += int64(e.loc.size)
		}
		switch {
		case liveBytes == 0:
			drop = append(drop, num)
		case 2*liveBytes < size:
			sparse = append(sparse, num)
		}
	}
	if len(sparse) > 0 {
		slices.Sort(sparse)
		k := s.newSink()
		k.release = putBuf
		for _, num := range sparse {
			es := inPack[num]
			slices.SortFunc(es, func(a, b entry) int { return cmp.Compare(a.loc.off, b.loc.off) })
			for _, e := range es {
				if err := ctx.Err(); err != nil {
					k.close(false)
					return err
				}
				buf := getBuf(e.loc.size)
				err := s.packs.readAt(num, e.loc.off, buf)
				if packDamaged(err) {
					putBuf(buf) // damaged: nothing to move, and the block counts as missing now
					if err := s.dropDamagedPack(num); err != nil {
						k.close(false)
						return err
					}
					continue
				}
				if err != nil {
					putBuf(buf)
					k.close(false)
					return err
				}
				if err := k.add(e.h, buf); err != nil {
					k.close(false)
					return err
				}
				st.Moved += int64(e.loc.size)
			}
		}
		if err := k.close(true); err != nil {
			return err
		}
		drop = append(drop, sparse...)
	}
	if err := s.packs.remove(drop); err != nil {
		return err
	}
	st.PacksRemoved = len(drop)
	return nil
}
