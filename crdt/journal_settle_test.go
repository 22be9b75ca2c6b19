package crdt_test

import (
	"bytes"
	"errors"
	"testing"

	"aura/crdt"
	"aura/crdt/storetest"
)

// crashingKV fails the commit numbered failAt (the process dies there).
type crashingKV struct {
	*crdt.MemKV
	commits, failAt int
}

func (k *crashingKV) NewBatch() crdt.KVBatch { return &crashingBatch{k.MemKV.NewBatch(), k} }

type crashingBatch struct {
	crdt.KVBatch
	kv *crashingKV
}

func (b *crashingBatch) Commit(sync bool) error {
	b.kv.commits++
	if b.kv.commits == b.kv.failAt {
		return errors.New("crash")
	}
	return b.KVBatch.Commit(sync)
}

// TestOpenSettlesEquivocationACrashCutOff: Ingest stores a conflicting
// fact as evidence, then moves the lower id into the slot in a second
// batch. A crash between the two must not leave the higher id in the
// slot for good (later deliveries are duplicates): Open finishes the swap.
func TestOpenSettlesEquivocationACrashCutOff(t *testing.T) {
	account := crdt.AccountID{9}
	a := storetest.NewAuthor(account, "equivocator")
	fs := a.Chain(t, 3)
	hi, lo := fs[1], a.At(t, 2, 2, "other-2")
	if hid, lid := hi.ID(), lo.ID(); bytes.Compare(lid[:], hid[:]) > 0 {
		hi, lo = lo, hi
	}
	kv := &crashingKV{MemKV: crdt.NewMemKV()}
	j, err := crdt.OpenJournal(kv, account)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := j.Ingest([]*crdt.Fact{fs[0], hi, fs[2]}, nil); err != nil {
		t.Fatal(err)
	}
	kv.failAt = kv.commits + 2 // the ingest commits, the swap does not
	if _, err := j.Ingest([]*crdt.Fact{lo}, nil); err == nil {
		t.Fatal("the swap's commit did not fail")
	}
	j2, err := crdt.OpenJournal(kv.MemKV, account)
	if err != nil {
		t.Fatal(err)
	}
	got, err := j2.BySeq(a.ID, 2)
	if err != nil {
		t.Fatal(err)
	}
	if got.ID() != lo.ID() {
		t.Fatal("after the restart the slot still holds the higher id")
	}
	if res, err := j2.Ingest([]*crdt.Fact{hi, lo}, nil); err != nil || res.Duplicates != 2 {
		t.Fatalf("re-delivery: %+v, %v", res, err)
	}
	if vv := j2.VersionVector(); vv[a.ID] != 3 {
		t.Fatalf("chain lost its tail: %v", vv)
	}
}
