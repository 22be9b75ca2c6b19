package threshold

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"unicode/utf8"
)

// Key generation frames (the hub protocol around the DKG, keygen.go).
//
// A frame is a CBOR map with small integer keys, encoded in CBOR's core
// deterministic form (RFC 8949 §4.2.1: shortest integer and length heads,
// definite lengths, keys in ascending order):
//
//	1 type         uint (KeygenFrameType), always present
//	2 session      byte string of 16 bytes, always present
//	3 threshold    int, omitted when 0
//	4 participants array of byte strings (device ids, index order), omitted when empty
//	5 pubs         array of byte strings (DKG public keys, index order), omitted when empty
//	6 to           int (recipient index, Broadcast = -1), omitted when 0
//	7 from         int (sender index), omitted when 0
//	8 data         byte string (a DKG message, a group key), omitted when empty
//	9 error        text string (why a side gave up), omitted when empty
//
// This is byte for byte what /aura/dkg/1 carried before the protocol moved
// into this package (the node's CBOR struct with keyasint tags and
// omitempty), so devices of either version interoperate; the node's tests
// check the two encodings against each other. This package writes its own
// encoder and strict decoder for this one shape rather than import a CBOR
// library: decoding rejects any input that does not re-encode to itself
// (non-shortest heads, indefinite lengths, unknown or repeated or unordered
// keys, present zero values, invalid UTF-8, trailing bytes), so a frame has
// exactly one encoding, as the node's canonical CBOR demands.

// KeygenFrameType says what a key generation frame is for.
type KeygenFrameType uint8

// Frame types. Arrows say who sends them.
const (
	FrameInit   KeygenFrameType = 1 // hub → participant: session, threshold, participants
	FramePub    KeygenFrameType = 2 // participant → hub: its fresh DKG public key
	FrameStart  KeygenFrameType = 3 // hub → participant: every DKG public key, in index order
	FrameMsg    KeygenFrameType = 4 // either way: a DKG message (To: recipient index or Broadcast)
	FrameResult KeygenFrameType = 5 // participant → hub: the group key it computed
	FrameFinal  KeygenFrameType = 6 // hub → participant: all agree, keep the share (Data: the key); participant → hub: kept
	FrameAbort  KeygenFrameType = 7 // either way: give up (Error says why)
)

func (t KeygenFrameType) String() string {
	switch t {
	case FrameInit:
		return "init"
	case FramePub:
		return "pub"
	case FrameStart:
		return "start"
	case FrameMsg:
		return "msg"
	case FrameResult:
		return "result"
	case FrameFinal:
		return "final"
	case FrameAbort:
		return "abort"
	}
	return fmt.Sprintf("frame(%d)", uint8(t))
}

// KeygenFrame is one decoded frame of the key generation protocol.
type KeygenFrame struct {
	Type         KeygenFrameType
	Session      [16]byte
	Threshold    int
	Participants [][]byte
	Pubs         [][]byte
	To           int
	From         int
	Data         []byte
	Error        string
}

// MaxKeygenFrame bounds an encoded frame; drivers refuse longer ones before
// reading them.
const MaxKeygenFrame = 1 << 20

// ErrBadKeygenFrame: frame bytes are not a canonical key generation frame.
var ErrBadKeygenFrame = errors.New("threshold: bad key generation frame")

// CBOR major types used here.
const (
	cborUint  = 0
	cborNeg   = 1
	cborBytes = 2
	cborText  = 3
	cborArray = 4
	cborMap   = 5
)

func cborHead(buf []byte, major byte, v uint64) []byte {
	m := major << 5
	switch {
	case v < 24:
		return append(buf, m|byte(v))
	case v <= math.MaxUint8:
		return append(buf, m|24, byte(v))
	case v <= math.MaxUint16:
		return binary.BigEndian.AppendUint16(append(buf, m|25), uint16(v))
	case v <= math.MaxUint32:
		return binary.BigEndian.AppendUint32(append(buf, m|26), uint32(v))
	}
	return binary.BigEndian.AppendUint64(append(buf, m|27), v)
}

func cborInt(buf []byte, v int) []byte {
	if v < 0 {
		return cborHead(buf, cborNeg, uint64(-(v + 1)))
	}
	return cborHead(buf, cborUint, uint64(v))
}

func cborByteString(buf, b []byte) []byte {
	return append(cborHead(buf, cborBytes, uint64(len(b))), b...)
}

// Marshal encodes the frame (see the format above).
func (f *KeygenFrame) Marshal() []byte {
	fields := 2
	for _, present := range []bool{f.Threshold != 0, len(f.Participants) > 0, len(f.Pubs) > 0,
		f.To != 0, f.From != 0, len(f.Data) > 0, f.Error != ""} {
		if present {
			fields++
		}
	}
	buf := cborHead(nil, cborMap, uint64(fields))
	buf = cborHead(buf, cborUint, 1)
	buf = cborHead(buf, cborUint, uint64(f.Type))
	buf = cborHead(buf, cborUint, 2)
	buf = cborByteString(buf, f.Session[:])
	if f.Threshold != 0 {
		buf = cborInt(cborHead(buf, cborUint, 3), f.Threshold)
	}
	list := func(key uint64, xs [][]byte) {
		if len(xs) == 0 {
			return
		}
		buf = cborHead(buf, cborUint, key)
		buf = cborHead(buf, cborArray, uint64(len(xs)))
		for _, x := range xs {
			buf = cborByteString(buf, x)
		}
	}
	list(4, f.Participants)
	list(5, f.Pubs)
	if f.To != 0 {
		buf = cborInt(cborHead(buf, cborUint, 6), f.To)
	}
	if f.From != 0 {
		buf = cborInt(cborHead(buf, cborUint, 7), f.From)
	}
	if len(f.Data) > 0 {
		buf = cborByteString(cborHead(buf, cborUint, 8), f.Data)
	}
	if f.Error != "" {
		buf = cborHead(buf, cborUint, 9)
		buf = append(cborHead(buf, cborText, uint64(len(f.Error))), f.Error...)
	}
	return buf
}

type cborReader struct {
	buf []byte
	err error
}

func (r *cborReader) fail(format string, args ...any) {
	if r.err == nil {
		r.err = fmt.Errorf(format, args...)
	}
}

// head reads one item head and checks that it is in shortest form.
func (r *cborReader) head() (major byte, v uint64) {
	if r.err != nil {
		return 0, 0
	}
	if len(r.buf) < 1 {
		r.fail("truncated")
		return 0, 0
	}
	b := r.buf[0]
	major, info := b>>5, b&0x1f
	r.buf = r.buf[1:]
	var size int
	switch {
	case info < 24:
		return major, uint64(info)
	case info == 24:
		size = 1
	case info == 25:
		size = 2
	case info == 26:
		size = 4
	case info == 27:
		size = 8
	default:
		r.fail("additional information %d (indefinite length or reserved)", info)
		return 0, 0
	}
	if len(r.buf) < size {
		r.fail("truncated")
		return 0, 0
	}
	var lo uint64
	switch size {
	case 1:
		v, lo = uint64(r.buf[0]), 24
	case 2:
		v, lo = uint64(binary.BigEndian.Uint16(r.buf)), math.MaxUint8+1
	case 4:
		v, lo = uint64(binary.BigEndian.Uint32(r.buf)), math.MaxUint16+1
	case 8:
		v, lo = binary.BigEndian.Uint64(r.buf), math.MaxUint32+1
	}
	r.buf = r.buf[size:]
	if v < lo {
		r.fail("integer or length %d not in shortest form", v)
		return 0, 0
	}
	return major, v
}

func (r *cborReader) int() int {
	major, v := r.head()
	if r.err != nil {
		return 0
	}
	if v > math.MaxInt {
		r.fail("integer out of range")
		return 0
	}
	switch major {
	case cborUint:
		return int(v)
	case cborNeg:
		return -1 - int(v)
	}
	r.fail("major type %d where an integer belongs", major)
	return 0
}

func (r *cborReader) string(want byte) []byte {
	major, n := r.head()
	if r.err != nil {
		return nil
	}
	if major != want {
		r.fail("major type %d where type %d belongs", major, want)
		return nil
	}
	if n > uint64(len(r.buf)) {
		r.fail("truncated")
		return nil
	}
	v := append([]byte{}, r.buf[:n]...)
	r.buf = r.buf[n:]
	return v
}

func (r *cborReader) list() [][]byte {
	major, n := r.head()
	if r.err != nil {
		return nil
	}
	if major != cborArray {
		r.fail("major type %d where an array belongs", major)
		return nil
	}
	if n > uint64(len(r.buf)) { // every element takes at least one byte
		r.fail("truncated")
		return nil
	}
	xs := make([][]byte, 0, n)
	for range n {
		x := r.string(cborBytes)
		if r.err != nil {
			return nil
		}
		xs = append(xs, x)
	}
	return xs
}

// ParseKeygenFrame decodes a frame strictly (see the format above). Errors
// wrap ErrBadKeygenFrame.
func ParseKeygenFrame(data []byte) (*KeygenFrame, error) {
	f, err := parseKeygenFrame(data)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadKeygenFrame, err)
	}
	return f, nil
}

func parseKeygenFrame(data []byte) (*KeygenFrame, error) {
	if len(data) > MaxKeygenFrame {
		return nil, fmt.Errorf("%d bytes, over the limit of %d", len(data), MaxKeygenFrame)
	}
	r := &cborReader{buf: data}
	major, fields := r.head()
	if r.err != nil {
		return nil, r.err
	}
	if major != cborMap {
		return nil, fmt.Errorf("major type %d, want a map", major)
	}
	if fields > 9 {
		return nil, fmt.Errorf("%d fields, at most 9", fields)
	}
	f := &KeygenFrame{}
	last := uint64(0)
	for range fields {
		kmajor, key := r.head()
		if r.err != nil {
			return nil, r.err
		}
		if kmajor != cborUint || key <= last || key > 9 {
			return nil, fmt.Errorf("map key (type %d, %d) unknown, repeated or out of order", kmajor, key)
		}
		if (key > 1 && last < 1) || (key > 2 && last < 2) {
			return nil, errors.New("type or session missing")
		}
		last = key
		zero := false
		switch key {
		case 1:
			major, v := r.head()
			if r.err == nil && (major != cborUint || v > math.MaxUint8) {
				return nil, errors.New("type is not a small unsigned integer")
			}
			f.Type = KeygenFrameType(v)
		case 2:
			s := r.string(cborBytes)
			if r.err == nil && len(s) != len(f.Session) {
				return nil, fmt.Errorf("session of %d bytes, want %d", len(s), len(f.Session))
			}
			copy(f.Session[:], s)
		case 3:
			f.Threshold = r.int()
			zero = f.Threshold == 0
		case 4:
			f.Participants = r.list()
			zero = len(f.Participants) == 0
		case 5:
			f.Pubs = r.list()
			zero = len(f.Pubs) == 0
		case 6:
			f.To = r.int()
			zero = f.To == 0
		case 7:
			f.From = r.int()
			zero = f.From == 0
		case 8:
			f.Data = r.string(cborBytes)
			zero = len(f.Data) == 0
		case 9:
			s := r.string(cborText)
			if r.err == nil && !utf8.Valid(s) {
				return nil, errors.New("error text is not valid UTF-8")
			}
			f.Error = string(s)
			zero = f.Error == ""
		}
		if r.err != nil {
			return nil, r.err
		}
		if zero {
			return nil, fmt.Errorf("field %d holds its zero value (it must be omitted)", key)
		}
	}
	if last < 2 {
		return nil, errors.New("type or session missing")
	}
	if len(r.buf) != 0 {
		return nil, fmt.Errorf("%d trailing bytes", len(r.buf))
	}
	return f, nil
}
