package threshold

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"errors"
	"fmt"
	"io"
	"reflect"
	"slices"
	"testing"

	"go.dedis.ch/kyber/v3"
	vss "go.dedis.ch/kyber/v3/share/vss/pedersen"
	"go.dedis.ch/kyber/v3/sign/schnorr"
	"go.dedis.ch/protobuf"
	"golang.org/x/crypto/hkdf"
)

type envelope struct {
	to   int
	data []byte
}

// dkgNet runs n participants in one goroutine and delivers messages from a
// FIFO queue (or, with reverse, newest first).
type dkgNet struct {
	t        testing.TB
	parts    []*DKG
	keys     []*DKGKey
	queue    []envelope
	silent   map[int]bool // participants that never start and drop everything
	skip     map[int]bool // participants left out of results()
	reverse  bool
	log      [][]byte // every message sent, in send order
	maxSteps int
	tolerant bool    // record Step errors instead of failing
	errs     []error // Step errors seen in tolerant mode
}

func newDKGNet(t testing.TB, seed string, th, n int) *dkgNet {
	t.Helper()
	return newDKGNetThresholds(t, seed, slices.Repeat([]int{th}, n))
}

// newDKGNetThresholds gives participant i threshold ths[i].
func newDKGNetThresholds(t testing.TB, seed string, ths []int) *dkgNet {
	t.Helper()
	n := len(ths)
	keys := make([]*DKGKey, n)
	pubs := make([][]byte, n)
	for i := range keys {
		k, err := NewDKGKey(nil, SeededReader([]byte(fmt.Sprintf("%s/longterm/%d", seed, i))))
		if err != nil {
			t.Fatal(err)
		}
		keys[i], pubs[i] = k, k.Public()
	}
	net := &dkgNet{t: t, keys: keys, silent: map[int]bool{}, skip: map[int]bool{}, maxSteps: 100 * n * n}
	for i := range keys {
		d, err := NewDKG(DKGConfig{
			Index:        i,
			Key:          keys[i],
			Participants: pubs,
			Threshold:    ths[i],
			Rand:         SeededReader([]byte(fmt.Sprintf("%s/run/%d", seed, i))),
		})
		if err != nil {
			t.Fatalf("NewDKG(%d): %v", i, err)
		}
		net.parts = append(net.parts, d)
	}
	return net
}

func (net *dkgNet) send(from int, msgs []DKGMessage) {
	for _, m := range msgs {
		net.log = append(net.log, m.Data)
		if m.To == Broadcast {
			for j := range net.parts {
				if j != from {
					net.queue = append(net.queue, envelope{j, m.Data})
				}
			}
		} else {
			net.queue = append(net.queue, envelope{m.To, m.Data})
		}
	}
}

func (net *dkgNet) run() {
	net.t.Helper()
	for i, d := range net.parts {
		if net.silent[i] {
			continue
		}
		out, err := d.Start()
		if err != nil {
			net.t.Fatalf("Start(%d): %v", i, err)
		}
		net.send(i, out)
	}
	for steps := 0; len(net.queue) > 0; steps++ {
		if steps > net.maxSteps {
			net.t.Fatal("DKG did not quiesce")
		}
		var e envelope
		if net.reverse {
			e = net.queue[len(net.queue)-1]
			net.queue = net.queue[:len(net.queue)-1]
		} else {
			e = net.queue[0]
			net.queue = net.queue[1:]
		}
		if net.silent[e.to] {
			continue
		}
		out, err := net.parts[e.to].Step(e.data)
		if err != nil {
			if !net.tolerant {
				net.t.Fatalf("Step(%d): %v", e.to, err)
			}
			net.errs = append(net.errs, err)
		}
		net.send(e.to, out)
	}
}

func (net *dkgNet) results() (*GroupKey, []*Share) {
	net.t.Helper()
	var key *GroupKey
	var shares []*Share
	for i, d := range net.parts {
		if net.silent[i] || net.skip[i] {
			continue
		}
		if !d.Done() {
			net.t.Fatalf("participant %d not done", i)
		}
		k, s, err := d.Result()
		if err != nil {
			net.t.Fatalf("Result(%d): %v", i, err)
		}
		if key == nil {
			key = k
		} else if !key.Equal(k) {
			net.t.Fatalf("participant %d has a different group key", i)
		}
		if s.Index() != i || !s.Matches(k) {
			net.t.Fatalf("participant %d: share index %d, matches %t", i, s.Index(), s.Matches(k))
		}
		shares = append(shares, s)
	}
	return key, shares
}

func checkSigning(t *testing.T, key *GroupKey, shares []*Share) {
	t.Helper()
	msg := []byte("signed by the DKG key")
	v := NewVerifier(key)
	var ps [][]byte
	for _, s := range shares {
		ps = append(ps, mustSign(t, s, msg))
	}
	// Every t-subset recovers the same, valid signature.
	var first []byte
	for _, set := range subsets(len(ps), key.Threshold()) {
		var sub [][]byte
		for _, k := range set {
			sub = append(sub, ps[k])
		}
		sig, bad, err := Recover(v, msg, sub)
		if err != nil || len(bad) != 0 {
			t.Fatalf("Recover(%v): bad=%v err=%v", set, bad, err)
		}
		if err := VerifyGroup(key.Bytes(), msg, sig); err != nil {
			t.Fatal(err)
		}
		if first != nil && !bytes.Equal(first, sig) {
			t.Fatal("subsets disagree")
		}
		first = sig
	}
}

func TestDKGInProcess(t *testing.T) {
	net := newDKGNet(t, "dkg-5-3", 3, 5)
	net.run()
	key, shares := net.results()
	if key.Threshold() != 3 || key.Signers() != 5 || len(shares) != 5 {
		t.Fatalf("t=%d n=%d shares=%d", key.Threshold(), key.Signers(), len(shares))
	}
	for i, d := range net.parts {
		if q := d.Qualified(); !slices.Equal(q, []int{0, 1, 2, 3, 4}) {
			t.Fatalf("participant %d QUAL %v", i, q)
		}
	}
	checkSigning(t, key, shares)
	// n*(n-1) deals + n*(n-1) responses (broadcasts counted once).
	if got, want := len(net.log), 5*4+5*4; got != want {
		t.Fatalf("%d messages sent, want %d", got, want)
	}
}

func TestDKGOutOfOrderDelivery(t *testing.T) {
	net := newDKGNet(t, "dkg-reverse", 3, 5)
	net.reverse = true // responses overtake the deals they answer
	net.run()
	key, shares := net.results()
	checkSigning(t, key, shares)
}

func TestDKGIsDeterministic(t *testing.T) {
	a := newDKGNet(t, "det", 3, 5)
	a.run()
	ka, sa := a.results()
	b := newDKGNet(t, "det", 3, 5)
	b.run()
	kb, sb := b.results()
	if !ka.Equal(kb) {
		t.Fatal("same seed, different group key")
	}
	for i := range sa {
		if !bytes.Equal(sa[i].Bytes(), sb[i].Bytes()) {
			t.Fatalf("same seed, share %d differs", i)
		}
	}
	if len(a.log) != len(b.log) {
		t.Fatal("transcripts differ in length")
	}
	for i := range a.log {
		if !bytes.Equal(a.log[i], b.log[i]) {
			t.Fatalf("same seed, message %d differs", i)
		}
	}
	c := newDKGNet(t, "det-other", 3, 5)
	c.run()
	kc, _ := c.results()
	if ka.Equal(kc) {
		t.Fatal("different seeds, same group key")
	}
}

func TestDKGSilentParticipantNeedsTimeout(t *testing.T) {
	net := newDKGNet(t, "silent", 3, 5)
	net.silent[4] = true
	net.run()
	for i, d := range net.parts[:4] {
		if d.Done() {
			t.Fatalf("participant %d done without participant 4 and without Timeout", i)
		}
		if _, _, err := d.Result(); !errors.Is(err, ErrDKGNotDone) {
			t.Fatalf("Result before Done: %v", err)
		}
		d.Timeout()
	}
	key, shares := net.results()
	for i, d := range net.parts[:4] {
		if q := d.Qualified(); !slices.Equal(q, []int{0, 1, 2, 3}) {
			t.Fatalf("participant %d QUAL %v", i, q)
		}
	}
	checkSigning(t, key, shares)
}

func TestDKGRejectsBadMessages(t *testing.T) {
	net := newDKGNet(t, "bad", 3, 5)
	d0, d1 := net.parts[0], net.parts[1]
	out, err := d1.Start()
	if err != nil {
		t.Fatal(err)
	}
	var deal []byte
	for _, m := range out {
		if m.To == 0 {
			deal = m.Data
		}
	}
	if kind, from, err := DKGMessageInfo(deal); err != nil || kind != DKGDeal || from != 1 {
		t.Fatalf("DKGMessageInfo = %v %d %v", kind, from, err)
	}
	tampered := slices.Clone(deal)
	tampered[len(tampered)-70] ^= 1 // inside the ciphertext or signature
	spoofed := slices.Clone(deal)
	spoofed[3] = 2 // claims to come from participant 2
	wrongRecipient := out[1].Data
	for name, data := range map[string][]byte{
		"empty":           nil,
		"garbage":         []byte("hello, world"),
		"truncated":       deal[:len(deal)-1],
		"trailing":        append(slices.Clone(deal), 0),
		"tampered":        tampered,
		"spoofed sender":  spoofed,
		"wrong recipient": wrongRecipient,
		"sender 9 of 5":   append([]byte{1, 1, 0, 9}, deal[4:]...),
		"unknown kind":    append([]byte{1, 7}, deal[2:]...),
		"unknown version": append([]byte{2}, deal[1:]...),
	} {
		if _, err := d0.Step(data); !errors.Is(err, ErrBadDKGMessage) {
			t.Errorf("Step(%s) = %v, want ErrBadDKGMessage", name, err)
		}
	}
	// The genuine deal still works after all that, exactly once.
	resp, err := d0.Step(deal)
	if err != nil || len(resp) != 1 || resp[0].To != Broadcast {
		t.Fatalf("Step(deal) = %v, %v", resp, err)
	}
	if again, err := d0.Step(deal); err != nil || again != nil {
		t.Fatalf("duplicate deal: %v, %v", again, err)
	}
	// A participant ignores its own echoed messages.
	if echo, err := d1.Step(deal); err != nil || echo != nil {
		t.Fatalf("echo: %v, %v", echo, err)
	}
}

func TestDKGConfigValidation(t *testing.T) {
	k0, _ := NewDKGKey(nil, SeededReader([]byte("k0")))
	k1, _ := NewDKGKey(nil, SeededReader([]byte("k1")))
	k2, _ := NewDKGKey(nil, SeededReader([]byte("k2")))
	pubs := [][]byte{k0.Public(), k1.Public(), k2.Public()}
	rnd := SeededReader(nil)
	cases := map[string]DKGConfig{
		"t=1":            {Index: 0, Key: k0, Participants: pubs, Threshold: 1, Rand: rnd},
		"t>n":            {Index: 0, Key: k0, Participants: pubs, Threshold: 4, Rand: rnd},
		"index":          {Index: 3, Key: k0, Participants: pubs, Threshold: 2, Rand: rnd},
		"key mismatch":   {Index: 1, Key: k0, Participants: pubs, Threshold: 2, Rand: rnd},
		"duplicate key":  {Index: 0, Key: k0, Participants: [][]byte{pubs[0], pubs[0], pubs[1]}, Threshold: 2, Rand: rnd},
		"bad public key": {Index: 0, Key: k0, Participants: [][]byte{pubs[0], pubs[1][:5], pubs[2]}, Threshold: 2, Rand: rnd},
		"no rand":        {Index: 0, Key: k0, Participants: pubs, Threshold: 2},
		"no key":         {Index: 0, Participants: pubs, Threshold: 2, Rand: rnd},
	}
	for name, cfg := range cases {
		if _, err := NewDKG(cfg); !errors.Is(err, ErrBadDKGConfig) {
			t.Errorf("NewDKG(%s) = %v, want ErrBadDKGConfig", name, err)
		}
	}
	k, err := ParseDKGKey(k1.Bytes())
	if err != nil || !bytes.Equal(k.Public(), k1.Public()) {
		t.Fatalf("ParseDKGKey round trip: %v", err)
	}
	if _, err := ParseDKGKey(k1.Bytes()[:10]); err == nil {
		t.Fatal("ParseDKGKey accepted a truncated key")
	}
}

// kyber v3.1.0 lets a dealer choose its own polynomial degree; a deviant
// dealer (here configured with t=4 among t=3 peers) must not break the run:
// the honest participants exclude its deal and agree on a key.
func TestDKGDeviantDegreeIsExcluded(t *testing.T) {
	net := newDKGNetThresholds(t, "deviant", []int{3, 3, 3, 3, 4})
	net.skip[4] = true
	net.run()
	for i, d := range net.parts[:4] {
		if q := d.Qualified(); !slices.Equal(q, []int{0, 1, 2, 3}) {
			t.Fatalf("participant %d QUAL %v", i, q)
		}
	}
	key, shares := net.results()
	checkSigning(t, key, shares)
}

// A dealer that sends participant 2 a share that does not match its
// commitments draws a complaint; its justification reveals the right share,
// everyone accepts it, and participant 2 ends with the justified share.
func TestDKGComplaintAndJustification(t *testing.T) {
	net := newDKGNetThresholds(t, "complaint", []int{3, 3, 3, 3, 3})
	const dealer, victim = 1, 2
	orig := net.parts[dealer]
	out, err := orig.Start()
	if err != nil {
		t.Fatal(err)
	}
	for k, m := range out {
		if m.To == victim {
			out[k].Data = corruptDeal(t, net, dealer, victim, m.Data)
		}
	}
	net.send(dealer, out)
	net.run() // Start on the dealer again is a no-op
	var complaints, justifications int
	for _, m := range net.log {
		kind, from, _ := DKGMessageInfo(m)
		if kind == DKGJustification && from == dealer {
			justifications++
		}
		if kind == DKGResponse {
			w, err := decodeDKGMessage(NewBN256(), m)
			if err != nil {
				t.Fatal(err)
			}
			if !w.resp.Response.Status {
				complaints++
			}
		}
	}
	if complaints != 1 || justifications != 1 {
		t.Fatalf("%d complaints, %d justifications; want 1 and 1", complaints, justifications)
	}
	key, shares := net.results()
	checkSigning(t, key, shares)
}

// corruptDeal re-encrypts the deal for victim with its share plus one and
// re-signs it with the dealer's long-term key, as a cheating dealer would.
func corruptDeal(t *testing.T, net *dkgNet, dealer, victim int, data []byte) []byte {
	t.Helper()
	w, err := decodeDKGMessage(NewBN256(), data)
	if err != nil {
		t.Fatal(err)
	}
	suite := NewBN256().DKGSuite(Stream(SeededReader([]byte("cheat"))))
	ed := w.deal.Deal
	dh := suite.Point()
	if err := dh.UnmarshalBinary(ed.DHKey); err != nil {
		t.Fatal(err)
	}
	pre := suite.Point().Mul(net.keys[victim].secret, dh)
	h := suite.Hash()
	h.Write([]byte("vss-dealer"))
	net.keys[dealer].public.MarshalTo(h)
	h.Write([]byte("vss-verifiers"))
	for _, k := range net.keys {
		k.public.MarshalTo(h)
	}
	ctx := h.Sum(nil)
	preb, _ := pre.MarshalBinary()
	sk := make([]byte, 32)
	if _, err := io.ReadFull(hkdf.New(suite.Hash, preb, nil, ctx), sk); err != nil {
		t.Fatal(err)
	}
	block, _ := aes.NewCipher(sk)
	gcm, _ := cipher.NewGCM(block)
	plain, err := gcm.Open(nil, ed.Nonce, ed.Cipher, ctx)
	if err != nil {
		t.Fatalf("decrypt deal: %v", err)
	}
	deal := &vss.Deal{}
	cons := protobuf.Constructors{
		reflect.TypeOf((*kyber.Point)(nil)).Elem():  func() interface{} { return suite.Point() },
		reflect.TypeOf((*kyber.Scalar)(nil)).Elem(): func() interface{} { return suite.Scalar() },
	}
	if err := protobuf.DecodeWithConstructors(plain, deal, cons); err != nil {
		t.Fatal(err)
	}
	deal.SecShare.V.Add(deal.SecShare.V, suite.Scalar().One())
	plain, err = protobuf.Encode(deal)
	if err != nil {
		t.Fatal(err)
	}
	ed.Cipher = gcm.Seal(nil, ed.Nonce, plain, ctx)
	buf, _ := w.deal.MarshalBinary()
	w.deal.Signature, err = schnorr.Sign(suite, net.keys[dealer].secret, buf)
	if err != nil {
		t.Fatal(err)
	}
	return encodeDeal(w.deal)
}
