package crdt

import (
	"bytes"
	"sync"
)

// MemKV is an in-memory ordered KV (a skip list). It serves tests and the
// simulator's in-memory disk: Close keeps the data, so a journal can be
// opened again over the same MemKV to model a restart. Commit applies a
// batch atomically; sync is meaningless in memory. The skip list draws its
// levels from a fixed-seed generator, so it is deterministic.
type MemKV struct {
	mu    sync.RWMutex
	head  *memNode
	level int
	rng   uint64
	n     int
	slab  []memNode // nodes allocated ahead, memSlab at a time
}

// memSlab is how many nodes are allocated at once. A deleted node's slot
// is cleared (it pins no key or value) but stays allocated until the
// others of its slab are deleted too.
const memSlab = 64

const memMaxLevel = 24

// memNode is one key of the skip list. Its key and value are one slice
// (kv[:klen] and kv[klen:]), and the tower of the usual levels (1 and 2,
// 15 of 16 nodes) is inline, so that a node is one allocation.
type memNode struct {
	kv    []byte
	klen  int
	next  []*memNode
	tower [2]*memNode
}

func (n *memNode) key() []byte { return n.kv[:n.klen:n.klen] }
func (n *memNode) val() []byte { return n.kv[n.klen:] }

// NewMemKV returns an empty in-memory KV.
func NewMemKV() *MemKV {
	return &MemKV{head: &memNode{next: make([]*memNode, memMaxLevel)}, level: 1, rng: 0x9E3779B97F4A7C15}
}

// Len is the number of keys held.
func (m *MemKV) Len() int {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.n
}

func (m *MemKV) randomLevel() int {
	l := 1
	for l < memMaxLevel {
		m.rng ^= m.rng << 13
		m.rng ^= m.rng >> 7
		m.rng ^= m.rng << 17
		if m.rng&3 != 0 { // p = 1/4
			break
		}
		l++
	}
	return l
}

// seek fills update with the last node before key at each level and
// returns the first node with node.key ≥ key.
func (m *MemKV) seek(key []byte, update []*memNode) *memNode {
	x := m.head
	for i := m.level - 1; i >= 0; i-- {
		for x.next[i] != nil && bytes.Compare(x.next[i].key(), key) < 0 {
			x = x.next[i]
		}
		if update != nil {
			update[i] = x
		}
	}
	return x.next[0]
}

// Get implements KV.
func (m *MemKV) Get(key []byte) ([]byte, bool, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	x := m.seek(key, nil)
	if x == nil || !bytes.Equal(x.key(), key) {
		return nil, false, nil
	}
	return bytes.Clone(x.val()), true, nil
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
		x := m.seek(from, nil)
		if x != nil && !inclusive && bytes.Equal(x.key(), from) {
			x = x.next[0]
		}
		for ; x != nil && len(chunk) < 256; x = x.next[0] {
			if hi != nil && bytes.Compare(x.key(), hi) >= 0 {
				break
			}
			chunk = append(chunk, kv{x.key(), x.val()}) // nodes' bytes are never modified in place
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

// set makes kv[:klen] hold kv[klen:]; the node keeps kv.
func (m *MemKV) set(kv []byte, klen int) {
	key := kv[:klen]
	var update [memMaxLevel]*memNode
	x := m.seek(key, update[:])
	if x != nil && bytes.Equal(x.key(), key) {
		x.kv, x.klen = kv, klen
		return
	}
	l := m.randomLevel()
	if l > m.level {
		for i := m.level; i < l; i++ {
			update[i] = m.head
		}
		m.level = l
	}
	if len(m.slab) == 0 {
		m.slab = make([]memNode, memSlab)
	}
	n := &m.slab[0]
	m.slab = m.slab[1:]
	n.kv, n.klen = kv, klen
	if l <= len(n.tower) {
		n.next = n.tower[:l]
	} else {
		n.next = make([]*memNode, l)
	}
	for i := 0; i < l; i++ {
		n.next[i] = update[i].next[i]
		update[i].next[i] = n
	}
	m.n++
}

// deleteRange removes keys in [lo, hi); hi nil removes the single key lo.
func (m *MemKV) deleteRange(lo, hi []byte) {
	var update [memMaxLevel]*memNode
	x := m.seek(lo, update[:])
	for x != nil {
		if hi == nil {
			if !bytes.Equal(x.key(), lo) {
				return
			}
		} else if bytes.Compare(x.key(), hi) >= 0 {
			return
		}
		for i := 0; i < len(x.next); i++ {
			if update[i].next[i] == x {
				update[i].next[i] = x.next[i]
			}
		}
		m.n--
		next := x.next[0]
		*x = memNode{}
		if hi == nil {
			return
		}
		x = next
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
	ops   []memOp
	arena []byte // the current chunk; its unused capacity is free
	bytes int    // copied so far
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
	b.ops = append(b.ops, memOp{kind: 's', klen: len(key), kv: b.copyIn(key, value)})
	return nil
}

func (b *memBatch) Delete(key []byte) error {
	b.ops = append(b.ops, memOp{kind: 'd', klen: len(key), kv: b.copyIn(key, nil)})
	return nil
}

func (b *memBatch) DeleteRange(lo, hi []byte) error {
	b.ops = append(b.ops, memOp{kind: 'r', klen: len(lo), kv: b.copyIn(lo, hi)})
	return nil
}

func (b *memBatch) Commit(sync bool) error {
	b.m.mu.Lock()
	defer b.m.mu.Unlock()
	for _, op := range b.ops {
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
	b.ops, b.arena = nil, nil
	return nil
}

func (b *memBatch) Close() error {
	b.ops, b.arena = nil, nil
	return nil
}
