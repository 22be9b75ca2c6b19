package crdt

import (
	"encoding/binary"
	"fmt"
)

// CBORHeadLen is the size of the shortest CBOR head for argument n.
func CBORHeadLen(n uint64) int {
	switch {
	case n < 24:
		return 1
	case n <= 0xff:
		return 2
	case n <= 0xffff:
		return 3
	case n <= 0xffffffff:
		return 5
	}
	return 9
}

// ReadCBORHead reads the head of a CBOR data item of major type major at
// b[i:] and returns its argument and the index just after the head. Only
// the shortest form of a definite-length head is accepted (canonical CBOR);
// anything else is ErrMalformed saying why. Callers that frame canonical
// bytes (fact envelopes, gossip batches) read them with it instead of a
// full decoder.
func ReadCBORHead(b []byte, i int, major byte) (uint64, int, error) {
	if i >= len(b) {
		return 0, i, fmt.Errorf("%w: truncated", ErrMalformed)
	}
	if b[i]>>5 != major {
		return 0, i, fmt.Errorf("%w: major type %d, want %d", ErrMalformed, b[i]>>5, major)
	}
	ai := b[i] & 0x1f
	i++
	var w int
	switch {
	case ai < 24:
		return uint64(ai), i, nil
	case ai == 24:
		w = 1
	case ai == 25:
		w = 2
	case ai == 26:
		w = 4
	case ai == 27:
		w = 8
	default:
		return 0, i, fmt.Errorf("%w: indefinite or reserved length", ErrMalformed)
	}
	if len(b)-i < w {
		return 0, i, fmt.Errorf("%w: truncated", ErrMalformed)
	}
	var buf [8]byte
	copy(buf[8-w:], b[i:i+w])
	n := binary.BigEndian.Uint64(buf[:])
	if CBORHeadLen(n) != 1+w {
		return 0, i, fmt.Errorf("%w: non-minimal length", ErrMalformed)
	}
	return n, i + w, nil
}
