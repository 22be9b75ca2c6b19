// Package pebblestore is the Pebble implementation of the journal store
// (DESIGN §2, §3). The journal logic itself is crdt.Journal, written once
// over crdt.KV; this package only adapts a *pebble.DB to crdt.KV, so the
// Pebble store and crdt's MemStore behave the same and one conformance suite
// (crdt/storetest) runs against both.
//
// Keyspace. Every journal key starts with the byte crdt.JournalPrefix ('j');
// the layout under it is documented at crdt.JournalPrefix. The node keeps its
// blob blocks in the same Pebble under other first bytes (Store.DB exposes
// the database); nothing else may write keys starting with 'j'.
//
// Durability. Each Ingest and Prune commits one batch with pebble.Sync, so
// an acknowledged fact survives a crash (a test SIGKILLs a writer and checks
// this). Per-author heads and the counters are written in the same batch,
// and reopening restores them, pending facts and evidence included.
//
// Space. Prune deletes by range and then compacts the journal's key range,
// so the directory shrinks. Bloom filters (10 bits per key) keep the point
// lookups of duplicate checks cheap.
//
// The package imports crdt and Pebble only; crdt must never import it.
package pebblestore
