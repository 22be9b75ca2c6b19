package crdt

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"slices"
)

// Ingest implements Store.
//
// Steps: put the facts in causal order (Lamport, author, seq, id) and drop
// duplicates (within the batch and against the store), reject facts of
// another account (ErrWrongAccount) or at or below their author's pruned
// floor (ErrPruned); check the remaining signatures (VerifyFacts: batched,
// in parallel, skipping facts already checked); then, under the write
// lock, call admit for each new fact in that order, place each admitted
// fact in its author's chain, among the pending facts, or as equivocation
// evidence, and write everything, heads and counters included, in one
// batch committed with fsync. Nothing is stored when the returned error is
// non-nil; admit may have seen facts that were then not stored, so a
// caller that folds state in admit must treat an Ingest error as fatal for
// that state.
//
// Deciding that a fact is new costs no read when its seq is above its
// author's version vector and the author has nothing pending at or below it
// (the usual case); otherwise one point read.
func (j *Journal) Ingest(facts []*Fact, admit Admit) (IngestResult, error) {
	var res IngestResult
	if err := j.enter(); err != nil {
		return res, err
	}
	defer j.exit()

	cand := make([]*Fact, 0, len(facts))
	for _, f := range facts {
		if f == nil {
			continue
		}
		if len(f.raw) == 0 || f.Seq == 0 {
			res.reject(f, fmt.Errorf("ingest fact of %s seq %d: %w: not made by Sign or DecodeFact", f.Author.Short(), f.Seq, ErrMalformed))
			continue
		}
		cand = append(cand, f)
	}
	// In causal order (the order of admission below) copies of one fact
	// are neighbours: drop all but the first.
	SortCausal(cand)
	kept := cand[:0]
	for _, f := range cand {
		if len(kept) > 0 && kept[len(kept)-1].id == f.id {
			res.Duplicates++
			continue
		}
		kept = append(kept, f)
	}
	cand = kept

	// Screen against the store and check signatures without the write lock.
	cand, gen, err := j.screen(cand, &res)
	if err != nil {
		return IngestResult{}, err
	}
	errs := VerifyFacts(cand)
	fresh := cand[:0]
	for i, f := range cand {
		if errs[i] != nil {
			res.reject(f, errs[i])
			continue
		}
		fresh = append(fresh, f)
	}
	if len(fresh) == 0 {
		return res, nil
	}

	j.wmu.Lock()
	defer j.wmu.Unlock()
	if j.gen != gen { // another write committed meanwhile: screen again
		if fresh, _, err = j.screen(fresh, &res); err != nil {
			return IngestResult{}, err
		}
	}
	account, adopt := j.account, false
	if account.IsZero() && len(fresh) > 0 {
		account, adopt = fresh[0].Account, true
		kept := fresh[:0]
		for _, f := range fresh {
			if f.Account != account {
				res.reject(f, fmt.Errorf("ingest fact %s: %w (account %s, store adopting %s)", f.id, ErrWrongAccount, f.Account, account))
				continue
			}
			kept = append(kept, f)
		}
		fresh = kept
	}

	admitted := make([]*Fact, 0, len(fresh))
	for _, f := range fresh {
		if admit != nil {
			if err := admit(f); err != nil {
				res.reject(f, fmt.Errorf("%w: fact %s: %w", ErrNotAdmitted, f.id, err))
				continue
			}
		}
		admitted = append(admitted, f)
	}
	if len(admitted) == 0 {
		return res, nil
	}

	w := &ingestWrite{j: j, batch: j.kv.NewBatch(), heads: make(map[DeviceID]authorHead), stats: j.stats}
	defer w.batch.Close()
	if err := w.place(admitted); err != nil {
		return IngestResult{}, err
	}
	for _, f := range admitted {
		w.stats.Facts++
		w.stats.Bytes += uint64(len(f.raw))
	}
	if err := w.batch.Set(tagKey(tagCounters), encodeCounters(w.stats)); err != nil {
		return IngestResult{}, fmt.Errorf("ingest: %w", err)
	}
	if adopt {
		if err := w.batch.Set(tagKey(tagAccount), account[:]); err != nil {
			return IngestResult{}, fmt.Errorf("ingest: %w", err)
		}
	}
	if err := w.batch.Commit(true); err != nil {
		return IngestResult{}, fmt.Errorf("ingest %d facts: commit: %w", len(admitted), err)
	}

	j.mu.Lock()
	for a, h := range w.heads {
		j.heads[a] = h
	}
	j.stats = w.stats
	if adopt {
		j.account = account
	}
	j.gen++
	j.mu.Unlock()

	res.Added = admitted
	res.Pending = w.pending
	res.Evidence = w.evidence
	res.Chained = w.chained
	if len(w.swaps) > 0 {
		authors, err := j.applySwaps(w.swaps)
		if err != nil {
			return res, fmt.Errorf("ingest: settle equivocation: %w", err)
		}
		res.Rechained = authors
	}
	return res, nil
}

func (r *IngestResult) reject(f *Fact, err error) {
	r.Rejected = append(r.Rejected, Rejection{ID: f.id, Author: f.Author, Seq: f.Seq, Err: err})
}

// screen drops the facts already held (counted as duplicates) and rejects
// those of another account or below a pruned floor. It returns the new
// facts, in their input order, and the commit generation it saw.
func (j *Journal) screen(fs []*Fact, res *IngestResult) ([]*Fact, uint64, error) {
	j.mu.RLock()
	defer j.mu.RUnlock()
	out := fs[:0]
	for _, f := range fs {
		if !j.account.IsZero() && f.Account != j.account {
			res.reject(f, fmt.Errorf("ingest fact %s: %w (account %s, store %s)", f.id, ErrWrongAccount, f.Account, j.account))
			continue
		}
		h := j.heads[f.Author]
		if f.Seq <= h.pruned {
			res.reject(f, fmt.Errorf("ingest fact %s of %s seq %d: %w (to %d)", f.id, f.Author.Short(), f.Seq, ErrPruned, h.pruned))
			continue
		}
		// A held fact of this author is in the chain (seq ≤ h.seq), pending
		// (seq ≥ h.pendLow), or evidence at a seq of either kind.
		if f.Seq <= h.seq || (h.pending > 0 && f.Seq >= h.pendLow) {
			_, ok, err := j.kv.Get(locatorKey(f.id))
			if err != nil {
				return nil, 0, fmt.Errorf("ingest: look up fact %s: %w", f.id, err)
			}
			if ok {
				res.Duplicates++
				continue
			}
		}
		out = append(out, f)
	}
	return out, j.gen, nil
}

// ingestWrite places admitted facts and collects the batch.
type ingestWrite struct {
	j        *Journal
	batch    KVBatch
	heads    map[DeviceID]authorHead // touched authors, new values
	stats    Stats
	pending  int // of the admitted facts, still pending at the end
	evidence int
	kbuf     []byte // scratch key and values: the batch copies them
	vbuf     []byte
	lbuf     []byte
	chained  []*Fact
	swaps    []swap // evidence that takes its slot after the commit
}

// swap is a conflicting fact with a lower id than the one holding its slot.
type swap struct {
	f    *Fact
	kept FactID
}

// setLocator writes the locator of a new fact.
func (w *ingestWrite) setLocator(id FactID, a DeviceID, seq uint64, where byte) error {
	w.kbuf = appendLocatorKey(w.kbuf[:0], id)
	w.lbuf = appendLocator(w.lbuf[:0], a, seq, where)
	return w.batch.Set(w.kbuf, w.lbuf)
}

// setSeq writes the record of tag at (a, seq): the parts concatenated.
func (w *ingestWrite) setSeq(tag byte, a DeviceID, seq uint64, parts ...[]byte) error {
	w.kbuf = appendSeqKey(w.kbuf[:0], tag, a, seq)
	w.vbuf = w.vbuf[:0]
	for _, p := range parts {
		w.vbuf = append(w.vbuf, p...)
	}
	return w.batch.Set(w.kbuf, w.vbuf)
}

// placeState is the per-author state while placing one batch.
type placeState struct {
	a       DeviceID
	h       authorHead
	run     []FactID // chained in this batch: seqs base+1, base+2, …
	base    uint64
	pendNew map[uint64]*Fact // made pending in this batch, still pending
}

func (w *ingestWrite) place(admitted []*Fact) error {
	byAuthor := make(map[DeviceID][]*Fact)
	var order []DeviceID
	for _, f := range admitted {
		if _, ok := byAuthor[f.Author]; !ok {
			order = append(order, f.Author)
		}
		byAuthor[f.Author] = append(byAuthor[f.Author], f)
	}
	for _, a := range order {
		fs := byAuthor[a]
		// By seq; at one seq the lowest id first, so it takes the slot.
		slices.SortFunc(fs, func(x, y *Fact) int {
			if x.Seq != y.Seq {
				return cmp.Compare(x.Seq, y.Seq)
			}
			return bytes.Compare(x.id[:], y.id[:])
		})
		st := &placeState{a: a, h: w.j.heads[a], run: make([]FactID, 0, len(fs))}
		if st.h.seq == 0 && st.h.hash.IsZero() {
			st.h.hash = ChainGenesis(a)
		}
		for _, f := range fs {
			if err := w.placeOne(st, f); err != nil {
				return fmt.Errorf("ingest fact %s: %w", f.id, err)
			}
		}
		w.pending += len(st.pendNew)
		w.heads[a] = st.h
		if err := w.batch.Set(authorKey(tagHead, a), st.h.encode()); err != nil {
			return err
		}
	}
	return nil
}

func (w *ingestWrite) placeOne(st *placeState, f *Fact) error {
	s := f.Seq
	if s <= st.h.seq { // the chain already holds seq s: evidence
		var kept FactID
		if len(st.run) > 0 && s > st.base {
			kept = st.run[s-st.base-1]
		} else {
			v, found, err := w.j.kv.Get(seqKey(tagChain, st.a, s))
			if err != nil {
				return err
			}
			if !found || len(v) < 64 {
				return fmt.Errorf("chain of %s at %d: %w", st.a.Short(), s, errCorrupt)
			}
			copy(kept[:], v[32:64])
		}
		return w.addEvidence(st, f, kept)
	}
	if pf, ok := st.pendNew[s]; ok {
		if bytes.Compare(f.id[:], pf.id[:]) < 0 { // same batch: the lower id takes the slot now
			st.pendNew[s] = f
			v := make([]byte, 0, 32+len(f.raw))
			v = append(append(v, f.id[:]...), f.raw...)
			if err := w.batch.Set(seqKey(tagPending, st.a, s), v); err != nil {
				return err
			}
			if err := w.setLocator(f.id, st.a, s, whereChain); err != nil {
				return err
			}
			return w.addEvidence(st, pf, f.id)
		}
		return w.addEvidence(st, f, pf.id)
	}
	if st.h.pending > 0 && s >= st.h.pendLow {
		v, found, err := w.j.kv.Get(seqKey(tagPending, st.a, s))
		if err != nil {
			return err
		}
		if found {
			if len(v) < 32 {
				return fmt.Errorf("pending of %s at %d: %w", st.a.Short(), s, errCorrupt)
			}
			var kept FactID
			copy(kept[:], v[:32])
			return w.addEvidence(st, f, kept)
		}
	}
	if err := w.setLocator(f.id, st.a, s, whereChain); err != nil {
		return err
	}
	if s == st.h.seq+1 {
		if err := w.chain(st, f.id, f.raw, f); err != nil {
			return err
		}
		return w.drain(st)
	}
	// Ahead of a gap: pending.
	if err := w.setSeq(tagPending, st.a, s, f.id[:], f.raw); err != nil {
		return err
	}
	if st.pendNew == nil {
		st.pendNew = make(map[uint64]*Fact)
	}
	st.pendNew[s] = f
	st.h.pending++
	if st.h.pendLow == 0 || s < st.h.pendLow {
		st.h.pendLow = s
	}
	w.stats.Pending++
	return nil
}

func (w *ingestWrite) addEvidence(st *placeState, f *Fact, kept FactID) error {
	if bytes.Compare(f.id[:], kept[:]) < 0 { // settled after the commit (applySwaps)
		w.swaps = append(w.swaps, swap{f: f, kept: kept})
	}
	w.vbuf = append(append(w.vbuf[:0], kept[:]...), f.raw...)
	if err := w.batch.Set(evidenceKey(st.a, f.Seq, f.id), w.vbuf); err != nil {
		return err
	}
	if err := w.setLocator(f.id, st.a, f.Seq, whereEvidence); err != nil {
		return err
	}
	w.stats.Equivocations++
	w.evidence++
	return nil
}

// chain appends the fact at st.h.seq+1 to the author's chain.
// f is the decoded fact when the caller has it (else it is decoded).
func (w *ingestWrite) chain(st *placeState, id FactID, raw []byte, f *Fact) error {
	if f == nil {
		var err error
		if f, err = decodeStored(raw); err != nil {
			return fmt.Errorf("chain of %s at %d: %w", st.a.Short(), st.h.seq+1, err)
		}
	}
	w.chained = append(w.chained, f)
	if len(st.run) == 0 {
		st.base = st.h.seq
	}
	st.h.hash = ChainNext(st.h.hash, id)
	st.h.seq++
	st.run = append(st.run, id)
	return w.setSeq(tagChain, st.a, st.h.seq, st.h.hash[:], id[:], raw)
}

// drain moves pending facts that now follow the chain head into the chain.
func (w *ingestWrite) drain(st *placeState) error {
	for st.h.pending > 0 && st.h.pendLow == st.h.seq+1 {
		next := st.h.seq + 1
		var id FactID
		var raw []byte
		var known *Fact
		if pf, ok := st.pendNew[next]; ok {
			id, raw, known = pf.id, pf.raw, pf
			delete(st.pendNew, next)
		} else {
			v, found, err := w.j.kv.Get(seqKey(tagPending, st.a, next))
			if err != nil {
				return err
			}
			if !found || len(v) < 32 {
				return fmt.Errorf("pending of %s at %d: %w", st.a.Short(), next, errCorrupt)
			}
			copy(id[:], v[:32])
			raw = v[32:]
		}
		if err := w.batch.Delete(seqKey(tagPending, st.a, next)); err != nil {
			return err
		}
		if err := w.chain(st, id, raw, known); err != nil {
			return err
		}
		st.h.pending--
		w.stats.Pending--
		st.h.pendLow = 0
		if st.h.pending > 0 {
			low, err := w.lowestPending(st, st.h.seq+1)
			if err != nil {
				return err
			}
			st.h.pendLow = low
		}
	}
	return nil
}

// lowestPending finds the lowest pending seq ≥ from, among the facts made
// pending in this batch and those in the KV.
func (w *ingestWrite) lowestPending(st *placeState, from uint64) (uint64, error) {
	var low uint64
	for s := range st.pendNew {
		if s >= from && (low == 0 || s < low) {
			low = s
		}
	}
	lo, hi := seqRange(tagPending, st.a, from, ^uint64(0))
	err := w.j.kv.Scan(lo, hi, func(k, _ []byte) error {
		if _, s := keySeq(k); low == 0 || s < low {
			low = s
		}
		return errStopScan
	})
	if err != nil && err != errStopScan {
		return 0, err
	}
	if low == 0 {
		return 0, fmt.Errorf("pending of %s above %d: %w", st.a.Short(), from, errCorrupt)
	}
	return low, nil
}

var errStopScan = errors.New("stop scan")
