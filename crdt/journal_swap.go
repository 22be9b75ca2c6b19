package crdt

import (
	"bytes"
	"fmt"
	"sort"
)

// settleEvidence finishes the settlements a crash cut off: Ingest commits
// a conflicting fact as evidence first and moves the lower id into the
// slot (applySwaps) in a second batch, so evidence whose id is lower than
// the id it names as kept is a swap that never happened. Without this the
// replica would keep the higher id for good (later deliveries of the fact
// are duplicates) and disagree with every replica that saw both.
func (j *Journal) settleEvidence() error {
	var swaps []swap
	p := tagKey(tagEvidence)
	err := j.kv.Scan(p, prefixEnd(p), func(k, v []byte) error {
		r, err := decodeEvidence(k, v)
		if err != nil {
			return err
		}
		if bytes.Compare(r.conflict[:], r.kept[:]) >= 0 {
			return nil
		}
		f, err := decodeStored(r.raw)
		if err != nil {
			return err
		}
		swaps = append(swaps, swap{f: f, kept: r.kept})
		return nil
	})
	if err != nil || len(swaps) == 0 {
		return err
	}
	_, err = j.applySwaps(swaps)
	return err
}

// applySwaps settles equivocations deterministically: at each (author, seq)
// the fact with the lowest id holds the slot (chain or pending) and the
// other becomes evidence. "Keep the first" (DESIGN §3) would let two
// replicas keep different facts for one slot and never converge; the
// lowest id is what every replica that saw both keeps. Where a chain slot
// changes, the author's chain hashes from that seq up are recomputed. The
// caller holds the write lock; the ingest batch is committed.
func (j *Journal) applySwaps(swaps []swap) ([]DeviceID, error) {
	sort.Slice(swaps, func(a, b int) bool {
		if c := bytes.Compare(swaps[a].f.Author[:], swaps[b].f.Author[:]); c != 0 {
			return c < 0
		}
		if swaps[a].f.Seq != swaps[b].f.Seq {
			return swaps[a].f.Seq < swaps[b].f.Seq
		}
		return bytes.Compare(swaps[a].f.id[:], swaps[b].f.id[:]) < 0
	})
	batch := j.kv.NewBatch()
	defer batch.Close()
	touched := map[DeviceID]authorHead{}
	var authors []DeviceID
	for _, sw := range swaps {
		f := sw.f
		a, s := f.Author, f.Seq
		h, ok := touched[a]
		if !ok {
			h = j.heads[a]
		}
		if s <= h.pruned {
			continue
		}
		// The current holder of the slot (an earlier swap may have changed it).
		var holder FactID
		var holderRaw []byte
		inChain := s <= h.seq
		tag := tagPending
		if inChain {
			tag = tagChain
		}
		v, found, err := j.kv.Get(seqKey(tag, a, s))
		if err != nil {
			return nil, err
		}
		if !found {
			continue
		}
		off := 0
		if inChain {
			off = 32
		}
		if len(v) < off+32 {
			return nil, fmt.Errorf("slot of %s at %d: %w", a.Short(), s, errCorrupt)
		}
		copy(holder[:], v[off:off+32])
		holderRaw = append([]byte(nil), v[off+32:]...)
		if bytes.Compare(f.id[:], holder[:]) >= 0 {
			continue // a lower id already holds it
		}
		// Swap the evidence: f leaves the evidence set, holder joins it.
		if err := batch.Delete(evidenceKey(a, s, f.id)); err != nil {
			return nil, err
		}
		ev := make([]byte, 0, 32+len(holderRaw))
		ev = append(append(ev, f.id[:]...), holderRaw...)
		if err := batch.Set(evidenceKey(a, s, holder), ev); err != nil {
			return nil, err
		}
		if err := batch.Set(locatorKey(holder), appendLocator(nil, a, s, whereEvidence)); err != nil {
			return nil, err
		}
		if err := batch.Set(locatorKey(f.id), appendLocator(nil, a, s, whereChain)); err != nil {
			return nil, err
		}
		if !inChain {
			pv := make([]byte, 0, 32+len(f.raw))
			pv = append(append(pv, f.id[:]...), f.raw...)
			if err := batch.Set(seqKey(tagPending, a, s), pv); err != nil {
				return nil, err
			}
			continue
		}
		// Rechain from s: the slot takes f, later hashes follow.
		prev := h.prunedHash
		if s-1 > h.pruned {
			pv, ok, err := j.kv.Get(seqKey(tagChain, a, s-1))
			if err != nil {
				return nil, err
			}
			if !ok || len(pv) < 64 {
				return nil, fmt.Errorf("chain of %s at %d: %w", a.Short(), s-1, errCorrupt)
			}
			copy(prev[:], pv[:32])
		} else if h.pruned == 0 {
			prev = ChainGenesis(a)
		}
		hash := ChainNext(prev, f.id)
		nv := make([]byte, 0, 64+len(f.raw))
		nv = append(append(append(nv, hash[:]...), f.id[:]...), f.raw...)
		if err := batch.Set(seqKey(tagChain, a, s), nv); err != nil {
			return nil, err
		}
		lo, hi := seqRange(tagChain, a, s+1, h.seq)
		err = j.kv.Scan(lo, hi, func(k, val []byte) error {
			if len(val) < 64 {
				return errCorrupt
			}
			var id FactID
			copy(id[:], val[32:64])
			hash = ChainNext(hash, id)
			out := make([]byte, len(val))
			copy(out, val)
			copy(out[:32], hash[:])
			return batch.Set(append([]byte(nil), k...), out)
		})
		if err != nil {
			return nil, fmt.Errorf("rechain %s from %d: %w", a.Short(), s, err)
		}
		h.hash = hash
		touched[a] = h
		authors = appendUnique(authors, a)
		if err := batch.Set(authorKey(tagHead, a), h.encode()); err != nil {
			return nil, err
		}
		// Later swaps read the rechained entries: commit before the next.
		if err := batch.Commit(true); err != nil {
			return nil, err
		}
		batch.Close()
		batch = j.kv.NewBatch()
	}
	if err := batch.Commit(true); err != nil {
		return nil, err
	}
	if len(touched) > 0 {
		j.mu.Lock()
		for a, h := range touched {
			j.heads[a] = h
		}
		j.gen++
		j.mu.Unlock()
	}
	return authors, nil
}

func appendUnique(list []DeviceID, d DeviceID) []DeviceID {
	for _, x := range list {
		if x == d {
			return list
		}
	}
	return append(list, d)
}
