// Package crdt owns the account's journal: the signed, content-addressed fact
// envelope, its canonical CBOR encoding, the journal lattice (a grow-only set
// of facts with per-author sequence numbers, version vectors and hash chains),
// the Store interface with an in-memory implementation, the reducer that folds
// facts into the account state (a join-semilattice) and the capability guards.
//
// Invariants:
//   - One fact has exactly one encoding and therefore one CID: DecodeFact
//     rejects any input that does not re-encode to the same bytes.
//   - A fact's ID is the CIDv1 (dag-cbor, sha2-256) of its canonical bytes,
//     signature included.
//   - Signatures are checked under one rule, ed25519 with ZIP-215
//     validation, whether alone (VerifyOnce) or in batches (VerifyFacts,
//     which Ingest uses): a fact's verdict never depends on its batch, and
//     batch coefficients are derived from the fact ids, not drawn.
//   - The reducer is order-insensitive: the same set of facts folded in any
//     order, batching, or with duplicates gives the same state and digest.
//   - A fact whose author lacked the needed capability at its epoch never
//     changes state.
//
// The package is pure (DESIGN §2): it never imports libp2p or Pebble, never
// reads the clock and never draws randomness. Time, keys and bytes come in as
// arguments.
package crdt
