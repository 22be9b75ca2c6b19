package blobstore

import (
	"context"
	"fmt"
	"math"
	"slices"

	"github.com/cockroachdb/pebble"
	"github.com/ipfs/go-cid"
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
		size, _, err := decodeEntry(it.Value())
		if err != nil {
			it.Close()
			return st, fmt.Errorf("%w at key %x", err, it.Key())
		}
		st.Blocks++
		st.Bytes += int64(size)
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
}

// GC deletes every block not reachable from a pinned root, then compacts
// the key range of the deleted blocks so Pebble gives the disk space back.
// It waits for running Put and Fetch calls and blocks new ones until it is
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
	deadLo, deadHi := uint64(math.MaxUint64), uint64(0)
	for ok := it.First(); ok; ok = it.Next() {
		if err := ctx.Err(); err != nil {
			it.Close()
			return st, err
		}
		size, seq, err := decodeEntry(it.Value())
		if err != nil {
			it.Close()
			return st, fmt.Errorf("%w at key %x", err, it.Key())
		}
		if _, keep := live[string(it.Key()[len(lo):])]; keep {
			liveSeqs = append(liveSeqs, seq)
			continue
		}
		if err := b.Delete(it.Key(), nil); err != nil {
			it.Close()
			return st, err
		}
		st.Blocks++
		st.BytesFreed += int64(size)
		deadLo, deadHi = min(deadLo, seq), max(deadHi, seq)
	}
	if err := it.Close(); err != nil {
		return st, err
	}
	st.Kept = len(liveSeqs)
	if st.Blocks == 0 {
		return st, nil
	}
	// Range-delete the bytes of every block number not in use: cheap to
	// write, and Pebble drops whole sstables under a range tombstone
	// without reading them.
	slices.Sort(liveSeqs)
	var next uint64
	for _, q := range liveSeqs {
		if q > next {
			if err := b.DeleteRange(s.blockKey(next), s.blockKey(q), nil); err != nil {
				return st, err
			}
		}
		next = q + 1
	}
	_, blockHi := s.blockRange()
	if err := b.DeleteRange(s.blockKey(next), blockHi, nil); err != nil {
		return st, err
	}
	if err := b.Commit(pebble.Sync); err != nil {
		return st, fmt.Errorf("blobstore: gc: delete: %w", err)
	}
	if err := s.db.Compact(s.blockKey(deadLo), s.blockKey(deadHi+1), true); err != nil {
		return st, fmt.Errorf("blobstore: gc: compact blocks: %w", err)
	}
	if err := s.db.Compact(lo, hi, true); err != nil {
		return st, fmt.Errorf("blobstore: gc: compact catalogue: %w", err)
	}
	return st, nil
}
