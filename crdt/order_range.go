package crdt

import "container/heap"

// rangeCausalChunk is how many facts of one author RangeCausal reads at a
// time: memory stays at authors × chunk facts whatever the journal holds.
const rangeCausalChunk = 1024

// RangeCausal calls fn with the chain facts of s above after and up to
// upTo (for every author a with upTo[a] > after[a]: seqs after[a]+1 …
// upTo[a]) in CausalLess order, merging the authors' chains a chunk at a
// time. A fold in this order meets every fact after the facts its author
// had seen (a device's DeviceAdded before its writes, a grant before its
// use), so the state parks almost nothing; folded author by author, the
// facts of every author sorted before the admin were parked and re-checked
// at each guard change, which made the fold of a large journal quadratic.
// The state is the same either way (the fold is order-independent); only
// its cost differs. Errors are the store's or fn's.
func RangeCausal(s Store, after, upTo VersionVector, fn func(*Fact) error) error {
	h := &cursorHeap{}
	for _, a := range upTo.Authors() {
		if upTo[a] <= after[a] {
			continue
		}
		c := &cursor{author: a, next: after[a] + 1, end: upTo[a]}
		if err := c.fill(s); err != nil {
			return err
		}
		if len(c.buf) > 0 {
			h.cs = append(h.cs, c)
		}
	}
	heap.Init(h)
	for h.Len() > 0 {
		c := h.cs[0]
		f := c.buf[c.i]
		c.buf[c.i] = nil
		c.i++
		if err := fn(f); err != nil {
			return err
		}
		if c.i == len(c.buf) {
			if err := c.fill(s); err != nil {
				return err
			}
		}
		if c.i == len(c.buf) {
			heap.Pop(h)
		} else {
			heap.Fix(h, 0)
		}
	}
	return nil
}

// cursor reads one author's chain range a chunk at a time.
type cursor struct {
	author    DeviceID
	next, end uint64 // seqs still to read: next … end
	buf       []*Fact
	i         int
}

func (c *cursor) fill(s Store) error {
	c.buf, c.i = c.buf[:0], 0
	if c.next > c.end {
		return nil
	}
	to := min(c.end, c.next+rangeCausalChunk-1)
	if err := s.Range(c.author, c.next, to, func(f *Fact) error {
		c.buf = append(c.buf, f)
		return nil
	}); err != nil {
		return err
	}
	c.next = to + 1
	return nil
}

type cursorHeap struct{ cs []*cursor }

func (h *cursorHeap) Len() int { return len(h.cs) }
func (h *cursorHeap) Less(i, j int) bool {
	return CausalLess(h.cs[i].buf[h.cs[i].i], h.cs[j].buf[h.cs[j].i])
}
func (h *cursorHeap) Swap(i, j int) { h.cs[i], h.cs[j] = h.cs[j], h.cs[i] }
func (h *cursorHeap) Push(x any)    { h.cs = append(h.cs, x.(*cursor)) }
func (h *cursorHeap) Pop() any {
	c := h.cs[len(h.cs)-1]
	h.cs = h.cs[:len(h.cs)-1]
	return c
}
