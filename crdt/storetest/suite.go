package storetest

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"

	"aura/crdt"
)

// Harness builds the stores under test.
type Harness struct {
	// Open returns a new, empty store. A zero account means: adopt the
	// account of the first fact ingested.
	Open func(tb testing.TB, account crdt.AccountID) crdt.Store
	// Reopen closes s and opens the same store again (nil: not supported,
	// the reopen tests are skipped).
	Reopen func(tb testing.TB, s crdt.Store) crdt.Store
}

// Run runs the conformance suite.
func Run(t *testing.T, h Harness) {
	tests := []struct {
		name string
		fn   func(*testing.T, Harness)
	}{
		{"IngestDedup", testIngestDedup},
		{"VersionVector", testVersionVector},
		{"GapsPending", testGapsPending},
		{"MergeOrder", testMergeOrder},
		{"Equivocation", testEquivocation},
		{"BadSignature", testBadSignature},
		{"WrongAccount", testWrongAccount},
		{"AdoptAccount", testAdoptAccount},
		{"Admit", testAdmit},
		{"RangeBySeq", testRangeBySeq},
		{"Prune", testPrune},
		{"PruneMost", testPruneMost},
		{"Rebase", testRebase},
		{"RebaseMost", testRebaseMost},
		{"Reopen", testReopen},
		{"Concurrent", testConcurrent},
		{"Closed", testClosed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, h) })
	}
}

var account = crdt.AccountID{0xa, 0xc, 0xc}

func ingest(tb testing.TB, s crdt.Store, fs []*crdt.Fact) crdt.IngestResult {
	tb.Helper()
	res, err := s.Ingest(fs, nil)
	if err != nil {
		tb.Fatalf("ingest: %v", err)
	}
	for _, r := range res.Rejected {
		tb.Fatalf("ingest rejected %s seq %d: %v", r.Author.Short(), r.Seq, r.Err)
	}
	return res
}

func mustHave(tb testing.TB, s crdt.Store, want bool, fs ...*crdt.Fact) {
	tb.Helper()
	for _, f := range fs {
		ok, err := s.Has(f.ID())
		if err != nil {
			tb.Fatalf("has: %v", err)
		}
		if ok != want {
			tb.Fatalf("has %s seq %d = %v, want %v", f.Author.Short(), f.Seq, ok, want)
		}
	}
}

func allIDs(tb testing.TB, s crdt.Store) []crdt.FactID {
	tb.Helper()
	var ids []crdt.FactID
	if err := s.All(func(f *crdt.Fact) error { ids = append(ids, f.ID()); return nil }); err != nil {
		tb.Fatalf("all: %v", err)
	}
	slices.SortFunc(ids, func(a, b crdt.FactID) int { return bytes.Compare(a[:], b[:]) })
	return ids
}

func prefixHash(tb testing.TB, s crdt.Store, v crdt.VersionVector) crdt.Hash {
	tb.Helper()
	h, err := s.PrefixHash(v)
	if err != nil {
		tb.Fatalf("prefix hash of %v: %v", v, err)
	}
	return h
}

// chainOf computes h(author, len(fs)) for the facts 1..n of one author.
func chainOf(fs []*crdt.Fact) crdt.Hash {
	h := crdt.ChainGenesis(fs[0].Author)
	for _, f := range fs {
		h = crdt.ChainNext(h, f.ID())
	}
	return h
}

func wantVV(tb testing.TB, s crdt.Store, want crdt.VersionVector) {
	tb.Helper()
	if got := s.VersionVector(); !got.Equal(want) {
		tb.Fatalf("version vector %v, want %v", got, want)
	}
}

func testIngestDedup(t *testing.T, h Harness) {
	s := h.Open(t, account)
	defer s.Close()
	a := NewAuthor(account, "a")
	fs := a.Chain(t, 5)
	res := ingest(t, s, []*crdt.Fact{fs[0], fs[1], fs[1], fs[2], Decoded(t, fs[2])})
	if len(res.Added) != 3 || res.Duplicates != 2 || res.Pending != 0 {
		t.Fatalf("first ingest: added %d dup %d pending %d, want 3 2 0", len(res.Added), res.Duplicates, res.Pending)
	}
	res = ingest(t, s, fs)
	if len(res.Added) != 2 || res.Duplicates != 3 {
		t.Fatalf("second ingest: added %d dup %d, want 2 3", len(res.Added), res.Duplicates)
	}
	res = ingest(t, s, fs)
	if len(res.Added) != 0 || res.Duplicates != 5 {
		t.Fatalf("third ingest: added %d dup %d, want 0 5", len(res.Added), res.Duplicates)
	}
	mustHave(t, s, true, fs...)
	var size uint64
	for _, f := range fs {
		size += uint64(f.Size())
		g, err := s.Get(f.ID())
		if err != nil {
			t.Fatalf("get: %v", err)
		}
		if !bytes.Equal(g.Bytes(), f.Bytes()) || g.ID() != f.ID() {
			t.Fatalf("get returned another fact")
		}
	}
	if _, err := s.Get(crdt.FactID{1}); !errors.Is(err, crdt.ErrNotFound) {
		t.Fatalf("get of unknown id: %v, want ErrNotFound", err)
	}
	st := s.Stats()
	if st.Facts != 5 || st.Bytes != size || st.Pending != 0 || st.Equivocations != 0 {
		t.Fatalf("stats %+v, want 5 facts of %d bytes", st, size)
	}
	if len(allIDs(t, s)) != 5 {
		t.Fatalf("All lists %d facts, want 5", len(allIDs(t, s)))
	}
}

func testVersionVector(t *testing.T, h Harness) {
	s := h.Open(t, account)
	defer s.Close()
	a, b := NewAuthor(account, "a"), NewAuthor(account, "b")
	fa, fb := a.Chain(t, 3), b.Chain(t, 2)
	ingest(t, s, append(slices.Clone(fa), fb...))
	wantVV(t, s, crdt.VersionVector{a.ID: 3, b.ID: 2})
	for i := range fa {
		got, err := s.ChainHash(a.ID, uint64(i+1))
		if err != nil {
			t.Fatal(err)
		}
		if got != chainOf(fa[:i+1]) {
			t.Fatalf("chain hash of a at %d differs from ChainNext", i+1)
		}
	}
	if g, err := s.ChainHash(a.ID, 0); err != nil || g != crdt.ChainGenesis(a.ID) {
		t.Fatalf("chain hash at 0: %v %v", g, err)
	}
	if _, err := s.ChainHash(a.ID, 4); !errors.Is(err, crdt.ErrUnknownPrefix) {
		t.Fatalf("chain hash above the version vector: %v, want ErrUnknownPrefix", err)
	}
	v := crdt.VersionVector{a.ID: 2, b.ID: 2}
	want := crdt.PrefixHash(v, map[crdt.DeviceID]crdt.Hash{a.ID: chainOf(fa[:2]), b.ID: chainOf(fb)})
	if got := prefixHash(t, s, v); got != want {
		t.Fatalf("prefix hash differs from crdt.PrefixHash of the chain heads")
	}
	if _, err := s.PrefixHash(crdt.VersionVector{a.ID: 9}); !errors.Is(err, crdt.ErrUnknownPrefix) {
		t.Fatalf("prefix hash of an unheld vector: %v, want ErrUnknownPrefix", err)
	}
}

func testGapsPending(t *testing.T, h Harness) {
	s := h.Open(t, account)
	defer func() { s.Close() }()
	a := NewAuthor(account, "a")
	fs := a.Chain(t, 8)
	res := ingest(t, s, []*crdt.Fact{fs[0], fs[1], fs[3], fs[5], fs[6]})
	if len(res.Added) != 5 || res.Pending != 3 {
		t.Fatalf("added %d pending %d, want 5 and 3", len(res.Added), res.Pending)
	}
	wantVV(t, s, crdt.VersionVector{a.ID: 2})
	if st := s.Stats(); st.Pending != 3 || st.Facts != 5 {
		t.Fatalf("stats %+v, want 5 facts, 3 pending", st)
	}
	mustHave(t, s, true, fs[3], fs[5], fs[6])
	if _, err := s.BySeq(a.ID, 4); !errors.Is(err, crdt.ErrNotFound) {
		t.Fatalf("BySeq of a pending fact: %v, want ErrNotFound (not in the chain)", err)
	}
	if g, err := s.Get(fs[5].ID()); err != nil || g.ID() != fs[5].ID() {
		t.Fatalf("get pending fact: %v", err)
	}
	var seqs []uint64
	if err := s.Range(a.ID, 1, 8, func(f *crdt.Fact) error { seqs = append(seqs, f.Seq); return nil }); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(seqs, []uint64{1, 2}) {
		t.Fatalf("range yields %v, want the chain 1 2", seqs)
	}
	// Duplicates of pending facts are duplicates.
	if res := ingest(t, s, []*crdt.Fact{Decoded(t, fs[5])}); res.Duplicates != 1 || len(res.Added) != 0 {
		t.Fatalf("re-ingest of a pending fact: %+v", res)
	}
	if h.Reopen != nil {
		s = h.Reopen(t, s)
		wantVV(t, s, crdt.VersionVector{a.ID: 2})
	}
	// Filling seq 3 chains 3 and 4; 5 is still missing.
	res = ingest(t, s, []*crdt.Fact{fs[2]})
	if res.Pending != 0 || len(res.Added) != 1 {
		t.Fatalf("fill 3: %+v", res)
	}
	wantVV(t, s, crdt.VersionVector{a.ID: 4})
	if st := s.Stats(); st.Pending != 2 {
		t.Fatalf("pending %d after filling 3, want 2", st.Pending)
	}
	// One batch filling 5 and bringing 8: all chained.
	ingest(t, s, []*crdt.Fact{fs[7], fs[4]})
	wantVV(t, s, crdt.VersionVector{a.ID: 8})
	if st := s.Stats(); st.Pending != 0 || st.Facts != 8 {
		t.Fatalf("stats %+v, want 8 facts, none pending", st)
	}
	if got, _ := s.ChainHash(a.ID, 8); got != chainOf(fs) {
		t.Fatalf("chain hash after filling gaps differs")
	}
	seqs = nil
	if err := s.Range(a.ID, 1, 100, func(f *crdt.Fact) error { seqs = append(seqs, f.Seq); return nil }); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(seqs, []uint64{1, 2, 3, 4, 5, 6, 7, 8}) {
		t.Fatalf("range yields %v", seqs)
	}
}

func testMergeOrder(t *testing.T, h Harness) {
	var all []*crdt.Fact
	var authors []*Author
	for _, n := range []string{"a", "b", "c"} {
		a := NewAuthor(account, n)
		authors = append(authors, a)
		all = append(all, a.Chain(t, 12)...)
	}
	x := h.Open(t, account)
	defer x.Close()
	ingest(t, x, all)

	y := h.Open(t, account)
	defer y.Close()
	rng := rand.New(rand.NewPCG(1, 2))
	shuffled := slices.Clone(all)
	rng.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
	for len(shuffled) > 0 {
		n := min(1+rng.IntN(5), len(shuffled))
		batch := make([]*crdt.Fact, n)
		for i := range batch {
			batch[i] = Decoded(t, shuffled[i])
		}
		ingest(t, y, batch)
		shuffled = shuffled[n:]
	}
	vv := x.VersionVector()
	wantVV(t, y, vv)
	if prefixHash(t, x, vv) != prefixHash(t, y, vv) {
		t.Fatal("prefix hashes differ after ingesting the same facts in another order")
	}
	small := crdt.VersionVector{authors[0].ID: 3, authors[2].ID: 7}
	if prefixHash(t, x, small) != prefixHash(t, y, small) {
		t.Fatal("prefix hashes of a smaller vector differ")
	}
	for _, a := range authors {
		for seq := uint64(0); seq <= 12; seq++ {
			hx, err1 := x.ChainHash(a.ID, seq)
			hy, err2 := y.ChainHash(a.ID, seq)
			if err1 != nil || err2 != nil || hx != hy {
				t.Fatalf("chain hash of %s at %d: %v %v", a.ID.Short(), seq, err1, err2)
			}
		}
	}
	if !slices.Equal(allIDs(t, x), allIDs(t, y)) {
		t.Fatal("fact sets differ")
	}
}

func testEquivocation(t *testing.T, h Harness) {
	s := h.Open(t, account)
	defer func() { s.Close() }()
	a := NewAuthor(account, "a")
	fs := a.Chain(t, 6)
	evil2 := a.At(t, 2, 2, "evil-2")
	evil5 := a.At(t, 5, 5, "evil-5")
	evil6a, evil6b := a.At(t, 6, 6, "evil-6a"), a.At(t, 6, 6, "evil-6b")

	ingest(t, s, fs[:3])
	res := ingest(t, s, []*crdt.Fact{evil2})
	if len(res.Added) != 1 || res.Evidence != 1 {
		t.Fatalf("conflict at 2: added %d evidence %d, want 1 1", len(res.Added), res.Evidence)
	}
	// Against a pending fact: 5 held ahead of the gap at 4, then a conflict.
	ingest(t, s, []*crdt.Fact{fs[4]})
	if res := ingest(t, s, []*crdt.Fact{evil5}); res.Evidence != 1 || res.Pending != 0 {
		t.Fatalf("conflict with a pending fact: %+v", res)
	}
	// Within one batch, and across batches: at each (author, seq) the fact
	// with the lowest id holds the slot, so every replica that saw the
	// same facts keeps the same chain.
	res = ingest(t, s, []*crdt.Fact{evil6a, evil6b, fs[3]})
	if res.Evidence != 1 || len(res.Added) != 3 {
		t.Fatalf("conflict within a batch: %+v", res)
	}
	wantVV(t, s, crdt.VersionVector{a.ID: 6})
	if res := ingest(t, s, []*crdt.Fact{evil2, fs[5]}); res.Duplicates != 1 || res.Evidence != 1 {
		t.Fatalf("late honest fact at 6: %+v", res)
	}
	mustHave(t, s, true, append(slices.Clone(fs), evil2, evil5, evil6a, evil6b)...)
	lowest := func(c ...*crdt.Fact) *crdt.Fact {
		best := c[0]
		for _, f := range c[1:] {
			if id, bid := f.ID(), best.ID(); bytes.Compare(id[:], bid[:]) < 0 {
				best = f
			}
		}
		return best
	}
	kept := map[uint64]*crdt.Fact{1: fs[0], 2: lowest(fs[1], evil2), 3: fs[2], 4: fs[3], 5: lowest(fs[4], evil5), 6: lowest(fs[5], evil6a, evil6b)}

	check := func(s crdt.Store) {
		t.Helper()
		st := s.Stats()
		if st.Equivocations != 4 || st.Facts != 10 || st.Pending != 0 {
			t.Fatalf("stats %+v, want 10 facts, 4 equivocations", st)
		}
		for seq, want := range kept {
			g, err := s.BySeq(a.ID, seq)
			if err != nil || g.ID() != want.ID() {
				t.Fatalf("chain at %d does not hold the lowest id: %v", seq, err)
			}
		}
		ev, err := s.Evidence()
		if err != nil {
			t.Fatal(err)
		}
		if len(ev) != 4 {
			t.Fatalf("evidence %+v, want 4 records", ev)
		}
		conflicts := map[crdt.FactID]crdt.Equivocation{}
		for _, e := range ev {
			if e.Author != a.ID {
				t.Fatalf("evidence against %s", e.Author.Short())
			}
			conflicts[e.Conflict] = e
		}
		for _, f := range []*crdt.Fact{fs[1], fs[4], fs[5], evil2, evil5, evil6a, evil6b} {
			if f.ID() == kept[f.Seq].ID() {
				if _, ok := conflicts[f.ID()]; ok {
					t.Fatalf("the kept fact at %d is also listed as evidence", f.Seq)
				}
				continue
			}
			if _, ok := conflicts[f.ID()]; !ok {
				t.Fatalf("no evidence for conflicting fact at %d", f.Seq)
			}
			if g, err := s.Get(f.ID()); err != nil || g.ID() != f.ID() {
				t.Fatalf("get evidence fact: %v", err)
			}
		}
		want := chainOf([]*crdt.Fact{kept[1], kept[2], kept[3], kept[4], kept[5], kept[6]})
		if got, _ := s.ChainHash(a.ID, 6); got != want {
			t.Fatalf("chain does not follow the kept facts")
		}
	}
	check(s)
	if h.Reopen != nil {
		s = h.Reopen(t, s)
		check(s)
	}
}

func testBadSignature(t *testing.T, h Harness) {
	s := h.Open(t, account)
	defer s.Close()
	a := NewAuthor(account, "a")
	fs := a.Chain(t, 3)
	// Flip a signature byte on the wire: still canonical, bad signature.
	raw := bytes.Clone(fs[0].Bytes())
	raw[len(raw)-1] ^= 1
	forged, err := crdt.DecodeFact(raw)
	if err != nil {
		t.Fatalf("decode forged: %v", err)
	}
	// Change a field of a fact signed here after signing.
	moved := a.At(t, 2, 2, "x")
	moved.Seq = 3
	// Flip a signature byte in memory.
	flipped := a.At(t, 3, 3, "y")
	flipped.Sig = bytes.Clone(flipped.Sig)
	flipped.Sig[0] ^= 1
	res, err := s.Ingest([]*crdt.Fact{forged, moved, flipped, fs[0]}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Added) != 1 || len(res.Rejected) != 3 {
		t.Fatalf("added %d rejected %d, want 1 and 3", len(res.Added), len(res.Rejected))
	}
	for _, r := range res.Rejected {
		if !errors.Is(r.Err, crdt.ErrBadSignature) {
			t.Fatalf("rejection %v, want ErrBadSignature", r.Err)
		}
	}
	mustHave(t, s, false, forged, moved, flipped)
	if st := s.Stats(); st.Facts != 1 {
		t.Fatalf("stats %+v, want 1 fact", st)
	}
}

func testWrongAccount(t *testing.T, h Harness) {
	s := h.Open(t, account)
	defer s.Close()
	other := NewAuthor(crdt.AccountID{9}, "a")
	f := other.Next(t, "x")
	res, err := s.Ingest([]*crdt.Fact{f}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Rejected) != 1 || !errors.Is(res.Rejected[0].Err, crdt.ErrWrongAccount) || len(res.Added) != 0 {
		t.Fatalf("fact of another account: %+v", res)
	}
	mustHave(t, s, false, f)
	if s.Account() != account {
		t.Fatalf("account %s, want %s", s.Account(), account)
	}
}

func testAdoptAccount(t *testing.T, h Harness) {
	s := h.Open(t, crdt.AccountID{})
	defer func() { s.Close() }()
	if !s.Account().IsZero() {
		t.Fatalf("new store has account %s", s.Account())
	}
	mine := NewAuthor(account, "a")
	theirs := NewAuthor(crdt.AccountID{9}, "b")
	f1, f2 := mine.Next(t, "1"), theirs.Next(t, "2")
	res, err := s.Ingest([]*crdt.Fact{f1, f2}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Added) != 1 || len(res.Rejected) != 1 || !errors.Is(res.Rejected[0].Err, crdt.ErrWrongAccount) {
		t.Fatalf("adopting: %+v", res)
	}
	if s.Account() != account {
		t.Fatalf("adopted %s, want %s", s.Account(), account)
	}
	if h.Reopen != nil {
		s = h.Reopen(t, s)
		if s.Account() != account {
			t.Fatalf("after reopen account %s, want %s", s.Account(), account)
		}
	}
	res, _ = s.Ingest([]*crdt.Fact{theirs.Next(t, "3")}, nil)
	if len(res.Rejected) != 1 || !errors.Is(res.Rejected[0].Err, crdt.ErrWrongAccount) {
		t.Fatalf("fact of another account after adoption: %+v", res)
	}
}

var errNo = errors.New("no")

func testAdmit(t *testing.T, h Harness) {
	s := h.Open(t, account)
	defer s.Close()
	a, b := NewAuthor(account, "a"), NewAuthor(account, "b")
	fa, fb := a.Chain(t, 4), b.Chain(t, 4)
	b.Lamport = 10
	late := b.Next(t, "late")
	batch := []*crdt.Fact{late, fa[3], fb[2], fa[0], fb[0], fa[2], fb[1], fa[1], fb[3]}
	var calls []*crdt.Fact
	res, err := s.Ingest(batch, func(f *crdt.Fact) error {
		calls = append(calls, f)
		if f.ID() == fa[2].ID() {
			return errNo
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(calls) != len(batch) {
		t.Fatalf("admit called %d times, want %d", len(calls), len(batch))
	}
	for i := 1; i < len(calls); i++ {
		p, c := calls[i-1], calls[i]
		if p.Lamport > c.Lamport || (p.Lamport == c.Lamport && bytes.Compare(p.Author[:], c.Author[:]) > 0) {
			t.Fatalf("admit not in causal order at call %d", i)
		}
	}
	if len(res.Rejected) != 1 || !errors.Is(res.Rejected[0].Err, crdt.ErrNotAdmitted) || !errors.Is(res.Rejected[0].Err, errNo) {
		t.Fatalf("rejections %+v, want one wrapping ErrNotAdmitted and the admit error", res.Rejected)
	}
	if len(res.Added) != len(batch)-1 {
		t.Fatalf("added %d, want %d", len(res.Added), len(batch)-1)
	}
	for i, f := range res.Added {
		if f.ID() == fa[2].ID() {
			t.Fatal("refused fact reported as added")
		}
		if i > 0 && res.Added[i-1].Lamport > f.Lamport {
			t.Fatal("Added is not in admit order")
		}
	}
	mustHave(t, s, false, fa[2])
	wantVV(t, s, crdt.VersionVector{a.ID: 2, b.ID: 5})
	if res.Pending != 1 || s.Stats().Pending != 1 {
		t.Fatalf("pending %d / %d, want 1 (a's seq 4 waits for the refused 3)", res.Pending, s.Stats().Pending)
	}
}

func testRangeBySeq(t *testing.T, h Harness) {
	s := h.Open(t, account)
	defer s.Close()
	a := NewAuthor(account, "a")
	fs := a.Chain(t, 6)
	ingest(t, s, fs)
	var got []crdt.FactID
	if err := s.Range(a.ID, 2, 4, func(f *crdt.Fact) error { got = append(got, f.ID()); return nil }); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, IDs(fs[1:4])) {
		t.Fatalf("range 2..4 yields other facts")
	}
	n := 0
	err := s.Range(a.ID, 1, 6, func(*crdt.Fact) error {
		if n++; n == 2 {
			return errNo
		}
		return nil
	})
	if !errors.Is(err, errNo) || n != 2 {
		t.Fatalf("range did not stop at fn's error: %v after %d", err, n)
	}
	if err := s.Range(a.ID, 5, 2, func(*crdt.Fact) error { return errNo }); err != nil {
		t.Fatalf("empty range: %v", err)
	}
	if err := s.Range(NewAuthor(account, "nobody").ID, 1, 5, func(*crdt.Fact) error { return errNo }); err != nil {
		t.Fatalf("range of unknown author: %v", err)
	}
	for i, f := range fs {
		g, err := s.BySeq(a.ID, uint64(i+1))
		if err != nil || g.ID() != f.ID() {
			t.Fatalf("BySeq %d: %v", i+1, err)
		}
	}
	if _, err := s.BySeq(a.ID, 7); !errors.Is(err, crdt.ErrNotFound) {
		t.Fatalf("BySeq above the chain: %v, want ErrNotFound", err)
	}
}

func testPrune(t *testing.T, h Harness) {
	s := h.Open(t, account)
	defer func() { s.Close() }()
	ref := h.Open(t, account) // never pruned
	defer ref.Close()
	a, b := NewAuthor(account, "a"), NewAuthor(account, "b")
	fa, fb := a.Chain(t, 10), b.Chain(t, 10)
	evil3, evil8 := a.At(t, 3, 3, "evil3"), a.At(t, 8, 8, "evil8")
	pend := b.At(t, 12, 12, "pending")
	all := append(append(slices.Clone(fa), fb...), evil3, evil8, pend)
	ingest(t, s, all)
	ingest(t, ref, all)
	before := s.Stats()
	vv := s.VersionVector()
	v := crdt.VersionVector{a.ID: 5, b.ID: 3}
	hv, hvv := prefixHash(t, s, v), prefixHash(t, s, vv)
	ha5, _ := s.ChainHash(a.ID, 5)

	if _, _, err := s.Prune(crdt.VersionVector{a.ID: 11}); !errors.Is(err, crdt.ErrUnknownPrefix) {
		t.Fatalf("prune beyond the version vector: %v, want ErrUnknownPrefix", err)
	}
	var wantBytes uint64
	for _, f := range append(append(slices.Clone(fa[:5]), fb[:3]...), evil3) {
		wantBytes += uint64(f.Size())
	}
	n, freed, err := s.Prune(v)
	if err != nil {
		t.Fatal(err)
	}
	if n != 9 || freed != wantBytes {
		t.Fatalf("pruned %d facts of %d bytes, want 9 of %d", n, freed, wantBytes)
	}
	check := func(s crdt.Store) {
		t.Helper()
		mustHave(t, s, false, append(append(slices.Clone(fa[:5]), fb[:3]...), evil3)...)
		mustHave(t, s, true, append(append(slices.Clone(fa[5:]), fb[3:]...), evil8, pend)...)
		st := s.Stats()
		if st.Facts != before.Facts-9 || st.Bytes != before.Bytes-wantBytes || st.PrunedFacts != 9 ||
			st.PrunedBytes != wantBytes || st.Equivocations != 1 || st.Pending != 1 {
			t.Fatalf("stats after prune %+v (before %+v)", st, before)
		}
		if !s.PrunedTo().Equal(v) {
			t.Fatalf("PrunedTo %v, want %v", s.PrunedTo(), v)
		}
		wantVV(t, s, vv)
		if prefixHash(t, s, v) != hv || prefixHash(t, s, vv) != hvv {
			t.Fatal("prefix hashes changed by pruning")
		}
		if g, err := s.ChainHash(a.ID, 5); err != nil || g != ha5 {
			t.Fatalf("chain head at the pruned frontier: %v", err)
		}
		if _, err := s.ChainHash(a.ID, 4); !errors.Is(err, crdt.ErrPruned) {
			t.Fatalf("chain hash below the frontier: %v, want ErrPruned", err)
		}
		if _, err := s.BySeq(a.ID, 5); !errors.Is(err, crdt.ErrPruned) {
			t.Fatalf("BySeq at the frontier: %v, want ErrPruned", err)
		}
		if err := s.Range(a.ID, 1, 10, func(*crdt.Fact) error { return nil }); !errors.Is(err, crdt.ErrPruned) {
			t.Fatalf("range across the frontier: %v, want ErrPruned", err)
		}
		var got []crdt.FactID
		if err := s.Range(a.ID, 6, 10, func(f *crdt.Fact) error { got = append(got, f.ID()); return nil }); err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got, IDs(fa[5:])) {
			t.Fatal("facts above the frontier changed")
		}
		ev, err := s.Evidence()
		if err != nil || len(ev) != 1 || ev[0].Conflict != evil8.ID() {
			t.Fatalf("evidence after prune %+v %v, want the one at 8", ev, err)
		}
		if len(allIDs(t, s)) != int(before.Facts-9) {
			t.Fatal("All lists pruned facts")
		}
	}
	check(s)
	// Facts under the frontier come back as rejections, not as new facts.
	res, err := s.Ingest([]*crdt.Fact{Decoded(t, fa[0]), Decoded(t, fb[2]), Decoded(t, fa[7])}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Rejected) != 2 || res.Duplicates != 1 || len(res.Added) != 0 {
		t.Fatalf("re-ingest after prune: %+v", res)
	}
	for _, r := range res.Rejected {
		if !errors.Is(r.Err, crdt.ErrPruned) {
			t.Fatalf("rejection %v, want ErrPruned", r.Err)
		}
	}
	if h.Reopen != nil {
		s = h.Reopen(t, s)
		check(s)
	}
	// Pruning again to the same vector does nothing; the chain grows on.
	if n, _, err := s.Prune(v); err != nil || n != 0 {
		t.Fatalf("second prune: %d %v", n, err)
	}
	more := []*crdt.Fact{a.Next(t, "11"), b.At(t, 11, 11, "11")}
	ingest(t, s, more)
	ingest(t, ref, more)
	vv = ref.VersionVector()
	wantVV(t, s, vv)
	if prefixHash(t, s, vv) != prefixHash(t, ref, vv) {
		t.Fatal("chain after prune differs from an unpruned store")
	}
	if n, _, err := s.Prune(vv); err != nil || n != 6+1+9 {
		t.Fatalf("prune everything: %d %v", n, err)
	}
	if st := s.Stats(); st.Facts != 0 || st.Bytes != 0 || st.Equivocations != 0 {
		t.Fatalf("stats after pruning everything: %+v", st)
	}
	if prefixHash(t, s, vv) != prefixHash(t, ref, vv) {
		t.Fatal("prefix hash at the frontier lost")
	}
}

// testPruneMost prunes most of the journal, as a snapshot round does, so
// the journal drops its whole locator range and writes the kept facts'
// locators again: every kept fact (chain above the frontier, pending,
// evidence above the frontier, authors not pruned) must still be found by
// id, and the pruned ones must not.
func testPruneMost(t *testing.T, h Harness) {
	s := h.Open(t, account)
	defer func() { s.Close() }()
	a, b, c := NewAuthor(account, "a"), NewAuthor(account, "b"), NewAuthor(account, "c")
	fa, fb, fc := a.Chain(t, 40), b.Chain(t, 40), c.Chain(t, 3)
	evil3, evil38 := a.At(t, 3, 3, "evil3"), a.At(t, 38, 38, "evil38")
	pend := b.At(t, 43, 43, "pending")
	ingest(t, s, slices.Concat(fa, fb, fc, []*crdt.Fact{evil3, evil38, pend}))
	before := s.Stats()
	pruned := slices.Concat(fa[:36], fb[:36], []*crdt.Fact{evil3})
	kept := slices.Concat(fa[36:], fb[36:], fc, []*crdt.Fact{evil38, pend})
	var wantBytes uint64
	for _, f := range pruned {
		wantBytes += uint64(f.Size())
	}
	v := crdt.VersionVector{a.ID: 36, b.ID: 36}
	n, freed, err := s.Prune(v)
	if err != nil {
		t.Fatal(err)
	}
	if n != uint64(len(pruned)) || freed != wantBytes {
		t.Fatalf("pruned %d facts of %d bytes, want %d of %d", n, freed, len(pruned), wantBytes)
	}
	check := func(s crdt.Store) {
		t.Helper()
		mustHave(t, s, false, pruned...)
		mustHave(t, s, true, kept...)
		for _, f := range kept {
			if g, err := s.Get(f.ID()); err != nil || g.ID() != f.ID() {
				t.Fatalf("get kept fact %s: %v", f.ID(), err)
			}
		}
		st := s.Stats()
		if st.Facts != uint64(len(kept)) || st.Bytes != before.Bytes-wantBytes || st.PrunedFacts != uint64(len(pruned)) ||
			st.Equivocations != 1 || st.Pending != 1 {
			t.Fatalf("stats after prune %+v (before %+v)", st, before)
		}
	}
	check(s)
	if h.Reopen != nil {
		s = h.Reopen(t, s)
		check(s)
	}
	// Kept facts are duplicates; the gap below the pending fact fills.
	res, err := s.Ingest([]*crdt.Fact{Decoded(t, fa[37]), Decoded(t, fc[0]), Decoded(t, pend)}, nil)
	if err != nil || res.Duplicates != 3 || len(res.Added) != 0 {
		t.Fatalf("re-ingest kept facts: %+v %v", res, err)
	}
	ingest(t, s, []*crdt.Fact{b.At(t, 41, 41, "41"), b.At(t, 42, 42, "42")})
	if got := s.VersionVector()[b.ID]; got != 43 {
		t.Fatalf("b at %d after filling the gap, want 43", got)
	}
	if g, err := s.Get(pend.ID()); err != nil || g.ID() != pend.ID() {
		t.Fatalf("get the chained pending fact: %v", err)
	}
}

func testReopen(t *testing.T, h Harness) {
	if h.Reopen == nil {
		t.Skip("store cannot be reopened")
	}
	s := h.Open(t, account)
	a, b := NewAuthor(account, "a"), NewAuthor(account, "b")
	fa, fb := a.Chain(t, 6), b.Chain(t, 4)
	ingest(t, s, append(append(slices.Clone(fa[:4]), fb[0], fb[2], fb[3]), a.At(t, 2, 2, "evil")))
	if _, _, err := s.Prune(crdt.VersionVector{a.ID: 1}); err != nil {
		t.Fatal(err)
	}
	vv, st, ids := s.VersionVector(), s.Stats(), allIDs(t, s)
	ph := prefixHash(t, s, vv)
	ev, _ := s.Evidence()
	s = h.Reopen(t, s)
	defer s.Close()
	wantVV(t, s, vv)
	if s.Stats() != st || !s.PrunedTo().Equal(crdt.VersionVector{a.ID: 1}) || s.Account() != account {
		t.Fatalf("after reopen stats %+v pruned %v account %s; before %+v", s.Stats(), s.PrunedTo(), s.Account(), st)
	}
	if prefixHash(t, s, vv) != ph || !slices.Equal(allIDs(t, s), ids) {
		t.Fatal("content changed by reopening")
	}
	if ev2, _ := s.Evidence(); !slices.Equal(ev, ev2) {
		t.Fatal("evidence changed by reopening")
	}
	// Pending facts of b are still chained by the missing seq after reopen.
	ingest(t, s, []*crdt.Fact{fb[1], fa[4], fa[5]})
	wantVV(t, s, crdt.VersionVector{a.ID: 6, b.ID: 4})
	if s.Stats().Pending != 0 {
		t.Fatalf("pending %d, want 0", s.Stats().Pending)
	}
}

func testClosed(t *testing.T, h Harness) {
	s := h.Open(t, account)
	a := NewAuthor(account, "a")
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Ingest([]*crdt.Fact{a.Next(t, "x")}, nil); !errors.Is(err, crdt.ErrClosed) {
		t.Fatalf("ingest after close: %v, want ErrClosed", err)
	}
	if _, err := s.Has(crdt.FactID{}); !errors.Is(err, crdt.ErrClosed) {
		t.Fatalf("has after close: %v, want ErrClosed", err)
	}
}

// Several writers ingest overlapping batches while a reader reads: the
// result is the same as one sequential ingest.
func testConcurrent(t *testing.T, h Harness) {
	var all []*crdt.Fact
	for _, n := range []string{"a", "b", "c"} {
		all = append(all, NewAuthor(account, n).Chain(t, 30)...)
	}
	ref := h.Open(t, account)
	defer ref.Close()
	ingest(t, ref, all)
	s := h.Open(t, account)
	defer s.Close()
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for w := range 4 {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(w), 7))
			order := slices.Clone(all)
			rng.Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
			for len(order) > 0 {
				n := min(1+rng.IntN(10), len(order))
				batch := make([]*crdt.Fact, n)
				for i := range batch {
					g, err := crdt.DecodeFact(order[i].Bytes())
					if err != nil {
						errs <- err
						return
					}
					batch[i] = g
				}
				res, err := s.Ingest(batch, nil)
				if err == nil && len(res.Rejected) > 0 {
					err = res.Rejected[0].Err
				}
				if err != nil {
					errs <- err
					return
				}
				order = order[n:]
			}
		})
	}
	stop := make(chan struct{})
	var rg sync.WaitGroup
	rg.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			v := s.VersionVector()
			if _, err := s.PrefixHash(v); err != nil {
				errs <- err
				return
			}
			for a, n := range v {
				if err := s.Range(a, 1, n, func(*crdt.Fact) error { return nil }); err != nil {
					errs <- err
					return
				}
			}
			_ = s.Stats()
		}
	})
	wg.Wait()
	close(stop)
	rg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	vv := ref.VersionVector()
	wantVV(t, s, vv)
	if prefixHash(t, s, vv) != prefixHash(t, ref, vv) {
		t.Fatal("concurrent ingest gives another prefix hash")
	}
	if s.Stats() != ref.Stats() {
		t.Fatalf("stats %+v, want %+v", s.Stats(), ref.Stats())
	}
}

// Rebase on a snapshot: prune where the store holds the snapshot's prefix,
// jump the chain head where it holds less, and chain the pending facts
// that follow.
func testRebase(t *testing.T, h Harness) {
	a, b, c := NewAuthor(account, "a"), NewAuthor(account, "b"), NewAuthor(account, "c")
	fa, fb, fc := a.Chain(t, 10), b.Chain(t, 8), c.Chain(t, 4)
	ref := h.Open(t, account) // holds everything: the snapshot's source
	defer ref.Close()
	ingest(t, ref, append(append(slices.Clone(fa), fb...), fc...))
	v := crdt.VersionVector{a.ID: 5, b.ID: 6, c.ID: 2}
	heads := chainHeads(t, ref, v)

	s := h.Open(t, account)
	defer func() { s.Close() }()
	// a holds past v; b holds 1..3 and 7, 8 pending; c holds 4 pending.
	ingest(t, s, append(append(slices.Clone(fa), fb[0], fb[1], fb[2], fb[6], fb[7]), fc[3]))
	// A snapshot whose head differs from the held chain (an equivocator
	// whose other fact the snapshot signed) decides: the prefix is taken
	// as given and the facts above are chained on its head.
	other := h.Open(t, account)
	ingest(t, other, append(append(slices.Clone(fa), fb[0], fb[1], fb[2], fb[6], fb[7]), fc[3]))
	bad := map[crdt.DeviceID]crdt.Hash{a.ID: {1}, b.ID: heads[b.ID], c.ID: heads[c.ID]}
	if err := other.Rebase(v, bad); err != nil {
		t.Fatalf("rebase on a snapshot whose head differs from the held chain: %v", err)
	}
	if got, _ := other.ChainHash(a.ID, 5); got != bad[a.ID] {
		t.Fatal("the chain does not rest on the snapshot's head")
	}
	want := bad[a.ID]
	for _, f := range fa[5:] {
		want = crdt.ChainNext(want, f.ID())
	}
	if got, _ := other.ChainHash(a.ID, 10); got != want || other.VersionVector()[a.ID] != 10 {
		t.Fatal("the facts above the frontier were not chained on the snapshot's head")
	}
	other.Close()
	if err := s.Rebase(v, heads); err != nil {
		t.Fatal(err)
	}
	check := func(s crdt.Store) {
		t.Helper()
		wantVV(t, s, crdt.VersionVector{a.ID: 10, b.ID: 8, c.ID: 2})
		if !s.PrunedTo().Equal(v) {
			t.Fatalf("PrunedTo %v, want %v", s.PrunedTo(), v)
		}
		mustHave(t, s, false, append(append(slices.Clone(fa[:5]), fb[:3]...), fc[:2]...)...)
		mustHave(t, s, true, append(append(slices.Clone(fa[5:]), fb[6:]...), fc[3])...)
		if st := s.Stats(); st.Facts != 5+2+1 || st.Pending != 1 {
			t.Fatalf("stats after rebase %+v, want 8 facts, 1 pending", st)
		}
		vv := crdt.VersionVector{a.ID: 10, b.ID: 8, c.ID: 2}
		if prefixHash(t, s, vv) != prefixHash(t, ref, vv) || prefixHash(t, s, v) != prefixHash(t, ref, v) {
			t.Fatal("prefix hashes after rebase differ from the snapshot source")
		}
		if _, err := s.BySeq(b.ID, 6); !errors.Is(err, crdt.ErrPruned) {
			t.Fatalf("BySeq at the snapshot frontier: %v, want ErrPruned", err)
		}
	}
	check(s)
	if err := s.Rebase(v, heads); err != nil {
		t.Fatalf("rebase again: %v", err)
	}
	check(s)
	if h.Reopen != nil {
		s = h.Reopen(t, s)
		check(s)
	}
	// c's missing 3 arrives: 3 and the pending 4 chain on the jumped head.
	ingest(t, s, []*crdt.Fact{Decoded(t, fc[2])})
	vv := ref.VersionVector()
	wantVV(t, s, vv)
	if prefixHash(t, s, vv) != prefixHash(t, ref, vv) {
		t.Fatal("chain after rebase differs from the snapshot source")
	}
	if res, _ := s.Ingest([]*crdt.Fact{Decoded(t, fb[4])}, nil); len(res.Rejected) != 1 || !errors.Is(res.Rejected[0].Err, crdt.ErrPruned) {
		t.Fatalf("fact under the snapshot after rebase: %+v, want ErrPruned", res)
	}
}

// testRebaseMost rebases a journal that held most of an author's chain
// below the snapshot's frontier but not all of it (a device offline across
// a round): it drops more than it keeps, so its locators are rewritten.
func testRebaseMost(t *testing.T, h Harness) {
	a, b := NewAuthor(account, "a"), NewAuthor(account, "b")
	fa, fb := a.Chain(t, 4), b.Chain(t, 30)
	evil10 := b.At(t, 10, 10, "evil10")
	ref := h.Open(t, account)
	defer ref.Close()
	ingest(t, ref, slices.Concat(fa, fb))
	v := crdt.VersionVector{a.ID: 1, b.ID: 26}
	heads := chainHeads(t, ref, v)
	s := h.Open(t, account)
	defer func() { s.Close() }()
	// b: 1..25 held, 28 pending, evidence at 10; 26 and 27 missing.
	ingest(t, s, slices.Concat(fa, fb[:25], []*crdt.Fact{fb[27], evil10}))
	if err := s.Rebase(v, heads); err != nil {
		t.Fatal(err)
	}
	check := func(s crdt.Store) {
		t.Helper()
		mustHave(t, s, false, slices.Concat(fa[:1], fb[:25], []*crdt.Fact{evil10})...)
		mustHave(t, s, true, fa[1], fa[2], fa[3], fb[27])
		if g, err := s.Get(fb[27].ID()); err != nil || g.ID() != fb[27].ID() {
			t.Fatalf("get the pending fact: %v", err)
		}
		if st := s.Stats(); st.Facts != 4 || st.Pending != 1 || st.Equivocations != 0 {
			t.Fatalf("stats after rebase %+v, want 4 facts, 1 pending", st)
		}
		wantVV(t, s, crdt.VersionVector{a.ID: 4, b.ID: 26})
	}
	check(s)
	if h.Reopen != nil {
		s = h.Reopen(t, s)
		check(s)
	}
	ingest(t, s, []*crdt.Fact{Decoded(t, fb[26])})
	vv := crdt.VersionVector{a.ID: 4, b.ID: 28}
	wantVV(t, s, vv)
	if prefixHash(t, s, vv) != prefixHash(t, ref, vv) {
		t.Fatal("chain after rebase differs from the snapshot source")
	}
	if res, err := s.Ingest([]*crdt.Fact{Decoded(t, fb[27]), Decoded(t, fa[3])}, nil); err != nil || res.Duplicates != 2 {
		t.Fatalf("kept facts are not duplicates after rebase: %+v %v", res, err)
	}
}

// chainHeads is what a snapshot of ref at v records: each author's chain
// hash at v.
func chainHeads(tb testing.TB, ref crdt.Store, v crdt.VersionVector) map[crdt.DeviceID]crdt.Hash {
	tb.Helper()
	heads := map[crdt.DeviceID]crdt.Hash{}
	for id, seq := range v {
		hh, err := ref.ChainHash(id, seq)
		if err != nil {
			tb.Fatal(err)
		}
		heads[id] = hh
	}
	return heads
}
