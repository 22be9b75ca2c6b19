// Package gossip spreads an account's facts between its devices: one
// gossipsub topic per account with a validator in front of the journal, a
// publisher that coalesces facts into batches, and the anti-entropy sync
// protocol that repairs whatever gossip missed (DESIGN §4).
//
// It owns the topic, its validator, the batch and sync wire formats and the
// scheduling of syncs. It owns no state of the journal: every fact it
// receives goes through Journal.Ingest, the node's single write path, and
// everything it sends it reads from Journal.Store. It imports crdt only from
// the project; never node, never Pebble (the benchmarks use
// crdt/pebblestore, as the node does).
//
// # Topic and messages
//
// The topic is "/aura/facts/1/<account-id>" (TopicName). Gossipsub runs with
// StrictNoSign and no author or seqno on messages: facts carry their own
// ed25519 signatures. A message is a batch, the CBOR array of the canonical
// bytes of its facts, each as a byte string (not re-encoded):
//
//	batch = array(n) [ bstr(fact₁ canonical bytes) … bstr(factₙ) ]
//
// with shortest-form heads and definite lengths, at most MaxMessageBytes
// (1 MiB − 1 KiB, so that it fits gossipsub's 1 MiB RPC limit) and each
// fact at most crdt.MaxFactSize. The message id is the binary CIDv1 (raw,
// sha2-256) of the message bytes (MessageID): identical batches are one
// message.
//
// The validator decodes each message once and hands the new facts to the
// receive loop in the message's ValidatorData (each with its decoded body,
// so neither the guard check nor the fold decodes it again). It rejects a message that
// is oversized, malformed or not canonical, that holds a fact with a bad
// signature, of another account, or whose author lacks the capability
// (crdt.ErrUnauthorized); it ignores a message whose facts are all held
// already, or none of whose new facts can be admitted yet (crdt.ErrNotYet:
// sync delivers them with their dependencies), and accepts the rest.
// Signatures are checked in batches (crdt.VerifyFacts) and marked, so
// Ingest does not check them again. Guards are checked against the current
// state in causal order; once a fact of the batch that changes guards
// (genesis, membership, group key, admin replacement) passed, the verdict
// on the later facts of the batch is left to Ingest, which folds the batch
// in causal order. Validation runs on one pubsub worker, inline, with the
// signature checks of a batch spread over the cores: messages are delivered
// in arrival order, so batches of one publisher do not overtake each other.
//
// Publish queues facts (the node calls it once they are durable) and a
// flush loop sends a batch when FlushBytes (512 KiB) are queued or the
// oldest fact waited FlushDelay (5 ms). Publish never blocks on the network
// and never drops silently: a fact that does not fit the queue
// (MaxPendingBytes) or that gossipsub refuses is counted and logged, and
// reaches the peers by sync.
//
// # Anti-entropy sync
//
// Protocol "/aura/sync/1", one bidirectional session per stream: the
// opener sends HELLO, the responder answers with its own HELLO (or ERROR,
// for another account), then both sides at once send the facts the other
// lacks in FACTS frames followed by END, and each ingests what it reads.
// Frames are
//
//	frame = uvarint(1 + len(payload)) ‖ type ‖ payload
//	HELLO (1) canonical CBOR [version=1, account, version vector,
//	          pruned floors, ids of both facts of each equivocation held]
//	FACTS (2) a batch (as above) of at most MaxFactsPerFrame (1024) facts
//	          and MaxFactsFrameBytes (1 MiB)
//	END   (3) uvarint(number of facts sent in FACTS frames)
//	ERROR (4) a reason; the session ends
//
// frames of other types are skipped, and no frame exceeds MaxFrameBytes.
// For each author, a side sends its chain facts with seq in (their vv, my
// vv], merged across authors in causal order (Lamport, author, seq) so
// that a DeviceAdded arrives before the new device's writes; then the facts
// of equivocation evidence the other side does not list. Facts are sent as
// stored, not re-encoded: the overhead is 3 bytes per fact of 256 B to
// 64 KiB, a few bytes per frame and the HELLO (about 1 % for 300-byte
// facts). The receiver decodes and checks the signatures of the next frame
// while it ingests the current one, and reads no further: memory stays
// bounded and the stream's flow control holds the sender back. Facts a
// receiver holds ahead of a gap are not in its version vector and are sent
// again; Ingest drops them as duplicates.
//
// A side whose version vector is below the other's pruned floor for an
// author cannot get those facts any more: the sender skips that author and
// the session returns a *RestoreNeeded (errors.Is ErrNeedsRestore) naming
// the authors and floors, after everything else was exchanged. Restoring
// from the snapshot is the node's business.
//
// Sessions start when a peer joins the topic (a new connection: the peer
// with the lower id at once, the other after JoinSyncGrace unless a
// session started meanwhile), every SyncInterval (30 s, ±25 % jitter) with
// one random topic peer, soon after gossip delivered facts ahead of a gap
// or facts whose dependencies are missing (GapSyncDelay), and on SyncWith.
// One outbound session per peer runs at a time; inbound sessions are
// bounded by MaxInboundSyncs. With no peers nothing happens; when peers
// meet again the join sync converges them.
//
// # Invariants
//
//   - gossip writes nothing itself: facts reach the journal only through
//     Journal.Ingest, which checks signatures and guards again.
//   - A message is forwarded only if every new fact in it decodes
//     canonically and carries a valid signature by a member of the account.
//   - A fact published or stored is never silently lost to peers: gossip
//     may drop it, sync delivers it.
//   - Every decoder of peer input (batches, frames, HELLO) is bounded and
//     total (FuzzSyncFrame).
//
// Stats exposes counters for the node's metrics; Config.OnSync reports each
// session.
package gossip
