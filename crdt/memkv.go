package crdt

import (
	"bytes"
	"sync"
)

// MemKV is an in-memory ordered KV. It serves tests and the simulator's
// in-memory disk: Close keeps the data, so a journal can be opened again
// over the same MemKV to model a restart. Commit applies a batch
// atomically; sync is meaningless in memory.
//
// The keys are held in a B+ tree: leaves of at most memFanout entries in
// key order, inner nodes of at most memFanout children. A lookup is a
// binary search per level, an insert shifts part of one leaf (a full node
// is split in two), and an entry costs no allocation of its own. A node
// left empty by deletes is removed; nodes are not merged otherwise.
type MemKV struct {
	mu   sync.RWMutex
	root *memNode
	n    int
}

// memNode is a leaf (ents) or an inner node (kids, with seps[i] a lower
// bound of the keys under kids[i+1] and above those under kids[i]).
type memNode struct {
	ents []memEntry
	kids []*memNode
	seps [][]byte
}

func (x *memNode) leaf() bool { return x.kids == nil }

// memEntry is one key and its value: kv[:klen] and kv[klen:].
type memEntry struct {
	kv   []byte
	klen int
}

func (e *memEntry) key() []byte { return e.kv[:e.klen:e.klen] }
func (e *memEntry) val() []byte { return e.kv[e.klen:] }

const memFanout = 32

// NewMemKV returns an empty in-memory KV.
func NewMemKV() *MemKV { return &MemKV{root: &memNode{}} }

// Len is the number of keys held.
func (m *MemKV) Len() int {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.n
}

// memStep is one inner node on the way down and the child taken.
type memStep struct {
	x *memNode
	i int
}

// memPath is a position: the inner nodes above a leaf, the leaf, and an
// index in it.
type memPath struct {
	up   [memMaxDepth]memStep
	n    int
	leaf *memNode
	i    int
}

// memMaxDepth bounds the tree's height: 32^12 keys.
const memMaxDepth = 12

// seek returns the position of the first entry with key ≥ key in the
// leaf where key belongs (p.i == len(p.leaf.ents) when it is above them).
func (m *MemKV) seek(key []byte) memPath {
	var p memPath
	x := m.root
	for !x.leaf() {
		// The number of separators ≤ key is the child to take.
		lo, hi := 0, len(x.seps)
		for lo < hi {
			mid := int(uint(lo+hi) >> 1)
			if bytes.Compare(x.seps[mid], key) <= 0 {
				lo = mid + 1
			} else {
				hi = mid
			}
		}
		p.up[p.n] = memStep{x, lo}
		p.n++
		x = x.kids[lo]
	}
	lo, hi := 0, len(x.ents)
	for lo < hi {
		mid := int(uint(lo+hi) >> 1)
		if bytes.Compare(x.ents[mid].key(), key) < 0 {
			lo = mid + 1
		} else {
			hi = mid
		}
	}
	p.leaf, p.i = x, lo
	return p
}

// entry returns the entry at p, moving p to the next leaf first when it is
// past the end of its own; nil at the end of the KV.
func (p *memPath) entry() *memEntry {
	for p.i >= len(p.leaf.ents) {
		// Up to the first node with a child to the right, then down its
		// leftmost path.
		for p.n > 0 && p.up[p.n-1].i+1 >= len(p.up[p.n-1].x.kids) {
			p.n--
		}
		if p.n == 0 {
			return nil
		}
		p.up[p.n-1].i++
		x := p.up[p.n-1].x.kids[p.up[p.n-1].i]
		for !x.leaf() {
			p.up[p.n] = memStep{x, 0}
			p.n++
			x = x.kids[0]
		}
		p.leaf, p.i = x, 0
	}
	return &p.leaf.ents[p.i]
}

// Get implements KV.
func (m *MemKV) Get(key []byte) ([]byte, bool, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	p := m.seek(key)
	if p.i >= len(p.leaf.ents) || !bytes.Equal(p.leaf.ents[p.i].key(), key) {
		return nil, false, nil
	}
	return bytes.Clone(p.leaf.ents[p.i].val()), true, nil
}

// Scan implements KV. It reads in chunks under the lock and calls fn
// without it, so fn may call back into the KV.
func (m *MemKV) Scan(lo, hi []byte, fn func(key, value []byte) error) error {
	type kv struct{ k, v []byte }
	var chunk []kv
	from := lo
	inclusive := true
	for {
		chunk = chunk[:0]
		m.mu.RLock()
		p := m.seek(from)
		if e := p.entry(); e != nil && !inclusive && bytes.Equal(e.key(), from) {
			p.i++
		}
		for e := p.entry(); e != nil && len(chunk) < 256; e = p.entry() {
			if hi != nil && bytes.Compare(e.key(), hi) >= 0 {
				break
			}
			chunk = append(chunk, kv{e.key(), e.val()}) // entries' bytes are never modified in place
			p.i++
		}
		m.mu.RUnlock()
		if len(chunk) == 0 {
			return nil
		}
		for _, e := range chunk {
			if err := fn(e.k, e.v); err != nil {
				return err
			}
		}
		if len(chunk) < 256 {
			return nil
		}
		from, inclusive = chunk[len(chunk)-1].k, false
	}
}

// set makes kv[:klen] hold kv[klen:]; the entry keeps kv.
func (m *MemKV) set(kv []byte, klen int) {
	e := memEntry{kv: kv, klen: klen}
	p := m.seek(e.key())
	x := p.leaf
	if p.i < len(x.ents) && bytes.Equal(x.ents[p.i].key(), e.key()) {
		x.ents[p.i] = e
		return
	}
	m.n++
	x.ents = insertAt(x.ents, p.i, e)
	if len(x.ents) <= memFanout {
		return
	}
	// Split the full leaf, then any inner node that overflows. A node
	// whose new entry is its last (keys written in ascending order, as a
	// chain is) keeps the others: in order, nodes fill up, not half.
	half := len(x.ents) / 2
	if p.i == len(x.ents)-1 {
		half = len(x.ents) - 1
	}
	right := &memNode{ents: make([]memEntry, len(x.ents)-half, memFanout+1)}
	copy(right.ents, x.ents[half:])
	clear(x.ents[half:])
	x.ents = x.ents[:half]
	sep := right.ents[0].key()
	for {
		if p.n == 0 { // x is the root
			m.root = &memNode{kids: []*memNode{x, right}, seps: [][]byte{sep}}
			return
		}
		p.n--
		up := p.up[p.n]
		parent := up.x
		parent.kids = insertAt(parent.kids, up.i+1, right)
		parent.seps = insertAt(parent.seps, up.i, sep)
		if len(parent.kids) <= memFanout {
			return
		}
		// kids[:half] with seps[:half-1] stay; seps[half-1] moves up.
		half := len(parent.kids) / 2
		if up.i+1 == len(parent.kids)-1 {
			half = len(parent.kids) - 1
		}
		r := &memNode{kids: make([]*memNode, len(parent.kids)-half, memFanout+1), seps: make([][]byte, len(parent.seps)-half, memFanout)}
		copy(r.kids, parent.kids[half:])
		copy(r.seps, parent.seps[half:])
		sep = parent.seps[half-1]
		clear(parent.kids[half:])
		clear(parent.seps[half-1:])
		parent.kids, parent.seps = parent.kids[:half], parent.seps[:half-1]
		x, right = parent, r
	}
}

// insertAt inserts v at s[i], growing s (by doubling, up to memFanout+1).
func insertAt[T any](s []T, i int, v T) []T {
	if len(s) == cap(s) {
		grown := make([]T, len(s), min(max(2*cap(s), 4), memFanout+1))
		copy(grown, s)
		s = grown
	}
	s = s[:len(s)+1]
	copy(s[i+1:], s[i:])
	s[i] = v
	return s
}

// deleteRange removes keys in [lo, hi); hi nil removes the single key lo.
func (m *MemKV) deleteRange(lo, hi []byte) {
	for {
		p := m.seek(lo)
		e := p.entry() // may move p to the next leaf
		if e == nil {
			return
		}
		x, i := p.leaf, p.i
		j := i
		for j < len(x.ents) {
			if k := x.ents[j].key(); hi == nil && !bytes.Equal(k, lo) || hi != nil && bytes.Compare(k, hi) >= 0 {
				break
			}
			j++
			if hi == nil {
				break
			}
		}
		if j == i {
			return
		}
		stopped := j < len(x.ents) || hi == nil
		m.n -= j - i
		n := copy(x.ents[i:], x.ents[j:])
		clear(x.ents[i+n:])
		x.ents = x.ents[:i+n]
		if len(x.ents) == 0 {
			m.unlink(&p)
		}
		if stopped {
			return
		}
	}
}

// unlink removes the empty leaf at p, and any inner node left without
// children; a root with one child gives way to it.
func (m *MemKV) unlink(p *memPath) {
	for p.n > 0 {
		p.n--
		up := p.up[p.n]
		x := up.x
		x.kids = append(x.kids[:up.i], x.kids[up.i+1:]...)
		x.kids[:cap(x.kids)][len(x.kids)] = nil
		if len(x.seps) > 0 {
			s := max(up.i-1, 0) // the bound of the removed child, or of the first
			x.seps = append(x.seps[:s], x.seps[s+1:]...)
			x.seps[:cap(x.seps)][len(x.seps)] = nil
		}
		if len(x.kids) > 0 {
			break
		}
	}
	for !m.root.leaf() && len(m.root.kids) == 1 {
		m.root = m.root.kids[0]
	}
	if !m.root.leaf() && len(m.root.kids) == 0 {
		m.root = &memNode{}
	}
}

// NewBatch implements KV.
func (m *MemKV) NewBatch() KVBatch { return &memBatch{m: m} }

// Compact implements KV; memory is reclaimed by the garbage collector.
func (m *MemKV) Compact(lo, hi []byte) error { return nil }

// Close implements KV. The data stays: a journal may be opened again over
// the same MemKV.
func (m *MemKV) Close() error { return nil }

// memOp is one write of a batch: kv[:klen] is the key (or the low end of
// a range), kv[klen:] the value (or the high end).
type memOp struct {
	kind byte // 's' set, 'd' delete, 'r' range delete
	klen int
	kv   []byte
}

// A batch copies what it is given into arena chunks once it holds more
// than memArenaFrom bytes (before that, one allocation per write, so that
// a small batch pins no more than it stores): the nodes it commits keep
// views of those chunks.
const (
	memArenaFrom = 4 << 10
	memChunk     = 16 << 10
)

type memBatch struct {
	m     *MemKV
	ops   [][]memOp // in blocks of memOpBlock, so that none is copied to grow
	arena []byte    // the current chunk; its unused capacity is free
	bytes int       // copied so far
}

const memOpBlock = 128

func (b *memBatch) add(op memOp) {
	if n := len(b.ops); n == 0 || len(b.ops[n-1]) == cap(b.ops[n-1]) {
		size := memOpBlock
		if n < 5 {
			size = 4 << n // 4, 8, … 64: a small batch stays small
		}
		b.ops = append(b.ops, make([]memOp, 0, size))
	}
	last := &b.ops[len(b.ops)-1]
	*last = append(*last, op)
}

// copyIn returns a copy of a ‖ b that the batch owns.
func (b *memBatch) copyIn(a, c []byte) []byte {
	n := len(a) + len(c)
	b.bytes += n
	var dst []byte
	switch {
	case b.bytes <= memArenaFrom || n > memChunk/4:
		dst = make([]byte, 0, n)
	case n <= cap(b.arena)-len(b.arena):
		dst = b.arena[len(b.arena):len(b.arena)]
		b.arena = b.arena[:len(b.arena)+n]
	default:
		b.arena = make([]byte, n, memChunk)
		dst = b.arena[:0]
	}
	dst = append(append(dst, a...), c...)
	return dst[:n:n]
}

func (b *memBatch) Set(key, value []byte) error {
	b.add(memOp{kind: 's', klen: len(key), kv: b.copyIn(key, value)})
	return nil
}

func (b *memBatch) Delete(key []byte) error {
	b.add(memOp{kind: 'd', klen: len(key), kv: b.copyIn(key, nil)})
	return nil
}

func (b *memBatch) DeleteRange(lo, hi []byte) error {
	b.add(memOp{kind: 'r', klen: len(lo), kv: b.copyIn(lo, hi)})
	return nil
}

func (b *memBatch) Commit(sync bool) error {
	b.m.mu.Lock()
	defer b.m.mu.Unlock()
	for _, block := range b.ops {
		for _, op := range block {
			switch op.kind {
			case 's':
				b.m.set(op.kv, op.klen)
			case 'd':
				b.m.deleteRange(op.kv[:op.klen], nil)
			case 'r':
				if lo, hi := op.kv[:op.klen], op.kv[op.klen:]; bytes.Compare(lo, hi) < 0 {
					b.m.deleteRange(lo, hi)
				}
			}
		}
	}
	b.ops, b.arena = nil, nil
	return nil
}

func (b *memBatch) Close() error {
	b.ops, b.arena = nil, nil
	return nil
}
