package sim

import (
	"bytes"
	"container/heap"
	"errors"
	"fmt"
	"math/rand/v2"

	"aura/crdt"
	"aura/threshold"
)

// Key generation under faults (Workload.Keygen): instead of the trusted
// dealer, the devices run the product's key generation session
// (threshold.KeygenHub on the admin, d0, since publishing a group key is an
// admin act; threshold.KeygenParticipant on every other device) over
// virtual streams, before the workload starts, the way an operator runs
// `aura-cli threshold keygen` until it succeeds.
//
// The streams are what libp2p gives the node: ordered and reliable (a lost
// packet is retransmitted, which is delay), with a one-way delay drawn as
// for any message. Each attempt may suffer one fault of each kind the
// configured mix has, drawn from the seed:
//
//   - loss: a stream stalls for good at a random frame (a connection that
//     silently died): that frame and every later one on the stream are lost;
//   - crash: a random honest participant crashes at a random frame; its
//     stream resets, which the hub learns after a delay;
//   - Byzantine with "lie": each Byzantine participant reports a group key
//     that is not the one it computed.
//
// The eighth attempt runs without faults. Invariants (Violation.Invariant):
//
//   - keygen: an attempt without faults succeeds; every attempt ends
//     (success or a typed *threshold.KeygenError) before its deadline.
//   - keygen-blame: a failure that blames a participant for a different key
//     (ErrKeygenDisagree) names a device that lied in that attempt; a
//     failure blamed on a broken channel names the crashed device; an
//     attempt in which a device lied never succeeds.
//   - keygen-share: after a success, every participant kept a share of the
//     hub's group key, at its own index, and every M of the shares sign a
//     message whose group signature verifies under the key.

// keygenAttempts bounds the operator's retries; the last one is clean.
const keygenAttempts = 8

// Deadlines of the simulated sessions (virtual ms).
var simKeygenTimeouts = struct{ hub, part threshold.KeygenTimeouts }{
	hub:  threshold.KeygenTimeouts{DKG: 2000, Session: 6000},
	part: threshold.KeygenTimeouts{Session: 9000},
}

// kgEvent is one entry of a key generation attempt's own timeline.
type kgEvent struct {
	at, seq int64
	kind    int // kgDeliver, kgTick, kgBroken
	from    int
	to      int
	frame   []byte
}

const (
	kgDeliver = iota
	kgTick
	kgBroken
)

type kgQueue []*kgEvent

func (q kgQueue) Len() int { return len(q) }
func (q kgQueue) Less(i, j int) bool {
	if q[i].at != q[j].at {
		return q[i].at < q[j].at
	}
	return q[i].seq < q[j].seq
}
func (q kgQueue) Swap(i, j int) { q[i], q[j] = q[j], q[i] }
func (q *kgQueue) Push(x any)   { *q = append(*q, x.(*kgEvent)) }
func (q *kgQueue) Pop() any {
	old := *q
	e := old[len(old)-1]
	*q = old[:len(old)-1]
	return e
}

// kgAttempt is one run of the session among the n group devices.
type kgAttempt struct {
	s       *sim
	num     int
	hubAt   int
	n       int
	q       kgQueue
	seq     int64
	frames  int
	last    map[[2]int]int64 // per stream direction: last delivery time (FIFO)
	hub     *threshold.KeygenHub
	parts   []*threshold.KeygenParticipant
	hubOut  *threshold.KeygenOutput
	hubEnd  int64 // when the hub's session ended
	partOut []*threshold.KeygenOutput
	kept    []*threshold.KeygenResult

	// faults of this attempt
	stallAt  int          // frame number at which a stream stalls (-1: none)
	stalled  map[int]bool // participant whose stream stalled
	crashAt  int          // frame number at which crashWho crashes (-1: none)
	crashWho int
	crashed  map[int]bool
	liars    map[int]bool
	lied     map[int]bool
	lieKey   []byte
	r        *rand.Rand

	// the session gate (session.go): gate is CheckSession on the hub's
	// state, called before every event until the final is out; move runs
	// once, at frame moveAt (the identity epoch moves).
	gate             func() error
	gateAborted      bool
	move             func()
	moveAt           int
	movedBeforeFinal bool
}

func (s *sim) newAttempt(num, n int, r *rand.Rand, lieKey []byte) *kgAttempt {
	return &kgAttempt{s: s, num: num, n: n, hubAt: 0, last: map[[2]int]int64{},
		parts: make([]*threshold.KeygenParticipant, n), partOut: make([]*threshold.KeygenOutput, n),
		kept: make([]*threshold.KeygenResult, n), stallAt: -1, crashAt: -1, stalled: map[int]bool{},
		crashed: map[int]bool{}, liars: map[int]bool{}, lied: map[int]bool{}, lieKey: lieKey, r: r}
}

// faulted reports whether a fault struck this attempt (or the session gate
// aborted it).
func (a *kgAttempt) faulted() bool {
	return len(a.stalled)+len(a.crashed)+len(a.lied) > 0 || a.gateAborted
}

// groupKey makes the run's group key and the devices' shares: by key
// generation with Workload.Keygen (and M >= 2), else (or when every
// attempt failed) with the trusted dealer. The admin publishes it.
func (s *sim) groupKey(parts []crdt.DeviceID) (*threshold.GroupKey, []*threshold.Share, error) {
	if s.cfg.Workload.Keygen && s.cfg.Threshold >= 2 {
		if key, shares := s.keygen(parts); key != nil {
			return key, shares, nil
		}
	}
	return threshold.Deal(threshold.NewBN256(), threshold.SeededReader(s.seedBytes("deal", 0)), s.cfg.Threshold, len(parts))
}

// keygen runs attempts until one succeeds, and returns the group key and
// each device's share (nil, nil after keygenAttempts failures).
func (s *sim) keygen(parts []crdt.DeviceID) (*threshold.GroupKey, []*threshold.Share) {
	n := len(parts)
	r := rand.New(rand.NewPCG(s.cfg.Seed, 0x6b67656e)) // "kgen"
	lie, _, err := threshold.Deal(nil, threshold.SeededReader(s.seedBytes("keygen-lie", 0)), s.cfg.Threshold, n)
	if err != nil {
		s.violate("internal", "", "keygen: deal the liars' key: %v", err)
		return nil, nil
	}
	var honest []int
	for i, d := range s.devs[:n] {
		if d.honest() {
			honest = append(honest, i)
		}
	}
	for num := 1; num <= keygenAttempts; num++ {
		s.res.Stats.KeygenAttempts++
		a := s.newAttempt(num, n, r, lie.Bytes())
		if num < keygenAttempts {
			a.drawFaults(r, honest)
		}
		key, shares, ok := a.run(parts)
		if ok {
			return key, shares
		}
		s.res.Stats.KeygenFailures++
	}
	s.violate("keygen", "", "no key generation succeeded in %d attempts", keygenAttempts)
	return nil, nil
}

func (a *kgAttempt) drawFaults(r *rand.Rand, honest []int) {
	f := a.s.cfg.Faults
	// About n² frames cross the streams in a full run.
	span := 2 * a.n * a.n
	if f.Loss > 0 && r.IntN(3) == 0 {
		a.stallAt = r.IntN(span)
	}
	if f.Crash > 0 && r.IntN(3) == 0 {
		var cands []int
		for _, i := range honest {
			if i != a.hubAt {
				cands = append(cands, i)
			}
		}
		if len(cands) > 0 {
			a.crashAt, a.crashWho = r.IntN(span), cands[r.IntN(len(cands))]
		}
	}
	if f.Byzantine > 0 && f.Byz&ByzLie != 0 {
		for i, d := range a.s.devs[:a.n] {
			if !d.honest() && r.IntN(2) == 0 {
				a.liars[i] = true
			}
		}
	}
}

func (a *kgAttempt) push(e *kgEvent) {
	a.seq++
	e.seq = a.seq
	heap.Push(&a.q, e)
}

func (a *kgAttempt) devNow(i int) int64 { return a.s.devNow(a.s.devs[i]) }

// send puts a frame on the stream between from and to, in order.
func (a *kgAttempt) send(from, to int, frame []byte) {
	a.frames++
	s := a.s
	if a.move != nil && a.frames >= a.moveAt {
		a.movedBeforeFinal = !a.hub.FinalSent()
		mv := a.move
		a.move = nil
		mv()
	}
	p := to
	if to == a.hubAt {
		p = from
	}
	if a.crashed[p] {
		return
	}
	if a.frames == a.stallAt && !a.stalled[p] {
		a.stalled[p] = true
		s.schedule("keygen attempt %d: the stream of %s stalls", a.num, s.devs[p].name)
	}
	if a.stalled[p] {
		return
	}
	if a.frames == a.crashAt {
		a.crash(a.crashWho)
		if a.crashed[p] {
			return
		}
	}
	if from != a.hubAt && a.liars[from] {
		if f, err := threshold.ParseKeygenFrame(frame); err == nil && f.Type == threshold.FrameResult {
			f.Data = a.lieKey
			frame = f.Marshal()
			a.lied[from] = true
			s.trace("keygen attempt %d: %s lies about its group key", a.num, s.devs[from].name)
		}
	}
	at := s.now + 1 + a.r.Int64N(s.cfg.Faults.Delay)
	link := [2]int{from, to}
	at = max(at, a.last[link])
	a.last[link] = at
	a.push(&kgEvent{at: at, kind: kgDeliver, from: from, to: to, frame: frame})
}

// crash takes participant i down: its session is gone, and the hub learns
// that the stream reset a little later.
func (a *kgAttempt) crash(i int) {
	if a.crashed[i] {
		return
	}
	a.crashed[i] = true
	a.s.schedule("keygen attempt %d: crash %s", a.num, a.s.devs[i].name)
	a.push(&kgEvent{at: a.s.now + 1 + a.r.Int64N(a.s.cfg.Faults.Delay), kind: kgBroken, from: i})
}

func (a *kgAttempt) hubOutput(out threshold.KeygenOutput) {
	for _, snd := range out.Send {
		a.send(a.hubAt, snd.To, snd.Frame)
	}
	if (out.Done != nil || out.Err != nil) && a.hubOut == nil {
		a.hubOut, a.hubEnd = &out, a.s.now
	}
}

func (a *kgAttempt) partOutput(i int, out threshold.KeygenOutput) {
	for _, snd := range out.Send {
		a.send(i, a.hubAt, snd.Frame)
	}
	if out.Keep != nil {
		if !a.s.cfg.Defects.KeygenUnsealed {
			a.kept[i] = out.Keep
		}
		a.partOutput(i, a.parts[i].Kept(a.devNow(i)))
		return
	}
	if (out.Done != nil || out.Err != nil) && a.partOut[i] == nil {
		a.partOut[i] = &out
	}
}

// run plays the attempt to its end and checks it.
func (a *kgAttempt) run(parts []crdt.DeviceID) (*threshold.GroupKey, []*threshold.Share, bool) {
	s := a.s
	ids := make([][]byte, a.n)
	for i, d := range parts {
		ids[i] = append([]byte(nil), d[:]...)
	}
	var session [16]byte
	copy(session[:], s.seedBytes("keygen-session", a.num))
	rnd := func(i int) []byte { return s.seedBytes("keygen", a.num*1000+i) }
	hub, err := threshold.NewKeygenHub(threshold.KeygenHubConfig{Session: session, Participants: ids, Self: a.hubAt,
		Threshold: s.cfg.Threshold, Rand: threshold.SeededReader(rnd(a.hubAt)), Timeouts: simKeygenTimeouts.hub})
	if err != nil {
		s.violate("internal", "", "keygen: %v", err)
		return nil, nil, false
	}
	a.hub = hub
	for i := range a.n {
		if i == a.hubAt {
			continue
		}
		p, err := threshold.NewKeygenParticipant(threshold.KeygenParticipantConfig{Self: ids[i],
			Rand: threshold.SeededReader(rnd(i)), Timeouts: simKeygenTimeouts.part}, a.devNow(i))
		if err != nil {
			s.violate("internal", "", "keygen: %v", err)
			return nil, nil, false
		}
		a.parts[i] = p
	}
	start := s.now
	s.trace("keygen attempt %d: hub %s, threshold %d of %d", a.num, s.devs[a.hubAt].name, s.cfg.Threshold, a.n)
	a.hubOutput(hub.Start(a.devNow(a.hubAt)))
	a.push(&kgEvent{at: s.now + 250, kind: kgTick})
	deadline := start + 2*simKeygenTimeouts.part.Session + 2*s.cfg.Faults.Skew
	for a.q.Len() > 0 && !a.over() {
		e := heap.Pop(&a.q).(*kgEvent)
		s.now = max(s.now, e.at)
		if s.now > deadline {
			break
		}
		if a.gate != nil && !hub.Over() && !hub.FinalSent() && !s.cfg.Defects.KeygenIgnoreEpoch {
			if err := a.gate(); err != nil {
				a.gateAborted = true
				s.trace("keygen attempt %d: the session gate aborts it: %v", a.num, err)
				a.hubOutput(hub.Abort(a.devNow(a.hubAt), err))
			}
		}
		switch e.kind {
		case kgDeliver:
			if e.to == a.hubAt {
				if !a.crashed[e.from] {
					a.hubOutput(hub.Step(a.devNow(a.hubAt), e.from, e.frame))
				}
			} else if !a.crashed[e.to] {
				a.partOutput(e.to, a.parts[e.to].Step(a.devNow(e.to), e.frame))
			}
		case kgBroken:
			a.hubOutput(hub.Broken(a.devNow(a.hubAt), e.from, errors.New("stream reset")))
		case kgTick:
			a.hubOutput(hub.Tick(a.devNow(a.hubAt)))
			for i, p := range a.parts {
				if p != nil && !a.crashed[i] {
					a.partOutput(i, p.Tick(a.devNow(i)))
				}
			}
			a.push(&kgEvent{at: s.now + 250, kind: kgTick})
		}
	}
	return a.check(start)
}

func (a *kgAttempt) over() bool {
	if !a.hub.Over() {
		return false
	}
	for i, p := range a.parts {
		if p != nil && !a.crashed[i] && !p.Over() {
			return false
		}
	}
	return true
}

func (a *kgAttempt) check(start int64) (*threshold.GroupKey, []*threshold.Share, bool) {
	s := a.s
	name := func(i int) string {
		if i < 0 || i >= a.n {
			return "nobody"
		}
		return s.devs[i].name
	}
	if !a.over() || a.hubOut == nil {
		s.violate("keygen", "", "attempt %d did not end within %d ms", a.num, s.now-start)
		return nil, nil, false
	}
	out := a.hubOut
	if out.Err != nil {
		var ke *threshold.KeygenError
		if !errors.As(out.Err, &ke) {
			s.violate("keygen", name(a.hubAt), "attempt %d failed with an untyped error: %v", a.num, out.Err)
			return nil, nil, false
		}
		s.trace("keygen attempt %d failed after %d ms: %s: %v", a.num, a.hubEnd-start, name(ke.Participant), ke.Err)
		if !a.faulted() {
			s.violate("keygen", name(a.hubAt), "attempt %d failed without any fault: %v", a.num, ke)
		}
		if errors.Is(ke, threshold.ErrKeygenDisagree) && !a.lied[ke.Participant] {
			s.violate("keygen-blame", name(ke.Participant), "attempt %d: blamed for a different key, but it did not lie: %v", a.num, ke)
		}
		if errors.Is(ke, threshold.ErrKeygenTransport) && !a.crashed[ke.Participant] {
			s.violate("keygen-blame", name(ke.Participant), "attempt %d: blamed for a broken stream, but it did not crash: %v", a.num, ke)
		}
		if len(a.lied) > 0 && len(a.stalled)+len(a.crashed) == 0 && !errors.Is(ke, threshold.ErrKeygenDisagree) {
			s.violate("keygen-blame", "", "attempt %d: a lie and no other fault, but the failure is %v", a.num, ke)
		}
		return nil, nil, false
	}
	res := out.Done
	s.trace("keygen attempt %d succeeded after %d ms", a.num, a.hubEnd-start)
	if len(a.lied) > 0 {
		s.violate("keygen-blame", "", "attempt %d succeeded although a device lied about its key", a.num)
	}
	shares := make([]*threshold.Share, a.n)
	shares[a.hubAt] = res.Share
	bad := false
	for i := range a.n {
		if i == a.hubAt {
			continue
		}
		k := a.kept[i]
		switch {
		case a.partOut[i] == nil || a.partOut[i].Done == nil:
			s.violate("keygen-share", name(i), "attempt %d: the hub succeeded but this participant did not: %+v", a.num, a.partOut[i])
		case k == nil:
			s.violate("keygen-share", name(i), "attempt %d: the hub succeeded but this participant kept no share", a.num)
		case !k.Key.Equal(res.Key) || k.Share.Index() != i || !k.Share.Matches(res.Key):
			s.violate("keygen-share", name(i), "attempt %d: its share (index %d) is not one of the hub's group key", a.num, k.Share.Index())
		default:
			shares[i] = k.Share
			continue
		}
		bad = true
	}
	if bad {
		return nil, nil, false
	}
	if err := checkAnyM(res.Key, shares, s.seedBytes("keygen-msg", a.num)); err != nil {
		s.violate("keygen-share", "", "attempt %d: %v", a.num, err)
		return nil, nil, false
	}
	return res.Key, shares, true
}

// checkAnyM signs msg with every M-subset of the shares (up to 64 subsets,
// in lexicographic order) and checks that the recovered group signatures
// verify and agree.
func checkAnyM(key *threshold.GroupKey, shares []*threshold.Share, msg []byte) error {
	m := key.Threshold()
	partials := make([][]byte, len(shares))
	for i, sh := range shares {
		p, err := threshold.SignPartial(sh, msg)
		if err != nil {
			return fmt.Errorf("share %d cannot sign: %w", i, err)
		}
		partials[i] = p
	}
	v := threshold.NewVerifier(key)
	var first []byte
	set := make([]int, m)
	for i := range set {
		set[i] = i
	}
	for count := 0; count < 64; count++ {
		sub := make([][]byte, m)
		for k, i := range set {
			sub[k] = partials[i]
		}
		sig, badSigners, err := threshold.Recover(v, msg, sub)
		if err != nil || len(badSigners) > 0 {
			return fmt.Errorf("shares %v do not sign: bad %v: %w", set, badSigners, err)
		}
		if err := threshold.VerifyGroup(key.Bytes(), msg, sig); err != nil {
			return fmt.Errorf("shares %v: %w", set, err)
		}
		if first != nil && !bytes.Equal(first, sig) {
			return fmt.Errorf("shares %v recover another signature", set)
		}
		first = sig
		// next subset
		k := m - 1
		for k >= 0 && set[k] == len(shares)-m+k {
			k--
		}
		if k < 0 {
			break
		}
		set[k]++
		for j := k + 1; j < m; j++ {
			set[j] = set[j-1] + 1
		}
	}
	return nil
}
