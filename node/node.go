package node

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/peerstore"
	"github.com/libp2p/go-libp2p/p2p/discovery/mdns"
	"github.com/multiformats/go-multiaddr"
	"github.com/prometheus/client_golang/prometheus"

	"aura/blobstore"
	"aura/crdt"
	"aura/crdt/pebblestore"
	"aura/gossip"
	"aura/maintenance"
)

// Errors callers branch on.
var (
	ErrNoAccount   = errors.New("this device belongs to no account yet: run `aura-cli account create` or `aura-cli account join CODE`")
	ErrHasAccount  = errors.New("this device already belongs to an account")
	ErrNotFound    = errors.New("not found")
	ErrClosed      = errors.New("node is shutting down")
	ErrInvite      = errors.New("invite refused")
	ErrNotAdmin    = errors.New("only the account's admin can invite devices")
	ErrBadRequest  = errors.New("bad request")
	ErrUnavailable = errors.New("unavailable")
)

// Options configure New beyond the config file.
type Options struct {
	// Home is the node's directory (config, key, data, socket).
	Home string
	// Config, when set, is used instead of HOME/config.toml.
	Config *Config
	// Logger, when set, replaces the one built from the config.
	Logger *slog.Logger
	// NoSocket skips the control API socket (in-process tests).
	NoSocket bool
}

// Node is a running aura device: libp2p host, journal, gossip, blob store,
// maintenance driver and control API. Its methods are safe for concurrent
// use.
type Node struct {
	home   string
	cfg    Config
	log    *slog.Logger
	key    ed25519.PrivateKey
	device crdt.DeviceID

	store *pebblestore.Store
	meta  *kvMeta // the replica's records
	nmeta *kvMeta // the node's records
	blobs *blobstore.Store
	bgc   blobGC // background blob collections (blobs.go)
	gater *gater
	host  host.Host
	ghost *guardedHost
	mdns  io.Closer
	reg   *prometheus.Registry
	m     *metrics

	// mu serialises every call into the replica (DESIGN: one write path).
	mu        sync.Mutex
	rep       *maintenance.Replica
	gmu       sync.Mutex // guards gsp
	gsp       *gossip.Gossip
	memberKey string // to notice membership changes
	invites   map[string]*inviteRecord
	restoring bool

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	closed atomic.Bool

	apiSrv     *http.Server
	apiLn      net.Listener
	metricsSrv *http.Server
	metricsLn  net.Listener

	dkg dkgSessions  // phase 2: running keygen sessions
	rs  reshareState // resharing: status, shares held, automatic resharing (reshare.go)

	restoreMu sync.Mutex
	lock      *homeLock // HOME/aura.lock, held until Close
	last      lastSeen  // when each device was last connected
	fatal     *fatalSignal
	space     *spaceGuard // free-space guard of HOME/data
	cache     *maintenance.Cache[any]
	started   bool // New returned it (Close logs the stop)

	kick chan struct{} // wakes reconnectLoop (see kickReconnect)
	asks peerAsks      // when each device was last asked for peers
	nat  natState      // NAT traversal (nat.go)
	upg  upgrades      // OTA upgrades (upgrade.go)

	dev      deviceSettings // what this device publishes (metadata.go)
	sessions sessionLog     // aborted maintenance sessions (session.go)
}

// New starts a node in o.Home. Every startup failure returns one error
// that says what happened and what to do, and leaves nothing running and
// no socket behind.
func New(ctx context.Context, o Options) (*Node, error) {
	home := o.Home
	if home == "" {
		home = DefaultHome()
	}
	var cfg Config
	var err error
	if o.Config != nil {
		cfg = o.Config.WithDefaults()
		if err := cfg.Validate(); err != nil {
			return nil, err
		}
	} else if cfg, err = LoadConfig(home); err != nil {
		return nil, err
	}
	key, err := LoadKey(home)
	if err != nil {
		return nil, err
	}
	lock, err := lockHome(home)
	if err != nil {
		return nil, err
	}
	log := o.Logger
	if log == nil {
		log = newLogger(cfg.Log, os.Stderr)
	}
	n := &Node{home: home, cfg: cfg, log: log, key: key, lock: lock, fatal: newFatalSignal(), cache: maintenance.NewCache[any](), invites: map[string]*inviteRecord{}, kick: make(chan struct{}, 1)}
	n.device = crdt.DeviceIDFromKey(key.Public().(ed25519.PublicKey))
	n.log = n.log.With("device", n.device.Short())
	n.ctx, n.cancel = context.WithCancel(context.Background())
	if err := n.start(o); err != nil {
		n.Close()
		return nil, err
	}
	n.started = true
	n.publishMetadata()
	n.log.Info("node started", "peer", n.host.ID(), "addrs", n.host.Addrs(), "account", n.rep.Account())
	return n, nil
}

// start brings up the parts of a node in order; on error, Close releases
// whatever was started.
func (n *Node) start(o Options) (err error) {
	cfg, home, key := n.cfg, n.home, n.key
	if err := checkListenFree(home, cfg.Listen); err != nil {
		return err
	}
	metricsOn := cfg.Metrics.Address != "" && cfg.Metrics.Address != "off"
	if metricsOn {
		if n.metricsLn, err = listenMetrics(home, cfg.Metrics.Address); err != nil {
			return err
		}
	}
	n.store, err = openStore(home, &pebble.Options{Logger: pebbleLog{log: n.log.With("system", "pebble"), fatal: n.fatal}})
	if err != nil {
		return err
	}
	n.space = newSpaceGuard(home, cfg.Storage)
	n.space.start()
	db := n.store.DB()
	n.meta = &kvMeta{db: db, prefix: metaKeyPrefix}
	n.nmeta = &kvMeta{db: db, prefix: prefixNode}

	n.reg = prometheus.NewRegistry()
	n.m = newMetrics(n)
	var reg prometheus.Registerer
	if metricsOn {
		reg = n.reg
	}
	n.gater = newGater()
	n.gater.inviteOpen = n.inviteOpen
	n.host, err = newHost(cfg, key, n.gater, reg)
	if err != nil {
		return err
	}
	n.ghost = &guardedHost{Host: n.host, g: n.gater}
	n.blobs, err = blobstore.New(db, prefixBlobs, blobstore.WithHost(n.ghost), blobstore.WithPackDir(blobPacks(filepath.Join(home, DataDir))))
	if err != nil {
		return err
	}
	var jitter [8]byte
	_, _ = rand.Read(jitter[:])
	watermark := cfg.Snapshot.WatermarkMB << 20
	if cfg.Snapshot.WatermarkMB < 0 {
		watermark = -1
	}
	n.rep, err = maintenance.Open(maintenance.Config{
		Key: key, Store: n.store, Meta: n.meta, Blobs: blobAdapter{n.blobs},
		SnapshotTimeout: time.Duration(cfg.Snapshot.Timeout).Milliseconds(),
		Watermark:       watermark,
		WatermarkJitter: int64(binary.LittleEndian.Uint64(jitter[:]) % 30_000),
		KeepSnapshots:   cfg.Snapshot.Keep,
		AdminPolicy:     cfg.Admin.policy(), AdminTimeout: time.Duration(cfg.Admin.Timeout).Milliseconds(),
	})
	if err != nil {
		return damaged(home, err)
	}
	if err := n.loadRecords(); err != nil {
		return err
	}
	n.loadPolicy()
	if err := n.loadShare(); err != nil {
		n.log.Warn("threshold share not loaded", "err", err)
	}
	n.mu.Lock()
	n.refreshMembersLocked()
	n.mu.Unlock()
	n.host.SetStreamHandler(JoinProtocol, n.handleJoin)
	n.host.SetStreamHandler(DKGProtocol, n.guardStream(n.handleDKG))
	n.host.SetStreamHandler(ReshareProtocol, n.guardStream(n.handleReshare))
	n.host.SetStreamHandler(SnapshotProtocol, n.guardStream(n.handleSnapshotInfo))
	n.host.SetStreamHandler(PeersProtocol, n.guardStream(n.handlePeers))
	n.loadSeen()
	n.host.Network().Notify(&network.NotifyBundle{ConnectedF: n.onConnected, DisconnectedF: n.onDisconnected})
	if err := n.startNAT(); err != nil {
		return err
	}
	n.startUpgrades() // activation reconciled before gossip and the API (upgrade.go)
	if !n.rep.Account().IsZero() {
		if err := n.startGossip(); err != nil {
			return err
		}
	}
	if !o.NoSocket {
		if err := n.serveAPI(); err != nil {
			return err
		}
	}
	if reg != nil {
		if err := n.serveMetrics(); err != nil {
			return err
		}
	}
	if *cfg.Discovery.MDNS {
		svc := mdns.NewMdnsService(n.host, "aura-mesh", mdnsNotifee{n})
		if err := svc.Start(); err != nil {
			n.log.Warn("mDNS discovery not started", "err", err)
		} else {
			n.mdns = svc
		}
	}
	// The blob plan again: a crash may have struck between a GC and its
	// application.
	n.mu.Lock()
	plan := n.rep.BlobPlan()
	n.mu.Unlock()
	n.applyBlobPlan(&plan)
	n.wg.Add(2)
	go n.tickLoop()
	go n.reconnectLoop()
	n.resumeAutoReshare()
	return nil
}

// Close shuts the node down: API, loops, gossip, blobs, host, store. Every
// acknowledged write is already durable; Close makes the store consistent
// on disk.
func (n *Node) Close() error {
	if !n.closed.CompareAndSwap(false, true) {
		return nil
	}
	if n.apiSrv != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_ = n.apiSrv.Shutdown(ctx)
		cancel()
		_ = os.Remove(filepath.Join(n.home, SocketFile))
	}
	if n.metricsSrv != nil {
		_ = n.metricsSrv.Close()
	} else if n.metricsLn != nil {
		_ = n.metricsLn.Close()
	}
	n.cancel()
	if n.mdns != nil {
		_ = n.mdns.Close()
	}
	n.wg.Wait()
	n.gmu.Lock()
	g := n.gsp
	n.gsp = nil
	n.gmu.Unlock()
	if g != nil {
		_ = g.Close()
	}
	n.dkg.closeAll()
	if n.blobs != nil {
		_ = n.blobs.Close()
	}
	var err error
	if n.host != nil {
		err = n.host.Close()
	}
	if n.store != nil {
		if cerr := n.store.Close(); err == nil {
			err = cerr
		}
	}
	n.lock.release()
	if n.started {
		n.log.Info("node stopped")
	}
	return err
}

// Device is this node's device id.
func (n *Node) Device() crdt.DeviceID { return n.device }

// Host is the libp2p host.
func (n *Node) Host() host.Host { return n.host }

// Home is the node's directory.
func (n *Node) Home() string { return n.home }

// AddrInfo is how to reach this node.
func (n *Node) AddrInfo() peer.AddrInfo {
	return peer.AddrInfo{ID: n.host.ID(), Addrs: n.host.Addrs()}
}

// Account is the node's account (zero before create or join).
func (n *Node) Account() crdt.AccountID {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.rep.Account()
}

// now is the driver's clock for the pure cores.
func now() int64 { return time.Now().UnixMilli() }

// ---- gossip.Journal: the node is the journal gossip reads and feeds ----

type journal struct{ n *Node }

func (j journal) Account() crdt.AccountID { return j.n.Account() }

func (j journal) Store() crdt.Store { return j.n.store }

func (j journal) Check(f *crdt.Fact) error {
	j.n.mu.Lock()
	defer j.n.mu.Unlock()
	return j.n.rep.Check(f)
}

func (j journal) Ingest(facts []*crdt.Fact) (crdt.IngestResult, error) {
	return j.n.receive(facts)
}

// receive is the ingest path for facts from peers: the replica guards,
// stores (one durable batch) and folds them.
func (n *Node) receive(facts []*crdt.Fact) (crdt.IngestResult, error) {
	if err := n.space.receivable(); err != nil {
		return crdt.IngestResult{}, err
	}
	res, out, err := func() (crdt.IngestResult, maintenance.Output, error) {
		n.mu.Lock()
		defer n.mu.Unlock()
		res, out, err := n.rep.Receive(now(), facts)
		n.invalidateLocked(out, &res)
		n.refreshMembersLocked()
		return res, out, err
	}()
	n.m.ingested.Add(float64(len(res.Added)))
	n.m.rejected.Add(float64(len(res.Rejected)))
	for _, r := range res.Rejected {
		if !errors.Is(r.Err, crdt.ErrNotYet) {
			n.log.Debug("fact rejected", "author", r.Author.Short(), "seq", r.Seq, "err", r.Err)
		}
	}
	n.handle(out)
	return res, err
}

// startGossip joins the account's topic (after create, join or at start).
func (n *Node) startGossip() error {
	n.gmu.Lock()
	defer n.gmu.Unlock()
	if n.gsp != nil || n.closed.Load() {
		return nil
	}
	g, err := gossip.New(n.ctx, gossip.Config{
		Host:         n.ghost,
		Journal:      journal{n},
		Logger:       n.log.With("system", "gossip"),
		SyncInterval: time.Duration(n.cfg.Sync.Interval),
		OnSync:       n.onSync,
	})
	if err != nil {
		return err
	}
	n.gsp = g
	return nil
}

func (n *Node) gossip() *gossip.Gossip {
	n.gmu.Lock()
	defer n.gmu.Unlock()
	return n.gsp
}

func (n *Node) onSync(ev gossip.SyncEvent) {
	if ev.Err == nil {
		return
	}
	if errors.Is(ev.Err, gossip.ErrNeedsRestore) {
		// The replica picks the target from what the peers report.
		n.log.Info("behind a peer's pruned frontier: restoring from the newest snapshot a peer offers", "peer", ev.Peer)
		n.restoreAsync()
		return
	}
	n.log.Debug("sync session failed", "peer", ev.Peer, "reason", ev.Reason, "err", ev.Err)
}

// handle carries out what the replica asked for.
func (n *Node) handle(out maintenance.Output) {
	if len(out.Publish) > 0 {
		if g := n.gossip(); g != nil {
			g.Publish(out.Publish)
		}
	}
	for _, e := range out.Events {
		n.m.events.WithLabelValues(e.Kind.String()).Inc()
		if e.Kind == maintenance.EventSessionAborted {
			n.noteSnapshotAbort(e)
		}
		if e.Kind.Warning() {
			n.log.Warn("maintenance", "event", e.String())
		} else {
			n.log.Info("maintenance", "event", e.String())
		}
	}
	if out.Collected != nil {
		n.log.Info("garbage collected", "pruned_facts", out.Collected.PrunedFacts, "pruned_bytes", out.Collected.PrunedBytes,
			"facts_before", out.Collected.FactsBefore, "facts_after", out.Collected.FactsAfter)
	}
	n.applyBlobPlan(out.Blobs)
	if out.Restore != nil {
		// Last: the facts are published and the blobs pinned first. The
		// restore syncs before it fetches, and fetches what the replica's
		// RestoreTarget picks from this request and the peers' offers.
		n.restoreAsync(maintenance.Offer{From: out.Restore.From, Completion: &out.Restore.Completion})
	}
}

// refreshMembersLocked updates the gater's member set after the state
// changed. n.mu is held.
func (n *Node) refreshMembersLocked() {
	n.adoptShareLocked()
	st := n.rep.State()
	list := st.MemberList()
	var b strings.Builder
	for _, d := range list {
		b.Write(d[:])
	}
	k := b.String()
	if k == n.memberKey {
		return
	}
	n.memberKey = k
	m := make(map[peer.ID]bool, len(list))
	for _, d := range list {
		m[PeerID(d)] = true
	}
	n.dropExMembersLocked(m)
	n.gater.setMembers(m)
	n.kickReconnect()
}

// ---- loops ----

func (n *Node) tickLoop() {
	defer n.wg.Done()
	t := time.NewTicker(time.Duration(n.cfg.Snapshot.Tick))
	defer t.Stop()
	for {
		select {
		case <-n.ctx.Done():
			return
		case <-t.C:
		}
		out, ok := func() (maintenance.Output, bool) {
			n.mu.Lock()
			defer n.mu.Unlock()
			if n.rep.Account().IsZero() {
				return maintenance.Output{}, false
			}
			n.noteAdminSeenLocked(now())
			out := n.rep.Tick(now())
			n.invalidateLocked(out, nil)
			n.refreshMembersLocked()
			return out, true
		}()
		if !ok {
			continue
		}
		n.handle(out)
		n.m.update(n)
	}
}

// reconnectLoop asks connected devices for the addresses of the account's
// other devices (PeersProtocol), dials bootstrap peers and devices of the
// account that are not connected, and remembers the addresses of connected
// devices. It runs every Sync.Reconnect, and at once when a device connects
// or the membership changes.
func (n *Node) reconnectLoop() {
	defer n.wg.Done()
	n.loadPeerAddrs()
	every := time.Duration(n.cfg.Sync.Reconnect)
	if every <= 0 {
		every = 10 * time.Second
	}
	t := time.NewTimer(0)
	defer t.Stop()
	saved := map[peer.ID]string{}
	for {
		kicked := false
		select {
		case <-n.ctx.Done():
			return
		case <-t.C:
		case <-n.kick:
			kicked = true
		}
		t.Reset(every)
		n.persistSeen()
		var wg sync.WaitGroup
		for p := range *n.gater.members.Load() {
			if p == n.host.ID() || n.host.Network().Connectedness(p) != network.Connected || !n.asks.due(p, time.Now(), kicked) {
				continue
			}
			wg.Go(func() {
				if _, err := n.askPeers(n.ctx, p); err != nil {
					n.log.Debug("peer exchange failed", "peer", p, "err", err)
				}
			})
		}
		wg.Wait()
		dial := func(ai peer.AddrInfo) {
			wg.Add(1)
			go func() {
				defer wg.Done()
				ctx, cancel := context.WithTimeout(n.ctx, 5*time.Second)
				defer cancel()
				// This loop paces the redials; a swarm backoff left by a
				// relay or NAT that was down would only delay the return.
				n.clearBackoff(ai.ID)
				if err := n.host.Connect(ctx, ai); err != nil {
					n.log.Debug("dial failed", "peer", ai.ID, "err", err)
				}
			}()
		}
		for _, s := range n.cfg.Bootstrap {
			if ai, err := parseAddrInfo(s); err == nil && n.host.Network().Connectedness(ai.ID) != network.Connected {
				n.gater.trust(ai.ID, true)
				dial(*ai)
			}
		}
		for p := range *n.gater.members.Load() {
			if p == n.host.ID() || n.gater.isBlocked(p) {
				continue
			}
			if n.host.Network().Connectedness(p) == network.Connected {
				addrs := n.host.Peerstore().Addrs(p)
				if s := addrsKey(addrs); s != "" && saved[p] != s {
					saved[p] = s
					_ = n.nmeta.Put("peer/"+p.String(), []byte(s))
					n.writePeersFile(saved)
				}
				continue
			}
			if addrs := n.host.Peerstore().Addrs(p); len(addrs) > 0 {
				dial(peer.AddrInfo{ID: p, Addrs: addrs})
			}
		}
		wg.Wait()
	}
}

func addrsKey(addrs []multiaddr.Multiaddr) string {
	var out []string
	for _, a := range addrs {
		if strings.Contains(a.String(), "/p2p-circuit") {
			continue
		}
		out = append(out, a.String())
	}
	return strings.Join(out, "\n")
}

func (n *Node) loadPeerAddrs() {
	_ = n.nmeta.Scan("peer/", func(k string, v []byte) error {
		p, err := peer.Decode(strings.TrimPrefix(k, "peer/"))
		if err != nil {
			return nil
		}
		for _, s := range strings.Split(string(v), "\n") {
			if a, err := multiaddr.NewMultiaddr(s); err == nil {
				n.host.Peerstore().AddAddr(p, a, peerstore.RecentlyConnectedAddrTTL)
			}
		}
		return nil
	})
}

func (n *Node) onConnected(_ network.Network, c network.Conn) {
	p := c.RemotePeer()
	if n.gater.known(p) {
		if n.gater.isMember(p) {
			n.seen(p)
		}
		n.m.connects.Inc()
		n.kickReconnect()
		return
	}
	// A guest admitted for an invite: it gets a short while for the join
	// protocol, then goes unless the join made it a member.
	time.AfterFunc(30*time.Second, func() {
		if !n.closed.Load() && !n.gater.known(p) {
			_ = n.host.Network().ClosePeer(p)
		}
	})
}

type mdnsNotifee struct{ n *Node }

func (m mdnsNotifee) HandlePeerFound(ai peer.AddrInfo) {
	n := m.n
	if ai.ID == n.host.ID() || !n.gater.known(ai.ID) || n.closed.Load() {
		return
	}
	n.host.Peerstore().AddAddrs(ai.ID, ai.Addrs, peerstore.TempAddrTTL)
	go func() {
		ctx, cancel := context.WithTimeout(n.ctx, 5*time.Second)
		defer cancel()
		_ = n.host.Connect(ctx, ai)
	}()
}

// guardStream refuses streams from peers that are not devices of the account.
func (n *Node) guardStream(fn network.StreamHandler) network.StreamHandler {
	return n.ghost.wrap(fn)
}

// ---- operations (control API) ----

// CreateAccount founds an account with this device as admin.
func (n *Node) CreateAccount(name string, thresholdM uint64) (crdt.AccountID, error) {
	var nonce [16]byte
	if _, err := rand.Read(nonce[:]); err != nil {
		return crdt.AccountID{}, err
	}
	if name == "" {
		name = n.cfg.Name
	}
	var acct crdt.AccountID
	out, err := func() (maintenance.Output, error) {
		n.mu.Lock()
		defer n.mu.Unlock()
		if a := n.rep.Account(); !a.IsZero() {
			return maintenance.Output{}, fmt.Errorf("%w (%s)", ErrHasAccount, a)
		}
		out, err := n.rep.CreateAccount(name, thresholdM, nonce)
		n.refreshMembersLocked()
		acct = n.rep.Account()
		return out, err
	}()
	if err != nil {
		return crdt.AccountID{}, err
	}
	if err := n.saveAccount(acct); err != nil {
		return acct, err
	}
	if err := n.startGossip(); err != nil {
		return acct, err
	}
	n.handle(out)
	n.publishMetadata()
	return acct, nil
}

// Put writes an application key (the local write path; works offline).
// It returns the fact id, or the zero id when the write was buffered
// behind the writer fence.
func (n *Node) Put(key string, value []byte) (crdt.FactID, error) {
	return n.write(&crdt.Put{Key: key, Value: value})
}

func (n *Node) write(body crdt.Body) (crdt.FactID, error) {
	if n.closed.Load() {
		return crdt.FactID{}, ErrClosed
	}
	if err := n.space.writable(); err != nil {
		return crdt.FactID{}, err
	}
	out, err := func() (maintenance.Output, error) {
		n.mu.Lock()
		defer n.mu.Unlock()
		if n.rep.Account().IsZero() {
			return maintenance.Output{}, ErrNoAccount
		}
		out, err := n.rep.Write(now(), body)
		n.invalidateLocked(out, nil)
		return out, err
	}()
	if err != nil {
		return crdt.FactID{}, err
	}
	n.m.writes.Inc()
	n.handle(out)
	for _, f := range out.Publish {
		if f.Kind == body.Kind() && f.Author == n.device {
			return f.ID(), nil
		}
	}
	return crdt.FactID{}, nil
}

// Get returns an application value.
func (n *Node) Get(key string) ([]byte, bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	v, ok := n.rep.State().Value(key)
	return append([]byte(nil), v...), ok
}

// Digest is the account state's digest.
func (n *Node) Digest() crdt.Hash {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.rep.State().Digest()
}

// VersionVector is the journal's version vector.
func (n *Node) VersionVector() crdt.VersionVector { return n.store.VersionVector() }

// Members lists the account's devices.
func (n *Node) Members() []crdt.DeviceID {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.rep.State().MemberList()
}

// Connect dials a peer (it must be admitted by the gater).
func (n *Node) Connect(ctx context.Context, ai peer.AddrInfo) error {
	n.host.Peerstore().AddAddrs(ai.ID, ai.Addrs, peerstore.RecentlyConnectedAddrTTL)
	return n.host.Connect(ctx, ai)
}

// SyncWith runs one anti-entropy session with p.
func (n *Node) SyncWith(ctx context.Context, p peer.ID) error {
	g := n.gossip()
	if g == nil {
		return ErrNoAccount
	}
	_, err := g.SyncWith(ctx, p)
	return err
}

// Block cuts a peer off (closes its connections and refuses new ones) or
// lets it back in. The demo uses it to partition the mesh.
func (n *Node) Block(p peer.ID, on bool) {
	n.gater.block(p, on)
	if on {
		_ = n.host.Network().ClosePeer(p)
	}
}

// ConnectedDevices lists connected peers that are devices of the account.
func (n *Node) ConnectedDevices() []peer.ID {
	var out []peer.ID
	for _, p := range n.host.Network().Peers() {
		if n.gater.isMember(p) {
			out = append(out, p)
		}
	}
	return out
}

// connectedKnown lists connected peers the gater knows (devices, and
// peers trusted for a join in progress).
func (n *Node) connectedKnown() []peer.ID {
	var out []peer.ID
	for _, p := range n.host.Network().Peers() {
		if n.gater.known(p) {
			out = append(out, p)
		}
	}
	return out
}
