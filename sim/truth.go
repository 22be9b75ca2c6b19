package sim

import (
	"crypto/sha256"
	"errors"
	"fmt"

	"aura/crdt"
	"aura/threshold"
)

// truth is the simulator's ground truth: every fact any device ever signed
// (honest or not) and every application write a replica acknowledged.
type truth struct {
	s        *sim
	all      map[crdt.FactID]*crdt.Fact
	versions map[crdt.DeviceID]map[uint64][]*crdt.Fact
	honest   []*crdt.Fact // facts of honest authors, in the order first seen
	writes   map[string]string
	open     map[[16]byte]int64 // snapshot rounds open anywhere → their deadline (proposer's clock)
	closed   map[[16]byte]bool
	maybe    map[string]bool // keys whose last write may or may not have happened
	keys     []string        // acknowledged keys, in the order first acknowledged
	cache    []*frontierState
	verified map[[32]byte]bool

	blobs     map[string]*blobTruth // string(binary CID) → the workload's blob
	blobOrder []string              // their keys, in the order first stored

	ledger writeLedger // acknowledged writes, for exactly-once (exactly.go)
}

// frontierState is a reduction of exactly a frontier, kept to extend.
type frontierState struct {
	frontier crdt.VersionVector
	choice   map[authorSeq]crdt.FactID // branches taken at equivocated seqs
	state    *crdt.State
}

type authorSeq struct {
	a   crdt.DeviceID
	seq uint64
}

func newTruth(s *sim) *truth {
	return &truth{s: s, all: map[crdt.FactID]*crdt.Fact{}, versions: map[crdt.DeviceID]map[uint64][]*crdt.Fact{},
		writes: map[string]string{}, maybe: map[string]bool{}, open: map[[16]byte]int64{}, closed: map[[16]byte]bool{}, verified: map[[32]byte]bool{},
		blobs: map[string]*blobTruth{}, ledger: newWriteLedger()}
}

// add records a fact (it is signed: its author says who made it).
func (t *truth) add(f *crdt.Fact) {
	id := f.ID()
	if t.all[id] != nil {
		return
	}
	t.all[id] = f
	t.blobFact(f)
	vs := t.versions[f.Author]
	if vs == nil {
		vs = map[uint64][]*crdt.Fact{}
		t.versions[f.Author] = vs
	}
	vs[f.Seq] = append(vs[f.Seq], f)
	t.trackRound(f)
	author := t.s.byID[f.Author]
	if author == nil || !author.honest() {
		return
	}
	t.honest = append(t.honest, f)
	if len(vs[f.Seq]) > 1 {
		t.s.violate("honest-equivocation", author.name, "two different facts at seq %d: %s (%s) and %s (%s)",
			f.Seq, vs[f.Seq][0].ID().Hex()[:12], vs[f.Seq][0].Kind, id.Hex()[:12], f.Kind)
	}
}

// ack records an application write the replica acknowledged.
func (t *truth) ack(key, value string) {
	if _, ok := t.writes[key]; !ok {
		t.keys = append(t.keys, key)
	}
	t.writes[key] = value
	delete(t.maybe, key)
}

// uncertain records a write whose device crashed inside the call: until
// the next acknowledged write of the key, its value may be either.
func (t *truth) uncertain(key string) { t.maybe[key] = true }

// verify is the ground truth's threshold verifier (results cached).
func (t *truth) verify(groupKey, msg, sig []byte) error {
	h := sha256.New()
	for _, b := range [][]byte{groupKey, msg, sig} {
		fmt.Fprintf(h, "%d:", len(b))
		h.Write(b)
	}
	var k [32]byte
	h.Sum(k[:0])
	if ok, seen := t.verified[k]; seen {
		if ok {
			return nil
		}
		return threshold.ErrBadGroupSignature
	}
	err := threshold.VerifyGroup(groupKey, msg, sig)
	t.verified[k] = err == nil
	return err
}

var errAmbiguous = errors.New("too many equivocations below the frontier to tell the branch")

// chain picks, for author a, the facts 1..to whose hash chain ends at
// head: the one version at each seq, and at equivocated seqs the branch
// that matches.
func (t *truth) chain(a crdt.DeviceID, to uint64, head crdt.Hash, hasHead bool) ([]*crdt.Fact, error) {
	vs := t.versions[a]
	out := make([]*crdt.Fact, to)
	var forks []uint64
	for s := uint64(1); s <= to; s++ {
		v := vs[s]
		if len(v) == 0 {
			return nil, fmt.Errorf("frontier names %s seq %d, which no device ever signed", t.s.nameOf(a), s)
		}
		out[s-1] = v[0]
		if len(v) > 1 {
			forks = append(forks, s)
		}
	}
	hashOf := func() crdt.Hash {
		h := crdt.ChainGenesis(a)
		for _, f := range out {
			h = crdt.ChainNext(h, f.ID())
		}
		return h
	}
	if len(forks) == 0 || !hasHead {
		if hasHead && hashOf() != head {
			return nil, fmt.Errorf("the chain head of %s at %d matches no chain ever signed", t.s.nameOf(a), to)
		}
		return out, nil
	}
	if len(forks) > 12 {
		return nil, errAmbiguous
	}
	// Try every branch combination (at most 2^12, in practice a few).
	var try func(i int) bool
	try = func(i int) bool {
		if i == len(forks) {
			return hashOf() == head
		}
		for _, f := range vs[forks[i]] {
			out[forks[i]-1] = f
			if try(i + 1) {
				return true
			}
		}
		return false
	}
	if !try(0) {
		return nil, fmt.Errorf("the chain head of %s at %d matches no branch ever signed", t.s.nameOf(a), to)
	}
	return out, nil
}

// stateAt reduces exactly the facts under frontier (the branches that heads
// name), from scratch or extending a cached reduction of a lower frontier.
// It returns the state and the number of facts under the frontier.
func (t *truth) stateAt(frontier crdt.VersionVector, heads map[crdt.DeviceID]crdt.Hash) (*crdt.State, int, error) {
	chains := map[crdt.DeviceID][]*crdt.Fact{}
	choice := map[authorSeq]crdt.FactID{}
	total := 0
	for _, a := range frontier.Authors() {
		h, ok := heads[a]
		c, err := t.chain(a, frontier[a], h, ok)
		if err != nil {
			return nil, 0, err
		}
		chains[a] = c
		total += len(c)
		for s, f := range c {
			if len(t.versions[a][uint64(s+1)]) > 1 {
				choice[authorSeq{a, uint64(s + 1)}] = f.ID()
			}
		}
	}
	var base *frontierState
	for _, c := range t.cache {
		if !frontier.Covers(c.frontier) || (base != nil && c.frontier.Total() <= base.frontier.Total()) {
			continue
		}
		agree := true
		for k, id := range choice {
			if k.seq > c.frontier[k.a] {
				continue
			}
			want, ok := c.choice[k]
			if !ok {
				want = t.versions[k.a][k.seq][0].ID()
			}
			if want != id {
				agree = false
				break
			}
		}
		if agree {
			base = c
		}
	}
	var st *crdt.State
	from := crdt.VersionVector{}
	if base != nil {
		st = base.state.Clone()
		from = base.frontier
	} else {
		st = crdt.NewState(t.s.account, t.verify)
	}
	st.SetVerifier(t.verify)
	for _, a := range frontier.Authors() {
		for _, f := range chains[a][from[a]:] {
			_ = st.Apply(f)
		}
	}
	keep := st.Clone()
	keep.SetVerifier(t.verify)
	t.cache = append(t.cache, &frontierState{frontier: frontier.Clone(), choice: choice, state: keep})
	if len(t.cache) > 16 {
		t.cache = t.cache[1:]
	}
	return st, total, nil
}

// trackRound keeps the set of snapshot rounds open anywhere (the
// simulator's global view, for Workload.SerialProposals).
func (t *truth) trackRound(f *crdt.Fact) {
	switch f.Kind {
	case crdt.KindSnapshotProposed, crdt.KindSnapshotCompleted, crdt.KindSnapshotAbandoned:
	default:
		return
	}
	body, err := f.DecodeBody()
	if err != nil {
		return
	}
	switch b := body.(type) {
	case *crdt.SnapshotProposed:
		if _, done := t.closed[b.ProposalID]; !done {
			t.open[b.ProposalID] = int64(b.Deadline)
		}
	case *crdt.SnapshotCompleted:
		delete(t.open, b.ProposalID)
		t.closed[b.ProposalID] = true
	case *crdt.SnapshotAbandoned:
		delete(t.open, b.ProposalID)
		t.closed[b.ProposalID] = true
	}
}

// roundOpen reports whether some snapshot round is still running at now
// (a round past its deadline by more than slack counts as over).
func (t *truth) roundOpen(now, slack int64) bool {
	for _, deadline := range t.open {
		if now <= deadline+slack {
			return true
		}
	}
	return false
}
