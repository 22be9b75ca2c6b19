package threshold

import (
	"bytes"
	"testing"
)

// FuzzParseReshareFrame: the resharing frame decoder never panics, and
// what it accepts is canonical: it re-encodes to the same bytes.
func FuzzParseReshareFrame(f *testing.F) {
	f.Add((&ReshareFrame{Type: FrameInit, Session: [16]byte{1}, Threshold: 2,
		Participants: [][]byte{[]byte("a"), []byte("b")}, Holders: []int{0, -1}, Data: []byte{1}}).Marshal())
	f.Add((&ReshareFrame{Type: FrameStart, Session: [16]byte{2}, Pubs: [][]byte{{1}}, Members: []int{0, 3}, Holders: []int{-1, 2}}).Marshal())
	f.Add((&ReshareFrame{Type: FrameMsg, To: Broadcast, From: 3, Data: []byte{1, 2, 0, 3}}).Marshal())
	f.Add((&ReshareFrame{Type: FrameAbort, Error: "gave up"}).Marshal())
	f.Fuzz(func(t *testing.T, data []byte) {
		fr, err := ParseReshareFrame(data)
		if err != nil {
			return
		}
		if again := fr.Marshal(); !bytes.Equal(again, data) {
			t.Fatalf("accepted a non-canonical frame:\nin  %x\nout %x", data, again)
		}
	})
}

// FuzzReshareHubStep: whatever a participant sends, the hub answers with
// an output, never a panic; a participant's session likewise for whatever
// the hub sends.
func FuzzReshareHubStep(f *testing.F) {
	f.Add([]byte{})
	f.Add((&ReshareFrame{Type: FramePub, Data: make([]byte, 128), Holders: []int{1}}).Marshal())
	f.Add((&ReshareFrame{Type: FrameInit, Threshold: 2, Participants: [][]byte{[]byte("a"), []byte("b")}, Holders: []int{0, 1}}).Marshal())
	f.Add((&ReshareFrame{Type: FrameAbort, Error: "x"}).Marshal())
	key, shares, err := Deal(nil, SeededReader([]byte("fuzz")), 2, 3)
	if err != nil {
		f.Fatal(err)
	}
	ids := [][]byte{[]byte("a"), []byte("b"), []byte("c")}
	f.Fuzz(func(t *testing.T, data []byte) {
		h, err := NewReshareHub(ReshareHubConfig{Participants: ids, OldKey: key, Holders: []int{0, 1, 2}, Share: shares[0],
			Threshold: 2, Rand: SeededReader([]byte("fuzz"))})
		if err != nil {
			t.Fatal(err)
		}
		h.Start(0)
		h.Step(1, 1, data)
		h.Tick(1 << 40)
		p, err := NewReshareParticipant(ReshareParticipantConfig{Self: ids[1], Share: shares[1], Rand: SeededReader([]byte("p"))}, 0)
		if err != nil {
			t.Fatal(err)
		}
		p.Step(1, data)
		p.Tick(1 << 40)
	})
}
