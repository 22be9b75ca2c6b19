package threshold

import (
	"bytes"
	"errors"
	"fmt"
	"io"
)

// Resharing sessions: the hub protocol that moves an account's threshold
// key to new shares (after a device was removed or added) without
// changing the group public key, as two pure state machines, ReshareHub
// and ReshareParticipant, built like the key generation session
// (keygen.go) and speaking the same KeygenOutput.
//
// The protocol, with one hub (the device the operator asked, or the one
// that saw the removal) and the other devices of the account invited:
//
//  1. hub → all: init (session, new threshold, the invited device ids,
//     the old group key, the old share index each one should hold).
//  2. participant → hub: pub, a fresh DKG public key, and the share index
//     it deals with when it holds that share (checked against the old
//     key's commitments).
//  3. hub: once every invited device answered or dropped out (its channel
//     broke, it gave up), or KeygenTimeouts-like ReshareTimeouts.Collect
//     after the start, whoever answered is the new group. Unlike key
//     generation, a device that does not answer is left out, not waited
//     for: with fewer than the old threshold of share holders among the
//     answers the session fails (ErrReshareQuorum) and nothing changes;
//     with fewer answers than the new threshold it fails too
//     (ErrReshareThreshold). Otherwise hub → each member: start (the
//     members' DKG keys in new index order, their participant indexes,
//     and which old share each of them deals).
//  4. The resharing DKG (reshare_dkg.go) runs, relayed by the hub as in
//     key generation; every member waits until the deal of every named
//     dealer is certified by every member (no DKG timeout).
//  5. result, final, acknowledgement, done: exactly as key generation
//     (a member whose key differs is a liar, ErrKeygenDisagree).
//
// The new key has the same group public key (so every snapshot signed
// before still verifies) and new commitments, t and n; old shares no
// longer match it, so a partial made with one is a bad partial under the
// new key. The driver seals the new share beside the old one and uses it
// once a group key fact names the new key (the hub's driver publishes it
// at the next key epoch): a participant whose hub failed after its
// acknowledgement keeps a usable old share.
//
// A member's failure after start fails the session for everyone (the DKG
// needs every member's response); a participant's failure before start
// only leaves it out.

// ReshareTimeouts are a resharing session's deadlines, in the driver's
// time unit (ms), counted from the session's start (DKG: from start
// frames).
type ReshareTimeouts struct {
	// Collect is how long the hub waits for invited devices to answer
	// (default 5 s).
	Collect int64
	// DKG is how long the hub waits for every deal to be certified
	// (default DefaultDKGDeadline for the number of devices).
	DKG int64
	// Session is when the whole session fails (default 60 s for the hub,
	// 90 s for a participant).
	Session int64
}

func (t ReshareTimeouts) withDefaults(session int64, n int) ReshareTimeouts {
	if t.Collect <= 0 {
		t.Collect = 5_000
	}
	if t.DKG <= 0 {
		t.DKG = DefaultDKGDeadline(n)
	}
	if t.Session <= 0 {
		t.Session = max(session, t.Collect+t.DKG+30_000)
	}
	return t
}

// Sentinels of resharing failures (besides the ErrKeygen ones).
var (
	// ErrReshareQuorum: fewer than the old threshold of share holders took
	// part; the old key stays as it was.
	ErrReshareQuorum = errors.New("threshold: resharing: not enough share holders online")
	// ErrReshareThreshold: the new threshold does not fit the new group
	// (2 <= t <= the devices taking part).
	ErrReshareThreshold = errors.New("threshold: resharing: threshold out of range")
)

// NoShare is the old share index of a device that holds none.
const NoShare = -1

// ReshareHubConfig describes the hub's session.
type ReshareHubConfig struct {
	// Backend is the curve; nil means NewBN256().
	Backend Backend
	// Session identifies the run (the driver draws it at random).
	Session [16]byte
	// Participants are the ids of the devices invited (the hub among
	// them), in index order; non-empty and distinct.
	Participants [][]byte
	// Self is the hub's index in Participants.
	Self int
	// OldKey is the key to reshare.
	OldKey *GroupKey
	// Holders gives, for each participant, the index of the OldKey share
	// it should hold (as the published group key fact says), or NoShare.
	Holders []int
	// Share is the hub's share of OldKey, or nil.
	Share *Share
	// Threshold is the new t, 2 <= t <= len(Participants).
	Threshold int
	// Rand supplies the hub's DKG key and every random choice of its DKG.
	Rand io.Reader
	// Timeouts are the deadlines (zero values: the defaults).
	Timeouts ReshareTimeouts
}

// ReshareHub is the hub's side of a resharing session. Not safe for
// concurrent use.
type ReshareHub struct {
	cfg     ReshareHubConfig
	backend Backend
	n       int
	phase   hubPhase
	start   int64
	dkgAt   int64
	dkgKey  *DKGKey
	dkg     *ReshareDKG
	pubs    [][]byte // by participant
	claims  []int    // by participant: the share it deals with, or NoShare
	dropped []string // by participant: why it was left out ("" = not)
	gone    []bool   // by participant: its channel broke
	members []int    // participant indexes, in new index order
	newIdx  []int    // by participant: new index, or NoParticipant
	results [][]byte
	acked   []bool
	key     *GroupKey
	share   *Share
}

// NewReshareHub checks cfg and creates the hub's session. Errors wrap
// ErrBadDKGConfig, ErrReshareThreshold or ErrReshareQuorum (when even
// every invited device could not make a quorum).
func NewReshareHub(cfg ReshareHubConfig) (*ReshareHub, error) {
	b := cfg.Backend
	if b == nil {
		b = NewBN256()
	}
	n := len(cfg.Participants)
	if cfg.OldKey == nil || cfg.Rand == nil {
		return nil, fmt.Errorf("%w: OldKey and Rand are required", ErrBadDKGConfig)
	}
	if cfg.Self < 0 || cfg.Self >= n {
		return nil, fmt.Errorf("%w: hub index %d with %d participants", ErrBadDKGConfig, cfg.Self, n)
	}
	if err := checkParticipantIDs(cfg.Participants); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadDKGConfig, err)
	}
	if cfg.Threshold < 2 || cfg.Threshold > n {
		return nil, fmt.Errorf("%w: threshold %d with %d devices (need 2 <= M <= %d)", ErrReshareThreshold, cfg.Threshold, n, n)
	}
	if len(cfg.Holders) != n {
		return nil, fmt.Errorf("%w: %d holder entries for %d participants", ErrBadDKGConfig, len(cfg.Holders), n)
	}
	oldN, oldT := cfg.OldKey.Signers(), cfg.OldKey.Threshold()
	seen := map[int]bool{}
	holders := 0
	for i, k := range cfg.Holders {
		if k == NoShare {
			continue
		}
		if k < 0 || k >= oldN || seen[k] {
			return nil, fmt.Errorf("%w: participant %d holds share %d of %d (or a repeated one)", ErrBadDKGConfig, i, k, oldN)
		}
		seen[k] = true
		holders++
	}
	if holders < oldT {
		return nil, fmt.Errorf("%w: only %d of the devices hold a share of the key, it needs %d", ErrReshareQuorum, holders, oldT)
	}
	cfg.Timeouts = cfg.Timeouts.withDefaults(60_000, n)
	h := &ReshareHub{cfg: cfg, backend: b, n: n,
		pubs: make([][]byte, n), claims: make([]int, n), dropped: make([]string, n), gone: make([]bool, n),
		newIdx: make([]int, n), results: make([][]byte, n), acked: make([]bool, n)}
	for i := range h.claims {
		h.claims[i], h.newIdx[i] = NoShare, NoParticipant
	}
	if k := cfg.Holders[cfg.Self]; k != NoShare && cfg.Share != nil && cfg.Share.Index() == k && cfg.Share.Matches(cfg.OldKey) {
		h.claims[cfg.Self] = k
	}
	return h, nil
}

func (h *ReshareHub) frame(t KeygenFrameType, fill func(*ReshareFrame)) []byte {
	f := &ReshareFrame{Type: t, Session: h.cfg.Session}
	if fill != nil {
		fill(f)
	}
	return f.Marshal()
}

// Over reports whether the session has finished.
func (h *ReshareHub) Over() bool { return h.phase == hubOver }

// FinalSent reports whether the hub sent final and waits for the
// acknowledgements: members may already keep their new shares, so a
// driver that would abort for an outside reason (the epoch moved) lets the
// session finish from here on, as with KeygenHub.FinalSent.
func (h *ReshareHub) FinalSent() bool { return h.phase == hubAck }

// Members are the participant indexes of the new group in new index
// order, once the DKG started (nil before).
func (h *ReshareHub) Members() []int { return append([]int(nil), h.members...) }

// Dropped says why participant i was left out of the new group ("" when it
// was not).
func (h *ReshareHub) Dropped(i int) string {
	if i < 0 || i >= h.n {
		return ""
	}
	return h.dropped[i]
}

// Start begins the session at time now: init frames to every other
// participant.
func (h *ReshareHub) Start(now int64) KeygenOutput {
	if h.phase != hubNew {
		return KeygenOutput{}
	}
	h.start, h.phase = now, hubCollect
	k, err := NewDKGKey(h.backend, h.cfg.Rand)
	if err != nil {
		return h.fail(keygenErr(NoParticipant, ErrKeygenLocal, "DKG key: %v", err))
	}
	h.dkgKey = k
	h.pubs[h.cfg.Self] = k.Public()
	var out KeygenOutput
	for i := range h.n {
		if i != h.cfg.Self {
			out.Send = append(out.Send, KeygenSend{To: i, Frame: h.frame(FrameInit, func(f *ReshareFrame) {
				f.Threshold, f.Participants, f.Holders, f.Data = h.cfg.Threshold, h.cfg.Participants, h.cfg.Holders, h.cfg.OldKey.Bytes()
			})})
		}
	}
	if h.n == 1 {
		return h.startDKG(now, &out)
	}
	return out
}

// drop leaves participant i out (before start) and starts the DKG when
// nobody else is awaited.
func (h *ReshareHub) drop(now int64, i int, why string, tell bool) KeygenOutput {
	var out KeygenOutput
	if h.pubs[i] != nil && h.dropped[i] == "" {
		h.pubs[i] = nil
	}
	if h.dropped[i] == "" {
		h.dropped[i] = why
	}
	if tell {
		out.Send = append(out.Send, KeygenSend{To: i, Frame: h.frame(FrameAbort, func(f *ReshareFrame) { f.Error = "left out: " + why })})
	}
	return h.maybeStart(now, &out)
}

func (h *ReshareHub) maybeStart(now int64, out *KeygenOutput) KeygenOutput {
	for i := range h.n {
		if h.pubs[i] == nil && h.dropped[i] == "" {
			return *out
		}
	}
	return h.startDKG(now, out)
}

// Step feeds one frame received from participant from at time now.
func (h *ReshareHub) Step(now int64, from int, data []byte) KeygenOutput {
	if h.phase == hubOver || h.phase == hubNew {
		return KeygenOutput{}
	}
	if from < 0 || from >= h.n || from == h.cfg.Self {
		return h.fail(keygenErr(NoParticipant, ErrKeygenLocal, "frame from participant %d of %d (hub %d)", from, h.n, h.cfg.Self))
	}
	collecting := h.phase == hubCollect
	member := h.newIdx[from] != NoParticipant
	if !collecting && !member {
		// Left out: its frames no longer matter; a late pub learns why.
		if f, err := ParseReshareFrame(data); err == nil && f.Type == FramePub {
			return KeygenOutput{Send: []KeygenSend{{To: from, Frame: h.frame(FrameAbort, func(f *ReshareFrame) {
				f.Error = "the resharing started without this device"
			})}}}
		}
		return KeygenOutput{}
	}
	f, err := ParseReshareFrame(data)
	if err != nil {
		return h.memberFailed(now, from, keygenErr(from, ErrKeygenProtocol, "%v", err))
	}
	if f.Type == FrameAbort {
		if collecting {
			return h.drop(now, from, "gave up: "+f.Error, false)
		}
		return h.fail(keygenErr(from, ErrKeygenAborted, "gave up: %s", f.Error))
	}
	if f.Session != h.cfg.Session {
		return h.memberFailed(now, from, keygenErr(from, ErrKeygenProtocol, "%s frame of another session", f.Type))
	}
	var out KeygenOutput
	switch {
	case f.Type == FramePub && h.pubs[from] != nil && bytes.Equal(h.pubs[from], f.Data):
		return out

	case collecting && f.Type == FramePub && h.pubs[from] == nil:
		if err := h.checkPub(from, f); err != nil {
			return h.memberFailed(now, from, err)
		}
		h.pubs[from] = f.Data
		if len(f.Holders) == 1 {
			h.claims[from] = f.Holders[0]
		}
		return h.maybeStart(now, &out)

	case h.phase == hubDKG && f.Type == FrameMsg:
		kind, sender, err := DKGMessageInfo(f.Data)
		want := h.newIdx[from]
		if kind == DKGDeal || kind == DKGJustification {
			want = h.claims[from]
		}
		if err != nil || want == NoShare || sender != want {
			return h.fail(keygenErr(from, ErrKeygenProtocol, "%s (%v) signed as %d, its index is %d", kind, err, sender, want))
		}
		if f.To != Broadcast && (f.To < 0 || f.To >= len(h.members) || f.To == h.newIdx[from]) {
			return h.fail(keygenErr(from, ErrKeygenProtocol, "%s addressed to %d of %d", kind, f.To, len(h.members)))
		}
		h.route(&out, from, []DKGMessage{{To: f.To, Data: f.Data}})
		return h.progress(&out)

	case h.phase == hubAck && f.Type == FrameMsg:
		return out

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
	return h.memberFailed(now, from, keygenErr(from, ErrKeygenProtocol, "unexpected %s frame", f.Type))
}

// memberFailed handles a participant's fault: before start it is left out,
// after start the session fails.
func (h *ReshareHub) memberFailed(now int64, from int, err *KeygenError) KeygenOutput {
	if h.phase == hubCollect {
		return h.drop(now, from, err.Error(), true)
	}
	return h.fail(err)
}

func (h *ReshareHub) checkPub(from int, f *ReshareFrame) *KeygenError {
	p, err := h.backend.DecodeKeyPoint(f.Data)
	if err != nil {
		return keygenErr(from, ErrKeygenProtocol, "DKG public key: %v", err)
	}
	if isNull(h.backend.KeyGroup(), p) {
		return keygenErr(from, ErrKeygenProtocol, "DKG public key is the identity")
	}
	for i, q := range h.pubs {
		if i != from && q != nil && bytes.Equal(q, f.Data) {
			return keygenErr(from, ErrKeygenProtocol, "DKG public key repeats participant %d's", i)
		}
	}
	switch {
	case len(f.Holders) > 1:
		return keygenErr(from, ErrKeygenProtocol, "claims %d shares", len(f.Holders))
	case len(f.Holders) == 1 && f.Holders[0] != h.cfg.Holders[from]:
		return keygenErr(from, ErrKeygenProtocol, "claims share %d, the group key gives it %d", f.Holders[0], h.cfg.Holders[from])
	}
	return nil
}

func (h *ReshareHub) startDKG(now int64, out *KeygenOutput) KeygenOutput {
	oldT := h.cfg.OldKey.Threshold()
	var members, dealers, away []int
	for i := range h.n {
		if h.pubs[i] == nil {
			if h.cfg.Holders[i] != NoShare {
				away = append(away, i)
			}
			continue
		}
		members = append(members, i)
		if h.claims[i] != NoShare {
			dealers = append(dealers, i)
		} else if h.cfg.Holders[i] != NoShare {
			away = append(away, i)
		}
	}
	if len(dealers) < oldT {
		return h.failWith(*out, keygenErr(NoParticipant, ErrReshareQuorum,
			"%d share holders took part (participants %s), the key needs %d; missing: participants %s",
			len(dealers), joinInts(dealers), oldT, joinInts(away)))
	}
	if h.cfg.Threshold > len(members) {
		return h.failWith(*out, keygenErr(NoParticipant, ErrReshareThreshold,
			"threshold %d, but only %d devices took part (participants %s)", h.cfg.Threshold, len(members), joinInts(members)))
	}
	h.members = members
	newPubs := make([][]byte, len(members))
	holders := make([]int, len(members))
	dealerKeys := make([][]byte, h.cfg.OldKey.Signers())
	for k, i := range members {
		h.newIdx[i] = k
		newPubs[k] = h.pubs[i]
		holders[k] = h.claims[i]
		if h.claims[i] != NoShare {
			dealerKeys[h.claims[i]] = h.pubs[i]
		}
	}
	for _, i := range members {
		if i != h.cfg.Self {
			out.Send = append(out.Send, KeygenSend{To: i, Frame: h.frame(FrameStart, func(f *ReshareFrame) {
				f.Pubs, f.Members, f.Holders = newPubs, members, holders
			})})
		}
	}
	var share *Share
	if h.claims[h.cfg.Self] != NoShare {
		share = h.cfg.Share
	}
	d, err := NewReshareDKG(ReshareDKGConfig{Backend: h.backend, Key: h.dkgKey, OldKey: h.cfg.OldKey, Share: share,
		Dealers: dealerKeys, NewNodes: newPubs, Threshold: h.cfg.Threshold, Rand: h.cfg.Rand})
	if err != nil {
		return h.failWith(*out, keygenErr(NoParticipant, ErrKeygenLocal, "%v", err))
	}
	msgs, err := d.Start()
	if err != nil {
		return h.failWith(*out, keygenErr(NoParticipant, ErrKeygenLocal, "%v", err))
	}
	h.dkg, h.dkgAt, h.phase = d, now, hubDKG
	h.route(out, h.cfg.Self, msgs)
	return h.progress(out)
}

// route delivers DKG messages from participant from (To is a new index).
func (h *ReshareHub) route(out *KeygenOutput, from int, msgs []DKGMessage) {
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
		for k, i := range h.members {
			if i == it.from || (it.msg.To != Broadcast && it.msg.To != k) {
				continue
			}
			if i != h.cfg.Self {
				out.Send = append(out.Send, KeygenSend{To: i, Frame: h.frame(FrameMsg, func(f *ReshareFrame) {
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

func (h *ReshareHub) ids() [][]byte {
	ids := make([][]byte, len(h.members))
	for k, i := range h.members {
		ids[k] = h.cfg.Participants[i]
	}
	return ids
}

func (h *ReshareHub) progress(out *KeygenOutput) KeygenOutput {
	switch h.phase {
	case hubDKG:
		if !h.dkg.Done() {
			return *out
		}
		for _, i := range h.members {
			if i != h.cfg.Self && h.results[i] == nil {
				return *out
			}
		}
		key, share, err := h.dkg.Result()
		if err != nil {
			return h.failWith(*out, keygenErr(NoParticipant, ErrKeygenLocal, "%v", err))
		}
		for _, i := range h.members {
			if i != h.cfg.Self && !bytes.Equal(h.results[i], key.Bytes()) {
				// No timeout ends a resharing DKG: every honest member
				// certified every named deal and holds the hub's key.
				return h.failWith(*out, keygenErr(i, ErrKeygenDisagree, "reported a group key that differs from the hub's"))
			}
		}
		h.key, h.share, h.phase = key, share, hubAck
		for _, i := range h.members {
			if i != h.cfg.Self {
				out.Send = append(out.Send, KeygenSend{To: i, Frame: h.frame(FrameFinal, func(f *ReshareFrame) { f.Data = key.Bytes() })})
			}
		}
		return h.progress(out)
	case hubAck:
		for _, i := range h.members {
			if i != h.cfg.Self && !h.acked[i] {
				return *out
			}
		}
		h.phase = hubOver
		out.Done = &KeygenResult{Key: h.key, Share: h.share, Participants: h.ids()}
	}
	return *out
}

// Tick tells the session the time: it enforces the deadlines.
func (h *ReshareHub) Tick(now int64) KeygenOutput {
	if h.phase == hubOver || h.phase == hubNew {
		return KeygenOutput{}
	}
	var out KeygenOutput
	if h.phase == hubCollect && now-h.start >= h.cfg.Timeouts.Collect {
		for i := range h.n {
			if h.pubs[i] == nil && h.dropped[i] == "" {
				h.dropped[i] = "did not answer in time"
			}
		}
		out = h.startDKG(now, &out)
		if h.phase == hubOver {
			return out
		}
	}
	if h.phase == hubDKG && now-h.dkgAt >= h.cfg.Timeouts.DKG && !h.dkg.Done() {
		var who []int
		for _, k := range h.dkg.Uncertified() {
			for i, c := range h.claims {
				if c == k && h.newIdx[i] != NoParticipant {
					who = append(who, i)
				}
			}
		}
		blame := NoParticipant
		if len(who) == 1 {
			blame = who[0]
		}
		return h.failWith(out, keygenErr(blame, ErrKeygenTimeout, "deals of participants %s not certified in time", joinInts(who)))
	}
	if now-h.start >= h.cfg.Timeouts.Session {
		var missing []int
		for _, i := range h.members {
			if i == h.cfg.Self {
				continue
			}
			if (h.phase == hubDKG && h.results[i] == nil) || (h.phase == hubAck && !h.acked[i]) {
				missing = append(missing, i)
			}
		}
		who := NoParticipant
		if len(missing) == 1 {
			who = missing[0]
		}
		return h.failWith(out, keygenErr(who, ErrKeygenTimeout, "session deadline passed (waiting for participants %s)", joinInts(missing)))
	}
	return out
}

// Broken tells the session that the channel to participant from failed.
// Before start the participant is left out; after, a member's broken
// channel fails the session (unless it already acknowledged).
func (h *ReshareHub) Broken(now int64, from int, err error) KeygenOutput {
	if h.phase == hubOver || h.phase == hubNew || from < 0 || from >= h.n || from == h.cfg.Self {
		return KeygenOutput{}
	}
	h.gone[from] = true
	if h.phase == hubCollect {
		return h.drop(now, from, fmt.Sprintf("channel failed: %v", err), false)
	}
	if h.newIdx[from] == NoParticipant || (h.phase == hubAck && h.acked[from]) {
		return KeygenOutput{}
	}
	return h.fail(keygenErr(from, ErrKeygenTransport, "%v", err))
}

// Abort ends the session on the driver's behalf.
func (h *ReshareHub) Abort(now int64, err error) KeygenOutput {
	if h.phase == hubOver {
		return KeygenOutput{}
	}
	var ke *KeygenError
	if !errors.As(err, &ke) {
		ke = &KeygenError{Participant: NoParticipant, Err: fmt.Errorf("%w: %w", ErrKeygenLocal, err)}
	}
	return h.fail(ke)
}

func (h *ReshareHub) fail(err *KeygenError) KeygenOutput { return h.failWith(KeygenOutput{}, err) }

func (h *ReshareHub) failWith(out KeygenOutput, err *KeygenError) KeygenOutput {
	started := h.phase != hubNew
	h.phase = hubOver
	out.Err = err
	if started {
		for i := range h.n {
			if i != h.cfg.Self && !h.gone[i] && (h.dropped[i] == "" || h.newIdx[i] != NoParticipant) {
				out.Send = append(out.Send, KeygenSend{To: i, Frame: h.frame(FrameAbort, func(f *ReshareFrame) { f.Error = err.Error() })})
			}
		}
	}
	return out
}

// ReshareParticipantConfig describes a participant's session.
type ReshareParticipantConfig struct {
	// Backend is the curve; nil means NewBN256().
	Backend Backend
	// Self is this device's id, to be found among the init frame's
	// participants.
	Self []byte
	// Share is this device's share of the current key, or nil. It deals
	// with it when the init frame's old key and holder list agree.
	Share *Share
	// Rand supplies this participant's DKG key and every random choice.
	Rand io.Reader
	// Timeouts: only Session applies.
	Timeouts ReshareTimeouts
}

// ReshareParticipant is a participant's side of a resharing session. Not
// safe for concurrent use.
type ReshareParticipant struct {
	cfg      ReshareParticipantConfig
	backend  Backend
	start    int64
	phase    partPhase
	session  [16]byte
	t        int
	self     int // participant index
	claim    int // old share index it deals with, or NoShare
	ids      [][]byte
	oldKey   *GroupKey
	members  [][]byte
	dkgKey   *DKGKey
	dkg      *ReshareDKG
	reported bool
	key      *GroupKey
	share    *Share
}

// NewReshareParticipant creates a participant's session at time now; it
// waits for the hub's init frame.
func NewReshareParticipant(cfg ReshareParticipantConfig, now int64) (*ReshareParticipant, error) {
	b := cfg.Backend
	if b == nil {
		b = NewBN256()
	}
	if len(cfg.Self) == 0 || cfg.Rand == nil {
		return nil, fmt.Errorf("%w: Self and Rand are required", ErrBadDKGConfig)
	}
	cfg.Timeouts = cfg.Timeouts.withDefaults(90_000, 0)
	return &ReshareParticipant{cfg: cfg, backend: b, start: now, self: NoParticipant, claim: NoShare}, nil
}

// Over reports whether the session has finished.
func (p *ReshareParticipant) Over() bool { return p.phase == partOver }

// Threshold is the new t from the init frame (0 before).
func (p *ReshareParticipant) Threshold() int { return p.t }

// Participants are the invited device ids from the init frame (nil before).
func (p *ReshareParticipant) Participants() [][]byte { return p.ids }

// OldKey is the key being reshared, from the init frame (nil before).
func (p *ReshareParticipant) OldKey() *GroupKey { return p.oldKey }

// Deals reports whether this participant deals its old share.
func (p *ReshareParticipant) Deals() bool { return p.claim != NoShare }

func (p *ReshareParticipant) frame(t KeygenFrameType, fill func(*ReshareFrame)) KeygenSend {
	f := &ReshareFrame{Type: t, Session: p.session}
	if fill != nil {
		fill(f)
	}
	return KeygenSend{To: NoParticipant, Frame: f.Marshal()}
}

// Step feeds one frame received from the hub at time now.
func (p *ReshareParticipant) Step(now int64, data []byte) KeygenOutput {
	if p.phase == partOver {
		return KeygenOutput{}
	}
	f, err := ParseReshareFrame(data)
	if err != nil {
		return p.fail(keygenErr(NoParticipant, ErrKeygenProtocol, "from the hub: %v", err))
	}
	if f.Type == FrameAbort {
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
		return p.startDKG(f)

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
		out.Keep = &KeygenResult{Key: p.key, Share: p.share, Participants: p.members}
		return out

	case p.phase == partKeep && f.Type == FrameMsg:
		return out
	}
	return p.fail(keygenErr(NoParticipant, ErrKeygenProtocol, "unexpected %s frame from the hub", f.Type))
}

func (p *ReshareParticipant) init(f *ReshareFrame) KeygenOutput {
	n := len(f.Participants)
	if f.Threshold < 2 || f.Threshold > n {
		return p.fail(keygenErr(NoParticipant, ErrKeygenProtocol, "init: threshold %d with %d participants", f.Threshold, n))
	}
	if err := checkParticipantIDs(f.Participants); err != nil {
		return p.fail(keygenErr(NoParticipant, ErrKeygenProtocol, "init: %v", err))
	}
	if len(f.Holders) != n {
		return p.fail(keygenErr(NoParticipant, ErrKeygenProtocol, "init: %d holder entries for %d participants", len(f.Holders), n))
	}
	old, err := ParseGroupKey(f.Data)
	if err != nil {
		return p.fail(keygenErr(NoParticipant, ErrKeygenProtocol, "init: old key: %v", err))
	}
	if old.backend.ID() != p.backend.ID() {
		return p.fail(keygenErr(NoParticipant, ErrKeygenProtocol, "init: old key on curve %s", old.backend.Name()))
	}
	for i, id := range f.Participants {
		if bytes.Equal(id, p.cfg.Self) {
			p.self = i
		}
	}
	if p.self == NoParticipant {
		return p.fail(keygenErr(NoParticipant, ErrKeygenProtocol, "this device is not among the participants"))
	}
	if k := f.Holders[p.self]; k != NoShare && p.cfg.Share != nil && p.cfg.Share.Index() == k && p.cfg.Share.Matches(old) {
		p.claim = k
	}
	k, err := NewDKGKey(p.backend, p.cfg.Rand)
	if err != nil {
		return p.fail(keygenErr(NoParticipant, ErrKeygenLocal, "DKG key: %v", err))
	}
	p.t, p.ids, p.oldKey, p.dkgKey, p.phase = f.Threshold, f.Participants, old, k, partStart
	return KeygenOutput{Send: []KeygenSend{p.frame(FramePub, func(f *ReshareFrame) {
		f.Data = k.Public()
		if p.claim != NoShare {
			f.Holders = []int{p.claim}
		}
	})}}
}

func (p *ReshareParticipant) startDKG(f *ReshareFrame) KeygenOutput {
	m := len(f.Members)
	if m == 0 || len(f.Pubs) != m || len(f.Holders) != m {
		return p.fail(keygenErr(NoParticipant, ErrKeygenProtocol, "start: %d members, %d keys, %d holder entries", m, len(f.Pubs), len(f.Holders)))
	}
	self := NoParticipant
	dealers := make([][]byte, p.oldKey.Signers())
	for k, i := range f.Members {
		if i < 0 || i >= len(p.ids) {
			return p.fail(keygenErr(NoParticipant, ErrKeygenProtocol, "start: member %d of %d participants", i, len(p.ids)))
		}
		if i == p.self {
			self = k
		}
		if h := f.Holders[k]; h != NoShare {
			if h >= len(dealers) || dealers[h] != nil {
				return p.fail(keygenErr(NoParticipant, ErrKeygenProtocol, "start: share %d dealt twice or out of range", h))
			}
			dealers[h] = f.Pubs[k]
		}
	}
	if self == NoParticipant || !bytes.Equal(f.Pubs[self], p.dkgKey.Public()) || f.Holders[self] != p.claim {
		return p.fail(keygenErr(NoParticipant, ErrKeygenProtocol, "start: this participant is missing, or its key or share is not its own"))
	}
	var share *Share
	if p.claim != NoShare {
		share = p.cfg.Share
	}
	d, err := NewReshareDKG(ReshareDKGConfig{Backend: p.backend, Key: p.dkgKey, OldKey: p.oldKey, Share: share,
		Dealers: dealers, NewNodes: f.Pubs, Threshold: p.t, Rand: p.cfg.Rand})
	if err != nil {
		return p.fail(keygenErr(NoParticipant, ErrKeygenProtocol, "start: %v", err))
	}
	msgs, err := d.Start()
	if err != nil {
		return p.fail(keygenErr(NoParticipant, ErrKeygenLocal, "%v", err))
	}
	p.members = make([][]byte, m)
	for k, i := range f.Members {
		p.members[k] = p.ids[i]
	}
	p.dkg, p.phase = d, partDKG
	var out KeygenOutput
	p.send(&out, msgs)
	return p.report(&out)
}

func (p *ReshareParticipant) send(out *KeygenOutput, msgs []DKGMessage) {
	for _, m := range msgs {
		out.Send = append(out.Send, p.frame(FrameMsg, func(f *ReshareFrame) { f.To, f.From, f.Data = m.To, p.self, m.Data }))
	}
}

func (p *ReshareParticipant) report(out *KeygenOutput) KeygenOutput {
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
	out.Send = append(out.Send, p.frame(FrameResult, func(f *ReshareFrame) { f.Data = key.Bytes() }))
	return *out
}

// Kept tells the session that the driver sealed the new share of Keep.
func (p *ReshareParticipant) Kept(now int64) KeygenOutput {
	if p.phase != partKeep {
		return KeygenOutput{}
	}
	p.phase = partOver
	return KeygenOutput{Send: []KeygenSend{p.frame(FrameFinal, nil)},
		Done: &KeygenResult{Key: p.key, Share: p.share, Participants: p.members}}
}

// Tick tells the session the time: it enforces the session deadline.
func (p *ReshareParticipant) Tick(now int64) KeygenOutput {
	if p.phase == partOver {
		return KeygenOutput{}
	}
	if now-p.start >= p.cfg.Timeouts.Session {
		return p.fail(keygenErr(NoParticipant, ErrKeygenTimeout, "resharing did not finish (phase %d)", p.phase))
	}
	return KeygenOutput{}
}

// Broken tells the session that the channel to the hub failed.
func (p *ReshareParticipant) Broken(now int64, err error) KeygenOutput {
	if p.phase == partOver {
		return KeygenOutput{}
	}
	p.phase = partOver
	return KeygenOutput{Err: keygenErr(NoParticipant, ErrKeygenTransport, "channel to the hub: %v", err)}
}

// Abort ends the session on the driver's behalf.
func (p *ReshareParticipant) Abort(now int64, err error) KeygenOutput {
	if p.phase == partOver {
		return KeygenOutput{}
	}
	return p.fail(&KeygenError{Participant: NoParticipant, Err: fmt.Errorf("%w: %w", ErrKeygenLocal, err)})
}

func (p *ReshareParticipant) fail(err *KeygenError) KeygenOutput {
	p.phase = partOver
	return KeygenOutput{Err: err, Send: []KeygenSend{p.frame(FrameAbort, func(f *ReshareFrame) { f.Error = err.Error() })}}
}
