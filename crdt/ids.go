package crdt

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"

	"github.com/google/uuid"
	cid "github.com/ipfs/go-cid"
	"github.com/mr-tron/base58/base58"
	mh "github.com/multiformats/go-multihash"
)

// AccountID names an account. It is a random UUID chosen at genesis.
type AccountID [16]byte

// ParseAccountID parses the UUID text form of an account id.
func ParseAccountID(s string) (AccountID, error) {
	u, err := uuid.Parse(s)
	if err != nil {
		return AccountID{}, fmt.Errorf("parse account id %q: %w", s, err)
	}
	return AccountID(u), nil
}

// AccountIDFor derives the account id that a genesis by author with nonce
// founds: sha2-256("aura/account/v1" ‖ author ‖ nonce), first 16 bytes.
func AccountIDFor(author DeviceID, nonce [16]byte) AccountID {
	h := sha256.New()
	h.Write([]byte("aura/account/v1\x00"))
	h.Write(author[:])
	h.Write(nonce[:])
	var a AccountID
	copy(a[:], h.Sum(nil))
	a[6] = a[6]&0x0f | 0x80 // UUID version 8 (custom), RFC 9562
	a[8] = a[8]&0x3f | 0x80 // RFC variant
	return a
}

func (a AccountID) String() string { return uuid.UUID(a).String() }

// IsZero reports whether a is the zero account id.
func (a AccountID) IsZero() bool { return a == AccountID{} }

// DeviceID is a device's ed25519 public key. In user-facing text it is
// rendered as the libp2p peer id of that key (String).
type DeviceID [32]byte

// DeviceIDFromKey returns the device id of an ed25519 public key.
func DeviceIDFromKey(pub ed25519.PublicKey) DeviceID {
	var d DeviceID
	copy(d[:], pub)
	return d
}

// PublicKey returns the ed25519 public key.
func (d DeviceID) PublicKey() ed25519.PublicKey { return ed25519.PublicKey(d[:]) }

// peerIDPrefix is the identity multihash header of a libp2p protobuf-encoded
// ed25519 public key: multihash identity (0x00), length 36, then protobuf
// {Type: Ed25519 (field 1 = 1), Data: field 2, 32 bytes}.
var peerIDPrefix = []byte{0x00, 0x24, 0x08, 0x01, 0x12, 0x20}

// PeerIDBytes returns the binary libp2p peer id of the device key.
func (d DeviceID) PeerIDBytes() []byte {
	b := make([]byte, 0, len(peerIDPrefix)+32)
	b = append(b, peerIDPrefix...)
	return append(b, d[:]...)
}

// String renders the device as its libp2p peer id ("12D3KooW...").
func (d DeviceID) String() string { return base58.Encode(d.PeerIDBytes()) }

// Short is an abbreviated peer id for logs and tables.
func (d DeviceID) Short() string {
	s := d.String()
	if len(s) > 12 {
		return s[len(s)-8:]
	}
	return s
}

// ErrBadDeviceID is returned when text is not the peer id of an ed25519 key.
var ErrBadDeviceID = errors.New("not an ed25519 libp2p peer id")

// ParseDeviceID parses a peer id string of an ed25519 key.
func ParseDeviceID(s string) (DeviceID, error) {
	b, err := base58.Decode(s)
	if err != nil || len(b) != len(peerIDPrefix)+32 || !bytes.Equal(b[:len(peerIDPrefix)], peerIDPrefix) {
		return DeviceID{}, fmt.Errorf("parse device id %q: %w", s, ErrBadDeviceID)
	}
	var d DeviceID
	copy(d[:], b[len(peerIDPrefix):])
	return d, nil
}

// DeviceIDFromPeerIDBytes converts binary libp2p peer id bytes to a DeviceID.
func DeviceIDFromPeerIDBytes(b []byte) (DeviceID, error) {
	if len(b) != len(peerIDPrefix)+32 || !bytes.Equal(b[:len(peerIDPrefix)], peerIDPrefix) {
		return DeviceID{}, ErrBadDeviceID
	}
	var d DeviceID
	copy(d[:], b[len(peerIDPrefix):])
	return d, nil
}

// FactID is the sha2-256 digest of a fact's canonical bytes; CID renders it
// as the CIDv1 (dag-cbor, sha2-256) that names the fact.
type FactID [32]byte

// cidPrefix is CIDv1, dag-cbor (0x71), sha2-256 (0x12), 32 bytes.
var cidPrefix = []byte{0x01, 0x71, 0x12, 0x20}

// FactIDOf hashes canonical fact bytes.
func FactIDOf(canonical []byte) FactID { return sha256.Sum256(canonical) }

// CID returns the fact's content identifier.
func (id FactID) CID() cid.Cid {
	m, _ := mh.Encode(id[:], mh.SHA2_256)
	return cid.NewCidV1(cid.DagCBOR, m)
}

// Bytes returns the binary CID.
func (id FactID) Bytes() []byte {
	b := make([]byte, 0, 36)
	b = append(b, cidPrefix...)
	return append(b, id[:]...)
}

func (id FactID) String() string { return id.CID().String() }

// Hex is the hex of the digest, for compact logs.
func (id FactID) Hex() string { return hex.EncodeToString(id[:]) }

// ParseFactID parses the text CID of a fact.
func ParseFactID(s string) (FactID, error) {
	c, err := cid.Decode(s)
	if err != nil {
		return FactID{}, fmt.Errorf("parse fact id %q: %w", s, err)
	}
	b := c.Bytes()
	if len(b) != 36 || !bytes.Equal(b[:4], cidPrefix) {
		return FactID{}, fmt.Errorf("parse fact id %q: not a CIDv1 dag-cbor sha2-256", s)
	}
	var id FactID
	copy(id[:], b[4:])
	return id, nil
}

// Hash is a 32-byte sha2-256 digest (state digests, chain heads).
type Hash [32]byte

func (h Hash) String() string { return hex.EncodeToString(h[:]) }

// IsZero reports whether h is all zeroes.
func (h Hash) IsZero() bool { return h == Hash{} }
