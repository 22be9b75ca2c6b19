package node

import (
	"bytes"
	"math/rand/v2"
	"reflect"
	"testing"

	"aura/crdt"
	"aura/threshold"
)

// legacyDKGFrame is the /aura/dkg/1 frame as the node encoded it (with
// crdt.Marshal) before the protocol moved into threshold.KeygenHub and
// KeygenParticipant. Devices of both versions must understand each other.
type legacyDKGFrame struct {
	Type         uint8    `cbor:"1,keyasint"`
	Session      [16]byte `cbor:"2,keyasint"`
	Threshold    int      `cbor:"3,keyasint,omitempty"`
	Participants [][]byte `cbor:"4,keyasint,omitempty"`
	Pubs         [][]byte `cbor:"5,keyasint,omitempty"`
	To           int      `cbor:"6,keyasint,omitempty"`
	From         int      `cbor:"7,keyasint,omitempty"`
	Data         []byte   `cbor:"8,keyasint,omitempty"`
	Error        string   `cbor:"9,keyasint,omitempty"`
}

func randomFrame(r *rand.Rand) threshold.KeygenFrame {
	bs := func(max int) []byte {
		b := make([]byte, r.IntN(max))
		for i := range b {
			b[i] = byte(r.Uint32())
		}
		return b
	}
	list := func() [][]byte {
		var xs [][]byte
		for range r.IntN(4) {
			xs = append(xs, bs(40))
		}
		return xs
	}
	ints := []int{0, 1, -1, 2, 23, 24, 255, 256, 65535, 65536, -24, -25, -257, 1 << 40, -(1 << 40)}
	f := threshold.KeygenFrame{Type: threshold.KeygenFrameType(r.IntN(9)), Threshold: ints[r.IntN(len(ints))],
		Participants: list(), Pubs: list(), To: ints[r.IntN(len(ints))], From: ints[r.IntN(len(ints))],
		Data: bs(300), Error: string(bs(3))}
	if r.IntN(2) == 0 {
		f.Error = "gave up: ünïcode"
	}
	copy(f.Session[:], bs(17))
	if r.IntN(3) == 0 {
		f.Data = bs(70000)
	}
	return f
}

func legacyOf(f threshold.KeygenFrame) legacyDKGFrame {
	return legacyDKGFrame{Type: uint8(f.Type), Session: f.Session, Threshold: f.Threshold, Participants: f.Participants,
		Pubs: f.Pubs, To: f.To, From: f.From, Data: f.Data, Error: f.Error}
}

// TestKeygenFrameWireCompatible: threshold's frame codec writes exactly the
// bytes the old node wrote, and each side decodes the other's frames to
// the same values.
func TestKeygenFrameWireCompatible(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for i := range 2000 {
		f := randomFrame(r)
		if !isUTF8(f.Error) {
			f.Error = "x"
		}
		got := f.Marshal()
		want, err := crdt.Marshal(legacyOf(f))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("frame %d %+v:\nthreshold %x\nlegacy    %x", i, f, got, want)
		}
		back, err := threshold.ParseKeygenFrame(want)
		if err != nil {
			t.Fatalf("frame %d: threshold cannot parse the legacy bytes: %v", i, err)
		}
		var old legacyDKGFrame
		if err := crdt.Unmarshal(got, &old); err != nil {
			t.Fatalf("frame %d: legacy cannot parse threshold's bytes: %v", i, err)
		}
		if !reflect.DeepEqual(legacyOf(*back), old) {
			t.Fatalf("frame %d decodes differently:\nthreshold %+v\nlegacy    %+v", i, legacyOf(*back), old)
		}
	}
}

func isUTF8(s string) bool { return bytes.Equal([]byte(s), []byte(string([]rune(s)))) }

// FuzzKeygenFrameDecoders: the two decoders accept exactly the same bytes
// (what the legacy one accepts is canonical CBOR of its struct), and agree
// on the values.
func FuzzKeygenFrameDecoders(f *testing.F) {
	r := rand.New(rand.NewPCG(3, 4))
	for range 20 {
		fr := randomFrame(r)
		fr.Error = "e"
		f.Add(fr.Marshal())
	}
	f.Add([]byte{0xa2, 0x01, 0x01, 0x02, 0x50, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, data []byte) {
		var old legacyDKGFrame
		oldErr := crdt.Unmarshal(data, &old)
		fr, err := threshold.ParseKeygenFrame(data)
		if (oldErr == nil) != (err == nil) {
			t.Fatalf("legacy err %v, threshold err %v on %x", oldErr, err, data)
		}
		if err == nil && !reflect.DeepEqual(legacyOf(*fr), old) {
			t.Fatalf("decoded differently on %x:\nthreshold %+v\nlegacy    %+v", data, legacyOf(*fr), old)
		}
	})
}
