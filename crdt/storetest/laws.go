package storetest

import (
	"bytes"
	"fmt"
	"slices"
	"testing"

	"aura/crdt"

	"pgregory.net/rapid"
)

// lawPool is the universe the merge laws draw journals from: three honest
// authors and one that equivocates at seqs 2 and 3.
type lawPool struct {
	facts  []*crdt.Fact
	honest []crdt.DeviceID
}

func newLawPool(tb testing.TB) *lawPool {
	p := &lawPool{}
	for i := range 3 {
		a := NewAuthor(account, fmt.Sprintf("honest-%d", i))
		p.honest = append(p.honest, a.ID)
		p.facts = append(p.facts, a.Chain(tb, 6)...)
	}
	e := NewAuthor(account, "equivocator")
	p.facts = append(p.facts, e.Chain(tb, 4)...)
	p.facts = append(p.facts, e.At(tb, 2, 2, "other-2"), e.At(tb, 3, 3, "other-3"))
	return p
}

// MergeLaws checks with rapid that merging journals (ingesting every fact
// of one into another, in any order and batching) is commutative,
// associative and idempotent: the merged stores hold the same fact set and
// version vector, and the same prefix hash over every author, the
// equivocator's included (the lowest id holds each slot, whatever arrived
// first). open returns a new empty store of the account the
// facts belong to.
func MergeLaws(t *testing.T, open func() crdt.Store) {
	pool := newLawPool(t)
	rapid.Check(t, func(rt *rapid.T) {
		var opened []crdt.Store
		defer func() {
			for _, s := range opened {
				s.Close()
			}
		}()
		fresh := func() crdt.Store {
			s := open()
			opened = append(opened, s)
			return s
		}
		feed := func(s crdt.Store, facts []*crdt.Fact, label string) {
			facts = rapid.Permutation(facts).Draw(rt, label+"-order")
			for len(facts) > 0 {
				n := min(rapid.IntRange(1, 8).Draw(rt, label+"-batch"), len(facts))
				batch := slices.Clone(facts[:n])
				if rapid.Bool().Draw(rt, label+"-decode") { // as received: not verified yet
					for i, f := range batch {
						g, err := crdt.DecodeFact(f.Bytes())
						if err != nil {
							rt.Fatalf("decode: %v", err)
						}
						batch[i] = g
					}
				}
				if rapid.Bool().Draw(rt, label+"-dup") { // with a duplicate inside
					batch = append(batch, batch[0])
				}
				res, err := s.Ingest(batch, nil)
				if err != nil || len(res.Rejected) > 0 {
					rt.Fatalf("ingest: %v %+v", err, res.Rejected)
				}
				facts = facts[n:]
			}
		}
		journal := func(name string) crdt.Store {
			picks := rapid.SliceOfDistinct(rapid.IntRange(0, len(pool.facts)-1), rapid.ID[int]).Draw(rt, name)
			facts := make([]*crdt.Fact, len(picks))
			for i, k := range picks {
				facts[i] = pool.facts[k]
			}
			s := fresh()
			feed(s, facts, name)
			return s
		}
		merge := func(label string, xs ...crdt.Store) crdt.Store {
			s := fresh()
			for _, x := range xs {
				feed(s, contents(rt, x), label)
			}
			return s
		}
		a, b, c := journal("A"), journal("B"), journal("C")
		same(rt, pool, "A∪B = B∪A", merge("ab", a, b), merge("ba", b, a))
		same(rt, pool, "(A∪B)∪C = A∪(B∪C)", merge("ab-c", merge("ab", a, b), c), merge("a-bc", a, merge("bc", b, c)))
		same(rt, pool, "A∪A = A", merge("aa", a, a), a)
		// Ingesting a store's own facts into it adds nothing.
		before := a.Stats()
		feed(a, contents(rt, a), "self")
		if a.Stats() != before {
			rt.Fatalf("re-ingesting its own facts changed the store: %+v → %+v", before, a.Stats())
		}
	})
}

func contents(rt *rapid.T, s crdt.Store) []*crdt.Fact {
	var out []*crdt.Fact
	if err := s.All(func(f *crdt.Fact) error { out = append(out, f); return nil }); err != nil {
		rt.Fatalf("all: %v", err)
	}
	return out
}

func same(rt *rapid.T, pool *lawPool, law string, x, y crdt.Store) {
	ids := func(s crdt.Store) []crdt.FactID {
		var out []crdt.FactID
		for _, f := range contents(rt, s) {
			out = append(out, f.ID())
		}
		slices.SortFunc(out, func(a, b crdt.FactID) int { return bytes.Compare(a[:], b[:]) })
		return out
	}
	if !slices.Equal(ids(x), ids(y)) {
		rt.Fatalf("%s: fact sets differ", law)
	}
	vx, vy := x.VersionVector(), y.VersionVector()
	if !vx.Equal(vy) {
		rt.Fatalf("%s: version vectors %v and %v", law, vx, vy)
	}
	sx, sy := x.Stats(), y.Stats()
	if sx.Facts != sy.Facts || sx.Bytes != sy.Bytes || sx.Pending != sy.Pending || sx.Equivocations != sy.Equivocations {
		rt.Fatalf("%s: stats %+v and %+v", law, sx, sy)
	}
	hx, err1 := x.PrefixHash(vx)
	hy, err2 := y.PrefixHash(vx)
	if err1 != nil || err2 != nil || hx != hy {
		rt.Fatalf("%s: prefix hashes of %v differ (%v %v)", law, vx, err1, err2)
	}
}
