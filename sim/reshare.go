package sim

import (
	"bytes"
	"container/heap"
	"errors"
	"math/rand/v2"
	"slices"

	"aura/crdt"
	"aura/maintenance"
	"aura/threshold"
)

// Removal and resharing (Workload.Reshare, `--reshare`): at setup, after
// the group key is published, the admin d0 removes one honest device (a
// lost laptop whose thief keeps its share) and runs the product's
// resharing session (threshold.ReshareHub on d0, ReshareParticipant on the
// others; maintenance.PlanReshare decides who is invited with which share
// and threshold) over virtual streams, retried like an operator would
// until it succeeds (the last attempt without faults), then publishes the
// new group key. Byzantine devices never answer the invitation (they are
// left out of the new group); in each other attempt one random honest
// device may be unreachable and one may crash mid-session, so attempts
// with exactly M share holders and with M−1 happen.
//
// The removed device then becomes the thief: a Byzantine device whose
// only act is to vote on every proposal it sees with a VALID partial of
// its old share, backdated to the epoch before its removal (facts of
// earlier epochs stay valid, so the guard admits the vote fact).
//
// Invariants (Violation.Invariant):
//
//   - reshare: every attempt ends with success or a typed
//     *threshold.KeygenError; one without a crash succeeds when at least
//     M share holders are reachable and fails with ErrReshareQuorum when
//     fewer are, and then no participant kept a share.
//   - reshare-share: after a success every member kept a share of the
//     hub's new key at its index, the new key has the old group public
//     key, and every M of the new shares sign under it.
//   - removed-share: no snapshot completed (as any honest device holds
//     it) counts the removed device among its signers: its old share is a
//     bad partial under the reshared key. (ReshareWorkload.keepOldKey, a
//     planted defect for tests, throws the resharing away; the invariant
//     then fires.)

// ReshareWorkload configures the removal and resharing at setup.
type ReshareWorkload struct {
	// On enables it.
	On bool
	// keepOldKey is the defect of the tests: the driver discards the
	// reshared key and every device keeps its old share.
	keepOldKey bool
}

// reshareAttempts bounds the operator's retries; the last one is clean.
const reshareAttempts = 6

var simReshareTimeouts = struct{ hub, part threshold.ReshareTimeouts }{
	hub:  threshold.ReshareTimeouts{Collect: 1500, DKG: 3000, Session: 8000},
	part: threshold.ReshareTimeouts{Session: 12000},
}

// reshareRun is what the run remembers of it.
type reshareRun struct {
	thief      *device          // the removed device, now Byzantine
	thiefShare *threshold.Share // its old share
	epoch      uint64           // the identity epoch its removal opened
	votes      map[[16]byte]bool
	lost       int // honest share holders without a share of the new key (the removed one, those left out)
}

// removedHolders is how many honest share holders the resharing left
// without a share (the liveness probe takes that many fewer down).
func (r *reshareRun) removedHolders() int { return r.lost }

// removeAndReshare runs the workload at setup; setup holds the facts
// delivered to everyone before the clock starts, and it returns them with
// the removal and the new group key added.
func (s *sim) removeAndReshare(setup []*crdt.Fact) []*crdt.Fact {
	n, m := s.cfg.Nodes, s.cfg.Threshold
	admin := s.devs[0]
	var victim *device
	honest := 0
	for _, d := range s.devs[:n] {
		if d.honest() {
			honest++
		}
	}
	for i := n - 1; i > 0; i-- {
		d := s.devs[i]
		if d.honest() && d != s.absence.dev {
			victim = d
			break
		}
	}
	if victim == nil || honest-1 < max(m, 2) {
		s.trace("reshare: skipped (%d honest devices, threshold %d)", honest, m)
		return setup
	}
	out, err := admin.rep.Write(s.devNow(admin), &crdt.DeviceRemoved{Device: victim.id})
	if err != nil {
		s.violate("internal", admin.name, "remove %s: %v", victim.name, err)
		return setup
	}
	setup = append(setup, out.Publish...)
	s.reshare.epoch = admin.rep.State().Epoch
	s.schedule("remove %s at identity epoch %d", victim.name, s.reshare.epoch)
	plan, err := maintenance.PlanReshare(admin.rep.State(), 0)
	if err != nil {
		s.violate("reshare", admin.name, "plan: %v", err)
		return setup
	}
	r := rand.New(rand.NewPCG(s.cfg.Seed, 0x72736872)) // "rshr"
	var key *threshold.GroupKey
	var members []crdt.DeviceID
	var shares map[crdt.DeviceID]*threshold.Share
	for num := 1; num <= reshareAttempts && key == nil; num++ {
		s.res.Stats.ReshareAttempts++
		a := &rsAttempt{s: s, num: num, plan: plan, last: map[[2]int]int64{}, r: r, crashAt: -1,
			down: map[int]bool{}, crashed: map[int]bool{}}
		a.n = len(plan.Devices)
		a.parts = make([]*threshold.ReshareParticipant, a.n)
		a.partOut = make([]*threshold.KeygenOutput, a.n)
		a.kept = make([]*threshold.KeygenResult, a.n)
		for i, d := range plan.Devices {
			if d == admin.id {
				a.hubAt = i
			}
			if !s.byID[d].honest() {
				a.down[i] = true
			}
		}
		if num < reshareAttempts {
			a.drawFaults()
		}
		key, members, shares = a.run()
	}
	if key == nil {
		s.violate("reshare", admin.name, "no resharing succeeded in %d attempts", reshareAttempts)
		return setup
	}
	s.reshare.thief, s.reshare.thiefShare, s.reshare.votes = victim, victim.share, map[[16]byte]bool{}
	victim.byz = &byzantine{votes: map[[16]byte]bool{}}
	victim.name += "!"
	if s.cfg.Workload.Reshare.keepOldKey {
		s.trace("reshare: defect keep-old-key: the reshared key is thrown away")
		s.reshare.lost = 1
		return setup
	}
	s.reshare.lost = 1
	for _, d := range s.devs[:n] {
		if d.honest() && d != victim {
			d.share = shares[d.id] // nil: left out of the new group
			if d.share == nil {
				s.reshare.lost++
				s.trace("reshare: %s holds no share of the new key", d.name)
			}
		}
	}
	out, err = admin.rep.PublishGroupKey(key, members)
	if err != nil {
		s.violate("internal", admin.name, "publish the reshared key: %v", err)
		return setup
	}
	s.gk = key
	return append(setup, out.Publish...)
}

// rsAttempt is one run of the resharing session.
type rsAttempt struct {
	s       *sim
	num     int
	n       int
	hubAt   int // the admin's index in the plan
	plan    *maintenance.ReshareRequest
	q       kgQueue
	seq     int64
	frames  int
	last    map[[2]int]int64
	r       *rand.Rand
	hub     *threshold.ReshareHub
	parts   []*threshold.ReshareParticipant
	hubOut  *threshold.KeygenOutput
	partOut []*threshold.KeygenOutput
	kept    []*threshold.KeygenResult

	down     map[int]bool // unreachable from the start
	crashAt  int
	crashWho int
	crashed  map[int]bool
}

func (a *rsAttempt) dev(i int) *device { return a.s.byID[a.plan.Devices[i]] }

func (a *rsAttempt) drawFaults() {
	f := a.s.cfg.Faults
	var cands []int
	for i := range a.n {
		if i != a.hubAt && !a.down[i] {
			cands = append(cands, i)
		}
	}
	if len(cands) > 0 && (f.Offline > 0 || f.Crash > 0 || f.Partition > 0) && a.r.IntN(2) == 0 {
		i := cands[a.r.IntN(len(cands))]
		a.down[i] = true
		a.s.schedule("reshare attempt %d: %s is unreachable", a.num, a.dev(i).name)
	}
	if f.Crash > 0 && a.r.IntN(3) == 0 {
		var up []int
		for _, i := range cands {
			if !a.down[i] {
				up = append(up, i)
			}
		}
		if len(up) > 0 {
			a.crashAt, a.crashWho = a.r.IntN(2*a.n*a.n), up[a.r.IntN(len(up))]
		}
	}
}

func (a *rsAttempt) push(e *kgEvent) {
	a.seq++
	e.seq = a.seq
	heap.Push(&a.q, e)
}

func (a *rsAttempt) send(from, to int, frame []byte) {
	a.frames++
	p := to
	if to == a.hubAt {
		p = from
	}
	if a.down[p] || a.crashed[p] {
		return
	}
	if a.frames == a.crashAt && !a.crashed[a.crashWho] {
		a.crashed[a.crashWho] = true
		a.s.schedule("reshare attempt %d: crash %s", a.num, a.dev(a.crashWho).name)
		a.push(&kgEvent{at: a.s.now + 1 + a.r.Int64N(a.s.cfg.Faults.Delay), kind: kgBroken, from: a.crashWho})
		if a.crashed[p] {
			return
		}
	}
	at := a.s.now + 1 + a.r.Int64N(a.s.cfg.Faults.Delay)
	link := [2]int{from, to}
	at = max(at, a.last[link])
	a.last[link] = at
	a.push(&kgEvent{at: at, kind: kgDeliver, from: from, to: to, frame: frame})
}

func (a *rsAttempt) hubOutput(out threshold.KeygenOutput) {
	for _, snd := range out.Send {
		a.send(a.hubAt, snd.To, snd.Frame)
	}
	if (out.Done != nil || out.Err != nil) && a.hubOut == nil {
		a.hubOut = &out
	}
}

func (a *rsAttempt) partOutput(i int, out threshold.KeygenOutput) {
	for _, snd := range out.Send {
		a.send(i, a.hubAt, snd.Frame)
	}
	if out.Keep != nil {
		a.kept[i] = out.Keep
		a.partOutput(i, a.parts[i].Kept(a.s.devNow(a.dev(i))))
		return
	}
	if (out.Done != nil || out.Err != nil) && a.partOut[i] == nil {
		a.partOut[i] = &out
	}
}

func (a *rsAttempt) over() bool {
	if !a.hub.Over() {
		return false
	}
	for i, p := range a.parts {
		if p != nil && !a.down[i] && !a.crashed[i] && !p.Over() {
			return false
		}
	}
	return true
}

// run plays the attempt and checks it; it returns the new key, its
// members in index order and each member's new share on success.
func (a *rsAttempt) run() (*threshold.GroupKey, []crdt.DeviceID, map[crdt.DeviceID]*threshold.Share) {
	s := a.s
	ids := make([][]byte, a.n)
	for i, d := range a.plan.Devices {
		ids[i] = append([]byte(nil), d[:]...)
	}
	var session [16]byte
	copy(session[:], s.seedBytes("reshare-session", a.num))
	rnd := func(i int) []byte { return s.seedBytes("reshare", a.num*1000+i) }
	hub, err := threshold.NewReshareHub(threshold.ReshareHubConfig{Session: session, Participants: ids, Self: a.hubAt,
		OldKey: a.plan.OldKey, Holders: a.plan.Holders, Share: a.dev(a.hubAt).share, Threshold: a.plan.Threshold,
		Rand: threshold.SeededReader(rnd(a.hubAt)), Timeouts: simReshareTimeouts.hub})
	if err != nil {
		s.violate("reshare", s.devs[0].name, "attempt %d: %v", a.num, err)
		return nil, nil, nil
	}
	a.hub = hub
	for i := range a.n {
		if i == a.hubAt {
			continue
		}
		d := a.dev(i)
		p, err := threshold.NewReshareParticipant(threshold.ReshareParticipantConfig{Self: ids[i], Share: d.share,
			Rand: threshold.SeededReader(rnd(i)), Timeouts: simReshareTimeouts.part}, s.devNow(d))
		if err != nil {
			s.violate("internal", d.name, "reshare: %v", err)
			return nil, nil, nil
		}
		a.parts[i] = p
	}
	start := s.now
	s.trace("reshare attempt %d: hub %s, threshold %d, %d devices invited", a.num, s.devs[0].name, a.plan.Threshold, a.n)
	a.hubOutput(hub.Start(s.devNow(s.devs[0])))
	for i := 1; i < a.n; i++ {
		if a.down[i] {
			a.push(&kgEvent{at: s.now + 1 + a.r.Int64N(s.cfg.Faults.Delay), kind: kgBroken, from: i})
		}
	}
	a.push(&kgEvent{at: s.now + 250, kind: kgTick})
	deadline := start + 2*simReshareTimeouts.part.Session + 2*s.cfg.Faults.Skew
	for a.q.Len() > 0 && !a.over() {
		e := heap.Pop(&a.q).(*kgEvent)
		s.now = max(s.now, e.at)
		if s.now > deadline {
			break
		}
		switch e.kind {
		case kgDeliver:
			if e.to == a.hubAt {
				if !a.crashed[e.from] {
					a.hubOutput(hub.Step(s.devNow(s.devs[0]), e.from, e.frame))
				}
			} else if !a.crashed[e.to] {
				a.partOutput(e.to, a.parts[e.to].Step(s.devNow(a.dev(e.to)), e.frame))
			}
		case kgBroken:
			a.hubOutput(hub.Broken(s.devNow(s.devs[0]), e.from, errors.New("stream reset")))
		case kgTick:
			a.hubOutput(hub.Tick(s.devNow(s.devs[0])))
			for i, p := range a.parts {
				if p != nil && !a.down[i] && !a.crashed[i] {
					a.partOutput(i, p.Tick(s.devNow(a.dev(i))))
				}
			}
			a.push(&kgEvent{at: s.now + 250, kind: kgTick})
		}
	}
	return a.check(start)
}

func (a *rsAttempt) check(start int64) (*threshold.GroupKey, []crdt.DeviceID, map[crdt.DeviceID]*threshold.Share) {
	s := a.s
	hubName := s.devs[0].name
	if !a.over() || a.hubOut == nil {
		s.violate("reshare", hubName, "attempt %d did not end within %d ms", a.num, s.now-start)
		return nil, nil, nil
	}
	reachable := 0
	for i, h := range a.plan.Holders {
		if h != threshold.NoShare && !a.down[i] && a.dev(i).share != nil && a.dev(i).share.Index() == h {
			reachable++
		}
	}
	oldT := a.plan.OldKey.Threshold()
	if err := a.hubOut.Err; err != nil {
		var ke *threshold.KeygenError
		if !errors.As(err, &ke) {
			s.violate("reshare", hubName, "attempt %d failed with an untyped error: %v", a.num, err)
			return nil, nil, nil
		}
		s.trace("reshare attempt %d failed: %v", a.num, ke)
		quorum := errors.Is(ke, threshold.ErrReshareQuorum)
		if len(a.crashed) == 0 && reachable >= oldT {
			s.violate("reshare", hubName, "attempt %d: %d of %d share holders reachable and no crash, yet it failed: %v", a.num, reachable, oldT, ke)
		}
		if len(a.crashed) == 0 && reachable < oldT && !quorum {
			s.violate("reshare", hubName, "attempt %d: only %d share holders reachable (%d needed), but the failure is %v", a.num, reachable, oldT, ke)
		}
		if quorum {
			for i, k := range a.kept {
				if k != nil {
					s.violate("reshare", a.dev(i).name, "attempt %d failed for lack of share holders, yet this device kept a share", a.num)
				}
			}
		}
		return nil, nil, nil
	}
	if reachable < oldT {
		s.violate("reshare", hubName, "attempt %d succeeded with only %d share holders reachable (%d needed)", a.num, reachable, oldT)
	}
	res := a.hubOut.Done
	s.trace("reshare attempt %d succeeded: %d of %d", a.num, res.Key.Threshold(), res.Key.Signers())
	for i := range a.n {
		if why := a.hub.Dropped(i); why != "" {
			s.trace("reshare attempt %d: %s left out: %s", a.num, a.dev(i).name, why)
		}
	}
	if !bytes.Equal(res.Key.PublicKey(), a.plan.OldKey.PublicKey()) {
		s.violate("reshare-share", hubName, "attempt %d: the reshared key has another group public key", a.num)
		return nil, nil, nil
	}
	members := a.hub.Members()
	shares := map[crdt.DeviceID]*threshold.Share{}
	var list []*threshold.Share
	var ids []crdt.DeviceID
	for k, i := range members {
		d := a.plan.Devices[i]
		ids = append(ids, d)
		sh := res.Share
		if i != a.hubAt {
			kept := a.kept[i]
			if kept == nil || a.partOut[i] == nil || a.partOut[i].Done == nil || !kept.Key.Equal(res.Key) {
				s.violate("reshare-share", a.dev(i).name, "attempt %d: the hub succeeded but this member kept no share of its key", a.num)
				return nil, nil, nil
			}
			sh = kept.Share
		}
		if sh.Index() != k || !sh.Matches(res.Key) {
			s.violate("reshare-share", a.dev(i).name, "attempt %d: its share (index %d) is not share %d of the new key", a.num, sh.Index(), k)
			return nil, nil, nil
		}
		shares[d] = sh
		list = append(list, sh)
	}
	if slices.ContainsFunc(ids, func(d crdt.DeviceID) bool { return !s.byID[d].honest() }) {
		s.violate("reshare-share", hubName, "attempt %d: a device that never answered is in the new group", a.num)
	}
	if err := checkAnyM(res.Key, list, s.seedBytes("reshare-msg", a.num)); err != nil {
		s.violate("reshare-share", hubName, "attempt %d: %v", a.num, err)
		return nil, nil, nil
	}
	return res.Key, ids, shares
}

// thiefReact: the removed device votes on every proposal it sees with a
// valid partial of its old share, backdated to before its removal.
func (s *sim) thiefReact(d *device, added []*crdt.Fact) {
	r := &s.reshare
	if r.thief != d || (s.phase != phaseActive && s.phase != phaseProbe) {
		return
	}
	for _, f := range added {
		if f.Kind != crdt.KindSnapshotProposed {
			continue
		}
		body, err := f.DecodeBody()
		if err != nil {
			continue
		}
		p := body.(*crdt.SnapshotProposed)
		if r.votes[p.ProposalID] {
			continue
		}
		r.votes[p.ProposalID] = true
		msg := crdt.SnapshotMessage(s.account, p.ProposalID, p.TargetEpoch, p.Frontier, p.PrefixHash, p.StateDigest)
		partial, err := threshold.SignPartial(r.thiefShare, msg)
		if err != nil {
			continue
		}
		b := d.byz
		b.w.Observe(s.maxLamport(d))
		v, err := b.w.Write(r.epoch-1, &crdt.SnapshotVote{ProposalID: p.ProposalID, StateDigest: p.StateDigest, Partial: partial})
		if err != nil {
			continue
		}
		s.truth.add(v)
		s.res.Stats.ByzActs++
		s.trace("%s (removed) votes on %x with its old share", d.name, p.ProposalID[:4])
		s.publish(d, []*crdt.Fact{v})
	}
}

// checkRemovedShare: no completion counts the removed device's partial.
func (s *sim) checkRemovedShare(holder string, c *crdt.SnapshotCompleted) {
	t := s.reshare.thief
	if t == nil {
		return
	}
	if slices.Contains(c.Participants, t.id) {
		s.violate("removed-share", holder, "completion %x counts a partial of the removed device %s's old share", c.ProposalID[:4], t.name)
	}
}
