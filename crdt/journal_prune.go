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
// When more facts go than stay, the locator range (keyed by fact
// id, so pruned and kept locators interleave) is deleted whole and the kept
// facts' locators are written again: the batch and the compaction then
// cost in the facts kept, not the facts pruned. Otherwise each pruned
// fact's locator gets its own delete (about 40 bytes of batch each).
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
	// The chain facts to prune are known from the heads; the evidence
	// among them is listed (it is rare).
	var chainFacts uint64
	var evidence []evidenceEntry
	for _, a := range authors {
		h, to := j.heads[a], v[a]
		if to <= h.pruned {
			continue
		}
		chainFacts += to - h.pruned
		ev, err := j.evidenceUpTo(a, to)
		if err != nil {
			return 0, 0, fmt.Errorf("prune: %w", err)
		}
		evidence = append(evidence, ev...)
	}
	if chainFacts == 0 && len(evidence) == 0 {
		return 0, 0, nil
	}
	batch := j.kv.NewBatch()
	defer batch.Close()
	heads := make(map[DeviceID]authorHead)
	stats := j.stats
	facts = chainFacts + uint64(len(evidence))
	// Locators are keyed by fact id, so the pruned ones are scattered among
	// the kept ones: deleting them one by one costs a tombstone each and a
	// compaction that rewrites the whole locator range. When fewer facts
	// stay than go (a snapshot round prunes nearly everything), the
	// locator range is dropped whole and the kept facts' locators are
	// written again.
	rewrite := rewriteLocatorsCheaper(stats.Facts, facts)
	for _, a := range authors {
		h, to := j.heads[a], v[a]
		if to <= h.pruned {
			continue
		}
		lo, hi := seqRange(tagChain, a, h.pruned+1, to)
		if rewrite {
			// Read the last pruned chain record for its hash.
			last, ok, err := j.kv.Get(seqKey(tagChain, a, to))
			if err != nil || !ok || len(last) < 64 {
				return 0, 0, fmt.Errorf("prune: chain of %s at %d: %w (%v)", a.Short(), to, errCorrupt, err)
			}
			copy(h.prunedHash[:], last[:32])
		} else {
			// Chain facts (h.pruned, to]: delete each one's locator.
			next := h.pruned + 1
			err := j.kv.Scan(lo, hi, func(k, val []byte) error {
				if _, s := keySeq(k); s != next || len(val) < 64 {
					return fmt.Errorf("chain of %s at %d: %w", a.Short(), next, errCorrupt)
				}
				next++
				copy(h.prunedHash[:], val[:32])
				var id FactID
				copy(id[:], val[32:64])
				freed += uint64(len(val) - 64)
				return batch.Delete(locatorKey(id))
			})
			if err == nil && next != to+1 {
				err = fmt.Errorf("chain of %s ends at %d below %d: %w", a.Short(), next-1, to, errCorrupt)
			}
			if err != nil {
				return 0, 0, fmt.Errorf("prune: %w", err)
			}
		}
		if err := batch.DeleteRange(lo, hi); err != nil {
			return 0, 0, fmt.Errorf("prune: %w", err)
		}
		// Evidence at seqs ≤ to.
		elo, ehi := seqRange(tagEvidence, a, 0, to)
		if err := batch.DeleteRange(elo, ehi); err != nil {
			return 0, 0, fmt.Errorf("prune: %w", err)
		}
		h.pruned = to
		heads[a] = h
		if err := batch.Set(authorKey(tagHead, a), h.encode()); err != nil {
			return 0, 0, fmt.Errorf("prune: %w", err)
		}
	}
	if rewrite {
		kept, keptBytes, err := j.rewriteLocators(batch, func(a DeviceID) uint64 {
			if h, ok := heads[a]; ok {
				return h.pruned
			}
			return j.heads[a].pruned
		})
		if err != nil {
			return 0, 0, fmt.Errorf("prune: %w", err)
		}
		if kept != stats.Facts-facts || keptBytes > stats.Bytes {
			return 0, 0, fmt.Errorf("prune: %d facts of %d bytes stay, counters say %d of %d before pruning %d: %w",
				kept, keptBytes, stats.Facts, stats.Bytes, facts, errCorrupt)
		}
		freed = stats.Bytes - keptBytes
	} else {
		for _, e := range evidence {
			freed += e.size
			if err := batch.Delete(locatorKey(e.id)); err != nil {
				return 0, 0, fmt.Errorf("prune: %w", err)
			}
		}
	}
	stats.Facts -= facts
	stats.Bytes -= freed
	stats.Equivocations -= uint64(len(evidence))
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

// evidenceEntry is one evidence record: the conflicting fact's id and size.
type evidenceEntry struct {
	id   FactID
	size uint64
}

// evidenceUpTo lists the evidence of author a at seqs ≤ to.
func (j *Journal) evidenceUpTo(a DeviceID, to uint64) ([]evidenceEntry, error) {
	var out []evidenceEntry
	lo, hi := seqRange(tagEvidence, a, 0, to)
	err := j.kv.Scan(lo, hi, func(k, val []byte) error {
		r, err := decodeEvidence(k, val)
		if err != nil {
			return err
		}
		out = append(out, evidenceEntry{id: r.conflict, size: uint64(len(r.raw))})
		return nil
	})
	return out, err
}

// rewriteLocatorsCheaper reports whether dropping `drop` of `held` facts
// costs less by rewriting the locator range (in the facts kept) than by
// deleting the dropped facts' locators one by one: when more go than stay.
func rewriteLocatorsCheaper(held, drop uint64) bool { return held < 2*drop }

// rewriteLocators adds to batch a deletion of the whole locator range and
// the locators of every fact that stays: chain facts, pending facts and
// evidence above floor(author). It returns how many
// facts stay and their bytes. The caller holds the write lock.
func (j *Journal) rewriteLocators(batch KVBatch, floor func(DeviceID) uint64) (kept, bytes uint64, err error) {
	lo := []byte{JournalPrefix, tagLocator}
	if err := batch.DeleteRange(lo, prefixEnd(lo)); err != nil {
		return 0, 0, err
	}
	var kbuf, lbuf []byte
	set := func(id FactID, a DeviceID, seq uint64, where byte, size int) error {
		kept++
		bytes += uint64(size)
		kbuf = appendLocatorKey(kbuf[:0], id)
		lbuf = appendLocator(lbuf[:0], a, seq, where)
		return batch.Set(kbuf, lbuf)
	}
	for a, h := range j.heads {
		from := floor(a)
		if h.seq > from {
			clo, chi := seqRange(tagChain, a, from+1, h.seq)
			err := j.kv.Scan(clo, chi, func(k, val []byte) error {
				if len(val) < 64 {
					return fmt.Errorf("chain record: %w", errCorrupt)
				}
				_, s := keySeq(k)
				return set(FactID(val[32:64]), a, s, whereChain, len(val)-64)
			})
			if err != nil {
				return 0, 0, err
			}
		}
		if h.pending > 0 {
			plo, phi := seqRange(tagPending, a, from+1, ^uint64(0))
			err := j.kv.Scan(plo, phi, func(k, val []byte) error {
				if len(val) < 32 {
					return fmt.Errorf("pending record: %w", errCorrupt)
				}
				_, s := keySeq(k)
				return set(FactID(val[:32]), a, s, whereChain, len(val)-32)
			})
			if err != nil {
				return 0, 0, err
			}
		}
		elo, ehi := seqRange(tagEvidence, a, from+1, ^uint64(0))
		err := j.kv.Scan(elo, ehi, func(k, val []byte) error {
			r, err := decodeEvidence(k, val)
			if err != nil {
				return err
			}
			return set(r.conflict, a, r.seq, whereEvidence, len(r.raw))
		})
		if err != nil {
			return 0, 0, err
		}
	}
	return kept, bytes, nil
}
