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
// The keys are held in order in runs of at most memRunMax entries, the
// runs in order in one slice: a lookup is a binary search over the runs'
// first keys and one within a run, an insert shifts part of one run (a
// full run is split in two), and an entry costs no allocation of its own.
type MemKV struct {
	mu   sync.RWMutex
	runs [][]memEntry // none empty; each sorted, and below the next
	n    int
}

// memEntry is one key and its value: kv[:klen] and kv[klen:].
type memEntry struct {
	kv   []byte
	klen int
}

func (e *memEntry) key() []byte { return e.kv[:e.klen:e.klen] }
func (e *memEntry) val() []byte { return e.kv[e.klen:] }

const memRunMax = 128

// NewMemKV returns an empty in-memory KV.
func NewMemKV() *MemKV { return &MemKV{} }

// Len is the number of keys held.
func (m *MemKV) Len() int {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.n
}

// seek returns the position of the first entry with key ≥ key: run r,
// index i (r == len(m.runs) when there is none; i == len(m.runs[r]) only
// for the last run, when key is above its keys).
func (m *MemKV) seek(key []byte) (r, i int) {
	// The last run whose first key is ≤ key (or the first run).
	lo, hi := 0, len(m.runs)
	for hi-lo > 1 {
		mid := int(uint(lo+hi) >> 1)
		if bytes.Compare(m.runs[mid][0].key(), key) <= 0 {
			lo = mid
		} else {
			hi = mid
		}
	}
	if lo == len(m.runs) {
		return lo, 0
	}
	run := m.runs[lo]
	a, b := 0, len(run)
	for a < b {
		mid := int(uint(a+b) >> 1)
		if bytes.Compare(run[mid].key(), key) < 0 {
			a = mid + 1
		} else {
			b = mid
		}
	}
	if a == len(run) && lo+1 < len(m.runs) {
		return lo + 1, 0
	}
	return lo, a
}

// at returns the entry at (r, i), or nil past the end.
func (m *MemKV) at(r, i int) *memEntry {
	if r >= len(m.runs) || i >= len(m.runs[r]) {
		return nil
	}
	return &m.runs[r][i]
}

// Get implements KV.
func (m *MemKV) Get(key []byte) ([]byte, bool, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	e := m.at(m.seek(key))
	if e == nil || !bytes.Equal(e.key(), key) {
		return nil, false, nil
	}
	return bytes.Clone(e.val()), true, nil
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
		r, i := m.seek(from)
		if e := m.at(r, i); e != nil && !inclusive && bytes.Equal(e.key(), from) {
			i++
		}
	scan:
		for ; r < len(m.runs); r, i = r+1, 0 {
			for ; i < len(m.runs[r]); i++ {
				e := &m.runs[r][i]
				if (hi != nil && bytes.Compare(e.key(), hi) >= 0) || len(chunk) == 256 {
					break scan
				}
				chunk = append(chunk, kv{e.key(), e.val()}) // entries' bytes are never modified in place
			}
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
	if len(m.runs) == 0 {
		m.runs = append(m.runs, insertEntry(nil, 0, e))
		m.n++
		return
	}
	r, i := m.seek(e.key())
	run := m.runs[r]
	if i < len(run) && bytes.Equal(run[i].key(), e.key()) {
		run[i] = e
		return
	}
	m.n++
	if i == 0 && r > 0 {
		// Between run r-1's last key and run r's first: the end of run
		// r-1 is as good a place, and costs no shift.
		r, run, i = r-1, m.runs[r-1], len(m.runs[r-1])
	}
	if len(run) < memRunMax {
		m.runs[r] = insertEntry(run, i, e)
		return
	}
	if i == len(run) { // past a full run (keys written in order): a new run
		m.insertRun(r+1, insertEntry(nil, 0, e))
		return
	}
	// Split the full run: its upper half moves to a new run.
	half := len(run) / 2
	upper := make([]memEntry, len(run)-half, memRunMax)
	copy(upper, run[half:])
	clear(run[half:])
	lower := run[:half]
	if i <= half {
		lower = insertEntry(lower, i, e)
	} else {
		upper = insertEntry(upper, i-half, e)
	}
	m.runs[r] = lower
	m.insertRun(r+1, upper)
}

func (m *MemKV) insertRun(r int, run []memEntry) {
	m.runs = append(m.runs, nil)
	copy(m.runs[r+1:], m.runs[r:])
	m.runs[r] = run
}

// insertEntry inserts e at run[i], growing run (up to memRunMax).
func insertEntry(run []memEntry, i int, e memEntry) []memEntry {
	if len(run) == cap(run) {
		grown := make([]memEntry, len(run), min(max(2*cap(run), 4), memRunMax))
		copy(grown, run)
		run = grown
	}
	run = run[:len(run)+1]
	copy(run[i+1:], run[i:])
	run[i] = e
	return run
}

// deleteRange removes keys in [lo, hi); hi nil removes the single key lo.
func (m *MemKV) deleteRange(lo, hi []byte) {
	r, i := m.seek(lo)
	for r < len(m.runs) {
		run := m.runs[r]
		j := i
		for j < len(run) {
			if k := run[j].key(); hi == nil && !bytes.Equal(k, lo) || hi != nil && bytes.Compare(k, hi) >= 0 {
				break
			}
			j++
			if hi == nil {
				break
			}
		}
		stopped := j < len(run) // a key above the range is in this run
		if j > i {
			m.n -= j - i
			n := copy(run[i:], run[j:])
			clear(run[i+n:])
			run = run[:i+n]
		}
		if len(run) == 0 {
			copy(m.runs[r:], m.runs[r+1:])
			m.runs[len(m.runs)-1] = nil
			m.runs = m.runs[:len(m.runs)-1]
		} else {
			m.runs[r] = run
			r++
		}
		if stopped || hi == nil {
			return
		}
		i = 0
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
