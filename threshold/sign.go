package threshold

import (
	"encoding/binary"
	"fmt"
	"sync"

	"go.dedis.ch/kyber/v3"
)

// Partial signatures use kyber's sign/tbls format:
//
//	index (uint16 BE, 0-based signer index) | signature point (64 bytes for bn256 G1)
//
// so they interoperate with tbls.Verify / tbls.Recover. Group signatures are
// plain kyber sign/bls signatures: the encoded SigGroup point alone.

// PartialLen returns the length of a partial signature for backend b.
func PartialLen(b Backend) int { return 2 + b.SigGroup().PointLen() }

// SignPartial signs msg with the share: H(msg)·x_i, prefixed with the index.
// It is deterministic (BLS) and does no verification.
func SignPartial(s *Share, msg []byte) ([]byte, error) {
	b := s.backend
	sig := b.HashToSig(msg)
	sig.Mul(s.pri.V, sig)
	pb, err := sig.MarshalBinary()
	if err != nil {
		return nil, fmt.Errorf("sign partial: %w", err)
	}
	out := make([]byte, 2, 2+len(pb))
	binary.BigEndian.PutUint16(out, uint16(s.pri.I))
	return append(out, pb...), nil
}

// PartialIndex returns the signer index of a partial after the structural
// checks (length, index below n) that need no curve work.
func PartialIndex(g *GroupKey, partial []byte) (int, error) {
	if want := PartialLen(g.backend); len(partial) != want {
		return -1, fmt.Errorf("partial is %d bytes, want %d: %w", len(partial), want, ErrBadPartial)
	}
	i := int(binary.BigEndian.Uint16(partial))
	if i >= g.n {
		return i, fmt.Errorf("partial from signer %d, group has %d signers: %w", i, g.n, ErrBadIndex)
	}
	return i, nil
}

// DecodePartial performs PartialIndex's checks and then decodes the
// signature point (canonical, on the curve, not the identity). It does not
// check the signature.
func DecodePartial(g *GroupKey, partial []byte) (int, kyber.Point, error) {
	i, err := PartialIndex(g, partial)
	if err != nil {
		return i, nil, err
	}
	p, err := decodeSig(g.backend, partial[2:])
	if err != nil {
		return i, nil, fmt.Errorf("partial from signer %d: %w: %w", i, ErrBadPartial, err)
	}
	return i, p, nil
}

func decodeSig(b Backend, buf []byte) (kyber.Point, error) {
	p, err := b.DecodeSigPoint(buf)
	if err != nil {
		return nil, err
	}
	if isNull(b.SigGroup(), p) {
		return nil, fmt.Errorf("signature is the identity")
	}
	return p, nil
}

// Verifier checks partial and group signatures under one group key. It
// caches each signer's public share F(i+1) the first time it is needed, so
// verifying many partials from the same signers pays the polynomial
// evaluation once per signer. A Verifier is safe for concurrent use.
type Verifier struct {
	key *GroupKey

	mu     sync.Mutex
	shares []kyber.Point // by signer index; nil until computed
}

// NewVerifier returns a Verifier for the group key.
func NewVerifier(key *GroupKey) *Verifier {
	return &Verifier{key: key, shares: make([]kyber.Point, key.n)}
}

// Key returns the group key.
func (v *Verifier) Key() *GroupKey { return v.key }

// publicShare returns F(i+1) for 0 <= i < n. The returned point is shared
// and must be treated as read-only.
func (v *Verifier) publicShare(i int) kyber.Point {
	v.mu.Lock()
	defer v.mu.Unlock()
	if p := v.shares[i]; p != nil {
		return p
	}
	p := v.key.poly.Eval(i).V
	v.shares[i] = p
	return p
}

// PublicShare returns the encoded public share of signer i.
func (v *Verifier) PublicShare(i int) ([]byte, error) {
	if i < 0 || i >= v.key.n {
		return nil, fmt.Errorf("public share of signer %d, group has %d signers: %w", i, v.key.n, ErrBadIndex)
	}
	return v.publicShare(i).MarshalBinary()
}

// VerifyPartial checks one partial signature on msg. Length and index are
// checked before any curve work.
func (v *Verifier) VerifyPartial(msg, partial []byte) error {
	i, sig, err := DecodePartial(v.key, partial)
	if err != nil {
		return err
	}
	return v.verifyPoint(i, sig, v.key.backend.HashToSig(msg))
}

func (v *Verifier) verifyPoint(i int, sig, hm kyber.Point) error {
	if !v.key.backend.PairingCheck(sig, hm, v.publicShare(i)) {
		return fmt.Errorf("partial from signer %d does not verify: %w", i, ErrBadPartial)
	}
	return nil
}

// VerifyGroup checks a group signature on msg against the group public key.
func (v *Verifier) VerifyGroup(msg, sig []byte) error { return v.key.Verify(msg, sig) }

// Verify checks a group (full BLS) signature on msg against the group public
// key C_0.
func (g *GroupKey) Verify(msg, sig []byte) error {
	p, err := decodeSig(g.backend, sig)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrBadGroupSignature, err)
	}
	if !g.backend.PairingCheck(p, g.backend.HashToSig(msg), g.commits[0]) {
		return fmt.Errorf("group signature does not verify: %w", ErrBadGroupSignature)
	}
	return nil
}

// VerifyGroup parses an encoded group key and checks a group signature on msg.
// Callers verifying often should parse the key once and use GroupKey.Verify.
func VerifyGroup(groupKey, msg, sig []byte) error {
	g, err := ParseGroupKey(groupKey)
	if err != nil {
		return err
	}
	return g.Verify(msg, sig)
}
