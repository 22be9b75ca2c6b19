// Package maintenance holds the pure protocol cores of the seed's
// maintenance flows, driven identically by the node (libp2p, Pebble, real
// time) and the simulator (virtual network, memory, virtual clock):
//
//   - Replica: one device's view of the account. It owns the write path
//     (sign, guard, store, fold), the ingest path for facts from peers, the
//     writer fence, and the snapshot round (propose, vote, complete, abandon),
//     GC and restore.
//   - the snapshot round of DESIGN §5: the proposer raises its writer fence,
//     picks its version vector as frontier, reduces exactly that prefix and
//     publishes SnapshotProposed; a peer that holds the whole frontier
//     recomputes the digest and votes with a partial BLS signature only when
//     it matches; any device holding M valid partials recovers the group
//     signature (bad partials are named and skipped) and publishes
//     SnapshotCompleted; the fence drops on completion or at the deadline,
//     and buffered writes then commit, none lost (they are kept in Meta, so
//     also across a restart).
//
// Inputs come in as method calls carrying the current time (unix ms) and
// any randomness the driver drew; outputs come back as Output values (facts
// to publish, blobs to fetch, pin or delete, events). The package never
// reads the clock, never draws randomness and never touches the network. It
// reaches storage only through interfaces the driver passes in (crdt.Store,
// Meta, Blobs), so the simulator can model crashes by what those kept.
//
// Choices where DESIGN is silent (written down here, as it asks):
//   - A proposal's id is derived, not drawn: sha2-256(device ‖ seq ‖ now).
//   - Non-proposers complete a round too when they hold M valid votes and no
//     completion appeared within CompleteGrace of first seeing the proposal.
//   - A fresh device restoring with no state of its own trusts the group key
//     inside the snapshot state, whose genesis must self-certify the account
//     id (crdt.AccountIDFor). A device with state verifies against its own.
//
// It imports crdt and threshold only; never libp2p, Pebble, or time.Now.
package maintenance
