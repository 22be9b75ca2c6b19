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
	if err := s.encodeFields(bw, 0, 5); err != nil {
		return err
	}
	if err := s.encodeKV(bw); err != nil {
		return err
	}
	if err := s.encodeFields(bw, 6, stateFields); err != nil {
		return err
	}
	return bw.Flush()
}

// stateFields is the largest key of the State map (keys 1…stateFields).
const stateFields = 19

// omitted reports whether the state's field key is left out (omitempty).
func (s *State) omitted(key int) bool {
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

// optionalField reports whether key is an omitempty field.
func optionalField(key int) bool { return key == 2 || key == 18 || key == 19 }

// fieldValue is the value of the state's field key (5, the key/values, is
// encoded by encodeKV).
func (s *State) fieldValue(key int) any {
	switch key {
	case 1:
		return s.Account
	case 2:
		return s.Genesis
	case 3:
		return s.Epoch
	case 4:
		return s.Members
	case 6:
		return s.Blobs
	case 7:
		return s.Envelopes
	case 8:
		return s.Devices
	case 9:
		return s.Proposals
	case 10:
		return s.Completed
	case 11:
		return s.CacheFloors
	case 12:
		return s.Upgrades
	case 13:
		return s.GroupKeys
	case 14:
		return s.AdminOverrides
	case 15:
		return s.NewAdmins
	case 16:
		return s.SnapshotEpoch
	case 17:
		return s.Opened
	case 18:
		return s.AdminReplacements
	case 19:
		return s.AdminProposals
	}
	return nil
}

// encodeFields writes the canonical encoding of the fields from..to (key 0
// is the map head; key 5 writes only its key, the caller writes the
// key/values after it), as the canonical encoder orders them.
func (s *State) encodeFields(bw *bufio.Writer, from, to int) error {
	for key := from; key <= to; key++ {
		switch {
		case key == 0:
			n := uint64(0)
			for k := 1; k <= stateFields; k++ {
				if !s.omitted(k) {
					n++
				}
			}
			writeHead(bw, 5, n) // map
			continue
		case s.omitted(key):
			continue
		}
		writeHead(bw, 0, uint64(key))
		if key == 5 {
			continue
		}
		b, err := Marshal(s.fieldValue(key))
		if err != nil {
			return err
		}
		bw.Write(b)
	}
	return nil
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
