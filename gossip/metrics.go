package gossip

import (
	"errors"
	"sync/atomic"
	"time"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"

	"aura/crdt"
)

// Rejection reasons, the keys of Stats.Rejected (stable: metrics labels).
const (
	ReasonMalformed    = "malformed"    // batch or fact does not decode
	ReasonTooLarge     = "too_large"    // message or fact over its size limit
	ReasonSignature    = "signature"    // a fact's signature does not verify
	ReasonAccount      = "account"      // a fact of another account
	ReasonUnauthorized = "unauthorized" // the author lacks the capability
	ReasonNotYet       = "not_yet"      // depends on facts not held yet (ignored, sync delivers)
	ReasonDuplicate    = "duplicate"    // every fact already held (ignored)
	ReasonPruned       = "pruned"       // below a pruned frontier (ingest only)
	ReasonOther        = "other"
)

var reasons = []string{ReasonMalformed, ReasonTooLarge, ReasonSignature, ReasonAccount, ReasonUnauthorized,
	ReasonNotYet, ReasonDuplicate, ReasonPruned, ReasonOther}

// reasonOf classifies an error of decoding, verification or guards.
func reasonOf(err error) string {
	switch {
	case errors.Is(err, crdt.ErrTooLarge):
		return ReasonTooLarge
	case errors.Is(err, crdt.ErrBadSignature):
		return ReasonSignature
	case errors.Is(err, crdt.ErrWrongAccount):
		return ReasonAccount
	case errors.Is(err, crdt.ErrUnauthorized):
		return ReasonUnauthorized
	case errors.Is(err, crdt.ErrNotYet):
		return ReasonNotYet
	case errors.Is(err, crdt.ErrPruned):
		return ReasonPruned
	case errors.Is(err, ErrBadBatch), errors.Is(err, crdt.ErrMalformed), errors.Is(err, crdt.ErrNotCanonical),
		errors.Is(err, crdt.ErrUnknownKind):
		return ReasonMalformed
	}
	return ReasonOther
}

// Stats are the package's counters since New. They only grow; the node
// exports them as Prometheus counters.
type Stats struct {
	GossipFactsIn     uint64 // facts newly stored from gossip
	GossipDuplicates  uint64 // gossiped facts already held at ingest
	MessagesValidated uint64 // remote messages that reached the validator
	// Rejected counts messages the validator rejected or ignored, by
	// reason (Reason* constants), and facts that Ingest refused.
	Rejected map[string]uint64

	BatchesPublished uint64 // gossip messages published
	FactsPublished   uint64 // facts in them
	PublishErrors    uint64 // messages pubsub refused (the facts are left to sync)
	PublishDropped   uint64 // facts not gossiped because the queue was full (left to sync)
	PubSubDropped    uint64 // messages or RPCs gossipsub dropped (queues full, slow consumer)

	SyncSessions    uint64 // completed sessions, both directions
	SyncErrors      uint64 // sessions that failed
	SyncFactsIn     uint64 // facts newly stored from sync
	SyncFactsOut    uint64 // facts sent by sync
	SyncBytesIn     uint64
	SyncBytesOut    uint64
	RestoresNeeded  uint64 // sessions that found this node behind a peer's pruned frontier
	IngestErrors    uint64 // Journal.Ingest failures (store errors)
	SyncsOnJoin     uint64 // sessions started because a peer joined
	SyncsOnGap      uint64 // sessions started because gossip showed a gap
	SyncsPeriodic   uint64 // sessions started by the periodic timer
	SyncsOnDemand   uint64 // SyncWith calls
	SyncsSkipped    uint64 // scheduled sessions not needed (a session ran meanwhile)
	LastSyncNanos   int64  // unix nanoseconds of the last completed session
	LastSyncSuccess bool
}

type metrics struct {
	gossipIn, gossipDup, validated                   atomic.Uint64
	rejected                                         map[string]*atomic.Uint64
	batches, published, publishErrs, publishDropped  atomic.Uint64
	pubsubDropped                                    atomic.Uint64
	sessions, syncErrs, syncIn, syncOut, syncBytesIn atomic.Uint64
	syncBytesOut, restores, ingestErrors             atomic.Uint64
	onJoin, onGap, periodic, onDemand, skipped       atomic.Uint64
	lastSync                                         atomic.Int64
	lastOK                                           atomic.Bool
}

func (m *metrics) init() {
	m.rejected = make(map[string]*atomic.Uint64, len(reasons))
	for _, r := range reasons {
		m.rejected[r] = new(atomic.Uint64)
	}
}

func (m *metrics) reject(reason string) { m.rejected[reason].Add(1) }

func (m *metrics) countIngestRejections(rs []crdt.Rejection) {
	for _, r := range rs {
		m.reject(reasonOf(r.Err))
	}
}

// Stats returns a snapshot of the counters.
func (g *Gossip) Stats() Stats {
	m := &g.m
	s := Stats{
		GossipFactsIn: m.gossipIn.Load(), GossipDuplicates: m.gossipDup.Load(), MessagesValidated: m.validated.Load(),
		Rejected:         make(map[string]uint64, len(reasons)),
		BatchesPublished: m.batches.Load(), FactsPublished: m.published.Load(), PublishErrors: m.publishErrs.Load(),
		PublishDropped: m.publishDropped.Load(), PubSubDropped: m.pubsubDropped.Load(),
		SyncSessions: m.sessions.Load(), SyncErrors: m.syncErrs.Load(), SyncFactsIn: m.syncIn.Load(),
		SyncFactsOut: m.syncOut.Load(), SyncBytesIn: m.syncBytesIn.Load(), SyncBytesOut: m.syncBytesOut.Load(),
		RestoresNeeded: m.restores.Load(), IngestErrors: m.ingestErrors.Load(),
		SyncsOnJoin: m.onJoin.Load(), SyncsOnGap: m.onGap.Load(), SyncsPeriodic: m.periodic.Load(),
		SyncsOnDemand: m.onDemand.Load(), SyncsSkipped: m.skipped.Load(),
		LastSyncNanos: m.lastSync.Load(), LastSyncSuccess: m.lastOK.Load(),
	}
	for r, c := range m.rejected {
		s.Rejected[r] = c.Load()
	}
	return s
}

// LastSync is the time of the last completed session (zero if none).
func (s Stats) LastSync() time.Time {
	if s.LastSyncNanos == 0 {
		return time.Time{}
	}
	return time.Unix(0, s.LastSyncNanos)
}

// dropTracer counts what gossipsub drops on its own: full outbound queues,
// a full validation queue, throttled validation and a slow subscriber.
type dropTracer struct{ m *metrics }

func (t *dropTracer) DropRPC(*pubsub.RPC, peer.ID)         { t.m.pubsubDropped.Add(1) }
func (t *dropTracer) UndeliverableMessage(*pubsub.Message) { t.m.pubsubDropped.Add(1) }
func (t *dropTracer) RejectMessage(_ *pubsub.Message, reason string) {
	switch reason {
	case pubsub.RejectValidationQueueFull, pubsub.RejectValidationThrottled:
		t.m.pubsubDropped.Add(1)
	}
}
func (t *dropTracer) OnNewOutboundStream(peer.ID, protocol.ID)             {}
func (t *dropTracer) OnClosedOutboundStream(peer.ID)                       {}
func (t *dropTracer) Join(string)                                          {}
func (t *dropTracer) Leave(string)                                         {}
func (t *dropTracer) Graft(peer.ID, string)                                {}
func (t *dropTracer) Prune(peer.ID, string)                                {}
func (t *dropTracer) ValidateMessage(*pubsub.Message)                      {}
func (t *dropTracer) DeliverMessage(*pubsub.Message)                       {}
func (t *dropTracer) DuplicateMessage(*pubsub.Message)                     {}
func (t *dropTracer) ThrottlePeer(peer.ID)                                 {}
func (t *dropTracer) RecvRPC(*pubsub.RPC)                                  {}
func (t *dropTracer) SendRPC(*pubsub.RPC, peer.ID)                         {}
func (t *dropTracer) SendRPCCompleted(*pubsub.RPC, peer.ID, time.Duration) {}
