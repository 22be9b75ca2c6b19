package crdt

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding"
	"errors"
	"fmt"
	"hash"
	"io"
	"sort"
	"unicode/utf8"
)

// Streaming decode of a state encoding (a snapshot blob): ReadState reads
// the canonical encoding once from an io.Reader, checks its canonical form
// item by item and computes its digest on the way, so a restore never
// holds the blob bytes beside the decoded state, nor re-encodes the state
// to check it. Every field but the application key/values is small and is
// checked by the canonical decoder (Unmarshal: decode, re-encode, compare);
// the key/values are parsed entry by entry against the one encoding
// writeEntry produces, in strictly increasing canonical key order. What
// ReadState accepts is exactly what DecodeState accepts (FuzzReadState
// holds the two to that), with the same state.

// ReadOptions tune ReadState.
type ReadOptions struct {
	// Lean: check and hash the application key/values but keep none of
	// them (State.KV is empty). A restore that must not hold the state
	// (an offline backup restore) reads the blob this way; guards and every
	// other field are complete.
	Lean bool
	// Limit bounds the bytes read (default and at most MaxStateSize).
	Limit int64
}

// StreamedState is what ReadState read.
type StreamedState struct {
	State   *State
	Digest  Hash  // DigestOf the bytes read
	Size    int64 // bytes read
	Entries int   // application key/value entries

	head    []byte // the encoding up to the key/values' map head (fields 1–4, key 5)
	afterKV []byte // sha256 state after the key/values (encoding.BinaryMarshaler)
}

const stateDomain = "aura/state/v1\x00"

// maxStateEntries is the canonical decoder's bound on map pairs, which
// DecodeState applies to the key/values too.
const maxStateEntries = 1 << 20

// ReadState decodes a canonical state encoding from r, reading it to its
// end (bytes after the encoding are refused: they are not canonical).
// Errors wrap ErrMalformed, ErrNotCanonical, ErrTooLarge, or r's error.
func ReadState(r io.Reader, o ReadOptions) (*StreamedState, error) {
	if o.Limit <= 0 || o.Limit > MaxStateSize {
		o.Limit = MaxStateSize
	}
	d := newStreamDec(r, o.Limit)
	d.h = sha256.New()
	d.h.Write([]byte(stateDomain))
	out, err := d.state(o.Lean, nil)
	if err != nil {
		return nil, fmt.Errorf("decode state: %w", err)
	}
	return out, nil
}

// state decodes the whole encoding. With merge set (JoinedDigest), the
// key/values are not kept but merged with merge's.
func (d *streamDec) state(lean bool, kv kvVisitor) (*StreamedState, error) {
	s := &State{}
	out := &StreamedState{State: s}
	d.keepFrom()
	b, err := d.byte1()
	if err != nil {
		return nil, err
	}
	if b < 0xa0|(stateFields-3) || b > 0xa0|stateFields {
		return nil, fmt.Errorf("%w: state is not a map of %d to %d fields (head %#x)", ErrMalformed, stateFields-3, stateFields, b)
	}
	left := int(b - 0xa0) // fields still to read
	next := -1            // a key read ahead, not yet matched
	for key := 1; key <= stateFields; key++ {
		if next < 0 && left > 0 {
			k, err := d.byte1()
			if err != nil {
				return nil, err
			}
			next = int(k)
		}
		if next != key {
			if optionalField(key) {
				continue // omitempty
			}
			return nil, fmt.Errorf("%w: state field %d expected, key head %#x", ErrNotCanonical, key, next)
		}
		next = -1
		left--
		if key == 5 {
			out.head = d.kept()
			if kv != nil {
				if err := kv.before(d); err != nil {
					return nil, err
				}
			}
			k, err := d.kvs(s, lean || kv != nil, kv)
			if err != nil {
				return nil, err
			}
			out.Entries = k
			if kv == nil {
				mid, err := d.midstate()
				if err != nil {
					return nil, err
				}
				out.afterKV = mid
			}
			continue
		}
		raw, err := d.item(nil, 1)
		if err != nil {
			return nil, fmt.Errorf("state field %d: %w", key, err)
		}
		if optionalField(key) && (bytes.Equal(raw, []byte{0xf6}) || bytes.Equal(raw, []byte{0xa0})) {
			return nil, fmt.Errorf("%w: empty state field %d is not omitted", ErrNotCanonical, key)
		}
		if err := Unmarshal(raw, s.fieldPtr(key)); err != nil {
			return nil, fmt.Errorf("state field %d: %w", key, err)
		}
	}
	if left != 0 || next >= 0 {
		return nil, fmt.Errorf("%w: state fields out of order", ErrNotCanonical)
	}
	if err := d.end(); err != nil {
		return nil, err
	}
	if s.KV == nil {
		s.KV = map[string]*Entry{}
	}
	if err := s.validate(); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	s.init()
	if d.h != nil {
		d.flush()
		d.h.Sum(out.Digest[:0])
	}
	out.Size = d.n
	return out, nil
}

// fieldPtr points at the state's field key (never 5).
func (s *State) fieldPtr(key int) any {
	switch key {
	case 1:
		return &s.Account
	case 2:
		return &s.Genesis
	case 3:
		return &s.Epoch
	case 4:
		return &s.Members
	case 6:
		return &s.Blobs
	case 7:
		return &s.Envelopes
	case 8:
		return &s.Devices
	case 9:
		return &s.Proposals
	case 10:
		return &s.Completed
	case 11:
		return &s.CacheFloors
	case 12:
		return &s.Upgrades
	case 13:
		return &s.GroupKeys
	case 14:
		return &s.AdminOverrides
	case 15:
		return &s.NewAdmins
	case 16:
		return &s.SnapshotEpoch
	case 17:
		return &s.Opened
	case 18:
		return &s.AdminReplacements
	case 19:
		return &s.AdminProposals
	}
	return nil
}

// kvVisitor sees the key/values of a state being read (JoinedDigest).
type kvVisitor interface {
	before(d *streamDec) error                      // after key 5, before the map head
	entry(d *streamDec, key string) (bool, error)   // before an entry's body; false: do not hash the body
	after(d *streamDec, prev string) error          // after the last entry
	head(d *streamDec, n int) error                 // the map head was read (not hashed)
	stamp(d *streamDec, key string, st Stamp) error // the entry's stamp (after its body)
}

// kvs reads the key/values map: the number of entries read. Unless lean,
// they go into s.KV.
func (d *streamDec) kvs(s *State, lean bool, kv kvVisitor) (int, error) {
	if kv != nil {
		d.pause()
	}
	major, n, err := d.head()
	if err != nil {
		return 0, err
	}
	if major != 5 {
		return 0, fmt.Errorf("%w: key/values are not a map (major type %d)", ErrMalformed, major)
	}
	if n > maxStateEntries {
		return 0, fmt.Errorf("%w: %d key/values, over %d", ErrMalformed, n, maxStateEntries)
	}
	if kv != nil {
		if err := kv.head(d, int(n)); err != nil {
			return 0, err
		}
	}
	if !lean {
		s.KV = make(map[string]*Entry, n)
	} else {
		s.KV = map[string]*Entry{}
	}
	var prev string
	for i := range int(n) {
		if kv != nil {
			d.pause()
		}
		major, l, err := d.head()
		if err != nil {
			return 0, err
		}
		if major != 3 {
			return 0, fmt.Errorf("%w: key/value %d: key is not text", ErrMalformed, i)
		}
		kb, err := d.bytesN(l, true)
		if err != nil {
			return 0, fmt.Errorf("key/value %d: %w", i, err)
		}
		if !utf8.Valid(kb) {
			return 0, fmt.Errorf("%w: key/value %d: key is not UTF-8", ErrMalformed, i)
		}
		key := string(kb)
		if i > 0 && (len(key) < len(prev) || (len(key) == len(prev) && key <= prev)) {
			return 0, fmt.Errorf("%w: key/value %q follows %q", ErrNotCanonical, key, prev)
		}
		if kv != nil {
			keep, err := kv.entry(d, key)
			if err != nil {
				return 0, err
			}
			if keep {
				d.resume()
			}
		}
		e, err := d.entry(lean)
		if err != nil {
			return 0, fmt.Errorf("key/value %q: %w", key, err)
		}
		if kv != nil {
			if err := kv.stamp(d, key, e.Stamp); err != nil {
				return 0, err
			}
		}
		if !lean {
			s.KV[key] = e
		}
		prev = key
	}
	if kv != nil {
		d.pause()
		if err := kv.after(d, prev); err != nil {
			return 0, err
		}
		d.resume()
	}
	return int(n), nil
}

// entry reads one Entry in the encoding writeEntry gives: a map of 1 to 3
// pairs, {1: non-empty bytes}? {2: true}? {3: [lamport, author, id]}.
func (d *streamDec) entry(lean bool) (*Entry, error) {
	b, err := d.byte1()
	if err != nil {
		return nil, err
	}
	if b < 0xa1 || b > 0xa3 {
		return nil, fmt.Errorf("%w: entry head %#x", ErrNotCanonical, b)
	}
	pairs := int(b - 0xa0)
	e := &Entry{}
	last := 0
	for p := 0; p < pairs; p++ {
		k, err := d.byte1()
		if err != nil {
			return nil, err
		}
		if int(k) <= last || k > 3 || (p == pairs-1) != (k == 3) {
			return nil, fmt.Errorf("%w: entry field %#x", ErrNotCanonical, k)
		}
		last = int(k)
		switch k {
		case 1:
			major, n, err := d.head()
			if err != nil {
				return nil, err
			}
			if major != 2 || n == 0 {
				return nil, fmt.Errorf("%w: entry value", ErrNotCanonical)
			}
			v, err := d.bytesN(n, !lean)
			if err != nil {
				return nil, fmt.Errorf("entry value: %w", err)
			}
			e.Value = v
		case 2:
			if b, err := d.byte1(); err != nil {
				return nil, err
			} else if b != 0xf5 {
				return nil, fmt.Errorf("%w: entry deleted flag %#x", ErrNotCanonical, b)
			}
			e.Deleted = true
		case 3:
			if b, err := d.byte1(); err != nil {
				return nil, err
			} else if b != 0x83 {
				return nil, fmt.Errorf("%w: entry stamp head %#x", ErrNotCanonical, b)
			}
			major, lam, err := d.head()
			if err != nil {
				return nil, err
			}
			if major != 0 {
				return nil, fmt.Errorf("%w: entry stamp lamport", ErrMalformed)
			}
			e.Stamp.Lamport = lam
			for _, dst := range [][]byte{e.Stamp.Author[:], e.Stamp.ID[:]} {
				if err := d.fixed32(dst); err != nil {
					return nil, fmt.Errorf("entry stamp: %w", err)
				}
			}
		}
	}
	return e, nil
}

// streamDec reads CBOR from a stream through its own buffer, so it knows
// exactly which bytes it consumed: those (and only those, unless paused)
// go into h.
type streamDec struct {
	src    io.Reader
	buf    []byte
	r, w   int // buf[r:w] is read but not consumed
	hr     int // buf[hr:r] is consumed but not yet hashed
	h      hash.Hash
	paused bool
	n      int64 // bytes taken from src
	limit  int64
	eof    bool
	keep   []byte // consumed bytes copied since keepFrom (the state's head)
	keepOn bool
	hd     [9]byte // the last head read, as read
	hdn    int
}

func newStreamDec(r io.Reader, limit int64) *streamDec {
	return &streamDec{src: r, buf: make([]byte, 64<<10), limit: limit}
}

// flush hashes what was consumed.
func (d *streamDec) flush() {
	if d.hr < d.r {
		if d.h != nil && !d.paused {
			d.h.Write(d.buf[d.hr:d.r])
		}
		if d.keepOn {
			d.keep = append(d.keep, d.buf[d.hr:d.r]...)
		}
	}
	d.hr = d.r
}

// pause stops hashing consumed bytes until resume.
func (d *streamDec) pause()  { d.flush(); d.paused = true }
func (d *streamDec) resume() { d.flush(); d.paused = false }

// keepFrom keeps a copy of what is consumed from now on.
func (d *streamDec) keepFrom() {
	d.flush()
	d.keep = d.keep[:0]
	d.keepOn = true
}

// kept stops keeping and returns what was kept.
func (d *streamDec) kept() []byte {
	d.flush()
	d.keepOn = false
	return append([]byte(nil), d.keep...)
}

// midstate is the hash state after what was consumed.
func (d *streamDec) midstate() ([]byte, error) {
	d.flush()
	m, ok := d.h.(encoding.BinaryMarshaler)
	if !ok {
		return nil, errors.New("hash state cannot be saved")
	}
	return m.MarshalBinary()
}

// fill makes at least k bytes (k <= len(buf)) available, or fails.
func (d *streamDec) fill(k int) error {
	if d.w-d.r >= k {
		return nil
	}
	d.flush()
	copy(d.buf, d.buf[d.r:d.w])
	d.w -= d.r
	d.r, d.hr = 0, 0
	for d.w < k {
		if d.eof {
			return fmt.Errorf("%w: state encoding ends early", ErrMalformed)
		}
		m, err := d.src.Read(d.buf[d.w:])
		d.w += m
		d.n += int64(m)
		if d.n > d.limit {
			return fmt.Errorf("state encoding over %d bytes: %w", d.limit, ErrTooLarge)
		}
		if errors.Is(err, io.EOF) {
			d.eof = true
		} else if err != nil {
			return err
		}
	}
	return nil
}

func (d *streamDec) byte1() (byte, error) {
	if err := d.fill(1); err != nil {
		return 0, err
	}
	b := d.buf[d.r]
	d.r++
	return b, nil
}

// head reads a CBOR head in its shortest form (definite lengths only) and
// returns its major type and argument.
func (d *streamDec) head() (byte, uint64, error) {
	b, err := d.byte1()
	if err != nil {
		return 0, 0, err
	}
	major, ai := b>>5, b&0x1f
	d.hd[0], d.hdn = b, 1
	var n uint64
	switch {
	case ai < 24:
		return major, uint64(ai), nil
	case ai <= 27:
		k := 1 << (ai - 24)
		if err := d.fill(k); err != nil {
			return 0, 0, err
		}
		for _, c := range d.buf[d.r : d.r+k] {
			n = n<<8 | uint64(c)
		}
		d.hdn += copy(d.hd[1:], d.buf[d.r:d.r+k])
		d.r += k
		if min := [...]uint64{24, 1 << 8, 1 << 16, 1 << 32}[ai-24]; n < min && major != 7 {
			return 0, 0, fmt.Errorf("%w: head not in its shortest form", ErrNotCanonical)
		}
		return major, n, nil
	}
	return 0, 0, fmt.Errorf("%w: head %#x (indefinite or reserved length)", ErrMalformed, b)
}

// bytesN consumes n bytes, returned when keep (allocated as they arrive,
// so a forged length cannot allocate more than the stream holds).
func (d *streamDec) bytesN(n uint64, keep bool) ([]byte, error) {
	if n > uint64(d.limit) {
		return nil, fmt.Errorf("%w: a string of %d bytes", ErrTooLarge, n)
	}
	var out []byte
	if keep {
		out = make([]byte, 0, min(n, 1<<20))
	}
	for n > 0 {
		if d.r == d.w {
			if err := d.fill(1); err != nil {
				return nil, err
			}
		}
		k := min(uint64(d.w-d.r), n)
		if keep {
			out = append(out, d.buf[d.r:d.r+int(k)]...)
		}
		d.r += int(k)
		n -= k
	}
	return out, nil
}

// fixed32 reads a byte string of exactly 32 bytes into dst.
func (d *streamDec) fixed32(dst []byte) error {
	if err := d.fill(34); err != nil {
		return err
	}
	if d.buf[d.r] != 0x58 || d.buf[d.r+1] != 32 {
		return fmt.Errorf("%w: not a 32-byte string", ErrMalformed)
	}
	copy(dst, d.buf[d.r+2:d.r+34])
	d.r += 34
	return nil
}

// maxItemLevels is how deep a field's value may nest arrays and maps: the
// canonical decoder's bound less the state's own map.
const maxItemLevels = 15

// item consumes one CBOR data item and returns its bytes appended to dst
// (for Unmarshal, which checks its canonical form).
func (d *streamDec) item(dst []byte, level int) ([]byte, error) {
	major, n, err := d.head()
	if err != nil {
		return nil, err
	}
	dst = append(dst, d.hd[:d.hdn]...)
	switch major {
	case 2, 3:
		if n > uint64(d.limit) {
			return nil, fmt.Errorf("%w: a string of %d bytes", ErrTooLarge, n)
		}
		b, err := d.bytesN(n, true)
		if err != nil {
			return nil, err
		}
		dst = append(dst, b...)
	case 4, 5:
		if level > maxItemLevels {
			return nil, fmt.Errorf("%w: nested deeper than %d levels", ErrMalformed, maxItemLevels)
		}
		if n > maxStateEntries {
			return nil, fmt.Errorf("%w: %d elements", ErrMalformed, n)
		}
		if major == 5 {
			n *= 2
		}
		for range n {
			if dst, err = d.item(dst, level+1); err != nil {
				return nil, err
			}
		}
	case 6:
		return nil, fmt.Errorf("%w: CBOR tag", ErrMalformed)
	}
	return dst, nil
}

// end checks that nothing follows the encoding.
func (d *streamDec) end() error {
	if d.r < d.w {
		return fmt.Errorf("%w: bytes after the state encoding", ErrMalformed)
	}
	if d.eof {
		return nil
	}
	if err := d.fill(1); err == nil {
		return fmt.Errorf("%w: bytes after the state encoding", ErrMalformed)
	} else if !d.eof {
		return err
	}
	return nil
}

// --- the digest after a fold on a lean state ---------------------------------

// JoinedDigest is the digest of the state read joined with delta: the
// state whose fields are delta's but for the key/values, which are the
// join of base's and delta.KV (per key the entry with the higher stamp,
// as the fold keeps). base opens the encoding the lean state was read
// from (st). When delta changed no key/value and none of the fields before
// them, no byte is read again; otherwise base is read twice (once to count
// the keys, once to hash), streaming.
func JoinedDigest(st *StreamedState, delta *State, base func() (io.ReadCloser, error)) (Hash, error) {
	var out Hash
	pre := &bytes.Buffer{}
	bw := bufio.NewWriter(pre)
	if err := delta.encodeFields(bw, 0, 5); err != nil {
		return out, err
	}
	bw.Flush()
	if len(delta.KV) == 0 && bytes.Equal(pre.Bytes(), st.head) && st.afterKV != nil {
		h := sha256.New()
		if err := h.(encoding.BinaryUnmarshaler).UnmarshalBinary(st.afterKV); err != nil {
			return out, err
		}
		bw := bufio.NewWriter(h)
		if err := delta.encodeFields(bw, 6, stateFields); err != nil {
			return out, err
		}
		bw.Flush()
		h.Sum(out[:0])
		return out, nil
	}
	keys := make([]string, 0, len(delta.KV))
	for k := range delta.KV {
		keys = append(keys, k)
	}
	sortKeys(keys)
	// First pass: which of delta's keys the base holds, and their stamps.
	count := &joinCount{keys: keys, stamps: map[string]Stamp{}}
	if err := readJoin(base, count); err != nil {
		return out, err
	}
	h := sha256.New()
	h.Write([]byte(stateDomain))
	h.Write(pre.Bytes())
	j := &joinHash{keys: keys, delta: delta.KV, base: count.stamps, n: count.n + len(keys) - len(count.stamps)}
	j.bw = bufio.NewWriterSize(h, 64<<10)
	if err := readJoin(base, j); err != nil {
		return out, err
	}
	if err := delta.encodeFields(j.bw, 6, stateFields); err != nil {
		return out, err
	}
	j.bw.Flush()
	h.Sum(out[:0])
	return out, nil
}

func readJoin(base func() (io.ReadCloser, error), kv kvVisitor) error {
	r, err := base()
	if err != nil {
		return err
	}
	defer r.Close()
	d := newStreamDec(r, MaxStateSize)
	if _, err := d.state(true, kv); err != nil {
		return fmt.Errorf("read the base state again: %w", err)
	}
	return nil
}

// sortKeys sorts text keys in canonical order (by length, then bytewise).
func sortKeys(keys []string) {
	sort.Slice(keys, func(i, j int) bool { return keyLess(keys[i], keys[j]) })
}

func keyLess(a, b string) bool {
	if len(a) != len(b) {
		return len(a) < len(b)
	}
	return a < b
}

// joinCount finds which of keys the base holds.
type joinCount struct {
	keys   []string
	stamps map[string]Stamp
	n      int
}

func (c *joinCount) before(*streamDec) error { return nil }
func (c *joinCount) head(_ *streamDec, n int) error {
	c.n = n
	return nil
}
func (c *joinCount) entry(*streamDec, string) (bool, error) { return false, nil }
func (c *joinCount) stamp(_ *streamDec, key string, st Stamp) error {
	i := lowerBound(c.keys, key)
	if i < len(c.keys) && c.keys[i] == key {
		c.stamps[key] = st
	}
	return nil
}
func (c *joinCount) after(*streamDec, string) error { return nil }

func lowerBound(keys []string, k string) int {
	lo, hi := 0, len(keys)
	for lo < hi {
		m := (lo + hi) / 2
		if keyLess(keys[m], k) {
			lo = m + 1
		} else {
			hi = m
		}
	}
	return lo
}

// joinHash writes the joined key/values into bw: the base's entries as
// read (hashing the decoder's bytes), delta's where they win or are new.
type joinHash struct {
	keys  []string
	delta map[string]*Entry
	base  map[string]Stamp
	n     int
	next  int // keys[next:] are not written yet
	bw    *bufio.Writer
}

// before makes the decoder's consumed bytes go into bw from here on.
func (j *joinHash) before(d *streamDec) error {
	d.flush()
	d.h = writerHash{j.bw}
	return nil
}

func (j *joinHash) head(_ *streamDec, _ int) error {
	writeHead(j.bw, 5, uint64(j.n))
	return nil
}

// emit writes delta's keys that sort before key (all, when key is "").
func (j *joinHash) emit(key string, all bool) {
	for j.next < len(j.keys) && (all || keyLess(j.keys[j.next], key)) {
		k := j.keys[j.next]
		j.next++
		if _, inBase := j.base[k]; inBase {
			continue // written in its place, below
		}
		writeHead(j.bw, 3, uint64(len(k)))
		j.bw.WriteString(k)
		writeEntry(j.bw, j.delta[k])
	}
}

func (j *joinHash) entry(_ *streamDec, key string) (bool, error) {
	j.emit(key, false)
	writeHead(j.bw, 3, uint64(len(key)))
	j.bw.WriteString(key)
	e, ok := j.delta[key]
	if ok && j.base[key].Less(e.Stamp) {
		writeEntry(j.bw, e)
		if j.next < len(j.keys) && j.keys[j.next] == key {
			j.next++
		}
		return false, nil
	}
	if j.next < len(j.keys) && j.keys[j.next] == key {
		j.next++
	}
	return true, nil
}

func (j *joinHash) stamp(*streamDec, string, Stamp) error { return nil }

func (j *joinHash) after(d *streamDec, _ string) error {
	j.emit("", true)
	d.flush()
	d.h = nil // the fields after come from delta
	return nil
}

// writerHash is a hash.Hash that only writes (the decoder's sink).
type writerHash struct{ w io.Writer }

func (w writerHash) Write(p []byte) (int, error) { return w.w.Write(p) }
func (w writerHash) Sum(b []byte) []byte         { return b }
func (w writerHash) Reset()                      {}
func (w writerHash) Size() int                   { return 0 }
func (w writerHash) BlockSize() int              { return 1 }
