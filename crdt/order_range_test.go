package crdt

import (
	"fmt"
	"testing"
)

// RangeCausal yields exactly the chain facts in the ranges asked, each
// once, in CausalLess order, across chunk boundaries.
func TestRangeCausalMergesChainsInCausalOrder(t *testing.T) {
	s := newScenario(t, 3)
	j := NewMemStore(s.account)
	if _, err := j.Ingest(s.facts, nil); err != nil {
		t.Fatal(err)
	}
	var all []*Fact
	all = append(all, s.facts...)
	// Interleaved writes of the three writers, more than a chunk each.
	for i := range 3*rangeCausalChunk + 17 {
		w := s.writers[i%len(s.writers)]
		f, err := w.Write(s.epoch, &Put{Key: fmt.Sprintf("k%d", i%50), Value: []byte{byte(i)}})
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, f)
		if _, err := j.Ingest([]*Fact{f}, nil); err != nil {
			t.Fatal(err)
		}
	}
	upTo := j.VersionVector()
	after := VersionVector{}
	// Skip the first 5 facts of one author: they are not yielded.
	skip := upTo.Authors()[0]
	after[skip] = 5
	var got []*Fact
	if err := RangeCausal(j, after, upTo, func(f *Fact) error { got = append(got, f); return nil }); err != nil {
		t.Fatal(err)
	}
	var want []*Fact
	for _, f := range all {
		if !(f.Author == skip && f.Seq <= 5) {
			want = append(want, f)
		}
	}
	SortCausal(want)
	if len(got) != len(want) {
		t.Fatalf("yielded %d facts, want %d", len(got), len(want))
	}
	for i := range got {
		if got[i].ID() != want[i].ID() {
			t.Fatalf("fact %d: %s/%d, want %s/%d", i, got[i].Author.Short(), got[i].Seq, want[i].Author.Short(), want[i].Seq)
		}
	}
}
