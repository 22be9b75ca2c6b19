package threshold

import (
	"encoding/binary"
	"fmt"
	"io"

	"go.dedis.ch/kyber/v3"
	"go.dedis.ch/kyber/v3/share"
)

// Encoding versions. Every byte string this package stores or sends starts
// with a version byte where the format has one (group keys, shares, DKG keys,
// DKG messages); partial and group signatures are raw kyber formats.
const (
	groupKeyVersion byte = 1
	shareVersion    byte = 1
	dkgKeyVersion   byte = 1

	// MaxSigners is the largest n: signer indexes travel as 2-byte
	// big-endian integers in kyber's tbls partial format.
	MaxSigners = 1<<16 - 1
)

// GroupKey is the account's threshold public key: the public polynomial
// commitments C_0..C_{t-1} (C_0 is the group public key) and the number of
// signers n. Signer i (0-based, 0 <= i < n) holds the private share f(i+1)
// and the public share F(i+1) = sum_j C_j (i+1)^j.
//
// Encoding (GroupKey.Bytes / ParseGroupKey):
//
//	version (1 byte, =1) | backend ID (1) | t (uint16 BE) | n (uint16 BE) |
//	t commitments, each a canonical KeyGroup point (128 bytes for bn256)
//
// A GroupKey is immutable and safe for concurrent use.
type GroupKey struct {
	backend Backend
	t, n    int
	commits []kyber.Point
	poly    *share.PubPoly
	raw     []byte
}

func newGroupKey(b Backend, n int, commits []kyber.Point) (*GroupKey, error) {
	t := len(commits)
	if err := checkParams(t, n); err != nil {
		return nil, err
	}
	if isNull(b.KeyGroup(), commits[0]) {
		return nil, fmt.Errorf("group public key is the identity: %w", ErrBadGroupKey)
	}
	g := &GroupKey{
		backend: b,
		t:       t,
		n:       n,
		commits: commits,
		poly:    share.NewPubPoly(b.KeyGroup(), b.KeyGroup().Point().Base(), commits),
	}
	raw := make([]byte, 6, 6+t*b.KeyGroup().PointLen())
	raw[0] = groupKeyVersion
	raw[1] = b.ID()
	binary.BigEndian.PutUint16(raw[2:], uint16(t))
	binary.BigEndian.PutUint16(raw[4:], uint16(n))
	for _, c := range commits {
		pb, err := c.MarshalBinary()
		if err != nil {
			return nil, fmt.Errorf("encode commitment: %w", err)
		}
		raw = append(raw, pb...)
	}
	g.raw = raw
	return g, nil
}

// ParseGroupKey decodes and validates GroupKey.Bytes output: every
// commitment must be a canonical point of the key group's prime-order
// subgroup, and the group public key must not be the identity.
func ParseGroupKey(data []byte) (*GroupKey, error) {
	if len(data) < 6 {
		return nil, fmt.Errorf("group key is %d bytes, too short: %w", len(data), ErrBadGroupKey)
	}
	if data[0] != groupKeyVersion {
		return nil, fmt.Errorf("group key version %d: %w", data[0], ErrBadGroupKey)
	}
	b, err := BackendByID(data[1])
	if err != nil {
		return nil, fmt.Errorf("group key: %w", err)
	}
	t := int(binary.BigEndian.Uint16(data[2:]))
	n := int(binary.BigEndian.Uint16(data[4:]))
	if err := checkParams(t, n); err != nil {
		return nil, fmt.Errorf("group key: %w: %w", ErrBadGroupKey, err)
	}
	pl := b.KeyGroup().PointLen()
	if len(data) != 6+t*pl {
		return nil, fmt.Errorf("group key is %d bytes, want %d for t=%d: %w", len(data), 6+t*pl, t, ErrBadGroupKey)
	}
	commits := make([]kyber.Point, t)
	for j := range commits {
		off := 6 + j*pl
		p, err := b.DecodeKeyPoint(data[off : off+pl])
		if err != nil {
			return nil, fmt.Errorf("group key commitment %d: %w: %w", j, ErrBadGroupKey, err)
		}
		commits[j] = p
	}
	return newGroupKey(b, n, commits)
}

// Bytes returns the encoding of the group key (see GroupKey). The caller
// must not modify the returned slice.
func (g *GroupKey) Bytes() []byte { return g.raw }

// Backend returns the curve backend of the key.
func (g *GroupKey) Backend() Backend { return g.backend }

// Threshold returns t, the number of partials needed to sign.
func (g *GroupKey) Threshold() int { return g.t }

// Signers returns n, the number of share holders; indexes are 0..n-1.
func (g *GroupKey) Signers() int { return g.n }

// PublicKey returns the encoded group public key C_0 (what a plain BLS
// verifier such as kyber's bls.Verify needs).
func (g *GroupKey) PublicKey() []byte {
	pl := g.backend.KeyGroup().PointLen()
	return append([]byte(nil), g.raw[6:6+pl]...)
}

// Equal reports whether two group keys are the same key.
func (g *GroupKey) Equal(o *GroupKey) bool {
	return g != nil && o != nil && string(g.raw) == string(o.raw)
}

// Share is one signer's private key share: index i (0-based) and the scalar
// f(i+1) of the secret polynomial.
//
// Encoding (Share.Bytes / ParseShare):
//
//	version (1 byte, =1) | backend ID (1) | index (uint16 BE) | scalar (32 bytes BE for bn256)
//
// The encoding is secret: store it sealed (SealShare), never in a fact.
type Share struct {
	backend Backend
	pri     *share.PriShare
}

// ParseShare decodes Share.Bytes output.
func ParseShare(data []byte) (*Share, error) {
	if len(data) < 4 {
		return nil, fmt.Errorf("share is %d bytes, too short: %w", len(data), ErrBadShare)
	}
	if data[0] != shareVersion {
		return nil, fmt.Errorf("share version %d: %w", data[0], ErrBadShare)
	}
	b, err := BackendByID(data[1])
	if err != nil {
		return nil, fmt.Errorf("share: %w", err)
	}
	idx := int(binary.BigEndian.Uint16(data[2:]))
	if idx >= MaxSigners {
		return nil, fmt.Errorf("share index %d: %w", idx, ErrBadShare)
	}
	v, err := b.DecodeScalar(data[4:])
	if err != nil {
		return nil, fmt.Errorf("share scalar: %w: %w", ErrBadShare, err)
	}
	return &Share{backend: b, pri: &share.PriShare{I: idx, V: v}}, nil
}

// Bytes returns the (secret) encoding of the share.
func (s *Share) Bytes() []byte {
	v, err := s.pri.V.MarshalBinary()
	if err != nil {
		// kyber scalars of a prime-order field always marshal.
		panic("threshold: marshal scalar: " + err.Error())
	}
	out := make([]byte, 4, 4+len(v))
	out[0] = shareVersion
	out[1] = s.backend.ID()
	binary.BigEndian.PutUint16(out[2:], uint16(s.pri.I))
	return append(out, v...)
}

// Index returns the signer index i (0-based).
func (s *Share) Index() int { return s.pri.I }

// Backend returns the curve backend of the share.
func (s *Share) Backend() Backend { return s.backend }

// Matches reports whether the share belongs to the group key: its index is
// in range and f(i+1)·B equals the public share F(i+1).
func (s *Share) Matches(g *GroupKey) bool {
	if s.backend.ID() != g.backend.ID() || s.pri.I < 0 || s.pri.I >= g.n {
		return false
	}
	return g.poly.Check(s.pri)
}

// Deal generates a fresh (t, n) threshold key with a trusted dealer: a random
// polynomial of degree t-1 drawn from rand, its commitments, and the n shares.
// It is meant for tests and the simulator (rand = SeededReader(seed) makes it
// reproducible); a real account runs the DKG so no one ever holds the secret.
func Deal(b Backend, rand io.Reader, t, n int) (key *GroupKey, shares []*Share, err error) {
	if b == nil {
		b = NewBN256()
	}
	if err := checkParams(t, n); err != nil {
		return nil, nil, err
	}
	defer catchStream(&err)
	g := b.KeyGroup()
	stream := Stream(rand)
	secret := g.Scalar().Pick(stream)
	poly := share.NewPriPoly(g, t, secret, stream)
	_, commits := poly.Commit(g.Point().Base()).Info()
	key, err = newGroupKey(b, n, commits)
	if err != nil {
		return nil, nil, err
	}
	for _, ps := range poly.Shares(n) {
		shares = append(shares, &Share{backend: b, pri: ps})
	}
	return key, shares, nil
}

func checkParams(t, n int) error {
	if t < 1 || n < t || n > MaxSigners {
		return fmt.Errorf("t=%d n=%d (need 1 <= t <= n <= %d): %w", t, n, MaxSigners, ErrBadParams)
	}
	return nil
}

// isNull reports whether p is the identity of g.
func isNull(g kyber.Group, p kyber.Point) bool {
	return p.Equal(g.Point().Null())
}
