package crdt

import (
	"fmt"
)

// Prune implements Store. For each author of v it removes the chain facts
// with seq ≤ v[author] (bytes, index and locator entries) and the evidence at
// those seqs, keeps h(author, v[author]) in the author's head so that
// ChainHash and PrefixHash keep working at v and above, raises PrunedTo,
// commits all of it in one fsync'd batch, then compacts the journal's key
// range so the space comes back. Facts above v, pending facts and evidence
// above v are untouched. v must be covered by VersionVector, else
// ErrUnknownPrefix; authors already pruned to v or beyond are skipped.
//
// The batch holds one delete per pruned fact (about 40 bytes each), so
// pruning a million facts at once buffers some 40 MB.
func (j *Journal) Prune(v VersionVector) (facts, freed uint64, err error) {
	if err := j.enter(); err != nil {
		return 0, 0, err
	}
	defer j.exit()
	facts, freed, err = j.prune(v)
	if err != nil || facts == 0 {
		return facts, freed, err
	}
	// Compact without the write lock: ingest goes on meanwhile.
	lo, hi := JournalKeyRange()
	if err := j.kv.Compact(lo, hi); err != nil {
		return facts, freed, fmt.Errorf("prune: compact: %w", err)
	}
	return facts, freed, nil
}

// prune deletes and commits, under the write lock.
func (j *Journal) prune(v VersionVector) (facts, freed uint64, err error) {
	j.wmu.Lock()
	defer j.wmu.Unlock()

	authors := v.Authors()
	for _, a := range authors {
		if h := j.heads[a]; v[a] > h.seq {
			return 0, 0, fmt.Errorf("prune %s to %d: %w (held to %d)", a.Short(), v[a], ErrUnknownPrefix, h.seq)
		}
	}
	batch := j.kv.NewBatch()
	defer batch.Close()
	heads := make(map[DeviceID]authorHead)
	var evidence uint64
	for _, a := range authors {
		h, to := j.heads[a], v[a]
		if to <= h.pruned {
			continue
		}
		// Chain facts (h.pruned, to].
		lo, hi := seqRange(tagChain, a, h.pruned+1, to)
		next := h.pruned + 1
		var last Hash
		err := j.kv.Scan(lo, hi, func(k, val []byte) error {
			if _, s := keySeq(k); s != next || len(val) < 64 {
				return fmt.Errorf("chain of %s at %d: %w", a.Short(), next, errCorrupt)
			}
			next++
			copy(last[:], val[:32])
			var id FactID
			copy(id[:], val[32:64])
			facts++
			freed += uint64(len(val) - 64)
			return batch.Delete(locatorKey(id))
		})
		if err == nil && next != to+1 {
			err = fmt.Errorf("chain of %s ends at %d below %d: %w", a.Short(), next-1, to, errCorrupt)
		}
		if err != nil {
			return 0, 0, fmt.Errorf("prune: %w", err)
		}
		if err := batch.DeleteRange(lo, hi); err != nil {
			return 0, 0, fmt.Errorf("prune: %w", err)
		}
		// Evidence at seqs ≤ to.
		elo, ehi := seqRange(tagEvidence, a, 0, to)
		err = j.kv.Scan(elo, ehi, func(k, val []byte) error {
			if len(k) != 2+32+8+32 || len(val) < 32 {
				return fmt.Errorf("evidence record: %w", errCorrupt)
			}
			var id FactID
			copy(id[:], k[42:])
			facts++
			evidence++
			freed += uint64(len(val) - 32)
			return batch.Delete(locatorKey(id))
		})
		if err != nil {
			return 0, 0, fmt.Errorf("prune: %w", err)
		}
		if err := batch.DeleteRange(elo, ehi); err != nil {
			return 0, 0, fmt.Errorf("prune: %w", err)
		}
		h.pruned, h.prunedHash = to, last
		heads[a] = h
		if err := batch.Set(authorKey(tagHead, a), h.encode()); err != nil {
			return 0, 0, fmt.Errorf("prune: %w", err)
		}
	}
	if len(heads) == 0 {
		return 0, 0, nil
	}
	stats := j.stats
	stats.Facts -= facts
	stats.Bytes -= freed
	stats.Equivocations -= evidence
	stats.PrunedFacts += facts
	stats.PrunedBytes += freed
	if err := batch.Set(tagKey(tagCounters), encodeCounters(stats)); err != nil {
		return 0, 0, fmt.Errorf("prune: %w", err)
	}
	if err := batch.Commit(true); err != nil {
		return 0, 0, fmt.Errorf("prune: commit: %w", err)
	}
	j.mu.Lock()
	for a, h := range heads {
		j.heads[a] = h
	}
	j.stats = stats
	j.gen++
	j.mu.Unlock()
	return facts, freed, nil
}
