package threshold

import (
	"bytes"
	"errors"
	"testing"
)

func FuzzDecodePartial(f *testing.F) {
	key, shares := mustDeal(f, nil, "fuzz", 3, 5)
	good := mustSign(f, shares[1], []byte("m"))
	f.Add(good)
	f.Add(good[:10])
	f.Add(make([]byte, len(good)))
	f.Add(bytes.Repeat([]byte{0xff}, len(good)))
	v := NewVerifier(key)
	f.Fuzz(func(t *testing.T, p []byte) {
		i, pt, err := DecodePartial(key, p)
		if err == nil && (i < 0 || i >= key.Signers() || pt == nil) {
			t.Fatalf("DecodePartial accepted index %d", i)
		}
		verr := v.VerifyPartial([]byte("m"), p)
		if verr == nil && !bytes.Equal(p, good) {
			t.Fatalf("a partial other than the genuine one verified: %x", p)
		}
		c := v.NewCollector([]byte("m"))
		if err := c.Add(p); err != nil && !errors.Is(err, ErrBadPartial) && !errors.Is(err, ErrBadIndex) {
			t.Fatalf("Add: unexpected error class %v", err)
		}
	})
}

func FuzzParseGroupKey(f *testing.F) {
	key, _ := mustDeal(f, nil, "fuzz", 3, 5)
	f.Add(key.Bytes())
	f.Add(key.Bytes()[:6])
	f.Add([]byte{1, 1, 0, 1, 0, 1})
	f.Fuzz(func(t *testing.T, data []byte) {
		k, err := ParseGroupKey(data)
		if err != nil {
			return
		}
		if !bytes.Equal(k.Bytes(), data) {
			t.Fatal("accepted group key does not re-encode to its input")
		}
		_ = VerifyGroup(data, []byte("m"), make([]byte, 64))
	})
}

func FuzzParseShare(f *testing.F) {
	_, shares := mustDeal(f, nil, "fuzz", 3, 5)
	f.Add(shares[0].Bytes())
	f.Add([]byte{1, 1, 0, 0})
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := ParseShare(data)
		if err != nil {
			return
		}
		if !bytes.Equal(s.Bytes(), data) {
			t.Fatal("accepted share does not re-encode to its input")
		}
	})
}

func FuzzVerifyGroup(f *testing.F) {
	key, shares := mustDeal(f, nil, "fuzz", 2, 3)
	msg := []byte("m")
	sig, _, err := Recover(NewVerifier(key), msg, [][]byte{mustSign(f, shares[0], msg), mustSign(f, shares[2], msg)})
	if err != nil {
		f.Fatal(err)
	}
	f.Add(sig)
	f.Add(sig[:5])
	f.Fuzz(func(t *testing.T, s []byte) {
		if err := key.Verify(msg, s); err == nil && !bytes.Equal(s, sig) {
			t.Fatalf("a signature other than the genuine one verified: %x", s)
		}
	})
}

func FuzzDKGStep(f *testing.F) {
	net := newDKGNet(f, "fuzz", 3, 4)
	out, err := net.parts[1].Start()
	if err != nil {
		f.Fatal(err)
	}
	for _, m := range out {
		f.Add(m.Data)
	}
	f.Add([]byte{1, 2, 0, 1})
	f.Add([]byte{1, 3, 0, 1, 0, 0})
	f.Fuzz(func(t *testing.T, data []byte) {
		d := newDKGNet(t, "fuzz", 3, 4).parts[0]
		if _, err := d.Step(data); err != nil && !errors.Is(err, ErrBadDKGMessage) {
			t.Fatalf("Step error does not wrap ErrBadDKGMessage: %v", err)
		}
	})
}

// FuzzParseKeygenFrame: the frame decoder never panics, and what it
// accepts is canonical: it re-encodes to the same bytes.
func FuzzParseKeygenFrame(f *testing.F) {
	f.Add((&KeygenFrame{Type: FrameInit, Session: [16]byte{1}, Threshold: 2,
		Participants: [][]byte{[]byte("a"), []byte("b")}}).Marshal())
	f.Add((&KeygenFrame{Type: FrameMsg, Session: [16]byte{2}, To: Broadcast, From: 3, Data: []byte{1, 2, 0, 3}}).Marshal())
	f.Add((&KeygenFrame{Type: FrameAbort, Error: "gave up"}).Marshal())
	f.Add((&KeygenFrame{Type: FrameStart, Pubs: [][]byte{{}, make([]byte, 300)}, To: 70000, From: -300}).Marshal())
	f.Fuzz(func(t *testing.T, data []byte) {
		fr, err := ParseKeygenFrame(data)
		if err != nil {
			return
		}
		if again := fr.Marshal(); !bytes.Equal(again, data) {
			t.Fatalf("accepted a non-canonical frame:\nin  %x\nout %x", data, again)
		}
	})
}

// FuzzKeygenHubStep: whatever a participant sends, the hub answers with an
// output, never a panic; a frame that does not parse fails the session.
func FuzzKeygenHubStep(f *testing.F) {
	f.Add([]byte{})
	f.Add((&KeygenFrame{Type: FramePub, Data: make([]byte, 128)}).Marshal())
	f.Add((&KeygenFrame{Type: FrameResult, Data: []byte{1}}).Marshal())
	f.Add((&KeygenFrame{Type: FrameAbort, Error: "x"}).Marshal())
	ids := [][]byte{[]byte("a"), []byte("b"), []byte("c")}
	f.Fuzz(func(t *testing.T, data []byte) {
		h, err := NewKeygenHub(KeygenHubConfig{Participants: ids, Threshold: 2, Rand: SeededReader([]byte("fuzz"))})
		if err != nil {
			t.Fatal(err)
		}
		h.Start(0)
		out := h.Step(1, 1, data)
		if _, err := ParseKeygenFrame(data); err != nil && out.Err == nil {
			t.Fatal("a malformed frame did not fail the session")
		}
		h.Tick(1 << 40)
	})
}
