package crdt

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"sort"
)

// VersionVector maps each author to the highest seq held with no gap below
// it. A version vector names a prefix of the journal.
type VersionVector map[DeviceID]uint64

// Clone returns a copy.
func (v VersionVector) Clone() VersionVector {
	c := make(VersionVector, len(v))
	for a, s := range v {
		c[a] = s
	}
	return c
}

// Get returns the seq for author (0 when absent).
func (v VersionVector) Get(a DeviceID) uint64 { return v[a] }

// Merge raises v to the pointwise max of v and o (the lattice join).
func (v VersionVector) Merge(o VersionVector) {
	for a, s := range o {
		if s > v[a] {
			v[a] = s
		}
	}
}

// Covers reports whether v ≥ o pointwise.
func (v VersionVector) Covers(o VersionVector) bool {
	for a, s := range o {
		if v[a] < s {
			return false
		}
	}
	return true
}

// Equal reports pointwise equality, treating absent as 0.
func (v VersionVector) Equal(o VersionVector) bool { return v.Covers(o) && o.Covers(v) }

// Total is the number of facts the prefix holds.
func (v VersionVector) Total() uint64 {
	var n uint64
	for _, s := range v {
		n += s
	}
	return n
}

// Authors returns the authors with a non-zero entry, sorted by key bytes.
func (v VersionVector) Authors() []DeviceID {
	out := make([]DeviceID, 0, len(v))
	for a, s := range v {
		if s > 0 {
			out = append(out, a)
		}
	}
	sort.Slice(out, func(i, j int) bool { return bytes.Compare(out[i][:], out[j][:]) < 0 })
	return out
}

// ChainGenesis is h(author, 0), the root of an author's hash chain.
func ChainGenesis(author DeviceID) Hash {
	h := sha256.New()
	h.Write([]byte("aura/chain/v1\x00"))
	h.Write(author[:])
	var out Hash
	h.Sum(out[:0])
	return out
}

// ChainNext is h(author, n) = H(h(author, n-1) ‖ cid(n)).
func ChainNext(prev Hash, id FactID) Hash {
	var buf [32 + 36]byte
	copy(buf[:32], prev[:])
	copy(buf[32:], id.Bytes())
	return sha256.Sum256(buf[:])
}

// PrefixHash combines one chain head per author into the content hash of
// the journal prefix that a version vector names. heads[a] must be
// h(a, v[a]).
func PrefixHash(v VersionVector, heads map[DeviceID]Hash) Hash {
	h := sha256.New()
	h.Write([]byte("aura/prefix/v1\x00"))
	var n [8]byte
	for _, a := range v.Authors() {
		h.Write(a[:])
		binary.BigEndian.PutUint64(n[:], v[a])
		h.Write(n[:])
		head := heads[a]
		h.Write(head[:])
	}
	var out Hash
	h.Sum(out[:0])
	return out
}
