package gossip

import (
	"context"
	crand "crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	pb "github.com/libp2p/go-libp2p-pubsub/pb"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"

	"aura/crdt"
)

// Journal is what gossip needs from the node.
type Journal interface {
	Account() crdt.AccountID
	// Store is the read side: VersionVector, Range, Has, Get, Evidence,
	// PrunedTo.
	Store() crdt.Store
	// Check applies decoding-independent validation of one fact against
	// current state: the capability guard (crdt.State.Check).
	Check(f *crdt.Fact) error
	// Ingest stores and folds facts (guards, one durable batch); the
	// node's single write path.
	Ingest(facts []*crdt.Fact) (crdt.IngestResult, error)
}

// TopicName is the gossipsub topic of an account's facts.
func TopicName(account crdt.AccountID) string { return "/aura/facts/1/" + account.String() }

// ErrClosed is returned by operations on a closed Gossip.
var ErrClosed = errors.New("gossip is closed")

// Config configures a Gossip. Zero values mean the default.
type Config struct {
	Host    host.Host // required: the node's libp2p host
	Journal Journal   // required
	Logger  *slog.Logger

	// FlushBytes flushes a pending batch once it holds this many bytes
	// (default 512 KiB, at most MaxMessageBytes: ~1,700 facts of 300 bytes,
	// which a receiver checks in one signature batch).
	FlushBytes int
	// FlushDelay is the longest a published fact waits for more facts to
	// share its message (default 5 ms).
	FlushDelay time.Duration
	// MaxPendingBytes bounds the facts waiting to be gossiped (default
	// 64 MiB). Beyond it, Publish leaves facts to sync and counts them in
	// Stats.PublishDropped (with a warning in the log): they are durable
	// locally, so nothing is lost, only delayed.
	MaxPendingBytes int

	// SyncInterval is the mean period of anti-entropy with one random
	// topic peer (default 30 s; each wait is drawn from ±25 %). Negative
	// disables the periodic sync.
	SyncInterval time.Duration
	// DisableSyncOnJoin turns off the sync that starts when a peer joins
	// the topic (a new connection).
	DisableSyncOnJoin bool
	// JoinSyncGrace is how long the peer with the higher id waits after a
	// join for the other side to start the session before it starts one
	// itself (default 2 s). The peer with the lower id starts at once.
	JoinSyncGrace time.Duration
	// GapSyncDelay is how soon a sync with the forwarding peer starts
	// after gossip delivered facts ahead of a gap or facts whose
	// dependencies are missing (default 200 ms; negative disables).
	GapSyncDelay time.Duration
	// SyncIdleTimeout bounds the wait for each frame of a sync session
	// (default 30 s).
	SyncIdleTimeout time.Duration
	// MaxInboundSyncs bounds concurrent sessions opened by peers (default
	// 8); more are reset.
	MaxInboundSyncs int
	// OnSync is called after every sync session, in and out, from the
	// session's goroutine. It must not block for long.
	OnSync func(SyncEvent)

	// Rand draws the jitter of periodic syncs and the peer to sync with.
	// It is used by one goroutine only. Default: seeded from crypto/rand.
	Rand *rand.Rand

	// SubscriptionBuffer is the number of validated messages that may wait
	// for ingest before pubsub drops them (default 256; sync repairs).
	SubscriptionBuffer int
	// PeerOutboundQueue is gossipsub's per-peer queue of outgoing RPCs
	// (default 256; gossipsub drops beyond it, sync repairs).
	PeerOutboundQueue int
	// PubSubOptions are appended to the options New passes to
	// pubsub.NewGossipSub.
	PubSubOptions []pubsub.Option
}

func (c *Config) withDefaults() (Config, error) {
	d := *c
	if d.Host == nil {
		return d, errors.New("gossip: Config.Host is required")
	}
	if d.Journal == nil {
		return d, errors.New("gossip: Config.Journal is required")
	}
	if d.Logger == nil {
		d.Logger = slog.New(slog.DiscardHandler)
	}
	if d.FlushBytes <= 0 {
		d.FlushBytes = 512 << 10
	}
	if d.FlushBytes > MaxMessageBytes {
		d.FlushBytes = 512 << 10
	}
	if d.FlushDelay <= 0 {
		d.FlushDelay = 5 * time.Millisecond
	}
	if d.MaxPendingBytes <= 0 {
		d.MaxPendingBytes = 64 << 20
	}
	if d.SyncInterval == 0 {
		d.SyncInterval = 30 * time.Second
	}
	if d.JoinSyncGrace <= 0 {
		d.JoinSyncGrace = 2 * time.Second
	}
	if d.GapSyncDelay == 0 {
		d.GapSyncDelay = 200 * time.Millisecond
	}
	if d.SyncIdleTimeout <= 0 {
		d.SyncIdleTimeout = 30 * time.Second
	}
	if d.MaxInboundSyncs <= 0 {
		d.MaxInboundSyncs = 8
	}
	if d.Rand == nil {
		var seed [16]byte
		if _, err := crand.Read(seed[:]); err != nil {
			return d, fmt.Errorf("gossip: seed random source: %w", err)
		}
		d.Rand = rand.New(rand.NewPCG(binary.LittleEndian.Uint64(seed[:8]), binary.LittleEndian.Uint64(seed[8:])))
	}
	if d.SubscriptionBuffer <= 0 {
		d.SubscriptionBuffer = 256
	}
	if d.PeerOutboundQueue <= 0 {
		d.PeerOutboundQueue = 256
	}
	return d, nil
}

// Gossip runs an account's fact topic and the anti-entropy protocol on a
// host. It is safe for concurrent use.
type Gossip struct {
	cfg     Config
	log     *slog.Logger
	h       host.Host
	self    peer.ID
	j       Journal
	account crdt.AccountID

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	ps    *pubsub.PubSub
	topic *pubsub.Topic
	sub   *pubsub.Subscription
	evh   *pubsub.TopicEventHandler

	pub publisher
	syn syncer

	closeOnce sync.Once
	closed    atomic.Bool

	m metrics
}

// New creates a GossipSub router on cfg.Host, joins the account's topic,
// registers the validator and the sync protocol, and starts ingesting what
// arrives. ctx bounds the Gossip's life as Close does.
func New(ctx context.Context, cfg Config) (*Gossip, error) {
	c, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	g := &Gossip{cfg: c, log: c.Logger, h: c.Host, self: c.Host.ID(), j: c.Journal, account: c.Journal.Account()}
	if g.account.IsZero() {
		return nil, errors.New("gossip: journal has no account yet")
	}
	g.ctx, g.cancel = context.WithCancel(ctx)
	g.m.init()
	g.pub.init(g)
	g.syn.init(g)

	opts := []pubsub.Option{
		// Facts carry their own signatures; pubsub envelopes carry none and
		// no author or seqno, so the message id must come from the content.
		pubsub.WithMessageSignaturePolicy(pubsub.StrictNoSign),
		pubsub.WithNoAuthor(),
		pubsub.WithMessageIdFn(func(m *pb.Message) string { return MessageID(m.Data) }),
		// A private mesh of the account's devices: no peer exchange to
		// strangers, everything we have is flooded on publish.
		pubsub.WithPeerExchange(false),
		pubsub.WithFloodPublish(true),
		pubsub.WithPeerOutboundQueueSize(c.PeerOutboundQueue),
		// One validation worker, our validator inline: messages are
		// validated, hence delivered, in the order they arrive, so a batch
		// never overtakes its predecessor and leaves a gap behind it. The
		// validator spreads each batch's signature checks over the cores.
		pubsub.WithValidateWorkers(1),
		pubsub.WithValidateQueueSize(256),
		pubsub.WithRawTracer(&dropTracer{m: &g.m}),
		pubsub.WithLogger(g.log.With("system", "pubsub")),
	}
	opts = append(opts, c.PubSubOptions...)
	g.ps, err = pubsub.NewGossipSub(g.ctx, g.h, opts...)
	if err != nil {
		g.cancel()
		return nil, fmt.Errorf("gossip: start gossipsub: %w", err)
	}
	// The sync handler goes first so that a peer that sees us join can
	// open a session at once.
	g.h.SetStreamHandler(SyncProtocol, g.syn.handleStream)
	name := TopicName(g.account)
	if err := g.ps.RegisterTopicValidator(name, g.validate, pubsub.WithValidatorInline(true)); err != nil {
		g.shutdown()
		return nil, fmt.Errorf("gossip: register validator: %w", err)
	}
	if g.topic, err = g.ps.Join(name); err != nil {
		g.shutdown()
		return nil, fmt.Errorf("gossip: join %s: %w", name, err)
	}
	if g.evh, err = g.topic.EventHandler(); err != nil {
		g.shutdown()
		return nil, fmt.Errorf("gossip: topic events: %w", err)
	}
	if g.sub, err = g.topic.Subscribe(pubsub.WithBufferSize(c.SubscriptionBuffer)); err != nil {
		g.shutdown()
		return nil, fmt.Errorf("gossip: subscribe %s: %w", name, err)
	}
	g.wg.Add(4)
	go g.receiveLoop()
	go g.pub.flushLoop()
	go g.syn.peerEventLoop()
	go g.syn.periodicLoop()
	g.log.Info("gossip started", "topic", name, "peer", g.self)
	return g, nil
}

// Topic returns the gossipsub topic name.
func (g *Gossip) Topic() string { return TopicName(g.account) }

// Peers returns the peers on the account's topic.
func (g *Gossip) Peers() []peer.ID {
	if g.closed.Load() {
		return nil
	}
	return g.topic.ListPeers()
}

// Close leaves the topic, stops publishing and syncing, and waits for the
// package's goroutines. Facts still waiting to be gossiped are left to
// sync. The host stays open: it belongs to the caller.
func (g *Gossip) Close() error {
	g.closeOnce.Do(func() {
		g.closed.Store(true)
		if g.evh != nil {
			g.evh.Cancel()
		}
		if g.sub != nil {
			g.sub.Cancel()
		}
		if g.topic != nil {
			_ = g.topic.Close()
		}
		_ = g.ps.UnregisterTopicValidator(g.Topic())
		g.shutdown()
	})
	return nil
}

// shutdown stops everything New started.
func (g *Gossip) shutdown() {
	g.closed.Store(true)
	g.cancel()
	g.h.RemoveStreamHandler(SyncProtocol)
	for _, id := range pubsub.GossipSubDefaultProtocols {
		g.h.RemoveStreamHandler(id)
	}
	g.syn.stopTimers()
	g.wg.Wait()
}

// receiveLoop ingests what the validator accepted.
func (g *Gossip) receiveLoop() {
	defer g.wg.Done()
	for {
		msg, err := g.sub.Next(g.ctx)
		if err != nil {
			return
		}
		if msg.ReceivedFrom == g.self {
			continue // our own publish, stored before it was published
		}
		facts, ok := msg.ValidatorData.([]*crdt.Fact)
		if !ok || len(facts) == 0 {
			continue
		}
		res, err := g.j.Ingest(facts)
		if err != nil {
			g.m.ingestErrors.Add(1)
			g.log.Error("ingest gossiped facts", "from", msg.ReceivedFrom, "facts", len(facts), "err", err)
			continue
		}
		g.m.gossipIn.Add(uint64(len(res.Added)))
		g.m.gossipDup.Add(uint64(res.Duplicates))
		g.m.countIngestRejections(res.Rejected)
		if len(res.Rejected) > 0 {
			r := res.Rejected[0]
			g.log.Debug("gossip: facts refused", "count", len(res.Rejected), "first", r.Author.Short(), "seq", r.Seq, "err", r.Err)
		}
		if notYet := hasNotYet(res.Rejected); res.Pending > 0 || notYet {
			g.syn.gapSeen(msg.ReceivedFrom, notYet)
		}
	}
}

func hasNotYet(rs []crdt.Rejection) bool {
	for _, r := range rs {
		if errors.Is(r.Err, crdt.ErrNotYet) {
			return true
		}
	}
	return false
}
