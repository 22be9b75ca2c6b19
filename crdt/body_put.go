package crdt

import "unicode/utf8"

// decodePut decodes the canonical encoding of a Put body in one pass over
// its bytes: a map of two pairs, 1 → text key, 2 → byte string value,
// every head minimal, nothing after. That is the only form the canonical
// encoder writes for a Put with a value, so checking it item by item is
// the canonical check, without decoding through reflection and
// re-encoding to compare (decodeBody's general path, which this replaces
// for the commonest kind of fact). ok is false for anything else (a nil
// value, a malformed or non-canonical body): the general path then gives
// the verdict and its error. FuzzPutBody holds the two paths to agreeing.
func decodePut(b []byte) (p *Put, ok bool) {
	p = new(Put)
	if !decodePutInto(b, p) {
		return nil, false
	}
	return p, true
}

// decodePutInto is decodePut writing into p (DecodeFact's storage in the
// Fact, so that the body costs no allocation of its own); p is unchanged
// when it reports false.
func decodePutInto(b []byte, p *Put) bool {
	if len(b) < 5 || b[0] != 0xa2 || b[1] != 0x01 {
		return false
	}
	n, i, err := ReadCBORHead(b, 2, 3)
	if err != nil || n > uint64(len(b)-i) {
		return false
	}
	key := b[i : i+int(n)]
	i += int(n)
	if !utf8.Valid(key) || i >= len(b) || b[i] != 0x02 {
		return false
	}
	n, i, err = ReadCBORHead(b, i+1, 2)
	if err != nil || n != uint64(len(b)-i) {
		return false
	}
	*p = Put{Key: string(key), Value: append(make([]byte, 0, n), b[i:]...)}
	return true
}
