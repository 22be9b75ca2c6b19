package maintenance

import (
	"bytes"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"

	"aura/crdt"
	"aura/threshold"
)

// round is what this replica knows of one snapshot proposal.
type round struct {
	id       [16]byte
	proposal crdt.SnapshotProposed
	seenAt   int64
	// verdict of this replica's own digest check: 0 not yet (frontier not
	// held), +1 match, -1 mismatch or refused.
	verdict   int
	voted     bool
	gated     string                 // the session gate's last refusal, reported once
	refused   map[crdt.DeviceID]bool // votes refused by the gate, reported once
	completed bool
	encoded   []byte // the state at the frontier, kept only by the proposer
	collector *threshold.Collector
	fed       map[crdt.DeviceID]bool // votes handed to the collector
	badNamed  map[crdt.DeviceID]bool
}

// baseRecord names the snapshot whose state the journal rests on.
type baseRecord struct {
	Proposal [16]byte
	Snapshot crdt.SnapshotV1
}

// fenceRecord is this device's open round.
type fenceRecord struct {
	Proposal [16]byte
	Deadline int64
	// Attempt counts the proposals of one operator request: 1, then one
	// more for every retry after the identity epoch moved (RetrySession).
	Attempt int
}

const (
	metaBase   = "base"
	metaFence  = "fence"
	metaBuffer = "buf/"
)

// StateAt reduces exactly the journal prefix that frontier names: the base
// snapshot state and the chain facts above it, up to the frontier.
func (r *Replica) StateAt(frontier crdt.VersionVector) (*crdt.State, error) {
	var st *crdt.State
	if r.baseSt != nil {
		st = r.baseSt.Clone()
	} else {
		st = crdt.NewState(r.state.Account, r.verifyGroup)
	}
	st.SetVerifier(r.verifyGroup)
	pruned := r.store.PrunedTo()
	held := r.store.VersionVector()
	for _, a := range frontier.Authors() {
		to := frontier[a]
		if to < pruned[a] {
			return nil, fmt.Errorf("state at frontier: author %s seq %d is below the collected prefix (%d): %w", a.Short(), to, pruned[a], ErrStaleProposal)
		}
		if to > held[a] {
			return nil, fmt.Errorf("state at frontier: author %s seq %d not held (have %d): %w", a.Short(), to, held[a], crdt.ErrUnknownPrefix)
		}
	}
	// In causal order: folded author by author, the facts of every author
	// sorted before the admin parked until its DeviceAdded, and each guard
	// change re-checked all of them.
	if err := crdt.RangeCausal(r.store, pruned, frontier, func(f *crdt.Fact) error { _ = st.Apply(f); return nil }); err != nil {
		return nil, fmt.Errorf("state at frontier: %w", err)
	}
	return st, nil
}

// encodedAt is the canonical encoding of StateAt(frontier), cached for the
// last frontier asked: a round computes it to vote, to complete and to
// collect.
//
// The live state is the fold of exactly the journal's chain (foldChain),
// so at the journal's own version vector it is the state at that frontier
// without refolding anything: the proposer's case. A voter holds the
// proposal fact beyond the frontier; captureProposed kept the live state's
// encoding from just before that fact was folded, when the journal held
// exactly the frontier (a quiet mesh). Anything else refolds (StateAt).
func (r *Replica) encodedAt(frontier crdt.VersionVector) ([]byte, error) {
	if r.cache.enc != nil && r.cache.frontier.Equal(frontier) && r.cache.pruned.Equal(r.store.PrunedTo()) {
		return r.cache.enc, nil
	}
	var enc []byte
	if frontier.Equal(r.store.VersionVector()) {
		enc = r.state.Encode()
		r.crossCheckFold(frontier, enc)
	} else {
		st, err := r.StateAt(frontier)
		if err != nil {
			return nil, err
		}
		enc = st.Encode()
	}
	r.cache.frontier, r.cache.pruned, r.cache.enc = frontier.Clone(), r.store.PrunedTo(), enc
	return enc, nil
}

// captureProposed runs just before the live state folds a chained
// SnapshotProposed f, folded being the chain the live state holds then: if
// that is the proposal's frontier, the live state's encoding is the state
// at the frontier, which the vote on f needs.
func (r *Replica) captureProposed(f *crdt.Fact, folded crdt.VersionVector) {
	body, err := f.DecodeBody()
	p, ok := body.(*crdt.SnapshotProposed)
	if err != nil || !ok || !p.Frontier.Equal(folded) {
		return
	}
	enc := r.state.Encode()
	r.crossCheckFold(p.Frontier, enc)
	r.cache.frontier, r.cache.pruned, r.cache.enc = p.Frontier.Clone(), r.store.PrunedTo(), enc
}

// checkFoldShortcuts, set by CheckFoldShortcuts (tests), makes every
// replica's use of the live state for a frontier refold the
// journal too and compare.
var checkFoldShortcuts atomic.Bool

// CheckFoldShortcuts turns on (or off), for every replica of the process,
// the cross-check of the live state against a refold of the journal
// wherever encodedAt takes the live state for the state at a frontier
// (Config.CheckFold does it for one replica). For tests: a mismatch
// panics, naming the frontier (it would mean the fold depends on order).
func CheckFoldShortcuts(on bool) { checkFoldShortcuts.Store(on) }

func (r *Replica) crossCheckFold(frontier crdt.VersionVector, enc []byte) {
	if !r.cfg.CheckFold && !checkFoldShortcuts.Load() {
		return
	}
	st, err := r.StateAt(frontier)
	if err != nil {
		panic(&FoldMismatch{Detail: fmt.Sprintf("refolding the journal at %v: %v", frontier, err)})
	}
	if again := st.Encode(); !bytes.Equal(again, enc) {
		live, _ := crdt.DecodeState(enc)
		panic(&FoldMismatch{Detail: fmt.Sprintf("the live state at %v (digest %s) differs from the journal's fold (digest %s): %s", frontier, crdt.DigestOf(enc), crdt.DigestOf(again), crdt.StateDiff(live, st))})
	}
}

// FoldMismatch is what the fold cross-check (Config.CheckFold) panics
// with: the simulator reports it as the fold-order invariant.
type FoldMismatch struct{ Detail string }

func (m *FoldMismatch) Error() string { return "maintenance: fold cross-check: " + m.Detail }

// heads returns the chain heads at frontier and their prefix hash.
func (r *Replica) heads(frontier crdt.VersionVector) (map[crdt.DeviceID]crdt.Hash, crdt.Hash, error) {
	heads := map[crdt.DeviceID]crdt.Hash{}
	for _, a := range frontier.Authors() {
		h, err := r.store.ChainHash(a, frontier[a])
		if err != nil {
			return nil, crdt.Hash{}, fmt.Errorf("chain head of %s at %d: %w", a.Short(), frontier[a], err)
		}
		heads[a] = h
	}
	return heads, crdt.PrefixHash(frontier, heads), nil
}

// Propose opens a snapshot round (DESIGN §5): fence up, frontier = this
// device's version vector, digest of exactly that prefix, SnapshotProposed
// published, and this device's own vote if it holds a share. The round runs
// under ScopeOf(state) (its TargetEpoch is the scope's identity epoch) and
// starts only when CheckSnapshotRound passes: a *ProtocolError names the
// participants lacking the required protocol, a *NotReadyError a device
// lacking readiness for an activated upgrade. Should the identity epoch
// move while it runs, the round aborts (SnapshotAbandoned, an
// EventSessionAborted) and this replica proposes again under the new
// scope, up to SessionRetries times.
func (r *Replica) Propose(now int64) (Output, error) { return r.propose(now, 1) }

func (r *Replica) propose(now int64, attempt int) (Output, error) {
	if r.state.Account.IsZero() {
		return Output{}, ErrNoAccount
	}
	if !r.resumed {
		r.resume(now)
	}
	if !r.state.Holds(r.device, crdt.CapSnapshotPropose, r.state.Epoch) {
		return Output{}, fmt.Errorf("propose snapshot: %w %q", ErrNotPermitted, crdt.CapSnapshotPropose)
	}
	if r.fence != nil {
		return Output{}, fmt.Errorf("propose snapshot: %w (%x)", ErrRoundOpen, r.fence.Proposal[:4])
	}
	if _, _, err := r.groupVerifier(); err != nil {
		return Output{}, fmt.Errorf("propose snapshot: %w", err)
	}
	if err := CheckSnapshotRound(r.state, ScopeOf(r.state), r.device); err != nil {
		return Output{}, fmt.Errorf("propose snapshot: %w", err)
	}
	frontier := r.store.VersionVector()
	if newest := r.state.NewestSnapshot(); newest != nil && (!frontier.Covers(newest.Snapshot.Frontier) || frontier.Equal(newest.Snapshot.Frontier)) {
		return Output{}, fmt.Errorf("propose snapshot: nothing new since the newest snapshot: %w", ErrStaleProposal)
	}
	id := r.proposalID(now)
	if other, ok := r.uncoveredVote(&crdt.SnapshotProposed{ProposalID: id, Frontier: frontier}); ok {
		return Output{}, fmt.Errorf("propose snapshot: this journal does not cover proposal %x this device voted for (sync first): %w", other[:4], ErrStaleProposal)
	}
	enc, err := r.encodedAt(frontier)
	if err != nil {
		return Output{}, fmt.Errorf("propose snapshot: %w", err)
	}
	_, prefix, err := r.heads(frontier)
	if err != nil {
		return Output{}, fmt.Errorf("propose snapshot: %w", err)
	}
	p := &crdt.SnapshotProposed{ProposalID: id, Proposer: r.device, TargetEpoch: r.state.Epoch, Frontier: frontier,
		StateDigest: crdt.DigestOf(enc), Deadline: uint64(now + r.cfg.SnapshotTimeout), PrefixHash: prefix}
	r.fence = &fenceRecord{Proposal: id, Deadline: now + r.cfg.SnapshotTimeout, Attempt: attempt}
	if err := r.saveFence(); err != nil {
		r.fence = nil
		return Output{}, err
	}
	out, err := r.write(p)
	if err != nil {
		r.fence = nil
		if derr := r.cfg.Meta.Delete(metaFence); derr != nil {
			err = errors.Join(err, fmt.Errorf("drop the fence record: %w", derr))
		}
		return Output{}, fmt.Errorf("propose snapshot: %w", err)
	}
	rd := r.roundFor(now, p)
	rd.verdict, rd.encoded = +1, enc
	detail := fmt.Sprintf("frontier=%d facts digest=%s", frontier.Total(), p.StateDigest.String()[:12])
	if attempt > 1 {
		detail += fmt.Sprintf(" retry=%d/%d epoch=%d", attempt-1, SessionRetries, p.TargetEpoch)
	}
	out.Events = append(out.Events, Event{Kind: EventProposed, Proposal: id, Device: r.device, Detail: detail})
	out.merge(r.progress(now, id))
	out.Proposed = id
	return out, nil
}

func (r *Replica) roundFor(now int64, p *crdt.SnapshotProposed) *round {
	rd := r.rounds[p.ProposalID]
	if rd == nil {
		rd = &round{id: p.ProposalID, proposal: *p, seenAt: now, fed: map[crdt.DeviceID]bool{}, badNamed: map[crdt.DeviceID]bool{},
			refused: map[crdt.DeviceID]bool{}}
		r.rounds[p.ProposalID] = rd
	}
	return rd
}

// scopeOf is the scope round rd runs under: its TargetEpoch.
func (r *Replica) scopeOf(rd *round) Scope {
	return Scope{Identity: rd.proposal.TargetEpoch, Snapshot: r.state.SnapshotEpoch}
}

// gate is the session check of a round on this replica's state
// (CheckSnapshotRound): the identity epoch still the round's, its
// participants running the required protocol, its proposer ready.
func (r *Replica) gate(rd *round) error {
	return CheckSnapshotRound(r.state, r.scopeOf(rd), rd.proposal.Proposer)
}

// readyToVote reports whether this device passes the readiness rule: a
// device lacking readiness for an activated upgrade takes part in no round
// (its vote would be refused); it says so once per round.
func (r *Replica) readyToVote(rd *round, out *Output) bool {
	err := UpgradeGate(r.state, []crdt.DeviceID{r.device})
	if err == nil {
		return true
	}
	if !rd.refused[r.device] {
		rd.refused[r.device] = true
		out.Events = append(out.Events, Event{Kind: EventRefused, Proposal: rd.id, Device: r.device, Err: err, Detail: "not voting"})
	}
	return false
}

// abortSession gives up this device's open round because its session
// check failed (err), and proposes again under the new scope when
// RetrySession says so (the identity epoch moved).
func (r *Replica) abortSession(now int64, err error) Output {
	attempt, id := max(r.fence.Attempt, 1), r.fence.Proposal
	out := r.abandon(now, err.Error())
	retry := RetrySession(err, attempt)
	detail := "not retried"
	if retry {
		detail = fmt.Sprintf("retrying under the new epoch (%d/%d)", attempt, SessionRetries)
	} else if errors.Is(err, ErrStaleEpoch) {
		detail = fmt.Sprintf("gave up after %d retries", SessionRetries)
	}
	out.Events = append(out.Events, Event{Kind: EventSessionAborted, Proposal: id, Device: r.device, Err: err, Detail: detail})
	if !retry {
		return out
	}
	o, perr := r.propose(now, attempt+1)
	if perr != nil {
		out.Events = append(out.Events, Event{Kind: EventSessionAborted, Device: r.device, Err: perr, Detail: "retry refused"})
		return out
	}
	out.merge(o)
	return out
}

// observe reacts to one fact newly stored.
func (r *Replica) observe(now int64, f *crdt.Fact) Output {
	switch f.Kind {
	case crdt.KindSnapshotProposed:
		b, err := f.DecodeBody()
		if err != nil {
			return Output{}
		}
		p := b.(*crdt.SnapshotProposed)
		if r.state.Completed[p.ProposalID] == nil {
			r.roundFor(now, p)
			return r.progress(now, p.ProposalID)
		}
		// Completed before its proposal reached this device: check the
		// votes the completion did not use, now that there is a message.
		var out Output
		ref := r.state.Proposals[p.ProposalID]
		voters := make([]crdt.DeviceID, 0, len(ref.Votes))
		for d := range ref.Votes {
			voters = append(voters, d)
		}
		sort.Slice(voters, func(i, j int) bool { return bytes.Compare(voters[i][:], voters[j][:]) < 0 })
		for _, d := range voters {
			v := ref.Votes[d]
			out.merge(r.checkLateVote(d, &v))
		}
		return out
	case crdt.KindSnapshotVote:
		b, err := f.DecodeBody()
		if err != nil {
			return Output{}
		}
		v := b.(*crdt.SnapshotVote)
		if _, ok := r.rounds[v.ProposalID]; ok {
			return r.progress(now, v.ProposalID)
		}
		return r.checkLateVote(f.Author, v)
	case crdt.KindSnapshotCompleted:
		b, err := f.DecodeBody()
		if err != nil {
			return Output{}
		}
		return r.onCompleted(now, b.(*crdt.SnapshotCompleted))
	}
	return Output{}
}

// progress moves one round forward: check the digest and vote once the
// frontier is held, then complete with M valid partials.
func (r *Replica) progress(now int64, id [16]byte) Output {
	rd := r.rounds[id]
	if rd == nil || rd.completed {
		return Output{}
	}
	var out Output
	if r.state.Completed[id] != nil {
		rd.completed = true
		delete(r.rounds, id)
		return out
	}
	if ref := r.state.Proposals[id]; ref != nil && ref.Abandoned {
		delete(r.rounds, id)
		return out
	}
	p := &rd.proposal
	mine := p.Proposer == r.device
	if !mine && now > r.lockExpiry(rd) {
		delete(r.rounds, id) // its proposer went quiet; its vote lock is off
		return out
	}
	ownOpen := mine && r.fence != nil && r.fence.Proposal == id
	if rd.verdict >= 0 && r.state.Epoch >= p.TargetEpoch {
		if err := r.gate(rd); err != nil {
			if ownOpen {
				out.merge(r.abortSession(now, err))
				return out
			}
			if errors.Is(err, ErrStaleEpoch) {
				rd.verdict = -1 // the epoch never moves back: this round is over here
			}
			if msg := err.Error(); msg != rd.gated {
				rd.gated = msg
				out.Events = append(out.Events, Event{Kind: EventRefused, Proposal: id, Device: p.Proposer, Err: err, Detail: "session gate"})
			}
			return out
		}
		rd.gated = ""
	}
	if rd.verdict == 0 {
		rd.verdict = r.judge(p, &out)
	}
	if rd.verdict > 0 && r.superseded(p) {
		// Another round completed meanwhile and this one's frontier does not
		// cover it: voting or completing now would fork the snapshot history.
		rd.verdict = -1
		out.Events = append(out.Events, Event{Kind: EventRefused, Proposal: id, Device: p.Proposer, Detail: "superseded by a completed snapshot"})
	}
	if ref := r.state.Proposals[id]; ref != nil && !rd.voted {
		_, rd.voted = ref.Votes[r.device] // a vote in the journal counts, also one cast before a restart
	}
	if rd.verdict > 0 && !rd.voted {
		if other, ok := r.uncoveredVote(p); ok {
			// The cover rule (doc.go): this device signed a round whose
			// frontier this one does not cover. That round may have
			// completed where this device cannot see it; a vote here could
			// complete a second, incomparable snapshot.
			rd.verdict = -1
			out.Events = append(out.Events, Event{Kind: EventRefused, Proposal: id, Device: p.Proposer,
				Detail: fmt.Sprintf("frontier does not cover proposal %x this device voted for", other[:4])})
		}
	}
	if rd.verdict > 0 && !rd.voted && r.share != nil && r.state.Holds(r.device, crdt.CapSnapshotVote, r.state.Epoch) && !r.lockedElsewhere(now, id) && r.readyToVote(rd, &out) {
		msg := crdt.SnapshotMessage(r.state.Account, id, p.TargetEpoch, p.Frontier, p.PrefixHash, p.StateDigest)
		partial, err := threshold.SignPartial(r.share, msg)
		if err == nil {
			o, err := r.write(&crdt.SnapshotVote{ProposalID: id, StateDigest: p.StateDigest, Partial: partial})
			if err == nil {
				rd.voted = true
				out.merge(o)
				out.Events = append(out.Events, Event{Kind: EventVoted, Proposal: id, Device: r.device})
			}
		}
	}
	// The proposer completes while its fence is up; anyone else only in a
	// window after the grace and before the round could have expired
	// anywhere. (That keeps late completions rare; it is not what keeps
	// snapshots comparable, which the cover rule does: clocks are skewed.)
	othersWindow := !mine && now >= rd.seenAt+r.cfg.CompleteGrace && now <= r.completeBy(rd)
	if rd.verdict > 0 && (ownOpen || othersWindow) {
		out.merge(r.tryComplete(now, rd))
	}
	return out
}

// lockedElsewhere reports whether this device voted for another round that
// is still open: a device votes for one open round at a time, so rounds
// do not duel. The lock is in memory and expires; safety does not rest on
// it but on the cover rule (uncoveredVote, doc.go).
func (r *Replica) lockedElsewhere(now int64, id [16]byte) bool {
	for oid, o := range r.rounds {
		if oid != id && o.voted && !o.completed && now <= r.lockExpiry(o) {
			if ref := r.state.Proposals[oid]; ref != nil && ref.Abandoned {
				continue
			}
			return true
		}
	}
	return false
}

// uncoveredVote returns a proposal other than p that this device voted for
// (its vote is in the journal, so the record survives crashes and
// restores) and whose frontier p's does not cover: the lowest such id.
// A vote is permanent and a round may complete unseen, so neither time
// nor an abandonment frees a voter from it; only frontiers that cover it.
func (r *Replica) uncoveredVote(p *crdt.SnapshotProposed) ([16]byte, bool) {
	var found [16]byte
	ok := false
	for oid, ref := range r.state.Proposals {
		if oid == p.ProposalID || ref.Stamp == (crdt.Stamp{}) {
			continue
		}
		if _, voted := ref.Votes[r.device]; !voted || p.Frontier.Covers(ref.Proposal.Frontier) {
			continue
		}
		if !ok || bytes.Compare(oid[:], found[:]) < 0 {
			found, ok = oid, true
		}
	}
	return found, ok
}

// superseded reports whether a completed snapshot other than p's exists
// whose frontier p's does not cover.
func (r *Replica) superseded(p *crdt.SnapshotProposed) bool {
	newest := r.state.NewestSnapshot()
	if newest != nil && newest.ProposalID != p.ProposalID && !p.Frontier.Covers(newest.Snapshot.Frontier) {
		return true
	}
	return r.base != nil && r.base.Proposal != p.ProposalID && !p.Frontier.Covers(r.base.Snapshot.Frontier)
}

// completeBy is the last moment a non-proposer may complete a round: its
// proposer's deadline (the proposer abandons then), and never later than a
// timeout after this device first saw it.
func (r *Replica) completeBy(rd *round) int64 {
	by := rd.seenAt + r.cfg.SnapshotTimeout
	if d := int64(rd.proposal.Deadline); d > 0 && d < by {
		by = d
	}
	return by
}

// lockExpiry is when a vote for a round stops holding this device back
// from voting for another: well after anyone may still complete it (a
// timeout of margin covers clock skew between devices).
func (r *Replica) lockExpiry(rd *round) int64 {
	return max(rd.seenAt, int64(rd.proposal.Deadline)) + 2*r.cfg.SnapshotTimeout
}

// resume rebuilds the open rounds from the state after a restart: votes
// this device already cast still lock it, from now on.
func (r *Replica) resume(now int64) {
	r.resumed = true
	for id, ref := range r.state.Proposals {
		if ref.Abandoned || r.state.Completed[id] != nil || ref.Stamp == (crdt.Stamp{}) {
			continue
		}
		rd := r.roundFor(now, &ref.Proposal)
		if _, ok := ref.Votes[r.device]; ok {
			rd.voted = true
		}
	}
}

// judge checks a proposal against this replica's own journal: +1 when the
// digest of exactly its frontier matches, -1 when it must get no vote, 0
// when the frontier is not held yet (sync first).
func (r *Replica) judge(p *crdt.SnapshotProposed, out *Output) int {
	refuse := func(why string) int {
		out.Events = append(out.Events, Event{Kind: EventRefused, Proposal: p.ProposalID, Device: p.Proposer, Detail: why})
		return -1
	}
	if p.TargetEpoch < r.state.Epoch {
		return refuse(fmt.Sprintf("stale identity epoch %d < %d", p.TargetEpoch, r.state.Epoch))
	}
	if newest := r.state.NewestSnapshot(); newest != nil && !p.Frontier.Covers(newest.Snapshot.Frontier) {
		return refuse("frontier below the newest completed snapshot")
	}
	if !r.store.VersionVector().Covers(p.Frontier) {
		return 0
	}
	if p.TargetEpoch > r.state.Epoch {
		return 0
	}
	_, prefix, err := r.heads(p.Frontier)
	if err != nil {
		return refuse(err.Error())
	}
	if prefix != p.PrefixHash {
		return refuse("journal prefix differs (equivocation?)")
	}
	enc, err := r.encodedAt(p.Frontier)
	if err != nil {
		return refuse(err.Error())
	}
	if crdt.DigestOf(enc) != p.StateDigest {
		out.Events = append(out.Events, Event{Kind: EventMismatch, Proposal: p.ProposalID, Device: p.Proposer, Detail: "state digest differs: no vote"})
		return -1
	}
	return +1
}

// tryComplete recovers the group signature from the round's valid votes
// (each checked before use; bad signers named) and publishes
// SnapshotCompleted.
func (r *Replica) tryComplete(now int64, rd *round) Output {
	var out Output
	ref := r.state.Proposals[rd.id]
	if ref == nil {
		return out
	}
	v, gk, err := r.groupVerifier()
	if err != nil {
		return out
	}
	p := &rd.proposal
	msg := crdt.SnapshotMessage(r.state.Account, rd.id, p.TargetEpoch, p.Frontier, p.PrefixHash, p.StateDigest)
	if rd.collector == nil {
		rd.collector = v.NewCollector(msg)
	}
	voters := make([]crdt.DeviceID, 0, len(ref.Votes))
	for d := range ref.Votes {
		voters = append(voters, d)
	}
	sort.Slice(voters, func(i, j int) bool { return bytes.Compare(voters[i][:], voters[j][:]) < 0 })
	for _, d := range voters {
		if rd.fed[d] {
			continue
		}
		if err := UpgradeGate(r.state, []crdt.DeviceID{d}); err != nil {
			// Not a participant (SnapshotParticipants): its partial is not
			// counted; it is again once the device declares readiness.
			if !rd.refused[d] {
				rd.refused[d] = true
				out.Events = append(out.Events, Event{Kind: EventRefused, Proposal: rd.id, Device: d, Err: err, Detail: "vote refused"})
			}
			continue
		}
		rd.fed[d] = true
		vote := ref.Votes[d]
		idx, err := threshold.PartialIndex(v.Key(), vote.Partial)
		if err != nil || idx >= len(gk.Participants) || gk.Participants[idx] != d || vote.StateDigest != p.StateDigest {
			out.merge(r.nameBad(rd, d, "vote with a partial that is not its own"))
			continue
		}
		if err := rd.collector.Add(vote.Partial); err != nil {
			out.merge(r.nameBad(rd, d, err.Error()))
		}
	}
	if rd.collector.Len() < int(gk.Threshold) {
		return out
	}
	sig, bad, err := rd.collector.Recover()
	for _, i := range bad {
		if i < len(gk.Participants) {
			out.merge(r.nameBad(rd, gk.Participants[i], "invalid partial signature"))
		}
	}
	if err != nil {
		return out
	}
	enc := rd.encoded
	if enc == nil {
		var err error
		if enc, err = r.encodedAt(p.Frontier); err != nil {
			return out
		}
	}
	// The journal may have changed branch under the frontier since this
	// device judged the round (an equivocator's slot re-chained): its heads
	// and state then differ from what the partials signed, and a completion
	// built from them would name chains the signature does not cover.
	// Judge again; a device on the signed branch completes instead.
	heads, prefix, err := r.heads(p.Frontier)
	if err != nil {
		return out
	}
	if prefix != p.PrefixHash || crdt.DigestOf(enc) != p.StateDigest {
		rd.verdict = 0
		out.Events = append(out.Events, Event{Kind: EventRefused, Proposal: rd.id, Device: p.Proposer,
			Detail: "not completing: this journal's prefix under the frontier is no longer the signed one (equivocation)"})
		return out
	}
	cid, err := r.cfg.Blobs.Put(enc)
	if err != nil {
		out.Events = append(out.Events, Event{Kind: EventError, Proposal: rd.id, Err: err, Detail: "store state blob"})
		return out
	}
	var participants []crdt.DeviceID
	for _, i := range rd.collector.Signers() {
		participants = append(participants, gk.Participants[i])
	}
	done := &crdt.SnapshotCompleted{ProposalID: rd.id, Participants: participants, ThresholdSignature: sig,
		Snapshot: crdt.SnapshotV1{Epoch: p.TargetEpoch, Frontier: p.Frontier, StateDigest: p.StateDigest,
			BlobCID: cid, BlobSize: uint64(len(enc)), PrefixHash: p.PrefixHash, Heads: heads}}
	o, err := r.write(done)
	if err != nil {
		out.Events = append(out.Events, Event{Kind: EventError, Proposal: rd.id, Err: err, Detail: "write completion"})
		return out
	}
	out.merge(o)
	out.Events = append(out.Events, Event{Kind: EventCompleted, Proposal: rd.id, Device: r.device,
		Detail: fmt.Sprintf("signers=%d", len(participants))})
	for _, d := range voters { // the votes recovery did not need: name any bad one
		if !rd.badNamed[d] {
			v := ref.Votes[d]
			out.merge(r.checkLateVote(d, &v))
		}
	}
	out.merge(r.onCompleted(now, done))
	return out
}

// checkLateVote checks a vote that reached this device after its round
// completed, when the completion did not use it: a bad partial is named
// even if the round never needed it. Votes the completion used are proven
// by its group signature.
func (r *Replica) checkLateVote(voter crdt.DeviceID, v *crdt.SnapshotVote) Output {
	done := r.state.Completed[v.ProposalID]
	ref := r.state.Proposals[v.ProposalID]
	if done == nil || ref == nil || ref.Stamp == (crdt.Stamp{}) {
		return Output{} // the proposal itself is not held yet: nothing to check against
	}
	for _, p := range done.Completed.Participants {
		if p == voter {
			return Output{}
		}
	}
	ver, gk, err := r.groupVerifier()
	if err != nil {
		return Output{}
	}
	p := &ref.Proposal
	msg := crdt.SnapshotMessage(r.state.Account, v.ProposalID, p.TargetEpoch, p.Frontier, p.PrefixHash, p.StateDigest)
	idx, err := threshold.PartialIndex(ver.Key(), v.Partial)
	if err == nil && (idx >= len(gk.Participants) || gk.Participants[idx] != voter) {
		err = errors.New("a partial that is not its own")
	}
	if err == nil {
		err = ver.VerifyPartial(msg, v.Partial)
	}
	if err != nil {
		return Output{Events: []Event{{Kind: EventBadPartial, Proposal: v.ProposalID, Device: voter, Err: err, Detail: "late vote"}}}
	}
	return Output{}
}

func (r *Replica) nameBad(rd *round, d crdt.DeviceID, why string) Output {
	if rd.badNamed[d] {
		return Output{}
	}
	rd.badNamed[d] = true
	return Output{Events: []Event{{Kind: EventBadPartial, Proposal: rd.id, Device: d, Detail: why}}}
}

// BadSigners lists the devices named for bad partials in a round.
func (r *Replica) BadSigners(id [16]byte) []crdt.DeviceID {
	rd := r.rounds[id]
	if rd == nil {
		return nil
	}
	var out []crdt.DeviceID
	for d := range rd.badNamed {
		out = append(out, d)
	}
	sort.Slice(out, func(i, j int) bool { return bytes.Compare(out[i][:], out[j][:]) < 0 })
	return out
}

// onCompleted handles a verified completion (the guard checked its group
// signature): the proposer's fence drops, and every device collects.
func (r *Replica) onCompleted(now int64, c *crdt.SnapshotCompleted) Output {
	var out Output
	if rd := r.rounds[c.ProposalID]; rd != nil {
		rd.completed = true
		delete(r.rounds, c.ProposalID)
	}
	if r.fence != nil && r.fence.Proposal == c.ProposalID {
		out.merge(r.release(now, "completed"))
	}
	newest := r.state.NewestSnapshot()
	if newest == nil || newest.ProposalID != c.ProposalID {
		return out // an older snapshot: nothing to collect
	}
	out.merge(r.collect(c))
	return out
}

// abandon gives up this device's round.
func (r *Replica) abandon(now int64, why string) Output {
	var out Output
	id := r.fence.Proposal
	if o, err := r.write(&crdt.SnapshotAbandoned{ProposalID: id, Reason: why}); err == nil {
		out.merge(o)
	}
	delete(r.rounds, id)
	out.Events = append(out.Events, Event{Kind: EventAbandoned, Proposal: id, Device: r.device, Detail: why})
	out.merge(r.release(now, "abandoned"))
	return out
}

// Abandon gives up this device's open round now (operator command).
func (r *Replica) Abandon(now int64) (Output, error) {
	if r.fence == nil {
		return Output{}, errors.New("no snapshot round of this device is open")
	}
	return r.abandon(now, "abandoned by operator"), nil
}

// Fence reports this device's open round, if any.
func (r *Replica) Fence() (proposal [16]byte, deadline int64, open bool) {
	if r.fence == nil {
		return [16]byte{}, 0, false
	}
	return r.fence.Proposal, r.fence.Deadline, true
}

// watermark proposes by itself when the journal passed the watermark.
func (r *Replica) watermark(now int64) Output {
	if r.cfg.Watermark < 0 || r.fence != nil || r.state.Account.IsZero() {
		return Output{}
	}
	if int64(r.store.Stats().Bytes) < r.cfg.Watermark {
		r.autoAt = 0
		return Output{}
	}
	if !r.state.Holds(r.device, crdt.CapSnapshotPropose, r.state.Epoch) || r.state.GroupKey() == nil {
		return Output{}
	}
	for _, rd := range r.rounds {
		if rd.verdict >= 0 && now <= rd.seenAt+r.cfg.SnapshotTimeout {
			return Output{} // somebody's round is running: let it finish first
		}
	}
	if r.autoAt == 0 {
		r.autoAt = now + r.cfg.WatermarkJitter
	}
	if now < r.autoAt {
		return Output{}
	}
	r.autoAt = now + r.cfg.SnapshotTimeout + r.cfg.WatermarkJitter
	out, err := r.Propose(now)
	if err != nil {
		return Output{Events: []Event{{Kind: EventWatermark, Err: err, Detail: "proposal failed"}}}
	}
	out.Events = append(out.Events, Event{Kind: EventWatermark, Detail: fmt.Sprintf("journal %d bytes", r.store.Stats().Bytes)})
	return out
}

// --- fence ------------------------------------------------------------------

type bufferedWrite struct {
	_    struct{} `cbor:",toarray"`
	Kind crdt.Kind
	Body []byte
	// Seq is the own seq the write is being committed at, recorded just
	// before release commits it (0 before). A release interrupted by a
	// crash finds the fact at Seq on restart and does not commit it twice.
	Seq uint64
}

func (r *Replica) saveFence() error {
	b, err := crdt.Marshal(r.fence)
	if err != nil {
		return err
	}
	if err := r.cfg.Meta.Put(metaFence, b); err != nil {
		return fmt.Errorf("save fence: %w", err)
	}
	return nil
}

func (r *Replica) loadFence() error {
	b, err := r.cfg.Meta.Get(metaFence)
	if err != nil {
		return fmt.Errorf("load fence: %w", err)
	}
	if b == nil {
		return nil
	}
	var f fenceRecord
	if err := crdt.Unmarshal(b, &f); err != nil {
		return fmt.Errorf("load fence: %w", err)
	}
	r.fence = &f
	if ref := r.state.Proposals[f.Proposal]; ref != nil {
		rd := r.roundFor(0, &ref.Proposal)
		rd.verdict = +1
	}
	return nil
}

// buffer keeps an application write durably behind the fence.
func (r *Replica) buffer(body crdt.Body) error {
	enc, err := crdt.Marshal(body)
	if err != nil {
		return err
	}
	b, err := crdt.Marshal(bufferedWrite{Kind: body.Kind(), Body: enc})
	if err != nil {
		return err
	}
	// The next number after the last entry, not the count: a release that
	// a crash interrupted leaves the tail of the buffer, numbered from
	// above zero, and a count would overwrite one of its entries.
	var n uint64
	if err := r.cfg.Meta.Scan(metaBuffer, func(k string, _ []byte) error {
		if i, err := strconv.ParseUint(strings.TrimPrefix(k, metaBuffer), 10, 64); err == nil && i >= n {
			n = i + 1
		}
		return nil
	}); err != nil {
		return fmt.Errorf("buffer write behind fence: read the buffer: %w", err)
	}
	key := fmt.Sprintf("%s%020d", metaBuffer, n)
	if err := r.cfg.Meta.Put(key, b); err != nil {
		return fmt.Errorf("buffer write behind fence: %w", err)
	}
	return nil
}

// settleBuffer decides, when the replica opens, what a release that a
// crash interrupted committed. A buffered write with a recorded seq was
// being committed at that seq, and nothing else of this device commits
// between the record and the commit: if this device's chain reaches the
// seq, the write is committed and its entry is dropped; if not, the seq is
// cleared, since later facts will take it. Deciding now, not at the next
// release, matters: by then a GC or a restore may have pruned the fact,
// and a release that cannot find it would commit the write again (sim
// exactly-once, seed 60 of the contend sweep).
func (r *Replica) settleBuffer() error {
	own := r.store.VersionVector()[r.device]
	type entry struct {
		key string
		w   bufferedWrite
	}
	var recorded []entry
	if err := r.cfg.Meta.Scan(metaBuffer, func(k string, v []byte) error {
		var w bufferedWrite
		if crdt.Unmarshal(v, &w) == nil && w.Seq != 0 {
			recorded = append(recorded, entry{k, w})
		}
		return nil
	}); err != nil {
		return fmt.Errorf("settle the buffered writes: %w", err)
	}
	for _, e := range recorded {
		if e.w.Seq <= own {
			if err := r.cfg.Meta.Delete(e.key); err != nil {
				return fmt.Errorf("settle the buffered writes: drop committed %s: %w", e.key, err)
			}
			continue
		}
		e.w.Seq = 0
		b, err := crdt.Marshal(e.w)
		if err != nil {
			return err
		}
		if err := r.cfg.Meta.Put(e.key, b); err != nil {
			return fmt.Errorf("settle the buffered writes: clear the seq of %s: %w", e.key, err)
		}
	}
	return nil
}

// Buffered is the number of writes waiting behind the fence.
func (r *Replica) Buffered() int {
	n := 0
	_ = r.cfg.Meta.Scan(metaBuffer, func(string, []byte) error { n++; return nil })
	return n
}

// release drops the fence and commits the buffered writes in order.
func (r *Replica) release(now int64, why string) Output {
	out := Output{Events: []Event{{Kind: EventFenceReleased, Proposal: r.fence.Proposal, Detail: why}}}
	r.fence = nil
	type entry struct {
		key string
		w   bufferedWrite
	}
	var entries []entry
	if err := r.cfg.Meta.Scan(metaBuffer, func(k string, v []byte) error {
		var w bufferedWrite
		if err := crdt.Unmarshal(v, &w); err != nil {
			out.Events = append(out.Events, Event{Kind: EventError, Err: err, Detail: "unreadable buffered write " + k})
		}
		entries = append(entries, entry{k, w})
		return nil
	}); err != nil {
		// The entries stay in Meta and commit at the next release.
		out.Events = append(out.Events, Event{Kind: EventError, Err: err, Detail: "read the buffered writes"})
	}
	for _, e := range entries {
		if err := r.commitBuffered(e.key, e.w, &out); err != nil {
			out.Events = append(out.Events, Event{Kind: EventError, Err: err, Detail: "commit buffered write"})
		}
		// A failed delete leaves the entry, whose recorded seq keeps the
		// next release from committing it twice.
		if err := r.cfg.Meta.Delete(e.key); err != nil {
			out.Events = append(out.Events, Event{Kind: EventError, Err: err, Detail: "drop committed buffered write " + e.key})
		}
	}
	if err := r.cfg.Meta.Delete(metaFence); err != nil {
		out.Events = append(out.Events, Event{Kind: EventError, Err: err, Detail: "drop the fence record (it is released again after a restart)"})
	}
	return out
}

// commitBuffered commits one buffered write, once: it records the seq the
// write gets before committing it, and skips a write whose recorded seq
// already holds it (a release that a crash interrupted after the commit).
func (r *Replica) commitBuffered(key string, w bufferedWrite, out *Output) error {
	if w.Seq != 0 {
		if f, err := r.cfg.Store.BySeq(r.device, w.Seq); err == nil && f.Kind == w.Kind && bytes.Equal(f.Body, w.Body) {
			return nil
		}
	}
	body, err := crdt.DecodeBodyOf(w.Kind, w.Body)
	if err != nil {
		return err
	}
	w.Seq = r.writer.Seq() + 1
	b, err := crdt.Marshal(w)
	if err != nil {
		return err
	}
	if err := r.cfg.Meta.Put(key, b); err != nil {
		return err
	}
	o, err := r.write(body)
	if err != nil {
		return err
	}
	out.merge(o)
	return nil
}
