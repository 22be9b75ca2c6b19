package threshold

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
)

// Key generation sessions: the hub protocol that runs a DKG among the
// devices of an account, as two pure state machines (KeygenHub and
// KeygenParticipant) in the style of etcd's raft. The driver feeds them the
// frames it received and ticks carrying the current time, and carries out
// what they return (KeygenOutput): frames to send, a share to seal, a
// result or a typed error. They never read the clock, never draw
// randomness of their own (the driver passes a reader) and do no I/O, so
// the node (libp2p streams, real time) and the simulator (virtual network,
// virtual clock) run the same protocol.
//
// The protocol, with one hub (the device where the operator asked for a
// key) and n-1 participants, each linked to the hub by an ordered,
// reliable channel (a stream):
//
//  1. hub → all: init (session id, threshold, the n participant ids).
//  2. participant → hub: pub, a fresh DKG public key drawn for this session.
//  3. hub → all: start (the n DKG public keys in index order), once it has
//     every one.
//  4. The DKG (dkg.go) runs; its messages travel as msg frames through the
//     hub, which relays each to its recipients (they are signed and
//     encrypted end to end, so the hub learns no share).
//  5. participant → hub: result, the group key it computed.
//  6. hub: once its own DKG is done and every result is in, it compares
//     them with its own key. A participant whose key differs is named
//     (ErrKeygenDisagree) and the session fails for everyone. Otherwise
//     hub → all: final, carrying the key.
//  7. participant: checks the key against its own, seals its share
//     (KeygenOutput.Keep; the driver then calls Kept), and answers final.
//  8. hub: with every acknowledgement in, the session succeeds
//     (KeygenOutput.Done); the driver seals the hub's share and publishes
//     the group key.
//
// Either side may send abort (with a reason) at any time; a failed session
// sends abort to its peers. Timeouts come from Tick: the hub's DKG stops
// waiting for missing responses KeygenTimeouts.DKG after it started
// (DKG.Timeout; participants never time their DKG out), and the whole
// session fails KeygenTimeouts.Session after it began.
//
// Blame. A participant that finished without a timeout holds the sum of
// all n deals, the same key as every other such participant (dkg.go), so
// when the hub did not time out either a different result is a lie, and
// the session fails naming its sender (ErrKeygenDisagree). After the hub's
// DKG timed out, honest sides may differ, and the failure is a timeout
// (ErrKeygenTimeout) naming the first participant that differs. Frames
// that do not decode, belong to another session, or break the protocol
// fail the session naming their sender (ErrKeygenProtocol); the hub checks
// that every DKG message it relays names as its sender the participant
// whose channel it came on (the recipients' DKG checks the signature). DKG messages the DKG itself rejects are listed in
// KeygenOutput.Rejected and otherwise ignored, as dkg.go does.

// KeygenTimeouts are a session's deadlines, in the driver's time unit (ms
// for the node and the simulator), counted from the session's start.
type KeygenTimeouts struct {
	// DKG is when the DKG stops waiting for missing responses (default
	// DefaultDKGDeadline for the number of participants).
	DKG int64
	// Session is when the whole session fails (default 60 s for the hub,
	// 90 s for a participant, which starts waiting before the hub's
	// streams are all open).
	Session int64
}

func (t KeygenTimeouts) withDefaults(session int64, n int) KeygenTimeouts {
	if t.DKG <= 0 {
		t.DKG = DefaultDKGDeadline(n)
	}
	if t.Session <= 0 {
		t.Session = max(session, t.DKG+30_000)
	}
	return t
}

// DefaultDKGDeadline is how long (ms) a hub waits for a DKG of n
// participants to certify its deals: 20 s, plus 25 ms × n², because each
// device checks every deal's responses (its work grows with n², and the
// whole mesh's with n³: a 30-device DKG costs about 0.8 CPU-s per device,
// 25 CPU-s in all). 20.6 s at 5 devices, 30 s at 20, 42.5 s at 30. The
// hub's session then lasts at least 30 s longer, and stays under a
// participant's 90 s up to 30 devices.
func DefaultDKGDeadline(n int) int64 { return 20_000 + 25*int64(n)*int64(n) }

// Sentinels a *KeygenError wraps (errors.Is).
var (
	// ErrKeygenTimeout: a deadline passed before the step it guards finished.
	ErrKeygenTimeout = errors.New("threshold: key generation timed out")
	// ErrKeygenDisagree: a participant reported a group key that differs
	// from the hub's (or the hub's final key differs from the participant's).
	ErrKeygenDisagree = errors.New("threshold: key generation: group keys differ")
	// ErrKeygenAborted: the peer gave up (its reason is in the message).
	ErrKeygenAborted = errors.New("threshold: key generation aborted by a peer")
	// ErrKeygenProtocol: a peer sent a malformed frame or one that breaks
	// the protocol (wrong session, wrong phase, a bad public key...).
	ErrKeygenProtocol = errors.New("threshold: key generation protocol violation")
	// ErrKeygenTransport: the channel to a peer failed (KeygenHub.Broken,
	// KeygenParticipant.Broken).
	ErrKeygenTransport = errors.New("threshold: key generation channel failed")
	// ErrKeygenLocal: this side failed (bad configuration, randomness, the
	// driver's Abort).
	ErrKeygenLocal = errors.New("threshold: key generation failed locally")
)

// NoParticipant is KeygenError.Participant when no participant is to blame
// (or, in a participant's session, when the fault is the hub's).
const NoParticipant = -1

// KeygenError is how a session fails: which participant failed or lied (an
// index into the participant list, or NoParticipant), and why (Err wraps
// one of the ErrKeygen sentinels).
type KeygenError struct {
	Participant int
	Err         error
}

func (e *KeygenError) Error() string {
	if e.Participant == NoParticipant {
		return e.Err.Error()
	}
	return fmt.Sprintf("participant %d: %v", e.Participant, e.Err)
}

func (e *KeygenError) Unwrap() error { return e.Err }

func keygenErr(who int, sentinel error, format string, args ...any) *KeygenError {
	return &KeygenError{Participant: who, Err: fmt.Errorf("%w: %s", sentinel, fmt.Sprintf(format, args...))}
}

// KeygenSend is one frame to send. In a hub's output To is the
// participant's index; in a participant's output it is always the hub
// (To is NoParticipant).
type KeygenSend struct {
	To    int
	Frame []byte
}

// KeygenResult is a finished key generation as one side sees it.
type KeygenResult struct {
	Key          *GroupKey
	Share        *Share   // this side's share (index = its position in Participants)
	Participants [][]byte // the participant ids, in index order
}

// KeygenOutput is what a session asks its driver to do, in this order:
// send Send (in order, each to its recipient); if Keep is set, seal its
// share durably and then call Kept (or Abort if sealing failed); if Done
// is set the session succeeded; if Err is set it failed (Send then holds
// the abort frames, best effort). Done and Err are final: the session
// ignores every later input. Rejected lists DKG messages the session
// refused (for logs; the protocol carries on).
type KeygenOutput struct {
	Send     []KeygenSend
	Keep     *KeygenResult
	Done     *KeygenResult
	Err      error
	Rejected []error
}

type hubPhase uint8

const (
	hubNew     hubPhase = iota
	hubCollect          // init sent; waiting for every pub
	hubDKG              // start sent; DKG running; collecting results
	hubAck              // final sent; waiting for every acknowledgement
	hubOver             // done or failed
)

// KeygenHubConfig describes the hub's session.
type KeygenHubConfig struct {
	// Backend is the curve; nil means NewBN256().
	Backend Backend
	// Session identifies the run (the driver draws it at random).
	Session [16]byte
	// Participants are the ids of all n participants (device ids), in
	// index order; each must be non-empty and distinct.
	Participants [][]byte
	// Self is the hub's own index in Participants.
	Self int
	// Threshold is t, 2 <= t <= n.
	Threshold int
	// Rand supplies the hub's DKG key and every random choice of its DKG
	// (crypto/rand in production, SeededReader in tests and the simulator).
	Rand io.Reader
	// Timeouts are the deadlines (zero values: the defaults).
	Timeouts KeygenTimeouts
}

// KeygenHub is the hub's side of a key generation session. Not safe for
// concurrent use.
type KeygenHub struct {
	cfg     KeygenHubConfig
	backend Backend
	n       int
	phase   hubPhase
	start   int64
	dkgAt   int64
	dkgKey  *DKGKey
	dkg     *DKG
	pubs    [][]byte
	results [][]byte
	acked   []bool
	key     *GroupKey
	share   *Share
}

// NewKeygenHub checks cfg and creates the hub's session. It sends nothing
// until Start.
func NewKeygenHub(cfg KeygenHubConfig) (*KeygenHub, error) {
	b := cfg.Backend
	if b == nil {
		b = NewBN256()
	}
	n := len(cfg.Participants)
	if err := checkParams(cfg.Threshold, n); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadDKGConfig, err)
	}
	if cfg.Threshold < 2 {
		return nil, fmt.Errorf("%w: key generation needs t >= 2, got %d", ErrBadDKGConfig, cfg.Threshold)
	}
	if cfg.Self < 0 || cfg.Self >= n {
		return nil, fmt.Errorf("%w: hub index %d with %d participants", ErrBadDKGConfig, cfg.Self, n)
	}
	if cfg.Rand == nil {
		return nil, fmt.Errorf("%w: Rand is required", ErrBadDKGConfig)
	}
	if err := checkParticipantIDs(cfg.Participants); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadDKGConfig, err)
	}
	cfg.Timeouts = cfg.Timeouts.withDefaults(60_000, n)
	return &KeygenHub{cfg: cfg, backend: b, n: n,
		pubs: make([][]byte, n), results: make([][]byte, n), acked: make([]bool, n)}, nil
}

func checkParticipantIDs(ids [][]byte) error {
	seen := make(map[string]bool, len(ids))
	for i, id := range ids {
		if len(id) == 0 {
			return fmt.Errorf("participant %d has an empty id", i)
		}
		if seen[string(id)] {
			return fmt.Errorf("participant %d repeats an earlier id", i)
		}
		seen[string(id)] = true
	}
	return nil
}

// Start begins the session at time now: init frames to every participant.
func (h *KeygenHub) Start(now int64) KeygenOutput {
	if h.phase != hubNew {
		return KeygenOutput{}
	}
	h.start = now
	h.phase = hubCollect
	k, err := NewDKGKey(h.backend, h.cfg.Rand)
	if err != nil {
		return h.fail(keygenErr(NoParticipant, ErrKeygenLocal, "DKG key: %v", err))
	}
	h.dkgKey = k
	h.pubs[h.cfg.Self] = k.Public()
	var out KeygenOutput
	for i := range h.n {
		if i != h.cfg.Self {
			out.Send = append(out.Send, KeygenSend{To: i, Frame: h.frame(FrameInit, func(f *KeygenFrame) {
				f.Threshold, f.Participants = h.cfg.Threshold, h.cfg.Participants
			})})
		}
	}
	return out
}

func (h *KeygenHub) frame(t KeygenFrameType, fill func(*KeygenFrame)) []byte {
	f := &KeygenFrame{Type: t, Session: h.cfg.Session}
	if fill != nil {
		fill(f)
	}
	return f.Marshal()
}

// Over reports whether the session has finished (succeeded or failed).
func (h *KeygenHub) Over() bool { return h.phase == hubOver }

// FinalSent reports whether the hub sent the final frame and waits for the
// acknowledgements: participants may already keep their shares, so a
// driver that would abort the session for an outside reason (the account's
// epoch moved) lets it finish instead from here on.
func (h *KeygenHub) FinalSent() bool { return h.phase == hubAck }

// Step feeds one frame received from participant from at time now.
func (h *KeygenHub) Step(now int64, from int, data []byte) KeygenOutput {
	if h.phase == hubOver || h.phase == hubNew {
		return KeygenOutput{}
	}
	if from < 0 || from >= h.n || from == h.cfg.Self {
		return h.fail(keygenErr(NoParticipant, ErrKeygenLocal, "frame from participant %d of %d (hub %d)", from, h.n, h.cfg.Self))
	}
	f, err := ParseKeygenFrame(data)
	if err != nil {
		return h.fail(keygenErr(from, ErrKeygenProtocol, "%v", err))
	}
	if f.Type == FrameAbort {
		// Old participants abort with a zero session; accept any.
		return h.fail(keygenErr(from, ErrKeygenAborted, "gave up: %s", f.Error))
	}
	if f.Session != h.cfg.Session {
		return h.fail(keygenErr(from, ErrKeygenProtocol, "%s frame of another session", f.Type))
	}
	var out KeygenOutput
	switch {
	case f.Type == FramePub && h.pubs[from] != nil && bytes.Equal(h.pubs[from], f.Data):
		return out // a repeat of what it sent

	case h.phase == hubCollect && f.Type == FramePub && h.pubs[from] == nil:
		if err := h.checkPub(from, f.Data); err != nil {
			return h.fail(err)
		}
		h.pubs[from] = f.Data
		for _, p := range h.pubs {
			if p == nil {
				return out
			}
		}
		return h.startDKG(now)

	case h.phase == hubDKG && f.Type == FrameMsg:
		kind, sender, err := DKGMessageInfo(f.Data)
		if err != nil || sender != from {
			return h.fail(keygenErr(from, ErrKeygenProtocol, "DKG message (%v) signed as participant %d", err, sender))
		}
		if f.To != Broadcast && (f.To < 0 || f.To >= h.n || f.To == from) {
			return h.fail(keygenErr(from, ErrKeygenProtocol, "%s addressed to %d of %d", kind, f.To, h.n))
		}
		h.route(&out, from, []DKGMessage{{To: f.To, Data: f.Data}})
		return h.progress(&out)

	case h.phase == hubAck && f.Type == FrameMsg:
		return out // late DKG traffic: the result is settled

	case (h.phase == hubDKG || h.phase == hubAck) && f.Type == FrameResult:
		if len(f.Data) == 0 || (h.results[from] != nil && !bytes.Equal(h.results[from], f.Data)) {
			return h.fail(keygenErr(from, ErrKeygenProtocol, "a second, different result"))
		}
		h.results[from] = f.Data
		if h.phase == hubDKG {
			return h.progress(&out)
		}
		return out

	case h.phase == hubAck && f.Type == FrameFinal:
		h.acked[from] = true
		return h.progress(&out)
	}
	return h.fail(keygenErr(from, ErrKeygenProtocol, "unexpected %s frame", f.Type))
}

func (h *KeygenHub) checkPub(from int, pub []byte) *KeygenError {
	p, err := h.backend.DecodeKeyPoint(pub)
	if err != nil {
		return keygenErr(from, ErrKeygenProtocol, "DKG public key: %v", err)
	}
	if isNull(h.backend.KeyGroup(), p) {
		return keygenErr(from, ErrKeygenProtocol, "DKG public key is the identity")
	}
	for i, q := range h.pubs {
		if i != from && q != nil && bytes.Equal(q, pub) {
			return keygenErr(from, ErrKeygenProtocol, "DKG public key repeats participant %d's", i)
		}
	}
	return nil
}

func (h *KeygenHub) startDKG(now int64) KeygenOutput {
	var out KeygenOutput
	for i := range h.n {
		if i != h.cfg.Self {
			out.Send = append(out.Send, KeygenSend{To: i, Frame: h.frame(FrameStart, func(f *KeygenFrame) { f.Pubs = h.pubs })})
		}
	}
	d, err := NewDKG(DKGConfig{Backend: h.backend, Index: h.cfg.Self, Key: h.dkgKey, Participants: h.pubs,
		Threshold: h.cfg.Threshold, Rand: h.cfg.Rand})
	if err != nil {
		return h.failWith(out, keygenErr(NoParticipant, ErrKeygenLocal, "%v", err))
	}
	msgs, err := d.Start()
	if err != nil {
		return h.failWith(out, keygenErr(NoParticipant, ErrKeygenLocal, "%v", err))
	}
	h.dkg, h.dkgAt, h.phase = d, now, hubDKG
	h.route(&out, h.cfg.Self, msgs)
	return h.progress(&out)
}

// route delivers DKG messages from participant from: frames to the other
// participants, and the hub's own DKG steps (whose replies are routed in
// turn), in a deterministic order.
func (h *KeygenHub) route(out *KeygenOutput, from int, msgs []DKGMessage) {
	type item struct {
		from int
		msg  DKGMessage
	}
	queue := make([]item, 0, len(msgs))
	for _, m := range msgs {
		queue = append(queue, item{from, m})
	}
	for len(queue) > 0 {
		it := queue[0]
		queue = queue[1:]
		for i := range h.n {
			if i == it.from || (it.msg.To != Broadcast && it.msg.To != i) {
				continue
			}
			if i != h.cfg.Self {
				out.Send = append(out.Send, KeygenSend{To: i, Frame: h.frame(FrameMsg, func(f *KeygenFrame) {
					f.To, f.From, f.Data = it.msg.To, it.from, it.msg.Data
				})})
				continue
			}
			replies, err := h.dkg.Step(it.msg.Data)
			if err != nil {
				out.Rejected = append(out.Rejected, err)
				continue
			}
			for _, r := range replies {
				queue = append(queue, item{h.cfg.Self, r})
			}
		}
	}
}

// progress moves the session on when what it waits for is complete.
func (h *KeygenHub) progress(out *KeygenOutput) KeygenOutput {
	switch h.phase {
	case hubDKG:
		if !h.dkg.Done() {
			return *out
		}
		for i, r := range h.results {
			if i != h.cfg.Self && r == nil {
				return *out
			}
		}
		key, share, err := h.dkg.Result()
		if err != nil {
			return h.failWith(*out, keygenErr(NoParticipant, ErrKeygenLocal, "%v", err))
		}
		for i, r := range h.results {
			if i == h.cfg.Self || bytes.Equal(r, key.Bytes()) {
				continue
			}
			if h.dkg.timedOut {
				// After a timeout honest participants may certify different
				// deals: the difference proves nothing against i.
				return h.failWith(*out, keygenErr(i, ErrKeygenTimeout,
					"computed a different group key after the hub's DKG timed out (messages were missing)"))
			}
			// Without a timeout every honest participant certified every
			// deal and holds the hub's key: i lied or is faulty.
			return h.failWith(*out, keygenErr(i, ErrKeygenDisagree, "reported a group key that differs from the hub's"))
		}
		h.key, h.share, h.phase = key, share, hubAck
		for i := range h.n {
			if i != h.cfg.Self {
				out.Send = append(out.Send, KeygenSend{To: i, Frame: h.frame(FrameFinal, func(f *KeygenFrame) { f.Data = key.Bytes() })})
			}
		}
		return h.progress(out)
	case hubAck:
		for i, a := range h.acked {
			if i != h.cfg.Self && !a {
				return *out
			}
		}
		h.phase = hubOver
		out.Done = &KeygenResult{Key: h.key, Share: h.share, Participants: h.cfg.Participants}
	}
	return *out
}

// Tick tells the session the time: it enforces the deadlines.
func (h *KeygenHub) Tick(now int64) KeygenOutput {
	if h.phase == hubOver || h.phase == hubNew {
		return KeygenOutput{}
	}
	var out KeygenOutput
	if h.phase == hubDKG && !h.dkg.timedOut && now-h.dkgAt >= h.cfg.Timeouts.DKG {
		h.dkg.Timeout()
		if !h.dkg.Done() {
			q := h.dkg.Qualified()
			return h.fail(keygenErr(onlyMissing(h.n, q), ErrKeygenTimeout,
				"only %d deals certified in time (dealers %v), %d needed", len(q), q, h.cfg.Threshold))
		}
		out = h.progress(&out)
		if h.phase == hubOver {
			return out
		}
	}
	if now-h.start >= h.cfg.Timeouts.Session {
		var missing []int
		what := ""
		for i := range h.n {
			if i == h.cfg.Self {
				continue
			}
			switch {
			case h.phase == hubCollect && h.pubs[i] == nil:
				missing, what = append(missing, i), "DKG public key"
			case h.phase == hubDKG && h.results[i] == nil:
				missing, what = append(missing, i), "result"
			case h.phase == hubAck && !h.acked[i]:
				missing, what = append(missing, i), "acknowledgement"
			}
		}
		if len(missing) == 0 {
			return h.failWith(out, keygenErr(NoParticipant, ErrKeygenTimeout, "the hub's DKG did not finish"))
		}
		who := NoParticipant
		if len(missing) == 1 {
			who = missing[0]
		}
		plural := ""
		if len(missing) > 1 {
			plural = "s"
		}
		return h.failWith(out, keygenErr(who, ErrKeygenTimeout, "no %s from participant%s %s", what, plural, joinInts(missing)))
	}
	return out
}

// onlyMissing is the one index in [0, n) missing from q, or NoParticipant
// when none or several are.
func onlyMissing(n int, q []int) int {
	who := NoParticipant
	for i := range n {
		if indexOf(q, i) < 0 {
			if who != NoParticipant {
				return NoParticipant
			}
			who = i
		}
	}
	return who
}

func indexOf(xs []int, x int) int {
	for k, y := range xs {
		if y == x {
			return k
		}
	}
	return -1
}

func joinInts(xs []int) string {
	s := make([]string, len(xs))
	for i, x := range xs {
		s[i] = fmt.Sprint(x)
	}
	return strings.Join(s, ", ")
}

// Broken tells the session that the channel to participant from failed
// (err says how). After that participant acknowledged, its channel may
// end: that is no failure.
func (h *KeygenHub) Broken(now int64, from int, err error) KeygenOutput {
	if h.phase == hubOver || h.phase == hubNew || from < 0 || from >= h.n || from == h.cfg.Self {
		return KeygenOutput{}
	}
	if h.phase == hubAck && h.acked[from] {
		return KeygenOutput{}
	}
	return h.fail(keygenErr(from, ErrKeygenTransport, "%v", err))
}

// Abort ends the session on the driver's behalf (the operator gave up, a
// send failed for good...): abort frames to everyone, and err as the
// session's error.
func (h *KeygenHub) Abort(now int64, err error) KeygenOutput {
	if h.phase == hubOver {
		return KeygenOutput{}
	}
	var ke *KeygenError
	if !errors.As(err, &ke) {
		ke = &KeygenError{Participant: NoParticipant, Err: fmt.Errorf("%w: %w", ErrKeygenLocal, err)}
	}
	return h.fail(ke)
}

func (h *KeygenHub) fail(err *KeygenError) KeygenOutput { return h.failWith(KeygenOutput{}, err) }

func (h *KeygenHub) failWith(out KeygenOutput, err *KeygenError) KeygenOutput {
	started := h.phase != hubNew
	h.phase = hubOver
	out.Err = err
	if started {
		for i := range h.n {
			if i != h.cfg.Self {
				out.Send = append(out.Send, KeygenSend{To: i, Frame: h.frame(FrameAbort, func(f *KeygenFrame) { f.Error = err.Error() })})
			}
		}
	}
	return out
}

type partPhase uint8

const (
	partInit  partPhase = iota // waiting for init
	partStart                  // pub sent; waiting for start
	partDKG                    // DKG running
	partKeep                   // final received; the driver seals the share
	partOver                   // done or failed
)

// KeygenParticipantConfig describes a participant's session.
type KeygenParticipantConfig struct {
	// Backend is the curve; nil means NewBN256().
	Backend Backend
	// Self is this device's id, to be found among the init frame's
	// participants.
	Self []byte
	// Rand supplies this participant's DKG key and every random choice of
	// its DKG.
	Rand io.Reader
	// Timeouts are the deadlines (zero values: the defaults). Only Session
	// applies: a participant never times its DKG out, so that a participant
	// that finishes holds every deal and a hub that did not time out either
	// can treat a different key as a lie.
	Timeouts KeygenTimeouts
}

// KeygenParticipant is a participant's side of a key generation session:
// it talks to the hub only. Not safe for concurrent use.
type KeygenParticipant struct {
	cfg      KeygenParticipantConfig
	backend  Backend
	start    int64
	phase    partPhase
	session  [16]byte
	t        int
	self     int
	ids      [][]byte
	dkgKey   *DKGKey
	dkg      *DKG
	reported bool
	key      *GroupKey
	share    *Share
}

// NewKeygenParticipant creates a participant's session at time now (when
// the hub's channel opened); it waits for the hub's init frame.
func NewKeygenParticipant(cfg KeygenParticipantConfig, now int64) (*KeygenParticipant, error) {
	b := cfg.Backend
	if b == nil {
		b = NewBN256()
	}
	if len(cfg.Self) == 0 || cfg.Rand == nil {
		return nil, fmt.Errorf("%w: Self and Rand are required", ErrBadDKGConfig)
	}
	cfg.Timeouts = cfg.Timeouts.withDefaults(90_000, 0)
	return &KeygenParticipant{cfg: cfg, backend: b, start: now, self: NoParticipant}, nil
}

// Over reports whether the session has finished (succeeded or failed).
func (p *KeygenParticipant) Over() bool { return p.phase == partOver }

// Index is this participant's index, once the init frame named it
// (NoParticipant before).
func (p *KeygenParticipant) Index() int { return p.self }

// Threshold is t from the init frame (0 before).
func (p *KeygenParticipant) Threshold() int { return p.t }

// Participants are the participant ids from the init frame (nil before).
func (p *KeygenParticipant) Participants() [][]byte { return p.ids }

func (p *KeygenParticipant) frame(t KeygenFrameType, fill func(*KeygenFrame)) KeygenSend {
	f := &KeygenFrame{Type: t, Session: p.session}
	if fill != nil {
		fill(f)
	}
	return KeygenSend{To: NoParticipant, Frame: f.Marshal()}
}

// Step feeds one frame received from the hub at time now.
func (p *KeygenParticipant) Step(now int64, data []byte) KeygenOutput {
	if p.phase == partOver {
		return KeygenOutput{}
	}
	f, err := ParseKeygenFrame(data)
	if err != nil {
		return p.fail(keygenErr(NoParticipant, ErrKeygenProtocol, "from the hub: %v", err))
	}
	if f.Type == FrameAbort {
		// Over without an answer: the hub is gone.
		p.phase = partOver
		return KeygenOutput{Err: keygenErr(NoParticipant, ErrKeygenAborted, "the hub gave up: %s", f.Error)}
	}
	if p.phase != partInit && f.Session != p.session {
		return p.fail(keygenErr(NoParticipant, ErrKeygenProtocol, "%s frame of another session", f.Type))
	}
	var out KeygenOutput
	switch {
	case p.phase == partInit && f.Type == FrameInit:
		p.session = f.Session
		return p.init(f)

	case p.phase == partStart && f.Type == FrameStart:
		return p.startDKG(now, f.Pubs)

	case p.phase == partDKG && f.Type == FrameMsg:
		msgs, err := p.dkg.Step(f.Data)
		if err != nil {
			out.Rejected = append(out.Rejected, err)
		}
		p.send(&out, msgs)
		return p.report(&out)

	case p.phase == partDKG && f.Type == FrameFinal:
		if !p.reported {
			return p.fail(keygenErr(NoParticipant, ErrKeygenProtocol, "the hub sent final before this participant reported a result"))
		}
		if !bytes.Equal(p.key.Bytes(), f.Data) {
			return p.fail(keygenErr(NoParticipant, ErrKeygenDisagree, "the hub's group key differs from this participant's"))
		}
		p.phase = partKeep
		out.Keep = &KeygenResult{Key: p.key, Share: p.share, Participants: p.ids}
		return out

	case p.phase == partKeep && f.Type == FrameMsg:
		return out // late DKG traffic
	}
	return p.fail(keygenErr(NoParticipant, ErrKeygenProtocol, "unexpected %s frame from the hub", f.Type))
}

func (p *KeygenParticipant) init(f *KeygenFrame) KeygenOutput {
	n := len(f.Participants)
	if err := checkParams(f.Threshold, n); err != nil || f.Threshold < 2 {
		return p.fail(keygenErr(NoParticipant, ErrKeygenProtocol, "init: threshold %d with %d participants", f.Threshold, n))
	}
	if err := checkParticipantIDs(f.Participants); err != nil {
		return p.fail(keygenErr(NoParticipant, ErrKeygenProtocol, "init: %v", err))
	}
	for i, id := range f.Participants {
		if bytes.Equal(id, p.cfg.Self) {
			p.self = i
		}
	}
	if p.self == NoParticipant {
		return p.fail(keygenErr(NoParticipant, ErrKeygenProtocol, "this device is not among the participants"))
	}
	k, err := NewDKGKey(p.backend, p.cfg.Rand)
	if err != nil {
		return p.fail(keygenErr(NoParticipant, ErrKeygenLocal, "DKG key: %v", err))
	}
	p.t, p.ids, p.dkgKey, p.phase = f.Threshold, f.Participants, k, partStart
	return KeygenOutput{Send: []KeygenSend{p.frame(FramePub, func(f *KeygenFrame) { f.Data = k.Public() })}}
}

func (p *KeygenParticipant) startDKG(now int64, pubs [][]byte) KeygenOutput {
	if len(pubs) != len(p.ids) || !bytes.Equal(pubs[p.self], p.dkgKey.Public()) {
		return p.fail(keygenErr(NoParticipant, ErrKeygenProtocol, "start: %d public keys for %d participants, or not this participant's own", len(pubs), len(p.ids)))
	}
	d, err := NewDKG(DKGConfig{Backend: p.backend, Index: p.self, Key: p.dkgKey, Participants: pubs,
		Threshold: p.t, Rand: p.cfg.Rand})
	if err != nil {
		return p.fail(keygenErr(NoParticipant, ErrKeygenProtocol, "start: %v", err))
	}
	msgs, err := d.Start()
	if err != nil {
		return p.fail(keygenErr(NoParticipant, ErrKeygenLocal, "%v", err))
	}
	p.dkg, p.phase = d, partDKG
	var out KeygenOutput
	p.send(&out, msgs)
	return p.report(&out)
}

func (p *KeygenParticipant) send(out *KeygenOutput, msgs []DKGMessage) {
	for _, m := range msgs {
		out.Send = append(out.Send, p.frame(FrameMsg, func(f *KeygenFrame) { f.To, f.From, f.Data = m.To, p.self, m.Data }))
	}
}

// report sends the result once the DKG is done.
func (p *KeygenParticipant) report(out *KeygenOutput) KeygenOutput {
	if p.reported || !p.dkg.Done() {
		return *out
	}
	key, share, err := p.dkg.Result()
	if err != nil {
		o := p.fail(keygenErr(NoParticipant, ErrKeygenLocal, "%v", err))
		o.Send = append(out.Send, o.Send...)
		return o
	}
	p.key, p.share, p.reported = key, share, true
	out.Send = append(out.Send, p.frame(FrameResult, func(f *KeygenFrame) { f.Data = key.Bytes() }))
	return *out
}

// Kept tells the session that the driver sealed the share of Keep: it
// acknowledges to the hub and finishes.
func (p *KeygenParticipant) Kept(now int64) KeygenOutput {
	if p.phase != partKeep {
		return KeygenOutput{}
	}
	p.phase = partOver
	return KeygenOutput{Send: []KeygenSend{p.frame(FrameFinal, nil)},
		Done: &KeygenResult{Key: p.key, Share: p.share, Participants: p.ids}}
}

// Tick tells the session the time: it enforces the deadlines.
func (p *KeygenParticipant) Tick(now int64) KeygenOutput {
	if p.phase == partOver {
		return KeygenOutput{}
	}
	if now-p.start >= p.cfg.Timeouts.Session {
		var what string
		switch p.phase {
		case partInit:
			what = "no init from the hub"
		case partStart:
			what = "no start from the hub"
		case partDKG:
			what = "the DKG or the hub's final did not come"
		case partKeep:
			what = "the share was not kept"
		}
		return p.fail(keygenErr(NoParticipant, ErrKeygenTimeout, "%s", what))
	}
	return KeygenOutput{}
}

// Broken tells the session that the channel to the hub failed.
func (p *KeygenParticipant) Broken(now int64, err error) KeygenOutput {
	if p.phase == partOver {
		return KeygenOutput{}
	}
	p.phase = partOver
	return KeygenOutput{Err: keygenErr(NoParticipant, ErrKeygenTransport, "channel to the hub: %v", err)}
}

// Abort ends the session on the driver's behalf (sealing the share
// failed, the device shuts down...): an abort frame to the hub, and err as
// the session's error.
func (p *KeygenParticipant) Abort(now int64, err error) KeygenOutput {
	if p.phase == partOver {
		return KeygenOutput{}
	}
	return p.fail(&KeygenError{Participant: NoParticipant, Err: fmt.Errorf("%w: %w", ErrKeygenLocal, err)})
}

func (p *KeygenParticipant) fail(err *KeygenError) KeygenOutput {
	p.phase = partOver
	return KeygenOutput{Err: err, Send: []KeygenSend{p.frame(FrameAbort, func(f *KeygenFrame) { f.Error = err.Error() })}}
}
