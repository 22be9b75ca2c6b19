package gossip

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"testing"

	"aura/crdt"
)

// sessionBytes is one direction of a valid session: HELLO, FACTS, END.
func sessionBytes(tb testing.TB) []byte {
	tb.Helper()
	a := newAccount(tb, 2)
	facts := a.putFacts(tb, 1, 0, 10, 3)
	h, err := encodeHello(&hello{Version: syncVersion, Account: a.id, VV: crdt.VersionVector{dev(a.keys[0]): 2},
		Pruned: crdt.VersionVector{dev(a.keys[0]): 1}, Evidence: []crdt.FactID{facts[0].ID()}})
	if err != nil {
		tb.Fatal(err)
	}
	var buf bytes.Buffer
	fw := &frameWriter{w: bufio.NewWriter(&buf)}
	var end [binary.MaxVarintLen64]byte
	for _, fr := range []struct {
		typ     byte
		payload []byte
	}{{frameHello, h}, {frameFacts, encodeBatch(facts)}, {frameEnd, end[:binary.PutUvarint(end[:], 3)]},
		{frameError, []byte("bye")}, {99, []byte("future")}} {
		if err := fw.write(fr.typ, fr.payload); err != nil {
			tb.Fatal(err)
		}
	}
	if err := fw.w.Flush(); err != nil {
		tb.Fatal(err)
	}
	return buf.Bytes()
}

var errNotCanonicalFrame = errors.New("a frame that parses does not re-encode to itself")

// readAll decodes frames until the input ends or a frame fails.
func readAll(data []byte) ([]frame, error) {
	fr := newFrameReader(bytes.NewReader(data))
	var out []frame
	for range 64 {
		typ, payload, err := fr.next()
		if err != nil {
			return out, err
		}
		f, err := parseFrame(typ, payload)
		if err != nil {
			return out, err
		}
		if f.typ == frameFacts && !bytes.Equal(encodeBatch(f.facts), payload) {
			return out, errNotCanonicalFrame
		}
		if f.typ == frameHello {
			again, err := encodeHello(f.hello)
			if err != nil || !bytes.Equal(again, payload) {
				return out, errNotCanonicalFrame
			}
		}
		out = append(out, f)
	}
	return out, nil
}

func TestFramesRoundTrip(t *testing.T) {
	frames, err := readAll(sessionBytes(t))
	if err == nil || len(frames) != 5 {
		t.Fatalf("got %d frames, err %v", len(frames), err)
	}
	if frames[0].hello == nil || len(frames[1].facts) != 3 || frames[2].count != 3 || frames[3].text != "bye" || frames[4].typ != 99 {
		t.Errorf("frames %+v", frames)
	}
}

func TestBatchRejects(t *testing.T) {
	a := newAccount(t, 2)
	f := a.putFacts(t, 1, 0, 10, 1)[0]
	good := encodeBatch([]*crdt.Fact{f})
	long := append([]byte{0x98, 0x01}, good[1:]...)          // array count in a longer head than needed
	indef := append([]byte{0x9f}, append(good[1:], 0xff)...) // indefinite-length array
	for name, b := range map[string][]byte{
		"empty input":   {},
		"not an array":  {0xa0},
		"non-minimal":   long,
		"indefinite":    indef,
		"trailing byte": append(append([]byte(nil), good...), 0),
		"truncated":     good[:len(good)-1],
		"count lies":    {0x85, 0x41, 0x00},
		"text entry":    {0x81, 0x61, 'x'},
	} {
		if _, err := decodeBatch(b, 10); !errors.Is(err, ErrBadBatch) {
			t.Errorf("%s: got %v", name, err)
		}
	}
	if fs, err := decodeBatch(good, 10); err != nil || len(fs) != 1 || fs[0].ID() != f.ID() {
		t.Errorf("good batch: %v", err)
	}
	if _, err := decodeBatch(encodeBatch([]*crdt.Fact{f, f}), 1); !errors.Is(err, ErrBadBatch) {
		t.Errorf("too many entries: %v", err)
	}
	if MessageID(good) != MessageID(append([]byte(nil), good...)) || MessageID(good) == MessageID(long) {
		t.Error("message ids are not content addresses")
	}
}

func FuzzSyncFrame(f *testing.F) {
	f.Add(sessionBytes(f))
	f.Add([]byte{0x01, frameEnd})
	f.Add([]byte{0x02, frameEnd, 0x00})
	f.Add([]byte{0x05, frameFacts, 0x81, 0x41, 0x00, 0x00})
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Fuzz(func(t *testing.T, data []byte) {
		if _, err := readAll(data); errors.Is(err, errNotCanonicalFrame) {
			t.Fatal(err)
		}
	})
}
