package threshold

import (
	"bytes"
	"errors"
	"fmt"
	"testing"
)

// reshareNet runs a resharing hub and its participants in one goroutine
// over FIFO links, like keygenNet. Participants listed offline never
// answer (their frames are lost); those listed unreachable have a channel
// that breaks at once.
type reshareNet struct {
	t       testing.TB
	n       int
	hubAt   int
	now     int64
	hub     *ReshareHub
	parts   []*ReshareParticipant
	ids     [][]byte
	oldKey  *GroupKey
	shares  []*Share // old shares by participant (nil: none)
	toHub   [][][]byte
	fromHub [][][]byte
	offline map[int]bool
	crashed map[int]bool
	mangle  func(from, to int, f *ReshareFrame) []byte
	hubOut  *KeygenOutput
	partOut []*KeygenOutput
	kept    []*KeygenResult
	log     [][]byte
}

// newReshareNet deals an (oldT, oldN) key and invites the devices named
// by holders (holders[i] = the old share index participant i holds, or
// NoShare), asking for threshold newT.
func newReshareNet(t testing.TB, seed string, oldT, oldN int, holders []int, newT, hubAt int) *reshareNet {
	t.Helper()
	key, shares, err := Deal(nil, SeededReader([]byte(seed+"/deal")), oldT, oldN)
	if err != nil {
		t.Fatal(err)
	}
	n := len(holders)
	net := &reshareNet{t: t, n: n, hubAt: hubAt, now: 5_000_000, parts: make([]*ReshareParticipant, n), oldKey: key,
		shares: make([]*Share, n), toHub: make([][][]byte, n), fromHub: make([][][]byte, n),
		offline: map[int]bool{}, crashed: map[int]bool{}, partOut: make([]*KeygenOutput, n), kept: make([]*KeygenResult, n)}
	for i, h := range holders {
		net.ids = append(net.ids, []byte(fmt.Sprintf("device-%02d", i)))
		if h != NoShare {
			net.shares[i] = shares[h]
		}
	}
	var session [16]byte
	copy(session[:], seed)
	hub, err := NewReshareHub(ReshareHubConfig{Session: session, Participants: net.ids, Self: hubAt, OldKey: key,
		Holders: holders, Share: net.shares[hubAt], Threshold: newT, Rand: SeededReader([]byte(seed + "/hub")),
		Timeouts: ReshareTimeouts{Collect: 1000, DKG: 3000, Session: 8000}})
	if err != nil {
		t.Fatal(err)
	}
	net.hub = hub
	for i := range n {
		if i == hubAt {
			continue
		}
		p, err := NewReshareParticipant(ReshareParticipantConfig{Self: net.ids[i], Share: net.shares[i],
			Rand: SeededReader([]byte(fmt.Sprintf("%s/p%d", seed, i))), Timeouts: ReshareTimeouts{Session: 12000}}, net.now)
		if err != nil {
			t.Fatal(err)
		}
		net.parts[i] = p
	}
	return net
}

func (net *reshareNet) fromHubOut(out KeygenOutput) {
	for _, s := range out.Send {
		net.enqueue(net.hubAt, s.To, s.Frame)
	}
	if out.Done != nil || out.Err != nil {
		if net.hubOut != nil {
			net.t.Fatal("the hub finished twice")
		}
		net.hubOut = &out
	}
}

func (net *reshareNet) fromPartOut(i int, out KeygenOutput) {
	for _, s := range out.Send {
		net.enqueue(i, net.hubAt, s.Frame)
	}
	if out.Keep != nil {
		net.kept[i] = out.Keep
		net.fromPartOut(i, net.parts[i].Kept(net.now))
		return
	}
	if out.Done != nil || out.Err != nil {
		if net.partOut[i] != nil {
			net.t.Fatalf("participant %d finished twice", i)
		}
		net.partOut[i] = &out
	}
}

func (net *reshareNet) enqueue(from, to int, data []byte) {
	f, err := ParseReshareFrame(data)
	if err != nil {
		net.t.Fatalf("the session sent a frame it cannot parse: %v", err)
	}
	net.log = append(net.log, data)
	if net.offline[from] || net.offline[to] || net.crashed[from] || net.crashed[to] {
		return
	}
	if net.mangle != nil {
		if m := net.mangle(from, to, f); m != nil {
			data = m
		}
	}
	if to == net.hubAt {
		net.toHub[from] = append(net.toHub[from], data)
	} else {
		net.fromHub[to] = append(net.fromHub[to], data)
	}
}

func (net *reshareNet) crash(i int) {
	net.crashed[i] = true
	net.toHub[i], net.fromHub[i] = nil, nil
	net.fromHubOut(net.hub.Broken(net.now, i, errors.New("stream reset")))
}

func (net *reshareNet) run(unreachable ...int) {
	net.t.Helper()
	net.fromHubOut(net.hub.Start(net.now))
	for _, i := range unreachable {
		net.crash(i)
	}
	for ticks := 0; ticks < 100; ticks++ {
		net.deliverAll()
		if net.over() {
			return
		}
		net.now += 250
		net.fromHubOut(net.hub.Tick(net.now))
		for i, p := range net.parts {
			if p != nil && !net.offline[i] && !net.crashed[i] {
				net.fromPartOut(i, p.Tick(net.now))
			}
		}
	}
	net.t.Fatal("the sessions never finished")
}

func (net *reshareNet) deliverAll() {
	for moved := true; moved; {
		moved = false
		for i := range net.n {
			if i == net.hubAt {
				continue
			}
			if len(net.toHub[i]) > 0 {
				f := net.toHub[i][0]
				net.toHub[i] = net.toHub[i][1:]
				net.fromHubOut(net.hub.Step(net.now, i, f))
				moved = true
			}
			if len(net.fromHub[i]) > 0 && !net.crashed[i] {
				f := net.fromHub[i][0]
				net.fromHub[i] = net.fromHub[i][1:]
				net.fromPartOut(i, net.parts[i].Step(net.now, f))
				moved = true
			}
		}
	}
}

func (net *reshareNet) over() bool {
	if !net.hub.Over() {
		return false
	}
	for i, p := range net.parts {
		if p != nil && !net.offline[i] && !net.crashed[i] && !p.Over() {
			return false
		}
	}
	return true
}

// success checks a successful run and returns the new key and the new
// shares by new index.
func (net *reshareNet) success(wantMembers []int) (*GroupKey, []*Share) {
	net.t.Helper()
	if net.hubOut == nil || net.hubOut.Done == nil {
		net.t.Fatalf("the hub did not succeed: %+v", net.hubOut)
	}
	done := net.hubOut.Done
	if got := net.hub.Members(); fmt.Sprint(got) != fmt.Sprint(wantMembers) {
		net.t.Fatalf("members %v, want %v", got, wantMembers)
	}
	key := done.Key
	if !bytes.Equal(key.PublicKey(), net.oldKey.PublicKey()) {
		net.t.Fatal("the reshared key has a different group public key")
	}
	if bytes.Equal(key.Bytes(), net.oldKey.Bytes()) {
		net.t.Fatal("the reshared key has the old commitments")
	}
	if key.Signers() != len(wantMembers) {
		net.t.Fatalf("new key has %d signers, want %d", key.Signers(), len(wantMembers))
	}
	shares := make([]*Share, len(wantMembers))
	for k, i := range wantMembers {
		if !bytes.Equal(done.Participants[k], net.ids[i]) {
			net.t.Fatalf("new index %d is %s, want %s", k, done.Participants[k], net.ids[i])
		}
		var res *KeygenResult
		if i == net.hubAt {
			res = done
		} else {
			out := net.partOut[i]
			if out == nil || out.Done == nil || net.kept[i] == nil {
				net.t.Fatalf("member %d did not finish: %+v", i, out)
			}
			res = out.Done
		}
		if !res.Key.Equal(key) || res.Share.Index() != k || !res.Share.Matches(key) {
			net.t.Fatalf("member %d: key equal %t, share index %d", i, res.Key.Equal(key), res.Share.Index())
		}
		shares[k] = res.Share
	}
	return key, shares
}

// checkResharedSigning: every t-subset of new shares signs a message that
// verifies under the OLD key's bytes (same group public key), and old
// shares are bad partials under the new key.
func (net *reshareNet) checkResharedSigning(t *testing.T, key *GroupKey, shares []*Share) {
	t.Helper()
	checkSigning(t, key, shares)
	msg := []byte("snapshot after resharing")
	sig, _, err := Recover(NewVerifier(key), msg, partialsOf(net.t, shares[:key.Threshold()], msg))
	if err != nil {
		net.t.Fatal(err)
	}
	if err := net.oldKey.Verify(msg, sig); err != nil {
		net.t.Fatalf("a signature of the new shares does not verify under the old key: %v", err)
	}
	v := NewVerifier(key)
	for i, s := range net.shares {
		if s == nil {
			continue
		}
		err := v.VerifyPartial(msg, mustSign(net.t, s, msg))
		if !errors.Is(err, ErrBadPartial) && !errors.Is(err, ErrBadIndex) {
			net.t.Fatalf("participant %d's old share made a partial the new key accepts (%v)", i, err)
		}
	}
}

func partialsOf(t testing.TB, shares []*Share, msg []byte) [][]byte {
	var ps [][]byte
	for _, s := range shares {
		ps = append(ps, mustSign(t, s, msg))
	}
	return ps
}

// The key is (3, 5); share 4's device is removed (not invited) and share
// 3's is offline: exactly M = 3 holders take part, and they succeed.
func TestReshareExactlyThresholdHoldersOnline(t *testing.T) {
	net := newReshareNet(t, "exactly-m", 3, 5, []int{0, 1, 2, 3}, 3, 0)
	net.offline[3] = true
	net.run()
	key, shares := net.success([]int{0, 1, 2})
	net.checkResharedSigning(t, key, shares)
	if got := net.hub.Dropped(3); got == "" {
		t.Fatal("the offline device is not reported as left out")
	}
	// The removed device's share 4 has no index under the new key.
	_, old, _ := Deal(nil, SeededReader([]byte("exactly-m/deal")), 3, 5)
	if err := NewVerifier(key).VerifyPartial([]byte("m"), mustSign(t, old[4], []byte("m"))); !errors.Is(err, ErrBadIndex) {
		t.Fatalf("removed share's partial under the new key: %v, want ErrBadIndex", err)
	}
}

// With M-1 holders online the session fails with ErrReshareQuorum, and
// nobody keeps anything.
func TestReshareOneHolderShortFails(t *testing.T) {
	net := newReshareNet(t, "m-minus-1", 3, 5, []int{0, 1, 2, 3, NoShare}, 2, 0)
	net.offline[2] = true
	net.run(3) // share 3's device is unreachable at once
	if net.hubOut == nil || !errors.Is(net.hubOut.Err, ErrReshareQuorum) {
		t.Fatalf("hub: %+v, want ErrReshareQuorum", net.hubOut)
	}
	for i, k := range net.kept {
		if k != nil {
			t.Fatalf("participant %d kept a share of a failed resharing", i)
		}
	}
	for _, i := range []int{1, 4} {
		if out := net.partOut[i]; out == nil || !errors.Is(out.Err, ErrKeygenAborted) {
			t.Fatalf("participant %d: %+v, want the hub's abort", i, out)
		}
	}
}

// A new device (no old share) receives a share; it can sign with M-1
// old holders.
func TestReshareAddsDevice(t *testing.T) {
	net := newReshareNet(t, "add", 2, 3, []int{0, 1, 2, NoShare}, 3, 1)
	net.run()
	key, shares := net.success([]int{0, 1, 2, 3})
	if key.Threshold() != 3 {
		t.Fatalf("threshold %d, want 3", key.Threshold())
	}
	net.checkResharedSigning(t, key, shares)
}

// The hub may be a device without a share; old holders deal.
func TestReshareHubWithoutShare(t *testing.T) {
	net := newReshareNet(t, "hub-new", 2, 3, []int{NoShare, 2, 0}, 2, 0)
	net.run()
	key, shares := net.success([]int{0, 1, 2})
	net.checkResharedSigning(t, key, shares)
}

// A threshold above the devices taking part fails clearly, both when the
// hub is created and when devices drop out.
func TestReshareThresholdOutOfRange(t *testing.T) {
	key, _, _ := Deal(nil, SeededReader([]byte("t")), 2, 3)
	ids := [][]byte{[]byte("a"), []byte("b"), []byte("c")}
	for _, th := range []int{1, 4} {
		_, err := NewReshareHub(ReshareHubConfig{Participants: ids, OldKey: key, Holders: []int{0, 1, 2},
			Threshold: th, Rand: SeededReader([]byte("x"))})
		if !errors.Is(err, ErrReshareThreshold) {
			t.Fatalf("threshold %d: %v, want ErrReshareThreshold", th, err)
		}
	}
	_, err := NewReshareHub(ReshareHubConfig{Participants: ids, OldKey: key, Holders: []int{0, NoShare, NoShare},
		Threshold: 2, Rand: SeededReader([]byte("x"))})
	if !errors.Is(err, ErrReshareQuorum) {
		t.Fatalf("one holder of a 2-of-3 key: %v, want ErrReshareQuorum", err)
	}

	net := newReshareNet(t, "t-high", 2, 4, []int{0, 1, 2, 3}, 4, 0)
	net.offline[3] = true
	net.run()
	if net.hubOut == nil || !errors.Is(net.hubOut.Err, ErrReshareThreshold) {
		t.Fatalf("hub: %+v, want ErrReshareThreshold", net.hubOut)
	}
}

// A member that reports a different key is named.
func TestReshareLiarIsNamed(t *testing.T) {
	net := newReshareNet(t, "liar", 2, 3, []int{0, 1, 2}, 2, 0)
	net.mangle = func(from, to int, f *ReshareFrame) []byte {
		if from == 2 && f.Type == FrameResult {
			f.Data = net.oldKey.Bytes()
			return f.Marshal()
		}
		return nil
	}
	net.run()
	var ke *KeygenError
	if net.hubOut == nil || !errors.As(net.hubOut.Err, &ke) || !errors.Is(ke, ErrKeygenDisagree) || ke.Participant != 2 {
		t.Fatalf("hub: %+v, want ErrKeygenDisagree naming 2", net.hubOut)
	}
}

// A member whose channel breaks after start fails the session, naming it.
func TestReshareMemberCrashAfterStart(t *testing.T) {
	net := newReshareNet(t, "crash", 2, 3, []int{0, 1, 2}, 2, 0)
	crashed := false
	net.mangle = func(from, to int, f *ReshareFrame) []byte {
		if !crashed && from == 0 && to == 2 && f.Type == FrameStart {
			crashed = true
			defer net.crash(2)
		}
		return nil
	}
	net.run()
	var ke *KeygenError
	if net.hubOut == nil || !errors.As(net.hubOut.Err, &ke) || !errors.Is(ke, ErrKeygenTransport) || ke.Participant != 2 {
		t.Fatalf("hub: %+v, want ErrKeygenTransport naming 2", net.hubOut)
	}
}

// A participant that claims a share the group key does not give it is
// left out before start.
func TestReshareFalseClaimIsLeftOut(t *testing.T) {
	net := newReshareNet(t, "claim", 2, 3, []int{0, 1, 2, NoShare}, 2, 0)
	net.mangle = func(from, to int, f *ReshareFrame) []byte {
		if from == 3 && f.Type == FramePub {
			f.Holders = []int{2}
			return f.Marshal()
		}
		return nil
	}
	net.run()
	net.success([]int{0, 1, 2})
	if net.hub.Dropped(3) == "" {
		t.Fatal("the false claimant was not left out")
	}
}

// The same seeds give the same frames, byte for byte.
func TestReshareDeterministic(t *testing.T) {
	run := func() [][]byte {
		net := newReshareNet(t, "det", 2, 3, []int{0, 1, 2, NoShare}, 2, 0)
		net.run()
		net.success([]int{0, 1, 2, 3})
		return net.log
	}
	a, b := run(), run()
	if len(a) != len(b) {
		t.Fatalf("%d frames, then %d", len(a), len(b))
	}
	for i := range a {
		if !bytes.Equal(a[i], b[i]) {
			t.Fatalf("frame %d differs", i)
		}
	}
}

func TestReshareFrameRoundTrip(t *testing.T) {
	f := &ReshareFrame{Type: FrameStart, Session: [16]byte{7}, Threshold: 3, Participants: [][]byte{[]byte("a")},
		Pubs: [][]byte{{1}, {2}}, To: Broadcast, From: 2, Data: []byte{9}, Error: "x", Holders: []int{-1, 0, 300}, Members: []int{0, 2}}
	g, err := ParseReshareFrame(f.Marshal())
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(f) != fmt.Sprint(g) {
		t.Fatalf("round trip: %+v, want %+v", g, f)
	}
	bad := (&ReshareFrame{Type: FramePub, Holders: []int{-2}}).Marshal()
	if _, err := ParseReshareFrame(bad); !errors.Is(err, ErrBadReshareFrame) {
		t.Fatalf("holder index -2: %v", err)
	}
}
