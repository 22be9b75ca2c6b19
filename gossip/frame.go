package gossip

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"aura/crdt"
)

// Sync frames. A session is a sequence of frames in each direction:
//
//	frame   = uvarint(1 + len(payload)) ‖ type (1 byte) ‖ payload
//	HELLO   (1): canonical CBOR [version, account, vv, pruned, evidence]
//	FACTS   (2): a batch (see batch.go): CBOR array of canonical fact bytes
//	END     (3): uvarint(number of facts sent in FACTS frames)
//	ERROR   (4): UTF-8 reason; the sender closes the session after it
//
// Frames of an unknown type are skipped (so later versions may add some).
const (
	frameHello byte = 1
	frameFacts byte = 2
	frameEnd   byte = 3
	frameError byte = 4
)

// Frame limits.
const (
	// MaxFrameBytes bounds any frame (type byte and payload).
	MaxFrameBytes = 4 << 20
	// MaxFactsFrameBytes bounds a FACTS frame's payload.
	MaxFactsFrameBytes = 1 << 20
	// MaxFactsPerFrame bounds the facts of one FACTS frame.
	MaxFactsPerFrame = 1024
	// maxErrorBytes bounds an ERROR frame's reason.
	maxErrorBytes = 1024
	// maxHelloEvidence bounds the evidence ids of a HELLO.
	maxHelloEvidence = 32 << 10
)

// ErrProtocol is returned when a peer breaks the sync protocol.
var ErrProtocol = errors.New("sync protocol violation")

// ErrPeerRefused is returned when the peer ended the session with an ERROR
// frame.
var ErrPeerRefused = errors.New("peer refused sync")

// syncVersion is the HELLO version written and accepted.
const syncVersion = 1

// hello opens a session in each direction: what the sender holds.
type hello struct {
	_       struct{} `cbor:",toarray"`
	Version uint64
	Account crdt.AccountID
	// VV is the sender's version vector.
	VV crdt.VersionVector
	// Pruned is the sender's pruned floor per author: it cannot send facts
	// at or below it. A peer whose VV is below it must restore.
	Pruned crdt.VersionVector
	// Evidence lists both fact ids of every equivocation the sender holds
	// (at most maxHelloEvidence), so that the other side sends only the
	// conflicting facts the sender lacks.
	Evidence []crdt.FactID
	// Heads are the sender's chain heads h(author, VV[author]). A receiver
	// holding that seq compares them with its own chain: a difference means
	// the two chains diverged (an equivocating author whose conflicting
	// facts each side got only one of), and it sends its whole overlapping
	// chain of that author so that both sides hold both facts.
	Heads map[crdt.DeviceID]crdt.Hash
}

func encodeHello(h *hello) ([]byte, error) {
	if h.VV == nil {
		h.VV = crdt.VersionVector{}
	}
	if h.Pruned == nil {
		h.Pruned = crdt.VersionVector{}
	}
	if h.Evidence == nil {
		h.Evidence = []crdt.FactID{}
	}
	return crdt.Marshal(h)
}

func decodeHello(b []byte) (*hello, error) {
	var h hello
	if err := crdt.Unmarshal(b, &h); err != nil {
		return nil, fmt.Errorf("%w: hello: %v", ErrProtocol, err)
	}
	if h.Version != syncVersion {
		return nil, fmt.Errorf("%w: hello version %d, want %d", ErrProtocol, h.Version, syncVersion)
	}
	if len(h.Evidence) > maxHelloEvidence {
		return nil, fmt.Errorf("%w: hello lists %d evidence ids", ErrProtocol, len(h.Evidence))
	}
	if h.VV == nil {
		h.VV = crdt.VersionVector{}
	}
	if h.Pruned == nil {
		h.Pruned = crdt.VersionVector{}
	}
	return &h, nil
}

// frameWriter writes frames.
type frameWriter struct {
	w   *bufio.Writer
	hdr [binary.MaxVarintLen64 + 1]byte
}

func (fw *frameWriter) write(typ byte, payload []byte) error {
	n := binary.PutUvarint(fw.hdr[:], uint64(1+len(payload)))
	fw.hdr[n] = typ
	if _, err := fw.w.Write(fw.hdr[:n+1]); err != nil {
		return err
	}
	_, err := fw.w.Write(payload)
	return err
}

// frameReader reads frames; the payload it returns is valid until the next
// call.
type frameReader struct {
	r   *bufio.Reader
	buf []byte
}

func newFrameReader(r io.Reader) *frameReader {
	return &frameReader{r: bufio.NewReaderSize(r, 64<<10)}
}

// next reads one frame. io.EOF means the stream ended between frames.
func (fr *frameReader) next() (byte, []byte, error) {
	n, err := binary.ReadUvarint(fr.r)
	if err != nil {
		if errors.Is(err, io.EOF) {
			return 0, nil, io.EOF
		}
		return 0, nil, fmt.Errorf("%w: frame length: %v", ErrProtocol, err)
	}
	if n == 0 || n > MaxFrameBytes {
		return 0, nil, fmt.Errorf("%w: frame of %d bytes (limit %d)", ErrProtocol, n, MaxFrameBytes)
	}
	if cap(fr.buf) < int(n) {
		fr.buf = make([]byte, n)
	}
	b := fr.buf[:n]
	if _, err := io.ReadFull(fr.r, b); err != nil {
		return 0, nil, fmt.Errorf("%w: truncated frame: %v", ErrProtocol, err)
	}
	return b[0], b[1:], nil
}

// frame is one parsed frame.
type frame struct {
	typ   byte
	hello *hello
	facts []*crdt.Fact
	count uint64 // END
	text  string // ERROR
}

// parseFrame checks and decodes a frame's payload.
func parseFrame(typ byte, payload []byte) (frame, error) {
	fr := frame{typ: typ}
	switch typ {
	case frameHello:
		h, err := decodeHello(payload)
		if err != nil {
			return fr, err
		}
		fr.hello = h
	case frameFacts:
		if len(payload) > MaxFactsFrameBytes {
			return fr, fmt.Errorf("%w: FACTS frame of %d bytes", ErrProtocol, len(payload))
		}
		facts, err := decodeBatch(payload, MaxFactsPerFrame)
		if err != nil {
			return fr, fmt.Errorf("%w: %w", ErrProtocol, err)
		}
		if len(facts) == 0 {
			return fr, fmt.Errorf("%w: empty FACTS frame", ErrProtocol)
		}
		fr.facts = facts
	case frameEnd:
		n, k := binary.Uvarint(payload)
		if k <= 0 || k != len(payload) {
			return fr, fmt.Errorf("%w: END frame", ErrProtocol)
		}
		fr.count = n
	case frameError:
		if len(payload) > maxErrorBytes {
			payload = payload[:maxErrorBytes]
		}
		fr.text = string(payload)
	}
	return fr, nil
}
