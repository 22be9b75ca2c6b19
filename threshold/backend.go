package threshold

import (
	"bytes"
	"crypto/cipher"
	"fmt"

	"go.dedis.ch/kyber/v3"
	"go.dedis.ch/kyber/v3/pairing/bn256"
	dkg "go.dedis.ch/kyber/v3/share/dkg/pedersen"
)

// Backend is the curve a threshold key lives on. Everything above it
// (polynomials, Lagrange interpolation, the DKG, batching, encodings) is
// written against kyber's generic Group/Point/Scalar, so adding a curve means
// adding one Backend implementation (for example a kyber BLS12-381 suite) and
// giving it a new ID; nothing else changes.
//
// Keys (public keys, commitments, DKG long-term keys) live in KeyGroup,
// signatures in SigGroup. Implementations must be safe for concurrent use.
type Backend interface {
	// ID is the one-byte tag written into encoded group keys, shares and DKG keys.
	ID() byte
	// Name is a human-readable name ("bn256").
	Name() string
	// KeyGroup is the group of public keys and polynomial commitments; its
	// scalar field holds private shares.
	KeyGroup() kyber.Group
	// SigGroup is the group of (partial and group) signatures.
	SigGroup() kyber.Group
	// HashToSig maps a message to a point of SigGroup.
	HashToSig(msg []byte) kyber.Point
	// DecodeKeyPoint decodes a KeyGroup point: exact length, canonical
	// encoding, on the curve, in the prime-order subgroup. The identity is
	// accepted here; callers reject it where it matters.
	DecodeKeyPoint(b []byte) (kyber.Point, error)
	// DecodeSigPoint decodes a SigGroup point with the same checks.
	DecodeSigPoint(b []byte) (kyber.Point, error)
	// DecodeScalar decodes a canonical scalar (exact length, below the order).
	DecodeScalar(b []byte) (kyber.Scalar, error)
	// PairingCheck reports whether e(sig, B) == e(hm, pub), where B is the
	// KeyGroup base point: the BLS verification equation.
	PairingCheck(sig, hm, pub kyber.Point) bool
	// DKGSuite is the suite handed to kyber's pedersen DKG: KeyGroup with
	// hashing, XOF, and a RandomStream that returns rand (never crypto/rand).
	DKGSuite(rand cipher.Stream) dkg.Suite
}

// BackendBN256 is the ID of the kyber bn256 backend.
const BackendBN256 byte = 1

// NewBN256 returns the default backend: kyber v3 pairing/bn256, public keys
// in G2 (128-byte points), signatures in G1 (64-byte points), hashing to G1
// as kyber's sign/bls does, so signatures are byte-compatible with
// kyber's sign/bls and sign/tbls.
func NewBN256() Backend { return defaultBN256 }

var defaultBN256 = newBN256()

// BackendByID returns the backend with the given ID.
func BackendByID(id byte) (Backend, error) {
	switch id {
	case BackendBN256:
		return defaultBN256, nil
	default:
		return nil, fmt.Errorf("backend id %d: %w", id, ErrUnknownBackend)
	}
}

type bn256Backend struct {
	suite *bn256.Suite
	g1    kyber.Group
	g2    kyber.Group
	gt    kyber.Group
	// minusOne is order-1, used for the G2 subgroup check.
	minusOne kyber.Scalar
}

func newBN256() *bn256Backend {
	s := bn256.NewSuite()
	return &bn256Backend{
		suite:    s,
		g1:       s.G1(),
		g2:       s.G2(),
		gt:       s.GT(),
		minusOne: s.G2().Scalar().SetInt64(-1),
	}
}

func (b *bn256Backend) ID() byte              { return BackendBN256 }
func (b *bn256Backend) Name() string          { return "bn256" }
func (b *bn256Backend) KeyGroup() kyber.Group { return b.g2 }
func (b *bn256Backend) SigGroup() kyber.Group { return b.g1 }

type hashablePoint interface {
	Hash([]byte) kyber.Point
}

func (b *bn256Backend) HashToSig(msg []byte) kyber.Point {
	return b.g1.Point().(hashablePoint).Hash(msg)
}

func (b *bn256Backend) DecodeKeyPoint(buf []byte) (kyber.Point, error) {
	p := b.g2.Point()
	if len(buf) != p.MarshalSize() {
		return nil, fmt.Errorf("G2 point is %d bytes, want %d", len(buf), p.MarshalSize())
	}
	if err := p.UnmarshalBinary(buf); err != nil {
		return nil, err
	}
	if !canonical(p, buf) {
		return nil, fmt.Errorf("G2 point encoding is not canonical")
	}
	// The twist has a cofactor: check order(p) divides r, i.e. (r-1)p + p == 0.
	q := b.g2.Point().Mul(b.minusOne, p)
	q.Add(q, p)
	if !isIdentity(q) {
		return nil, fmt.Errorf("G2 point is not in the prime-order subgroup")
	}
	return p, nil
}

func (b *bn256Backend) DecodeSigPoint(buf []byte) (kyber.Point, error) {
	p := b.g1.Point()
	if len(buf) != p.MarshalSize() {
		return nil, fmt.Errorf("G1 point is %d bytes, want %d", len(buf), p.MarshalSize())
	}
	if err := p.UnmarshalBinary(buf); err != nil {
		return nil, err
	}
	// G1 of bn256 has cofactor 1: on the curve means in the group.
	if !canonical(p, buf) {
		return nil, fmt.Errorf("G1 point encoding is not canonical")
	}
	return p, nil
}

func (b *bn256Backend) DecodeScalar(buf []byte) (kyber.Scalar, error) {
	s := b.g2.Scalar()
	if len(buf) != s.MarshalSize() {
		return nil, fmt.Errorf("scalar is %d bytes, want %d", len(buf), s.MarshalSize())
	}
	if err := s.UnmarshalBinary(buf); err != nil {
		return nil, err
	}
	return s, nil
}

// millerGT is what kyber's bn256 GT points offer beyond kyber.Point: the
// Miller loop and the final exponentiation as separate steps.
type millerGT interface {
	kyber.Point
	Miller(p1, p2 kyber.Point) kyber.Point
	Finalize() kyber.Point
}

// PairingCheck computes e(-sig, B)·e(hm, pub) with two Miller loops and a
// single final exponentiation, and compares with 1: the same equation as
// kyber's bls.Verify (two full pairings) at roughly 60% of its cost.
func (b *bn256Backend) PairingCheck(sig, hm, pub kyber.Point) bool {
	if isIdentity(sig) || isIdentity(hm) || isIdentity(pub) {
		// The Miller loop assumes affine, non-identity inputs; the full
		// pairing handles the identity. This path only serves hostile input.
		left := b.suite.Pair(sig, b.g2.Point().Base())
		right := b.suite.Pair(hm, pub)
		return left.Equal(right)
	}
	neg := b.g1.Point().Neg(sig)
	acc := b.gt.Point().(millerGT)
	acc.Miller(neg, b.g2.Point().Base())
	other := b.gt.Point().(millerGT)
	other.Miller(hm, pub)
	acc.Add(acc, other)
	acc.Finalize()
	return acc.Equal(b.gt.Point().Null())
}

func (b *bn256Backend) DKGSuite(rand cipher.Stream) dkg.Suite {
	return &bn256DKGSuite{Suite: bn256.NewSuiteG2(), stream: rand}
}

// bn256DKGSuite is kyber's combined G2 suite with the random stream replaced,
// so that every random choice the pedersen DKG and its VSS make (polynomial
// coefficients, ephemeral DH keys, Schnorr nonces) comes from the caller.
type bn256DKGSuite struct {
	*bn256.Suite
	stream cipher.Stream
}

func (s *bn256DKGSuite) RandomStream() cipher.Stream { return s.stream }

// canonical reports whether p re-encodes to exactly buf.
func canonical(p kyber.Point, buf []byte) bool {
	re, err := p.MarshalBinary()
	return err == nil && bytes.Equal(re, buf)
}

// isIdentity reports whether p is the neutral element. kyber's bn256 encodes
// the identity as all zero bytes.
func isIdentity(p kyber.Point) bool {
	buf, err := p.MarshalBinary()
	if err != nil {
		return false
	}
	for _, c := range buf {
		if c != 0 {
			return false
		}
	}
	return true
}
