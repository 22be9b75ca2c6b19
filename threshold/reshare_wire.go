package threshold

import (
	"errors"
	"fmt"
	"math"
	"unicode/utf8"
)

// Resharing frames (the hub protocol around the resharing DKG, reshare.go).
//
// Like a key generation frame (keygenwire.go), a frame is a CBOR map with
// small integer keys in core deterministic form; keys 1 to 9 mean what
// they mean there, and two more carry the old and new groups:
//
//	1 type         uint (KeygenFrameType: init, pub, start, msg, result, final, abort)
//	2 session      byte string of 16 bytes, always present
//	3 threshold    int, the new threshold (init), omitted when 0
//	4 participants array of byte strings: the invited device ids (init)
//	5 pubs         array of byte strings: DKG public keys of the new group (start)
//	6 to           int (msg: new index of the recipient, Broadcast = -1), omitted when 0
//	7 from         int (msg: the sender's participant index), omitted when 0
//	8 data         byte string: the old group key (init), a DKG message (msg),
//	               the new group key (result, final)
//	9 error        text string (abort)
//	10 holders     array of ints: init, the old share index of each invited
//	               participant (-1: none); pub, the one share index the sender
//	               deals with (omitted when it deals none); start, the old
//	               share index each new member deals (-1: none)
//	11 members     array of ints: the participant indexes of the new group,
//	               in new index order (start)
//
// Decoding is strict (exactly one encoding per frame), as for key
// generation frames.

// ReshareFrame is one decoded frame of the resharing protocol.
type ReshareFrame struct {
	Type         KeygenFrameType
	Session      [16]byte
	Threshold    int
	Participants [][]byte
	Pubs         [][]byte
	To           int
	From         int
	Data         []byte
	Error        string
	Holders      []int
	Members      []int
}

// ErrBadReshareFrame: frame bytes are not a canonical resharing frame.
var ErrBadReshareFrame = errors.New("threshold: bad resharing frame")

const reshareFrameKeys = 11

// Marshal encodes the frame (see the format above).
func (f *ReshareFrame) Marshal() []byte {
	fields := 2
	for _, present := range []bool{f.Threshold != 0, len(f.Participants) > 0, len(f.Pubs) > 0,
		f.To != 0, f.From != 0, len(f.Data) > 0, f.Error != "", len(f.Holders) > 0, len(f.Members) > 0} {
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
	ints := func(key uint64, xs []int) {
		if len(xs) == 0 {
			return
		}
		buf = cborHead(buf, cborUint, key)
		buf = cborHead(buf, cborArray, uint64(len(xs)))
		for _, x := range xs {
			buf = cborInt(buf, x)
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
	ints(10, f.Holders)
	ints(11, f.Members)
	return buf
}

func (r *cborReader) ints() []int {
	major, n := r.head()
	if r.err != nil {
		return nil
	}
	if major != cborArray {
		r.fail("major type %d where an array belongs", major)
		return nil
	}
	if n > uint64(len(r.buf)) {
		r.fail("truncated")
		return nil
	}
	xs := make([]int, 0, n)
	for range n {
		x := r.int()
		if r.err != nil {
			return nil
		}
		if x < -1 || x > MaxSigners {
			r.fail("index %d out of range", x)
			return nil
		}
		xs = append(xs, x)
	}
	return xs
}

// ParseReshareFrame decodes a frame strictly. Errors wrap ErrBadReshareFrame.
func ParseReshareFrame(data []byte) (*ReshareFrame, error) {
	f, err := parseReshareFrame(data)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadReshareFrame, err)
	}
	return f, nil
}

func parseReshareFrame(data []byte) (*ReshareFrame, error) {
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
	if fields > reshareFrameKeys {
		return nil, fmt.Errorf("%d fields, at most %d", fields, reshareFrameKeys)
	}
	f := &ReshareFrame{}
	last := uint64(0)
	for range fields {
		kmajor, key := r.head()
		if r.err != nil {
			return nil, r.err
		}
		if kmajor != cborUint || key <= last || key > reshareFrameKeys {
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
		case 10:
			f.Holders = r.ints()
			zero = len(f.Holders) == 0
		case 11:
			f.Members = r.ints()
			zero = len(f.Members) == 0
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
