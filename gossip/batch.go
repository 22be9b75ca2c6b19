package gossip

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"

	"aura/crdt"
)

// MaxMessageBytes bounds one gossip message (a batch of facts): 1 MiB minus
// 1 KiB, so that the message with its pubsub envelope fits gossipsub's
// default 1 MiB RPC limit. Publishers never build a larger batch and
// validators reject one.
const MaxMessageBytes = 1<<20 - 1<<10

// ErrBadBatch is returned for bytes that are not a well-formed batch.
var ErrBadBatch = errors.New("malformed fact batch")

// A batch is the wire form shared by gossip messages and sync FACTS frames:
// a definite-length CBOR array of byte strings, each holding the canonical
// bytes of one fact (crdt.Fact.Bytes, not re-encoded). Heads use the
// shortest form (canonical CBOR), so one list of facts has one encoding.
// Per fact, the overhead is the byte-string head: 3 bytes for facts of
// 256 B to 64 KiB.

// appendHead appends the shortest CBOR head of major type major.
func appendHead(b []byte, major byte, n uint64) []byte {
	m := major << 5
	switch {
	case n < 24:
		return append(b, m|byte(n))
	case n <= 0xff:
		return append(b, m|24, byte(n))
	case n <= 0xffff:
		return append(b, m|25, byte(n>>8), byte(n))
	case n <= 0xffffffff:
		return binary.BigEndian.AppendUint32(append(b, m|26), uint32(n))
	}
	return binary.BigEndian.AppendUint64(append(b, m|27), n)
}

// batchEntrySize is what one fact adds to an encoded batch.
func batchEntrySize(f *crdt.Fact) int { return crdt.CBORHeadLen(uint64(f.Size())) + f.Size() }

// encodeBatch encodes the facts' canonical bytes as a batch.
func encodeBatch(facts []*crdt.Fact) []byte {
	n := crdt.CBORHeadLen(uint64(len(facts)))
	for _, f := range facts {
		n += batchEntrySize(f)
	}
	return appendBatch(make([]byte, 0, n), facts)
}

// appendBatch appends the batch encoding of facts to b.
func appendBatch(b []byte, facts []*crdt.Fact) []byte {
	b = appendHead(b, 4, uint64(len(facts)))
	for _, f := range facts {
		b = appendHead(b, 2, uint64(f.Size()))
		b = append(b, f.Bytes()...)
	}
	return b
}

// readHead reads one shortest-form CBOR head of major type major at b[i:].
func readHead(b []byte, i int, major byte) (uint64, int, error) {
	n, next, err := crdt.ReadCBORHead(b, i, major)
	if err != nil {
		return 0, i, fmt.Errorf("%w: %v", ErrBadBatch, err)
	}
	return n, next, nil
}

// splitBatch returns the entries of an encoded batch (sub-slices of b, not
// copies), checking its shape: one array, at most maxFacts entries, each at
// most crdt.MaxFactSize bytes, no trailing bytes. It decodes no fact.
func splitBatch(b []byte, maxFacts int) ([][]byte, error) {
	n, i, err := readHead(b, 0, 4)
	if err != nil {
		return nil, err
	}
	// Every entry takes at least one byte: a count beyond the input is a lie.
	if n > uint64(len(b)-i) || n > uint64(maxFacts) {
		return nil, fmt.Errorf("%w: %d entries", ErrBadBatch, n)
	}
	out := make([][]byte, 0, n)
	for k := uint64(0); k < n; k++ {
		var l uint64
		l, i, err = readHead(b, i, 2)
		if err != nil {
			return nil, err
		}
		if l > crdt.MaxFactSize {
			return nil, fmt.Errorf("%w: entry of %d bytes: %w", ErrBadBatch, l, crdt.ErrTooLarge)
		}
		if l > uint64(len(b)-i) {
			return nil, fmt.Errorf("%w: truncated entry", ErrBadBatch)
		}
		out = append(out, b[i:i+int(l)])
		i += int(l)
	}
	if i != len(b) {
		return nil, fmt.Errorf("%w: %d trailing bytes", ErrBadBatch, len(b)-i)
	}
	return out, nil
}

// decodeBatch splits and decodes every fact of a batch (signatures are not
// checked). A fact that fails to decode fails the whole batch.
func decodeBatch(b []byte, maxFacts int) ([]*crdt.Fact, error) {
	entries, err := splitBatch(b, maxFacts)
	if err != nil {
		return nil, err
	}
	facts := make([]*crdt.Fact, len(entries))
	for k, e := range entries {
		f, err := crdt.DecodeFact(e)
		if err != nil {
			return nil, fmt.Errorf("batch entry %d: %w", k, err)
		}
		facts[k] = f
	}
	return facts, nil
}

// MessageID is the gossipsub message id of a batch: the binary CIDv1 (raw
// codec 0x55, sha2-256) of the message bytes. Two identical batches are
// one message.
func MessageID(data []byte) string {
	d := sha256.Sum256(data)
	b := make([]byte, 0, 4+len(d))
	b = append(b, 0x01, 0x55, 0x12, 0x20)
	return string(append(b, d[:]...))
}
