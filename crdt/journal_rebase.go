package crdt

import (
	"fmt"
)

// Rebase rests the journal on a snapshot: for each author of v, the prefix
// up to v[author] is taken as given by the snapshot, whose chain head there
// is heads[author]. Where the journal holds that far, it checks the head and
// prunes (as Prune). Where it holds less (a device offline across a GC, or
// a fresh one), it drops what it held at or below v, jumps the chain head to
// (v[author], heads[author]), and chains the pending facts that now follow.
// Facts above v — a device's own offline writes among them — are kept.
func (j *Journal) Rebase(v VersionVector, heads map[DeviceID]Hash) error {
	prune := VersionVector{}
	var jump []DeviceID
	for _, a := range v.Authors() {
		h := j.head(a)
		switch {
		case v[a] <= h.pruned:
		case v[a] <= h.seq:
			got, err := j.ChainHash(a, v[a])
			if err != nil {
				return fmt.Errorf("rebase: %w", err)
			}
			if got != heads[a] {
				// An equivocator's chain that differs from the one the
				// snapshot signed: the snapshot decides. Its prefix is
				// taken as given and the facts above are chained on it.
				jump = append(jump, a)
				continue
			}
			prune[a] = v[a]
		default:
			jump = append(jump, a)
		}
	}
	if len(prune) > 0 {
		if _, _, err := j.Prune(prune); err != nil {
			return fmt.Errorf("rebase: %w", err)
		}
	}
	if len(jump) == 0 {
		return nil
	}
	if err := j.jump(v, heads, jump); err != nil {
		return err
	}
	// Compact outside the write lock, as Prune does: ingest goes on meanwhile.
	lo, hi := JournalKeyRange()
	return j.kv.Compact(lo, hi)
}

// jump moves the chain heads of authors the journal holds less of than v.
func (j *Journal) jump(v VersionVector, heads map[DeviceID]Hash, jump []DeviceID) error {
	if err := j.enter(); err != nil {
		return err
	}
	defer j.exit()
	j.wmu.Lock()
	defer j.wmu.Unlock()
	w := &ingestWrite{j: j, batch: j.kv.NewBatch(), heads: make(map[DeviceID]authorHead), stats: j.stats}
	defer w.batch.Close()
	// As in Prune: when the journal drops more chain facts than it keeps,
	// the locator range is rewritten with the kept facts' locators (first
	// in the batch, from what the KV holds now) instead of one delete per
	// dropped fact.
	var dropped uint64
	floor := make(map[DeviceID]uint64, len(jump))
	for _, a := range jump {
		h := j.heads[a]
		floor[a] = v[a]
		if top := min(h.seq, v[a]); top > h.pruned {
			dropped += top - h.pruned
		}
	}
	rewrite := rewriteLocatorsCheaper(j.stats.Facts, dropped)
	var kept uint64
	if rewrite {
		var err error
		kept, _, err = j.rewriteLocators(w.batch, func(a DeviceID) uint64 {
			if f, ok := floor[a]; ok {
				return f
			}
			return j.heads[a].pruned
		})
		if err != nil {
			return fmt.Errorf("rebase: %w", err)
		}
	}
	deleteLocator := func(id FactID) error {
		if rewrite {
			return nil
		}
		return w.batch.Delete(locatorKey(id))
	}
	for _, a := range jump {
		h, to := j.heads[a], v[a]
		// Chain facts (pruned, min(seq, to)] are covered: drop them.
		if top := min(h.seq, to); top > h.pruned {
			lo, hi := seqRange(tagChain, a, h.pruned+1, top)
			err := j.kv.Scan(lo, hi, func(_, val []byte) error {
				if len(val) < 64 {
					return errCorrupt
				}
				var id FactID
				copy(id[:], val[32:64])
				w.stats.Facts--
				w.stats.Bytes -= uint64(len(val) - 64)
				w.stats.PrunedFacts++
				w.stats.PrunedBytes += uint64(len(val) - 64)
				return deleteLocator(id)
			})
			if err != nil {
				return fmt.Errorf("rebase %s: %w", a.Short(), err)
			}
			if err := w.batch.DeleteRange(lo, hi); err != nil {
				return err
			}
		}
		// Pending facts at or below to: covered by the snapshot.
		if h.pending > 0 {
			lo, hi := seqRange(tagPending, a, 0, to)
			err := j.kv.Scan(lo, hi, func(_, val []byte) error {
				if len(val) < 32 {
					return errCorrupt
				}
				var id FactID
				copy(id[:], val[:32])
				h.pending--
				w.stats.Pending--
				w.stats.Facts--
				w.stats.Bytes -= uint64(len(val) - 32)
				w.stats.PrunedFacts++
				w.stats.PrunedBytes += uint64(len(val) - 32)
				return deleteLocator(id)
			})
			if err != nil {
				return fmt.Errorf("rebase %s: %w", a.Short(), err)
			}
			if err := w.batch.DeleteRange(lo, hi); err != nil {
				return err
			}
		}
		// Evidence at or below to.
		elo, ehi := seqRange(tagEvidence, a, 0, to)
		err := j.kv.Scan(elo, ehi, func(k, val []byte) error {
			r, err := decodeEvidence(k, val)
			if err != nil {
				return err
			}
			w.stats.Facts--
			w.stats.Equivocations--
			w.stats.Bytes -= uint64(len(r.raw))
			w.stats.PrunedFacts++
			w.stats.PrunedBytes += uint64(len(r.raw))
			return deleteLocator(r.conflict)
		})
		if err != nil {
			return fmt.Errorf("rebase %s: %w", a.Short(), err)
		}
		if err := w.batch.DeleteRange(elo, ehi); err != nil {
			return err
		}
		if h.seq > to {
			// Chain the facts above the frontier on the snapshot's head.
			hash := heads[a]
			lo, hi := seqRange(tagChain, a, to+1, h.seq)
			err := j.kv.Scan(lo, hi, func(k, val []byte) error {
				if len(val) < 64 {
					return errCorrupt
				}
				var id FactID
				copy(id[:], val[32:64])
				hash = ChainNext(hash, id)
				out := append([]byte(nil), val...)
				copy(out[:32], hash[:])
				return w.batch.Set(append([]byte(nil), k...), out)
			})
			if err != nil {
				return fmt.Errorf("rebase %s: rechain: %w", a.Short(), err)
			}
			h.hash = hash
		} else {
			h.seq, h.hash = to, heads[a]
		}
		h.pruned, h.prunedHash = to, heads[a]
		st := &placeState{a: a, h: h}
		st.h.pendLow = 0
		if st.h.pending > 0 {
			low, err := w.lowestPending(st, st.h.seq+1)
			if err != nil {
				return fmt.Errorf("rebase %s: %w", a.Short(), err)
			}
			st.h.pendLow = low
		}
		if err := w.drain(st); err != nil {
			return fmt.Errorf("rebase %s: %w", a.Short(), err)
		}
		w.heads[a] = st.h
		if err := w.batch.Set(authorKey(tagHead, a), st.h.encode()); err != nil {
			return err
		}
	}
	if rewrite && kept != w.stats.Facts {
		return fmt.Errorf("rebase: %d facts stay, counters say %d: %w", kept, w.stats.Facts, errCorrupt)
	}
	if err := w.batch.Set(tagKey(tagCounters), encodeCounters(w.stats)); err != nil {
		return err
	}
	if err := w.batch.Commit(true); err != nil {
		return fmt.Errorf("rebase: commit: %w", err)
	}
	j.mu.Lock()
	for a, h := range w.heads {
		j.heads[a] = h
	}
	j.stats = w.stats
	j.gen++
	j.mu.Unlock()
	return nil
}
