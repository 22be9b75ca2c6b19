package crdt

import (
	"bytes"
	"crypto/ed25519"
	"sync/atomic"
)

// verifyMark records that a fact's signature was checked (or made by Sign).
// It is a plain word used with atomic operations, so a Fact stays copyable.
type verifyMark struct{ v uint32 }

func (f *Fact) markVerified()  { atomic.StoreUint32(&f.verified.v, 1) }
func (f *Fact) isMarked() bool { return atomic.LoadUint32(&f.verified.v) == 1 }
func (f *Fact) clearMark()     { atomic.StoreUint32(&f.verified.v, 0) }

// VerifyOnce checks the author's signature like Verify, but returns at once
// when this Fact already passed a check (or was made by Sign) and its fields
// still match its canonical bytes. It is safe for concurrent use. Ingest
// calls it, so a fact checked by a gossip validator is not checked twice.
//
// The check runs over the canonical bytes (the signed part is sliced out of
// them instead of being encoded again) after confirming that every envelope
// field equals what the bytes say; a Fact whose fields were changed after
// Sign or DecodeFact falls back to Verify and is never marked.
func (f *Fact) VerifyOnce() error {
	_, err := f.verifyOnce(nil)
	return err
}

// verifyOnce is VerifyOnce building the signed bytes in buf (which it
// returns, possibly grown, for reuse).
func (f *Fact) verifyOnce(buf []byte) ([]byte, error) {
	if f.isMarked() {
		if _, ok := f.signedEnd(); ok {
			return buf, nil
		}
	}
	msg, ok := f.signedPart(buf[:0])
	if !ok {
		f.clearMark()
		return buf, f.Verify()
	}
	if !checkSig(f.Author, msg, f.Sig) {
		return msg, f.badSig()
	}
	f.markVerified()
	return msg, nil
}

// signedPart appends to buf SigningBytes computed from the canonical bytes, and
// whether the fields of f match those bytes exactly. A fact's wire form is
// the CBOR array [V, Account, Author, Seq, Epoch, Lamport, Kind, Body, Sig]
// and its signed form is the array of the first eight, so the signed form
// is the wire form with a smaller array header and without the trailing
// signature.
func (f *Fact) signedPart(buf []byte) ([]byte, bool) {
	end, ok := f.signedEnd()
	if !ok {
		return nil, false
	}
	msg := append(buf, sigDomain...)
	msg = append(msg, 0x80|8)
	return append(msg, f.raw[1:end]...), true
}

// signedEnd reports whether the fields of f match its canonical bytes
// exactly, and where in them the signed items (all but the signature) end.
func (f *Fact) signedEnd() (int, bool) {
	raw := f.raw
	if len(raw) < 1 || raw[0] != 0x80|9 || len(f.Sig) != ed25519.SignatureSize {
		return 0, false
	}
	r := cborReader{b: raw, i: 1}
	if v, ok := r.uint(); !ok || v != FormatVersion {
		return 0, false
	}
	if b, ok := r.bytes(); !ok || !bytes.Equal(b, f.Account[:]) {
		return 0, false
	}
	if b, ok := r.bytes(); !ok || !bytes.Equal(b, f.Author[:]) {
		return 0, false
	}
	for _, want := range [...]uint64{f.Seq, f.Epoch, f.Lamport, uint64(f.Kind)} {
		if v, ok := r.uint(); !ok || v != want {
			return 0, false
		}
	}
	if b, ok := r.bytes(); !ok || !bytes.Equal(b, f.Body) {
		return 0, false
	}
	end := r.i
	if b, ok := r.bytes(); !ok || !bytes.Equal(b, f.Sig) || r.i != len(raw) {
		return 0, false
	}
	return end, true
}

// cborReader reads the few canonical CBOR items of a fact envelope.
type cborReader struct {
	b []byte
	i int
}

// head reads an item head of the given major type and returns its argument.
// The heads of a fact's items take one or two bytes, read here; longer or
// refused ones go to ReadCBORHead, which gives the same verdict on all.
func (r *cborReader) head(major byte) (uint64, bool) {
	if i := r.i; i+1 < len(r.b) && r.b[i]>>5 == major {
		switch ai := r.b[i] & 0x1f; {
		case ai < 24:
			r.i = i + 1
			return uint64(ai), true
		case ai == 24 && r.b[i+1] >= 24: // shortest form: a one-byte argument is ≥ 24
			r.i = i + 2
			return uint64(r.b[i+1]), true
		}
	}
	n, next, err := ReadCBORHead(r.b, r.i, major)
	if err != nil {
		return 0, false
	}
	r.i = next
	return n, true
}

func (r *cborReader) uint() (uint64, bool) { return r.head(0) }

func (r *cborReader) bytes() ([]byte, bool) {
	n, ok := r.head(2)
	if !ok || n > uint64(len(r.b)-r.i) {
		return nil, false
	}
	b := r.b[r.i : r.i+int(n)]
	r.i += int(n)
	return b, true
}
