package threshold

import (
	"bytes"
	"errors"
	"fmt"
	"testing"
)

// keygenNet runs one hub and n-1 participants in one goroutine over FIFO
// links (one per direction and participant, like streams), delivering one
// frame at a time in a fixed order, on a virtual clock.
type keygenNet struct {
	t     *testing.T
	n     int
	hubAt int
	now   int64
	hub   *KeygenHub
	parts []*KeygenParticipant // nil at the hub's index
	ids   [][]byte
	// queues[i]: frames in flight between the hub and participant i;
	// toHub[i] from i, fromHub[i] to i.
	toHub, fromHub [][][]byte

	hubOut   *KeygenOutput
	partOut  []*KeygenOutput // final outputs (Done or Err) by participant
	kept     []*KeygenResult
	rejected int

	// scripted faults
	drop    func(from, to int, f *KeygenFrame) bool            // lose this frame
	mangle  func(from, to int, data []byte) []byte             // rewrite it (nil: unchanged)
	crashed map[int]bool                                       // participants that are gone
	sent    map[KeygenFrameType]int                            // frames sent, by type
	onFrame func(net *keygenNet, from, to int, f *KeygenFrame) // observe (may crash someone)
}

func newKeygenNet(t *testing.T, seed string, th, n, hubAt int) *keygenNet {
	t.Helper()
	net := &keygenNet{t: t, n: n, hubAt: hubAt, now: 1_000_000, parts: make([]*KeygenParticipant, n),
		toHub: make([][][]byte, n), fromHub: make([][][]byte, n), partOut: make([]*KeygenOutput, n),
		kept: make([]*KeygenResult, n), crashed: map[int]bool{}, sent: map[KeygenFrameType]int{}}
	for i := range n {
		net.ids = append(net.ids, []byte(fmt.Sprintf("device-%02d", i)))
	}
	var session [16]byte
	copy(session[:], seed)
	hub, err := NewKeygenHub(KeygenHubConfig{Session: session, Participants: net.ids, Self: hubAt, Threshold: th,
		Rand: SeededReader([]byte(seed + "/hub")), Timeouts: KeygenTimeouts{DKG: 2000, Session: 6000}})
	if err != nil {
		t.Fatal(err)
	}
	net.hub = hub
	for i := range n {
		if i == hubAt {
			continue
		}
		p, err := NewKeygenParticipant(KeygenParticipantConfig{Self: net.ids[i],
			Rand: SeededReader([]byte(fmt.Sprintf("%s/p%d", seed, i))), Timeouts: KeygenTimeouts{Session: 9000}}, net.now)
		if err != nil {
			t.Fatal(err)
		}
		net.parts[i] = p
	}
	return net
}

func (net *keygenNet) fromHubOut(out KeygenOutput) {
	for _, s := range out.Send {
		net.enqueue(net.hubAt, s.To, s.Frame)
	}
	net.rejected += len(out.Rejected)
	if out.Done != nil || out.Err != nil {
		if net.hubOut != nil {
			net.t.Fatal("the hub finished twice")
		}
		net.hubOut = &out
	}
}

func (net *keygenNet) fromPartOut(i int, out KeygenOutput) {
	for _, s := range out.Send {
		if s.To != NoParticipant {
			net.t.Fatalf("participant %d addressed a frame to %d", i, s.To)
		}
		net.enqueue(i, net.hubAt, s.Frame)
	}
	net.rejected += len(out.Rejected)
	if out.Keep != nil {
		if out.Keep.Share.Index() != i || !out.Keep.Share.Matches(out.Keep.Key) {
			net.t.Fatalf("participant %d keeps share %d (matches %t)", i, out.Keep.Share.Index(), out.Keep.Share.Matches(out.Keep.Key))
		}
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

func (net *keygenNet) enqueue(from, to int, data []byte) {
	f, err := ParseKeygenFrame(data)
	if err != nil {
		net.t.Fatalf("the session sent a frame it cannot parse: %v", err)
	}
	net.sent[f.Type]++
	if net.onFrame != nil {
		net.onFrame(net, from, to, f)
	}
	if net.drop != nil && net.drop(from, to, f) {
		return
	}
	if net.mangle != nil {
		if m := net.mangle(from, to, data); m != nil {
			data = m
		}
	}
	if to == net.hubAt {
		net.toHub[from] = append(net.toHub[from], data)
	} else {
		net.fromHub[to] = append(net.fromHub[to], data)
	}
}

// crash takes participant i down: its session is gone, the frames to and
// from it are lost, and the hub learns that its channel broke.
func (net *keygenNet) crash(i int) {
	net.crashed[i] = true
	net.toHub[i], net.fromHub[i] = nil, nil
	net.fromHubOut(net.hub.Broken(net.now, i, errors.New("stream reset")))
}

// run delivers frames round-robin until none is left, then ticks the clock
// by 500 ms until everyone is over (or the budget runs out).
func (net *keygenNet) run() {
	net.t.Helper()
	net.fromHubOut(net.hub.Start(net.now))
	for ticks := 0; ticks < 100; ticks++ {
		net.deliverAll()
		if net.over() {
			return
		}
		net.tick(500)
	}
	net.t.Fatal("the sessions never finished")
}

func (net *keygenNet) deliverAll() {
	for moved := true; moved; {
		moved = false
		for i := range net.n {
			if i == net.hubAt || net.crashed[i] {
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

func (net *keygenNet) tick(ms int64) {
	net.now += ms
	net.fromHubOut(net.hub.Tick(net.now))
	for i, p := range net.parts {
		if p != nil && !net.crashed[i] {
			net.fromPartOut(i, p.Tick(net.now))
		}
	}
}

func (net *keygenNet) over() bool {
	if !net.hub.Over() {
		return false
	}
	for i, p := range net.parts {
		if p != nil && !net.crashed[i] && !p.Over() {
			return false
		}
	}
	return true
}

// hubErr returns the hub's error as a *KeygenError.
func (net *keygenNet) hubErr() *KeygenError {
	net.t.Helper()
	if net.hubOut == nil || net.hubOut.Err == nil {
		net.t.Fatalf("the hub did not fail: %+v", net.hubOut)
	}
	var ke *KeygenError
	if !errors.As(net.hubOut.Err, &ke) {
		net.t.Fatalf("hub error %T is not a *KeygenError: %v", net.hubOut.Err, net.hubOut.Err)
	}
	return ke
}

// wantFailure checks the hub's error, and that every participant failed
// too, but for those that had kept their share and acknowledged before the
// failure (it came while the hub waited for acknowledgements).
func (net *keygenNet) wantFailure(sentinel error, who int) *KeygenError {
	net.t.Helper()
	ke := net.hubErr()
	if !errors.Is(ke, sentinel) || ke.Participant != who {
		net.t.Fatalf("hub error %v (participant %d), want %v naming participant %d", ke, ke.Participant, sentinel, who)
	}
	for i, p := range net.parts {
		if p == nil || net.crashed[i] {
			continue
		}
		if out := net.partOut[i]; out != nil && out.Done != nil && net.sent[FrameFinal] > 0 {
			continue
		}
		if out := net.partOut[i]; out == nil || out.Err == nil {
			net.t.Fatalf("participant %d did not fail with the hub: %+v", i, out)
		}
	}
	return ke
}

func TestKeygenSessionHappyPath(t *testing.T) {
	for _, c := range []struct{ th, n, hub int }{{2, 2, 0}, {2, 3, 1}, {3, 5, 4}, {4, 7, 3}} {
		t.Run(fmt.Sprintf("%d-of-%d-hub%d", c.th, c.n, c.hub), func(t *testing.T) {
			net := newKeygenNet(t, fmt.Sprintf("happy-%d-%d-%d", c.th, c.n, c.hub), c.th, c.n, c.hub)
			net.run()
			if net.hubOut == nil || net.hubOut.Err != nil || net.hubOut.Done == nil {
				t.Fatalf("hub: %+v", net.hubOut)
			}
			res := net.hubOut.Done
			if res.Key.Threshold() != c.th || res.Key.Signers() != c.n || res.Share.Index() != c.hub || !res.Share.Matches(res.Key) {
				t.Fatalf("hub result t=%d n=%d share %d", res.Key.Threshold(), res.Key.Signers(), res.Share.Index())
			}
			if len(res.Participants) != c.n || !bytes.Equal(res.Participants[c.hub], net.ids[c.hub]) {
				t.Fatal("hub result participants")
			}
			shares := make([]*Share, c.n)
			shares[c.hub] = res.Share
			for i, p := range net.parts {
				if p == nil {
					continue
				}
				out := net.partOut[i]
				if out == nil || out.Err != nil || out.Done == nil || net.kept[i] == nil {
					t.Fatalf("participant %d: %+v", i, out)
				}
				if !out.Done.Key.Equal(res.Key) || !net.kept[i].Key.Equal(res.Key) {
					t.Fatalf("participant %d holds another key", i)
				}
				if p.Index() != i || p.Threshold() != c.th {
					t.Fatalf("participant %d: index %d threshold %d", i, p.Index(), p.Threshold())
				}
				shares[i] = out.Done.Share
			}
			checkSigning(t, res.Key, shares)
			if net.rejected != 0 {
				t.Fatalf("%d DKG messages rejected on a clean run", net.rejected)
			}
			// One init, pub, start, result, final and ack per participant.
			for _, k := range []KeygenFrameType{FrameInit, FramePub, FrameStart, FrameResult} {
				if net.sent[k] != c.n-1 {
					t.Fatalf("%d %s frames, want %d", net.sent[k], k, c.n-1)
				}
			}
			if net.sent[FrameFinal] != 2*(c.n-1) || net.sent[FrameAbort] != 0 {
				t.Fatalf("%d final, %d abort frames", net.sent[FrameFinal], net.sent[FrameAbort])
			}
		})
	}
}

// TestKeygenSessionDeterministic: the same seeds give the same frames.
func TestKeygenSessionDeterministic(t *testing.T) {
	var logs [2][][]byte
	for k := range logs {
		net := newKeygenNet(t, "determinism", 2, 3, 0)
		net.mangle = func(_, _ int, data []byte) []byte {
			logs[k] = append(logs[k], data)
			return nil
		}
		net.run()
	}
	if len(logs[0]) != len(logs[1]) || len(logs[0]) == 0 {
		t.Fatalf("%d vs %d frames", len(logs[0]), len(logs[1]))
	}
	for i := range logs[0] {
		if !bytes.Equal(logs[0][i], logs[1][i]) {
			t.Fatalf("frame %d differs", i)
		}
	}
}

func TestKeygenSessionLostFrameTimesOut(t *testing.T) {
	cases := []struct {
		name string
		drop func(from, to int, f *KeygenFrame) bool
		who  int // named participant
	}{
		{"pub", func(from, _ int, f *KeygenFrame) bool { return f.Type == FramePub && from == 2 }, 2},
		{"result", func(from, _ int, f *KeygenFrame) bool { return f.Type == FrameResult && from == 3 }, 3},
		{"ack", func(from, _ int, f *KeygenFrame) bool { return f.Type == FrameFinal && from == 1 }, 1},
		{"response", func(from, to int, f *KeygenFrame) bool {
			// participant 3's response broadcast never reaches the hub, so
			// nobody gets it: as above.
			kind, _, _ := DKGMessageInfo(f.Data)
			return f.Type == FrameMsg && kind == DKGResponse && from == 3
		}, NoParticipant},
		{"deal", func(from, to int, f *KeygenFrame) bool {
			// participant 2's deal to participant 3: nobody certifies it
			// without a timeout, and 3 never finishes.
			kind, sender, _ := DKGMessageInfo(f.Data)
			// The hub's DKG certifies it after its timeout, but the
			// participants wait on: no result from any, nobody to blame.
			return f.Type == FrameMsg && kind == DKGDeal && sender == 2 && to == 3
		}, NoParticipant},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			net := newKeygenNet(t, "lost-"+c.name, 3, 5, 0)
			net.drop = c.drop
			net.run()
			ke := net.wantFailure(ErrKeygenTimeout, c.who)
			if c.name == "ack" {
				// The others were told to keep their shares before the
				// acknowledgement got lost.
				if net.kept[2] == nil {
					t.Fatal("participant 2 was not told to keep its share")
				}
			} else {
				for i, k := range net.kept {
					if k != nil {
						t.Fatalf("participant %d kept a share of a failed key generation (%v)", i, ke)
					}
				}
			}
			if net.now-1_000_000 > 7000 {
				t.Fatalf("the failure took %d ms", net.now-1_000_000)
			}
		})
	}
}

func TestKeygenSessionParticipantCrashes(t *testing.T) {
	for _, at := range []KeygenFrameType{FrameInit, FrameStart, FrameMsg, FrameFinal} {
		t.Run(at.String(), func(t *testing.T) {
			net := newKeygenNet(t, "crash-"+at.String(), 3, 5, 0)
			done := false
			net.onFrame = func(net *keygenNet, from, to int, f *KeygenFrame) {
				if !done && f.Type == at && to == 4 {
					done = true
					net.crash(4)
				}
			}
			net.run()
			net.wantFailure(ErrKeygenTransport, 4)
			if net.kept[4] != nil {
				t.Fatal("the crashed participant kept a share")
			}
		})
	}
	t.Run("silent", func(t *testing.T) {
		// Gone without the hub noticing (an offline laptop): a timeout.
		net := newKeygenNet(t, "crash-silent", 3, 5, 0)
		net.crashed[2] = true
		net.run()
		net.wantFailure(ErrKeygenTimeout, 2)
	})
	t.Run("after-ack", func(t *testing.T) {
		// A stream that ends after its acknowledgement is no failure.
		net := newKeygenNet(t, "crash-after-ack", 2, 3, 0)
		var held []byte
		net.drop = func(from, _ int, f *KeygenFrame) bool {
			if from == 2 && f.Type == FrameFinal {
				held = f.Marshal()
				return true
			}
			return false
		}
		net.fromHubOut(net.hub.Start(net.now))
		net.deliverAll()
		if held == nil || net.hubOut != nil || net.partOut[1] == nil || net.partOut[1].Done == nil {
			t.Fatalf("not waiting for the last acknowledgement: held %t, hub %+v", held != nil, net.hubOut)
		}
		if out := net.hub.Broken(net.now, 1, errors.New("EOF")); out.Err != nil || len(out.Send) != 0 {
			t.Fatalf("Broken after an acknowledgement: %+v", out)
		}
		net.toHub[2] = append(net.toHub[2], held)
		net.deliverAll()
		if net.hubOut == nil || net.hubOut.Done == nil {
			t.Fatalf("hub: %+v", net.hubOut)
		}
	})
}

func TestKeygenSessionLiarIsNamed(t *testing.T) {
	other, _, err := Deal(nil, SeededReader([]byte("another key")), 3, 5)
	if err != nil {
		t.Fatal(err)
	}
	for _, liar := range []int{1, 4} {
		t.Run(fmt.Sprint(liar), func(t *testing.T) {
			net := newKeygenNet(t, fmt.Sprint("liar-", liar), 3, 5, 0)
			net.mangle = func(from, _ int, data []byte) []byte {
				f, _ := ParseKeygenFrame(data)
				if from == liar && f.Type == FrameResult {
					f.Data = other.Bytes()
					return f.Marshal()
				}
				return nil
			}
			net.run()
			ke := net.wantFailure(ErrKeygenDisagree, liar)
			for i, k := range net.kept {
				if k != nil {
					t.Fatalf("participant %d kept a share although the hub refused (%v)", i, ke)
				}
			}
			if net.sent[FrameFinal] != 0 {
				t.Fatal("the hub sent final")
			}
		})
	}
	t.Run("hub-lies", func(t *testing.T) {
		// A final whose key differs from the participant's: it refuses.
		net := newKeygenNet(t, "hub-lies", 2, 3, 0)
		net.mangle = func(from, to int, data []byte) []byte {
			f, _ := ParseKeygenFrame(data)
			if f.Type == FrameFinal && to == 2 {
				f.Data = other.Bytes()
				return f.Marshal()
			}
			return nil
		}
		net.run()
		if net.kept[2] != nil || !errors.Is(net.partOut[2].Err, ErrKeygenDisagree) {
			t.Fatalf("participant 2: %+v", net.partOut[2])
		}
		net.wantFailure(ErrKeygenAborted, 2)
	})
}

func TestKeygenSessionMalformedFrames(t *testing.T) {
	valid := (&KeygenFrame{Type: FramePub, Session: [16]byte{1}, Data: []byte{1}}).Marshal()
	bad := map[string][]byte{
		"empty":       {},
		"garbage":     []byte("not cbor at all"),
		"truncated":   valid[:len(valid)-1],
		"trailing":    append(append([]byte{}, valid...), 0),
		"not-a-map":   {0x82, 0x01, 0x02},
		"huge-length": {0xa2, 0x01, 0x02, 0x02, 0x5b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff},
		"indefinite":  {0xbf, 0x01, 0x02, 0xff},
		"no-session":  {0xa1, 0x01, 0x02},
		"unknown-key": {0xa3, 0x01, 0x02, 0x02, 0x50, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x0a, 0x01},
		"unordered":   {0xa2, 0x02, 0x50, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01, 0x02},
		"long-head":   {0xa2, 0x18, 0x01, 0x02, 0x02, 0x50, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0},
		"zero-value":  {0xa3, 0x01, 0x02, 0x02, 0x50, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x03, 0x00},
		"huge-array":  {0xa3, 0x01, 0x02, 0x02, 0x50, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x04, 0x9b, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff},
		"bad-utf8":    {0xa3, 0x01, 0x07, 0x02, 0x50, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x09, 0x61, 0xff},
	}
	for name, data := range bad {
		if _, err := ParseKeygenFrame(data); !errors.Is(err, ErrBadKeygenFrame) {
			t.Errorf("%s: ParseKeygenFrame = %v", name, err)
		}
	}
	// A malformed frame at any point fails the session, naming its sender,
	// without a panic. Scripted: participant 2's n-th frame is replaced.
	other := (&KeygenFrame{Type: FrameMsg, Session: [16]byte{9}, Data: []byte{1, 1, 0, 2}}).Marshal()
	for k := range 4 {
		for name, data := range map[string][]byte{"garbage": bad["garbage"], "other-session": other, "wrong-type": nil} {
			t.Run(fmt.Sprintf("%s-%d", name, k), func(t *testing.T) {
				net := newKeygenNet(t, "malformed", 2, 3, 0)
				count := 0
				net.mangle = func(from, _ int, frame []byte) []byte {
					if from != 2 {
						return nil
					}
					count++
					if count != k+1 {
						return nil
					}
					if data == nil {
						f, _ := ParseKeygenFrame(frame)
						f.Type = FrameInit
						return f.Marshal()
					}
					return data
				}
				net.run()
				net.wantFailure(ErrKeygenProtocol, 2)
			})
		}
	}
	// The same towards a participant.
	p, err := NewKeygenParticipant(KeygenParticipantConfig{Self: []byte("me"), Rand: SeededReader([]byte("p"))}, 0)
	if err != nil {
		t.Fatal(err)
	}
	out := p.Step(1, bad["garbage"])
	if !errors.Is(out.Err, ErrKeygenProtocol) || len(out.Send) != 1 || !p.Over() {
		t.Fatalf("participant on garbage: %+v", out)
	}
	if f, err := ParseKeygenFrame(out.Send[0].Frame); err != nil || f.Type != FrameAbort || f.Error == "" {
		t.Fatalf("participant's abort: %+v %v", f, err)
	}
	// Inits a participant must refuse.
	for name, f := range map[string]*KeygenFrame{
		"not-listed":  {Type: FrameInit, Threshold: 2, Participants: [][]byte{[]byte("a"), []byte("b")}},
		"threshold-1": {Type: FrameInit, Threshold: 1, Participants: [][]byte{[]byte("me"), []byte("b")}},
		"threshold-n": {Type: FrameInit, Threshold: 3, Participants: [][]byte{[]byte("me"), []byte("b")}},
		"duplicate":   {Type: FrameInit, Threshold: 2, Participants: [][]byte{[]byte("me"), []byte("me")}},
		"empty-id":    {Type: FrameInit, Threshold: 2, Participants: [][]byte{[]byte("me"), {}}},
	} {
		p, _ := NewKeygenParticipant(KeygenParticipantConfig{Self: []byte("me"), Rand: SeededReader([]byte("p"))}, 0)
		if out := p.Step(1, f.Marshal()); !errors.Is(out.Err, ErrKeygenProtocol) {
			t.Errorf("init %s: %+v", name, out)
		}
	}
}

func TestKeygenSessionBadPub(t *testing.T) {
	for name, pub := range map[string]func(net *keygenNet, data []byte) []byte{
		"not-a-point": func(_ *keygenNet, _ []byte) []byte { return bytes.Repeat([]byte{7}, 128) },
		"identity": func(_ *keygenNet, _ []byte) []byte {
			b, _ := NewBN256().KeyGroup().Point().Null().MarshalBinary()
			return b
		},
		"copy-of-hub": func(net *keygenNet, _ []byte) []byte { return net.hub.pubs[0] },
	} {
		t.Run(name, func(t *testing.T) {
			net := newKeygenNet(t, "bad-pub", 2, 3, 0)
			net.mangle = func(from, _ int, data []byte) []byte {
				f, _ := ParseKeygenFrame(data)
				if from == 1 && f.Type == FramePub {
					f.Data = pub(net, f.Data)
					return f.Marshal()
				}
				return nil
			}
			net.run()
			net.wantFailure(ErrKeygenProtocol, 1)
		})
	}
	t.Run("impersonation", func(t *testing.T) {
		// Participant 2 relays a DKG message signed as participant 1's.
		net := newKeygenNet(t, "impersonation", 2, 3, 0)
		var stolen []byte
		net.mangle = func(from, _ int, data []byte) []byte {
			f, _ := ParseKeygenFrame(data)
			if f.Type != FrameMsg {
				return nil
			}
			if from == 1 && stolen == nil {
				stolen = f.Data
			}
			if from == 2 && stolen != nil {
				f.Data = stolen
				return f.Marshal()
			}
			return nil
		}
		net.run()
		net.wantFailure(ErrKeygenProtocol, 2)
	})
}

func TestKeygenSessionAbort(t *testing.T) {
	net := newKeygenNet(t, "abort", 2, 3, 0)
	net.fromHubOut(net.hub.Start(net.now))
	out := net.hub.Abort(net.now, errors.New("operator pressed ^C"))
	if !errors.Is(out.Err, ErrKeygenLocal) || len(out.Send) != 2 || !net.hub.Over() {
		t.Fatalf("%+v", out)
	}
	if more := net.hub.Step(net.now, 1, out.Send[0].Frame); more.Err != nil || len(more.Send) != 0 {
		t.Fatal("an over session answered")
	}
	// A participant that gives up: the hub names it.
	net = newKeygenNet(t, "abort-participant", 2, 3, 0)
	net.onFrame = func(net *keygenNet, from, to int, f *KeygenFrame) {
		if f.Type == FrameStart && to == 2 {
			net.fromPartOut(2, net.parts[2].Abort(net.now, errors.New("shutting down")))
		}
	}
	net.run()
	ke := net.wantFailure(ErrKeygenAborted, 2)
	if !bytes.Contains([]byte(ke.Error()), []byte("shutting down")) {
		t.Fatalf("the reason got lost: %v", ke)
	}
}

func TestKeygenConfigValidation(t *testing.T) {
	ids := [][]byte{[]byte("a"), []byte("b"), []byte("c")}
	r := SeededReader([]byte("x"))
	for name, cfg := range map[string]KeygenHubConfig{
		"t1":      {Participants: ids, Threshold: 1, Rand: r},
		"t>n":     {Participants: ids, Threshold: 4, Rand: r},
		"self":    {Participants: ids, Threshold: 2, Self: 3, Rand: r},
		"no-rand": {Participants: ids, Threshold: 2},
		"dup":     {Participants: [][]byte{[]byte("a"), []byte("a")}, Threshold: 2, Rand: r},
	} {
		if _, err := NewKeygenHub(cfg); !errors.Is(err, ErrBadDKGConfig) {
			t.Errorf("%s: %v", name, err)
		}
	}
	if _, err := NewKeygenParticipant(KeygenParticipantConfig{Rand: r}, 0); !errors.Is(err, ErrBadDKGConfig) {
		t.Error(err)
	}
}
