package gossip

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/p2p/transport/tcp"

	"aura/crdt"
)

// testJournal is the node's journal as gossip sees it: a MemStore and the
// account state, with one write path.
type testJournal struct {
	mu      sync.Mutex
	store   crdt.Store
	state   *crdt.State
	lamport atomic.Uint64 // highest Lamport time ingested
}

func newTestJournal(store crdt.Store) *testJournal {
	return &testJournal{store: store, state: crdt.NewState(store.Account(), nil)}
}

func (j *testJournal) Account() crdt.AccountID { return j.store.Account() }
func (j *testJournal) Store() crdt.Store       { return j.store }

func (j *testJournal) Check(f *crdt.Fact) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.state.Check(f)
}

func (j *testJournal) Ingest(facts []*crdt.Fact) (crdt.IngestResult, error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.store.Ingest(facts, func(f *crdt.Fact) error {
		if err := j.state.Check(f); err != nil {
			return err
		}
		j.state.ApplyChecked(f)
		for {
			l := j.lamport.Load()
			if f.Lamport <= l || j.lamport.CompareAndSwap(l, f.Lamport) {
				break
			}
		}
		return nil
	})
}

func (j *testJournal) digest() crdt.Hash {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.state.Digest()
}

func (j *testJournal) epoch() uint64 {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.state.Epoch
}

// deviceKey is a deterministic device key.
func deviceKey(i int) ed25519.PrivateKey {
	seed := sha256.Sum256([]byte(fmt.Sprintf("aura gossip test device %d", i)))
	return ed25519.NewKeyFromSeed(seed[:])
}

// account is a test account: device 0 founded it and added devices
// 1..n-1 with the default capabilities.
type account struct {
	id    crdt.AccountID
	keys  []ed25519.PrivateKey
	setup []*crdt.Fact // genesis and the DeviceAdded facts
	epoch uint64
	admin *crdt.Writer
}

func newAccount(tb testing.TB, n int) *account {
	tb.Helper()
	a := &account{}
	for i := range n {
		a.keys = append(a.keys, deviceKey(i))
	}
	a.admin = crdt.NewWriter(a.keys[0], crdt.AccountID{}, 0, 0)
	g, err := a.admin.Genesis("gossip test", 2, [16]byte{7})
	if err != nil {
		tb.Fatal(err)
	}
	a.id = a.admin.Account()
	a.setup = append(a.setup, g)
	a.epoch = 1
	for i := 1; i < n; i++ {
		a.epoch++
		f, err := a.admin.Write(a.epoch, &crdt.DeviceAdded{Device: dev(a.keys[i]), Capabilities: crdt.DefaultDeviceCapabilities,
			Name: fmt.Sprintf("d%d", i)})
		if err != nil {
			tb.Fatal(err)
		}
		a.setup = append(a.setup, f)
	}
	return a
}

func dev(k ed25519.PrivateKey) crdt.DeviceID {
	return crdt.DeviceIDFromKey(k.Public().(ed25519.PublicKey))
}

// putFacts makes n signed Put facts of device i (n ≥ 1), each about
// 300 bytes, continuing after seq and Lamport time lamport.
func (a *account) putFacts(tb testing.TB, i int, seq, lamport uint64, n int) []*crdt.Fact {
	tb.Helper()
	w := crdt.NewWriter(a.keys[i], a.id, seq, lamport)
	out := make([]*crdt.Fact, n)
	val := make([]byte, 160)
	for k := range out {
		copy(val, fmt.Sprintf("value %d of device %d", k, i))
		f, err := w.Write(a.epoch, &crdt.Put{Key: fmt.Sprintf("dev%d/key%06d", i, k), Value: val})
		if err != nil {
			tb.Fatal(err)
		}
		out[k] = f
	}
	return out
}

// testNode is one device: a host, a journal and a Gossip.
type testNode struct {
	h   host.Host
	j   *testJournal
	g   *Gossip
	key ed25519.PrivateKey

	wmu sync.Mutex
	w   *crdt.Writer
}

type nodeOpt func(*Config)

func newHost(tb testing.TB, key ed25519.PrivateKey) host.Host {
	tb.Helper()
	priv, err := crypto.UnmarshalEd25519PrivateKey(key)
	if err != nil {
		tb.Fatal(err)
	}
	h, err := libp2p.New(
		libp2p.Identity(priv),
		libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"),
		libp2p.Transport(tcp.NewTCPTransport),
		libp2p.DisableRelay(),
		libp2p.ResourceManager(&network.NullResourceManager{}),
	)
	if err != nil {
		tb.Fatal(err)
	}
	return h
}

func testLogger() *slog.Logger {
	if os.Getenv("GOSSIP_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

// newNode starts device i of the account holding the setup facts, on a
// MemStore.
func newNode(tb testing.TB, a *account, i int, opts ...nodeOpt) *testNode {
	tb.Helper()
	return newNodeOn(tb, a, i, crdt.NewMemStore(a.id), opts...)
}

// newNodeOn is newNode on a given store.
func newNodeOn(tb testing.TB, a *account, i int, store crdt.Store, opts ...nodeOpt) *testNode {
	tb.Helper()
	n := &testNode{key: a.keys[i], j: newTestJournal(store)}
	if res, err := n.j.Ingest(a.setup); err != nil || len(res.Added) != len(a.setup) {
		tb.Fatalf("ingest setup: %v %+v", err, res.Rejected)
	}
	n.w = crdt.NewWriter(a.keys[i], a.id, 0, 0)
	if i == 0 { // the admin wrote the setup facts
		last := a.setup[len(a.setup)-1]
		n.w = crdt.NewWriter(a.keys[i], a.id, last.Seq, last.Lamport)
	}
	n.h = newHost(tb, a.keys[i])
	cfg := Config{Host: n.h, Journal: n.j, Logger: testLogger().With("node", i)}
	for _, o := range opts {
		o(&cfg)
	}
	g, err := New(context.Background(), cfg)
	if err != nil {
		tb.Fatal(err)
	}
	n.g = g
	return n
}

func (n *testNode) close() {
	_ = n.g.Close()
	_ = n.h.Close()
	_ = n.j.store.Close()
}

// write makes the device write n Puts through the node's write path:
// ingest locally, then publish.
func (n *testNode) write(tb testing.TB, count int, prefix string) {
	tb.Helper()
	n.wmu.Lock()
	defer n.wmu.Unlock()
	for k := range count {
		n.w.Observe(n.j.lamport.Load())
		f, err := n.w.Write(n.j.epoch(), &crdt.Put{Key: fmt.Sprintf("%s/%d", prefix, k), Value: []byte("v")})
		if err != nil {
			tb.Error(err)
			return
		}
		res, err := n.j.Ingest([]*crdt.Fact{f})
		if err != nil || len(res.Added) != 1 {
			tb.Errorf("local ingest: %v %+v", err, res.Rejected)
			return
		}
		n.g.Publish([]*crdt.Fact{f})
	}
}

func connect(tb testing.TB, a, b host.Host) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := a.Connect(ctx, peer.AddrInfo{ID: b.ID(), Addrs: b.Addrs()}); err != nil {
		tb.Fatal(err)
	}
}

// waitFor polls cond until it holds or the timeout passes.
func waitFor(tb testing.TB, timeout time.Duration, what string, cond func() bool, nodes ...*testNode) {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		extra := ""
		if len(nodes) > 0 {
			extra = describe(nodes...)
		}
		if time.Now().After(deadline) {
			tb.Fatalf("timed out after %v waiting for %s%s", timeout, what, extra)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// waitPeers waits until every node sees want peers on the topic.
func waitPeers(tb testing.TB, want int, nodes ...*testNode) {
	tb.Helper()
	waitFor(tb, 10*time.Second, "topic peers", func() bool {
		for _, n := range nodes {
			if len(n.g.Peers()) < want {
				return false
			}
		}
		return true
	})
}

// converged reports whether every node holds the same version vector with
// total facts and the same state digest.
func converged(total uint64, nodes ...*testNode) bool {
	vv0 := nodes[0].j.store.VersionVector()
	if vv0.Total() != total {
		return false
	}
	d0 := nodes[0].j.digest()
	for _, n := range nodes[1:] {
		if !n.j.store.VersionVector().Equal(vv0) || n.j.digest() != d0 {
			return false
		}
	}
	return true
}

// describe renders the nodes' version vectors and digests for failures.
func describe(nodes ...*testNode) string {
	var b strings.Builder
	for i, n := range nodes {
		vv := n.j.store.VersionVector()
		fmt.Fprintf(&b, "\nnode %d: total %d digest %s stats %+v", i, vv.Total(), n.j.digest().String()[:8], n.j.store.Stats())
		for _, a := range vv.Authors() {
			fmt.Fprintf(&b, " %s:%d", a.Short(), vv[a])
		}
	}
	return b.String()
}
