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
}

const memMaxLevel = 24

type memNode struct {
	key, val []byte
	next     []*memNode
}

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
		for x.next[i] != nil && bytes.Compare(x.next[i].key, key) < 0 {
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
	if x == nil || !bytes.Equal(x.key, key) {
		return nil, false, nil
	}
	return bytes.Clone(x.val), true, nil
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
		if x != nil && !inclusive && bytes.Equal(x.key, from) {
			x = x.next[0]
		}
		for ; x != nil && len(chunk) < 256; x = x.next[0] {
			if hi != nil && bytes.Compare(x.key, hi) >= 0 {
				break
			}
			chunk = append(chunk, kv{x.key, x.val}) // nodes' slices are never modified in place
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

func (m *MemKV) set(key, val []byte) {
	var update [memMaxLevel]*memNode
	x := m.seek(key, update[:])
	if x != nil && bytes.Equal(x.key, key) {
		x.val = val
		return
	}
	l := m.randomLevel()
	if l > m.level {
		for i := m.level; i < l; i++ {
			update[i] = m.head
		}
		m.level = l
	}
	n := &memNode{key: key, val: val, next: make([]*memNode, l)}
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
			if !bytes.Equal(x.key, lo) {
				return
			}
		} else if bytes.Compare(x.key, hi) >= 0 {
			return
		}
		for i := 0; i < len(x.next); i++ {
			if update[i].next[i] == x {
				update[i].next[i] = x.next[i]
			}
		}
		m.n--
		if hi == nil {
			return
		}
		x = x.next[0]
	}
}

// NewBatch implements KV.
func (m *MemKV) NewBatch() KVBatch { return &memBatch{m: m} }

// Compact implements KV; memory is reclaimed by the garbage collector.
func (m *MemKV) Compact(lo, hi []byte) error { return nil }

// Close implements KV. The data stays: a journal may be opened again over
// the same MemKV.
func (m *MemKV) Close() error { return nil }

type memOp struct {
	kind  byte // 's' set, 'd' delete, 'r' range delete
	k, v  []byte
	hiKey []byte
}

type memBatch struct {
	m   *MemKV
	ops []memOp
}

func (b *memBatch) Set(key, value []byte) error {
	b.ops = append(b.ops, memOp{kind: 's', k: bytes.Clone(key), v: bytes.Clone(value)})
	return nil
}

func (b *memBatch) Delete(key []byte) error {
	b.ops = append(b.ops, memOp{kind: 'd', k: bytes.Clone(key)})
	return nil
}

func (b *memBatch) DeleteRange(lo, hi []byte) error {
	b.ops = append(b.ops, memOp{kind: 'r', k: bytes.Clone(lo), hiKey: bytes.Clone(hi)})
	return nil
}

func (b *memBatch) Commit(sync bool) error {
	b.m.mu.Lock()
	defer b.m.mu.Unlock()
	for _, op := range b.ops {
		switch op.kind {
		case 's':
			b.m.set(op.k, op.v)
		case 'd':
			b.m.deleteRange(op.k, nil)
		case 'r':
			if bytes.Compare(op.k, op.hiKey) < 0 {
				b.m.deleteRange(op.k, op.hiKey)
			}
		}
	}
	b.ops = nil
	return nil
}

func (b *memBatch) Close() error {
	b.ops = nil
	return nil
}
