package crdt

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Key layout of the journal in its KV. Every key starts with JournalPrefix,
// so a backend may keep other data (the node's blob blocks) in the same
// keyspace under other first bytes. Integers are big-endian so that keys
// sort by seq.
//
//	j a                    → account id (16 bytes)
//	j c                    → counters: Stats as 6 × uint64
//	j h author             → head: seq, h(author, seq), pruned floor,
//	                         h(author, floor), pending count, lowest
//	                         pending seq (96 bytes)
//	j s author seq         → chain fact: h(author, seq) ‖ id ‖ fact bytes
//	j p author seq         → pending fact (ahead of a gap): id ‖ fact bytes
//	j e author seq id      → evidence: kept id ‖ conflicting fact bytes
//	j f id                 → locator: author ‖ seq ‖ where (0 chain or
//	                         pending, 1 evidence)
const JournalPrefix byte = 'j'

const (
	tagAccount  byte = 'a'
	tagCounters byte = 'c'
	tagHead     byte = 'h'
	tagChain    byte = 's'
	tagPending  byte = 'p'
	tagEvidence byte = 'e'
	tagLocator  byte = 'f'
)

const (
	whereChain    byte = 0 // in 's' or 'p' at (author, seq)
	whereEvidence byte = 1
)

const (
	headLen    = 8 + 32 + 8 + 32 + 8 + 8
	locatorLen = 32 + 8 + 1
	countersN  = 6
)

// errCorrupt reports a journal record that does not decode.
var errCorrupt = errors.New("journal record is corrupt")

// JournalKeyRange returns [lo, hi) covering every key the journal writes.
func JournalKeyRange() (lo, hi []byte) { return []byte{JournalPrefix}, []byte{JournalPrefix + 1} }

func tagKey(tag byte) []byte { return []byte{JournalPrefix, tag} }

func authorKey(tag byte, a DeviceID) []byte {
	k := make([]byte, 2+32)
	k[0], k[1] = JournalPrefix, tag
	copy(k[2:], a[:])
	return k
}

func seqKey(tag byte, a DeviceID, seq uint64) []byte {
	return appendSeqKey(make([]byte, 0, 2+32+8+32), tag, a, seq)
}

func appendSeqKey(dst []byte, tag byte, a DeviceID, seq uint64) []byte {
	dst = append(dst, JournalPrefix, tag)
	dst = append(dst, a[:]...)
	return binary.BigEndian.AppendUint64(dst, seq)
}

func evidenceKey(a DeviceID, seq uint64, id FactID) []byte {
	return append(seqKey(tagEvidence, a, seq), id[:]...)
}

func locatorKey(id FactID) []byte { return appendLocatorKey(make([]byte, 0, 2+32), id) }

func appendLocatorKey(dst []byte, id FactID) []byte {
	return append(append(dst, JournalPrefix, tagLocator), id[:]...)
}

// prefixEnd is the smallest key greater than every key starting with p.
func prefixEnd(p []byte) []byte {
	e := append([]byte(nil), p...)
	for i := len(e) - 1; i >= 0; i-- {
		if e[i] < 0xff {
			e[i]++
			return e[:i+1]
		}
	}
	return nil
}

// seqRange is [seqKey(from), seqKey(to+1)) without overflow.
func seqRange(tag byte, a DeviceID, from, to uint64) (lo, hi []byte) {
	lo = seqKey(tag, a, from)
	if to == ^uint64(0) {
		return lo, prefixEnd(authorKey(tag, a))
	}
	return lo, seqKey(tag, a, to+1)
}

// keySeq reads the author and seq of a 'j tag author seq …' key.
func keySeq(k []byte) (DeviceID, uint64) {
	var a DeviceID
	copy(a[:], k[2:34])
	return a, binary.BigEndian.Uint64(k[34:42])
}

// authorHead is what the journal keeps in memory (and in 'j h') per author.
type authorHead struct {
	seq        uint64 // version vector entry: highest gap-free seq
	hash       Hash   // h(author, seq)
	pruned     uint64 // facts with seq ≤ pruned were removed
	prunedHash Hash   // h(author, pruned)
	pending    uint64 // facts held ahead of a gap
	pendLow    uint64 // lowest pending seq (0 when none)
}

func (h authorHead) encode() []byte {
	b := make([]byte, headLen)
	binary.BigEndian.PutUint64(b[0:], h.seq)
	copy(b[8:], h.hash[:])
	binary.BigEndian.PutUint64(b[40:], h.pruned)
	copy(b[48:], h.prunedHash[:])
	binary.BigEndian.PutUint64(b[80:], h.pending)
	binary.BigEndian.PutUint64(b[88:], h.pendLow)
	return b
}

func decodeHead(b []byte) (authorHead, error) {
	var h authorHead
	if len(b) != headLen {
		return h, fmt.Errorf("head of %d bytes: %w", len(b), errCorrupt)
	}
	h.seq = binary.BigEndian.Uint64(b[0:])
	copy(h.hash[:], b[8:40])
	h.pruned = binary.BigEndian.Uint64(b[40:])
	copy(h.prunedHash[:], b[48:80])
	h.pending = binary.BigEndian.Uint64(b[80:])
	h.pendLow = binary.BigEndian.Uint64(b[88:])
	return h, nil
}

func encodeCounters(s Stats) []byte {
	b := make([]byte, 8*countersN)
	for i, v := range [countersN]uint64{s.Facts, s.Bytes, s.Pending, s.Equivocations, s.PrunedFacts, s.PrunedBytes} {
		binary.BigEndian.PutUint64(b[8*i:], v)
	}
	return b
}

func decodeCounters(b []byte) (Stats, error) {
	if len(b) != 8*countersN {
		return Stats{}, fmt.Errorf("counters of %d bytes: %w", len(b), errCorrupt)
	}
	u := func(i int) uint64 { return binary.BigEndian.Uint64(b[8*i:]) }
	return Stats{Facts: u(0), Bytes: u(1), Pending: u(2), Equivocations: u(3), PrunedFacts: u(4), PrunedBytes: u(5)}, nil
}

// evidenceRecord is a 'j e author seq id' record read back: the
// conflicting fact's id and bytes (valid only during the scan that read
// them) and the id of the fact that holds the slot.
type evidenceRecord struct {
	author   DeviceID
	seq      uint64
	conflict FactID
	kept     FactID
	raw      []byte
}

func decodeEvidence(k, v []byte) (evidenceRecord, error) {
	if len(k) != 2+32+8+32 || len(v) < 32 {
		return evidenceRecord{}, fmt.Errorf("evidence record: %w", errCorrupt)
	}
	e := evidenceRecord{raw: v[32:]}
	e.author, e.seq = keySeq(k)
	copy(e.conflict[:], k[42:])
	copy(e.kept[:], v[:32])
	return e, nil
}

func appendLocator(dst []byte, a DeviceID, seq uint64, where byte) []byte {
	dst = append(dst, a[:]...)
	dst = binary.BigEndian.AppendUint64(dst, seq)
	return append(dst, where)
}

func decodeLocator(b []byte) (DeviceID, uint64, byte, error) {
	var a DeviceID
	if len(b) != locatorLen {
		return a, 0, 0, fmt.Errorf("locator of %d bytes: %w", len(b), errCorrupt)
	}
	copy(a[:], b)
	return a, binary.BigEndian.Uint64(b[32:]), b[40], nil
}
