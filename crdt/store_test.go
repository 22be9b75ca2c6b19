package crdt_test

import (
	"testing"

	"aura/crdt"
	"aura/crdt/storetest"
)

func memHarness() storetest.Harness {
	kvs := map[crdt.Store]*crdt.MemKV{}
	return storetest.Harness{
		Open: func(tb testing.TB, account crdt.AccountID) crdt.Store {
			kv := crdt.NewMemKV()
			j, err := crdt.OpenJournal(kv, account)
			if err != nil {
				tb.Fatal(err)
			}
			kvs[j] = kv
			return j
		},
		Reopen: func(tb testing.TB, s crdt.Store) crdt.Store {
			kv := kvs[s]
			if err := s.Close(); err != nil {
				tb.Fatal(err)
			}
			j, err := crdt.OpenJournal(kv, crdt.AccountID{})
			if err != nil {
				tb.Fatal(err)
			}
			kvs[j] = kv
			return j
		},
	}
}

func TestMemStoreConformance(t *testing.T) { storetest.Run(t, memHarness()) }

func TestMemStoreMergeLaws(t *testing.T) {
	storetest.MergeLaws(t, func() crdt.Store { return crdt.NewMemStore(crdt.AccountID{}) })
}
