package crdt

import (
	"bytes"
	"errors"
	"fmt"
	"sync"
)

// Journal is the journal Store, written once over an ordered KV (DESIGN §3):
// a grow-only set of facts keyed by id, indexed by (author, seq), with
// per-author hash chains, a version vector, facts held ahead of a gap
// (pending) and equivocation evidence. NewMemStore runs it over MemKV;
// crdt/pebblestore runs it over Pebble. The key layout is documented at
// JournalPrefix.
//
// Memory is O(authors), not O(facts): per author the journal keeps its head
// (seq, chain hash, pruned floor, pending count) in memory and in the KV,
// updated in the same batch as the facts; the facts themselves live only in
// the KV.
//
// Concurrency: every method is safe for concurrent use. Ingest checks
// signatures without holding the write lock, so two Ingest calls overlap
// their verification with each other's writes; writes (Ingest's admit and
// commit phase, Prune) are serialised. Admit callbacks run under the write
// lock: they may read the store but must not call Ingest or Prune. No
// callback may call Close (it waits for the calls in progress).
type Journal struct {
	kv KV

	wmu sync.Mutex // serialises writes: Ingest's commit phase, Prune

	mu      sync.RWMutex // guards the fields below; held briefly, never across callbacks
	account AccountID
	heads   map[DeviceID]authorHead
	stats   Stats
	gen     uint64 // bumped by every commit

	gmu      sync.Mutex // the close gate
	inflight int
	closing  bool
	drained  chan struct{}
}

var _ Store = (*Journal)(nil)

// NewMemStore returns an empty journal in memory. A zero account means:
// adopt the account of the first fact ingested.
func NewMemStore(account AccountID) *Journal {
	j, err := OpenJournal(NewMemKV(), account)
	if err != nil {
		panic(fmt.Sprintf("open memory journal: %v", err)) // an empty MemKV cannot fail
	}
	return j
}

// OpenJournal opens the journal held in kv, or starts one. A zero account
// means: keep the stored account, or adopt (and persist) the account of the
// first fact ingested. A non-zero account must match the stored one, else
// ErrWrongAccount.
func OpenJournal(kv KV, account AccountID) (*Journal, error) {
	j := &Journal{kv: kv, heads: make(map[DeviceID]authorHead), drained: make(chan struct{})}
	v, ok, err := kv.Get(tagKey(tagAccount))
	if err != nil {
		return nil, fmt.Errorf("open journal: read account: %w", err)
	}
	var stored AccountID
	if ok {
		if len(v) != len(stored) {
			return nil, fmt.Errorf("open journal: account of %d bytes: %w", len(v), errCorrupt)
		}
		copy(stored[:], v)
	}
	switch {
	case ok && !account.IsZero() && stored != account:
		return nil, fmt.Errorf("open journal of account %s as %s: %w", stored, account, ErrWrongAccount)
	case ok:
		j.account = stored
	case !account.IsZero():
		b := kv.NewBatch()
		defer b.Close()
		if err := b.Set(tagKey(tagAccount), account[:]); err != nil {
			return nil, fmt.Errorf("open journal: %w", err)
		}
		if err := b.Commit(true); err != nil {
			return nil, fmt.Errorf("open journal: write account: %w", err)
		}
		j.account = account
	}
	if v, ok, err := kv.Get(tagKey(tagCounters)); err != nil {
		return nil, fmt.Errorf("open journal: read counters: %w", err)
	} else if ok {
		if j.stats, err = decodeCounters(v); err != nil {
			return nil, fmt.Errorf("open journal: %w", err)
		}
	}
	hp := tagKey(tagHead)
	err = kv.Scan(hp, prefixEnd(hp), func(k, v []byte) error {
		if len(k) != 2+32 {
			return fmt.Errorf("head key of %d bytes: %w", len(k), errCorrupt)
		}
		h, err := decodeHead(v)
		if err != nil {
			return err
		}
		var a DeviceID
		copy(a[:], k[2:])
		j.heads[a] = h
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("open journal: read heads: %w", err)
	}
	if err := j.settleEvidence(); err != nil {
		return nil, fmt.Errorf("open journal: settle equivocation: %w", err)
	}
	return j, nil
}

// KV returns the key-value store under the journal.
func (j *Journal) KV() KV { return j.kv }

// enter admits a call unless the journal is closing; exit must follow.
func (j *Journal) enter() error {
	j.gmu.Lock()
	defer j.gmu.Unlock()
	if j.closing {
		return ErrClosed
	}
	j.inflight++
	return nil
}

func (j *Journal) exit() {
	j.gmu.Lock()
	defer j.gmu.Unlock()
	j.inflight--
	if j.closing && j.inflight == 0 {
		close(j.drained)
	}
}

// Close waits for calls in progress, then closes the KV. Calls made while
// closing, or after, return ErrClosed.
func (j *Journal) Close() error {
	j.gmu.Lock()
	if j.closing {
		j.gmu.Unlock()
		return nil
	}
	j.closing = true
	if j.inflight == 0 {
		close(j.drained)
	}
	j.gmu.Unlock()
	<-j.drained
	j.wmu.Lock()
	defer j.wmu.Unlock()
	return j.kv.Close()
}

// Account implements Store.
func (j *Journal) Account() AccountID {
	j.mu.RLock()
	defer j.mu.RUnlock()
	return j.account
}

func (j *Journal) head(a DeviceID) authorHead {
	j.mu.RLock()
	defer j.mu.RUnlock()
	return j.heads[a]
}

// VersionVector implements Store.
func (j *Journal) VersionVector() VersionVector {
	j.mu.RLock()
	defer j.mu.RUnlock()
	v := make(VersionVector, len(j.heads))
	for a, h := range j.heads {
		if h.seq > 0 {
			v[a] = h.seq
		}
	}
	return v
}

// PrunedTo implements Store.
func (j *Journal) PrunedTo() VersionVector {
	j.mu.RLock()
	defer j.mu.RUnlock()
	v := make(VersionVector)
	for a, h := range j.heads {
		if h.pruned > 0 {
			v[a] = h.pruned
		}
	}
	return v
}

// Stats implements Store.
func (j *Journal) Stats() Stats {
	j.mu.RLock()
	defer j.mu.RUnlock()
	return j.stats
}

// decodeStored decodes fact bytes read back from the KV. They were checked
// when ingested, so the fact is marked verified.
//
// Stored bytes were canonical and verified when ingested (and Pebble
// checksums its blocks), so they are parsed without DecodeFact's
// re-encoding and body checks, which would double the cost of reading the
// journal (StateAt folds every fact under a frontier).
func decodeStored(raw []byte) (*Fact, error) {
	if f, ok := parseEnvelope(raw); ok {
		f.parsed.trust(f)
		f.markVerified()
		return f, nil
	}
	var w wireFact
	if err := decMode.Unmarshal(raw, &w); err != nil || w.V != FormatVersion {
		return nil, fmt.Errorf("stored fact: %w: %v", errCorrupt, err)
	}
	f := &Fact{Account: w.Account, Author: w.Author, Seq: w.Seq, Epoch: w.Epoch, Lamport: w.Lamport,
		Kind: w.Kind, Body: w.Body, Sig: w.Sig}
	f.raw = bytes.Clone(raw)
	f.id = FactIDOf(f.raw)
	f.markVerified()
	return f, nil
}

// Has implements Store.
func (j *Journal) Has(id FactID) (bool, error) {
	if err := j.enter(); err != nil {
		return false, err
	}
	defer j.exit()
	_, ok, err := j.kv.Get(locatorKey(id))
	if err != nil {
		return false, fmt.Errorf("has fact %s: %w", id, err)
	}
	return ok, nil
}

// Get implements Store.
func (j *Journal) Get(id FactID) (*Fact, error) {
	if err := j.enter(); err != nil {
		return nil, err
	}
	defer j.exit()
	loc, ok, err := j.kv.Get(locatorKey(id))
	if err != nil {
		return nil, fmt.Errorf("get fact %s: %w", id, err)
	}
	if !ok {
		return nil, fmt.Errorf("get fact %s: %w", id, ErrNotFound)
	}
	a, seq, where, err := decodeLocator(loc)
	if err != nil {
		return nil, fmt.Errorf("get fact %s: %w", id, err)
	}
	if where == whereEvidence {
		v, ok, err := j.kv.Get(evidenceKey(a, seq, id))
		if err != nil {
			return nil, fmt.Errorf("get fact %s: %w", id, err)
		}
		if !ok || len(v) < 32 {
			return nil, fmt.Errorf("get fact %s: %w", id, ErrNotFound)
		}
		return decodeStored(v[32:])
	}
	// A chain-or-pending fact: look in the chain, then among pending facts,
	// then in the chain again in case it moved there meanwhile.
	for _, tag := range [...]byte{tagChain, tagPending, tagChain} {
		v, ok, err := j.kv.Get(seqKey(tag, a, seq))
		if err != nil {
			return nil, fmt.Errorf("get fact %s: %w", id, err)
		}
		off := 0
		if tag == tagChain {
			off = 32
		}
		if ok && len(v) >= off+32 && bytes.Equal(v[off:off+32], id[:]) {
			return decodeStored(v[off+32:])
		}
	}
	return nil, fmt.Errorf("get fact %s: %w", id, ErrNotFound)
}

// BySeq implements Store.
func (j *Journal) BySeq(author DeviceID, seq uint64) (*Fact, error) {
	if err := j.enter(); err != nil {
		return nil, err
	}
	defer j.exit()
	h := j.head(author)
	if seq <= h.pruned {
		return nil, fmt.Errorf("fact of %s seq %d: %w (to %d)", author.Short(), seq, ErrPruned, h.pruned)
	}
	v, ok, err := j.kv.Get(seqKey(tagChain, author, seq))
	if err != nil {
		return nil, fmt.Errorf("fact of %s seq %d: %w", author.Short(), seq, err)
	}
	if !ok || len(v) < 64 {
		if h := j.head(author); seq <= h.pruned {
			return nil, fmt.Errorf("fact of %s seq %d: %w (to %d)", author.Short(), seq, ErrPruned, h.pruned)
		}
		return nil, fmt.Errorf("fact of %s seq %d: %w", author.Short(), seq, ErrNotFound)
	}
	return decodeStored(v[64:])
}

// Range implements Store.
func (j *Journal) Range(author DeviceID, from, to uint64, fn func(*Fact) error) error {
	if err := j.enter(); err != nil {
		return err
	}
	defer j.exit()
	if from == 0 {
		from = 1
	}
	if from > to {
		return nil
	}
	pruned := func() error {
		if h := j.head(author); from <= h.pruned {
			return fmt.Errorf("range of %s from %d: %w (to %d)", author.Short(), from, ErrPruned, h.pruned)
		}
		return nil
	}
	if err := pruned(); err != nil {
		return err
	}
	lo, hi := seqRange(tagChain, author, from, to)
	next := from
	err := j.kv.Scan(lo, hi, func(k, v []byte) error {
		if _, seq := keySeq(k); seq != next || len(v) < 64 {
			return errRangeGap
		}
		next++
		f, err := decodeStored(v[64:])
		if err != nil {
			return err
		}
		return fn(f)
	})
	if err == errRangeGap {
		if perr := pruned(); perr != nil {
			return perr
		}
		return fmt.Errorf("range of %s at %d: %w", author.Short(), next, errCorrupt)
	}
	return err
}

var errRangeGap = errors.New("gap in chain range")

// All implements Store: chain facts, then pending facts, then evidence.
func (j *Journal) All(fn func(*Fact) error) error {
	if err := j.enter(); err != nil {
		return err
	}
	defer j.exit()
	for _, t := range [...]struct {
		tag byte
		off int
	}{{tagChain, 64}, {tagPending, 32}, {tagEvidence, 32}} {
		p := tagKey(t.tag)
		err := j.kv.Scan(p, prefixEnd(p), func(_, v []byte) error {
			if len(v) < t.off {
				return errCorrupt
			}
			f, err := decodeStored(v[t.off:])
			if err != nil {
				return err
			}
			return fn(f)
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// Evidence implements Store, ordered by author and seq.
func (j *Journal) Evidence() ([]Equivocation, error) {
	if err := j.enter(); err != nil {
		return nil, err
	}
	defer j.exit()
	var out []Equivocation
	p := tagKey(tagEvidence)
	err := j.kv.Scan(p, prefixEnd(p), func(k, v []byte) error {
		r, err := decodeEvidence(k, v)
		if err != nil {
			return err
		}
		out = append(out, Equivocation{Author: r.author, Seq: r.seq, Conflict: r.conflict, Kept: r.kept})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list evidence: %w", err)
	}
	return out, nil
}

// ChainHash implements Store: h(author, seq) for pruned floor ≤ seq ≤
// VersionVector()[author], and h(author, 0) always.
func (j *Journal) ChainHash(author DeviceID, seq uint64) (Hash, error) {
	if err := j.enter(); err != nil {
		return Hash{}, err
	}
	defer j.exit()
	return j.chainHash(author, seq, j.head(author))
}

func (j *Journal) chainHash(a DeviceID, seq uint64, h authorHead) (Hash, error) {
	switch {
	case seq == 0:
		return ChainGenesis(a), nil
	case seq > h.seq:
		return Hash{}, fmt.Errorf("chain hash of %s at %d: %w (held to %d)", a.Short(), seq, ErrUnknownPrefix, h.seq)
	case seq == h.seq:
		return h.hash, nil
	case seq < h.pruned:
		return Hash{}, fmt.Errorf("chain hash of %s at %d: %w (to %d)", a.Short(), seq, ErrPruned, h.pruned)
	case seq == h.pruned:
		return h.prunedHash, nil
	}
	v, ok, err := j.kv.Get(seqKey(tagChain, a, seq))
	if err != nil {
		return Hash{}, fmt.Errorf("chain hash of %s at %d: %w", a.Short(), seq, err)
	}
	if !ok || len(v) < 32 {
		if now := j.head(a); seq <= now.pruned {
			return j.chainHash(a, seq, now)
		}
		return Hash{}, fmt.Errorf("chain hash of %s at %d: %w", a.Short(), seq, errCorrupt)
	}
	var out Hash
	copy(out[:], v)
	return out, nil
}

// PrefixHash implements Store: one chain lookup per author of v (none when
// v[a] is the author's head or pruned floor).
func (j *Journal) PrefixHash(v VersionVector) (Hash, error) {
	if err := j.enter(); err != nil {
		return Hash{}, err
	}
	defer j.exit()
	heads := make(map[DeviceID]authorHead, len(v))
	j.mu.RLock()
	for a, s := range v {
		if s > 0 {
			heads[a] = j.heads[a]
		}
	}
	j.mu.RUnlock()
	hashes := make(map[DeviceID]Hash, len(heads))
	for a, h := range heads {
		hh, err := j.chainHash(a, v[a], h)
		if err != nil {
			return Hash{}, fmt.Errorf("prefix hash: %w", err)
		}
		hashes[a] = hh
	}
	return PrefixHash(v, hashes), nil
}
