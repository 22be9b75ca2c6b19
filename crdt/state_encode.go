package crdt

import (
	"bufio"
	"encoding/binary"
	"io"
	"sort"
)

// EncodeTo writes the canonical encoding of the state to w: exactly the
// bytes Marshal(s) gives (a test holds the two equal), streamed. Every field
// but the application key/values is encoded by the canonical encoder; the
// key/value map, which holds almost all of a large state, is written entry
// by entry in canonical key order (shorter keys first, then bytewise), so a
// million-key state is neither sorted through reflection nor copied into one
// buffer.
func (s *State) EncodeTo(w io.Writer) error {
	bw := bufio.NewWriterSize(w, 64<<10)
	type field struct {
		key int
		val any
	}
	fields := []field{
		{1, s.Account}, {2, s.Genesis}, {3, s.Epoch}, {4, s.Members}, {5, nil}, {6, s.Blobs},
		{7, s.Envelopes}, {8, s.Devices}, {9, s.Proposals}, {10, s.Completed}, {11, s.CacheFloors},
		{12, s.Upgrades}, {13, s.GroupKeys}, {14, s.AdminOverrides}, {15, s.NewAdmins},
		{16, s.SnapshotEpoch}, {17, s.Opened}, {18, s.AdminReplacements}, {19, s.AdminProposals},
	}
	omitted := func(key int) bool { // the omitempty fields
		switch key {
		case 2:
			return s.Genesis == nil
		case 18:
			return len(s.AdminReplacements) == 0
		case 19:
			return len(s.AdminProposals) == 0
		}
		return false
	}
	n := 0
	for _, f := range fields {
		if !omitted(f.key) {
			n++
		}
	}
	writeHead(bw, 5, uint64(n)) // map
	for _, f := range fields {
		if omitted(f.key) {
			continue
		}
		writeHead(bw, 0, uint64(f.key))
		if f.key == 5 {
			if err := s.encodeKV(bw); err != nil {
				return err
			}
			continue
		}
		b, err := Marshal(f.val)
		if err != nil {
			return err
		}
		bw.Write(b)
	}
	return bw.Flush()
}

func (s *State) encodeKV(bw *bufio.Writer) error {
	if s.KV == nil {
		bw.WriteByte(0xf6) // null, as the encoder writes a nil map
		return nil
	}
	type kv struct {
		k string
		e *Entry
	}
	entries := make([]kv, 0, len(s.KV))
	for k, e := range s.KV {
		entries = append(entries, kv{k, e})
	}
	// Canonical order of text keys: by encoded bytes, i.e. by length, then
	// bytewise.
	sort.Slice(entries, func(i, j int) bool {
		a, b := entries[i].k, entries[j].k
		if len(a) != len(b) {
			return len(a) < len(b)
		}
		return a < b
	})
	writeHead(bw, 5, uint64(len(entries)))
	for _, x := range entries {
		writeHead(bw, 3, uint64(len(x.k)))
		bw.WriteString(x.k)
		writeEntry(bw, x.e)
	}
	return nil
}

// writeEntry writes an Entry exactly as the canonical encoder does: a map
// {1: value (omitted when empty), 2: true (omitted when false), 3: stamp as
// [lamport, author, id]}.
func writeEntry(bw *bufio.Writer, e *Entry) {
	if e == nil {
		bw.WriteByte(0xf6)
		return
	}
	n := uint64(1)
	if len(e.Value) > 0 {
		n++
	}
	if e.Deleted {
		n++
	}
	writeHead(bw, 5, n)
	if len(e.Value) > 0 {
		writeHead(bw, 0, 1)
		writeHead(bw, 2, uint64(len(e.Value)))
		bw.Write(e.Value)
	}
	if e.Deleted {
		writeHead(bw, 0, 2)
		bw.WriteByte(0xf5)
	}
	writeHead(bw, 0, 3)
	writeHead(bw, 4, 3)
	writeHead(bw, 0, e.Stamp.Lamport)
	writeHead(bw, 2, 32)
	bw.Write(e.Stamp.Author[:])
	writeHead(bw, 2, 32)
	bw.Write(e.Stamp.ID[:])
}

// writeHead writes a CBOR head of major type major with argument n, in its
// shortest form.
func writeHead(w *bufio.Writer, major byte, n uint64) {
	m := major << 5
	switch {
	case n < 24:
		w.WriteByte(m | byte(n))
	case n <= 0xff:
		w.WriteByte(m | 24)
		w.WriteByte(byte(n))
	case n <= 0xffff:
		var b [3]byte
		b[0] = m | 25
		binary.BigEndian.PutUint16(b[1:], uint16(n))
		w.Write(b[:])
	case n <= 0xffffffff:
		var b [5]byte
		b[0] = m | 26
		binary.BigEndian.PutUint32(b[1:], uint32(n))
		w.Write(b[:])
	default:
		var b [9]byte
		b[0] = m | 27
		binary.BigEndian.PutUint64(b[1:], n)
		w.Write(b[:])
	}
}
