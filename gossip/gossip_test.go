package gossip

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	pb "github.com/libp2p/go-libp2p-pubsub/pb"
	"go.uber.org/goleak"

	"aura/crdt"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func TestThreeNodesConverge(t *testing.T) {
	a := newAccount(t, 3)
	nodes := []*testNode{newNode(t, a, 0), newNode(t, a, 1), newNode(t, a, 2)}
	defer func() {
		for _, n := range nodes {
			n.close()
		}
	}()
	connect(t, nodes[0].h, nodes[1].h)
	connect(t, nodes[1].h, nodes[2].h)
	connect(t, nodes[0].h, nodes[2].h)
	waitPeers(t, 2, nodes...)

	const perNode = 300
	var wg sync.WaitGroup
	for i, n := range nodes {
		wg.Go(func() {
			for round := range 3 {
				n.write(t, perNode/3, fmt.Sprintf("n%d/r%d", i, round))
				time.Sleep(5 * time.Millisecond)
			}
		})
	}
	wg.Wait()
	total := uint64(len(a.setup) + 3*perNode)
	waitFor(t, 30*time.Second, "convergence", func() bool { return converged(total, nodes...) }, nodes...)

	var viaGossip uint64
	for _, n := range nodes {
		s := n.g.Stats()
		viaGossip += s.GossipFactsIn
		if s.BatchesPublished == 0 || s.BatchesPublished > s.FactsPublished {
			t.Errorf("batches %d for %d facts", s.BatchesPublished, s.FactsPublished)
		}
	}
	t.Logf("facts received by gossip: %d of %d", viaGossip, 2*3*perNode)
	for i, n := range nodes {
		t.Logf("node %d: %+v", i, n.g.Stats())
	}
	if viaGossip == 0 {
		t.Error("nothing arrived by gossip")
	}
}

func TestOfflineNodeCatchesUp(t *testing.T) {
	a := newAccount(t, 3)
	var restored []SyncEvent
	var mu sync.Mutex
	onSync := func(c *Config) {
		c.OnSync = func(ev SyncEvent) {
			mu.Lock()
			restored = append(restored, ev)
			mu.Unlock()
		}
	}
	x, y := newNode(t, a, 0), newNode(t, a, 1)
	z := newNode(t, a, 2, onSync)
	defer x.close()
	defer y.close()
	defer z.close()
	connect(t, x.h, y.h)
	waitPeers(t, 1, x, y)

	const n = 10000
	start := time.Now()
	facts := a.putFacts(t, 1, 0, 100, n)
	t.Logf("signed %d facts in %v", n, time.Since(start))
	start = time.Now()
	for k := 0; k < n; k += 100 {
		if _, err := y.j.Ingest(facts[k : k+100]); err != nil {
			t.Fatal(err)
		}
		y.g.Publish(facts[k : k+100])
	}
	total := uint64(len(a.setup) + n)
	waitFor(t, 60*time.Second, "x and y converge", func() bool { return converged(total, x, y) }, x, y)
	if got := z.j.store.VersionVector().Total(); got != uint64(len(a.setup)) {
		t.Fatalf("offline node holds %d facts", got)
	}

	t.Logf("x has them after %v", time.Since(start))
	start = time.Now()
	connect(t, z.h, x.h) // sync on join
	waitFor(t, 60*time.Second, "z catches up", func() bool { return converged(total, x, y, z) }, x, y, z)
	s := z.g.Stats()
	// Gossipsub may still advertise its last few messages (IHAVE) to the
	// newcomer; everything else must come by sync.
	t.Logf("z got %d facts by sync, %d by gossip", s.SyncFactsIn, s.GossipFactsIn)
	if s.SyncFactsIn+s.GossipFactsIn != n || s.SyncFactsIn == 0 {
		t.Errorf("z got %d facts by sync and %d by gossip, want %d", s.SyncFactsIn, s.GossipFactsIn, n)
	}
	if s.SyncsOnJoin+s.SyncSessions == 0 {
		t.Error("no sync on join")
	}
	mu.Lock()
	defer mu.Unlock()
	if len(restored) == 0 {
		t.Error("OnSync never called")
	}
}

// attacker is a raw gossipsub peer on the account's topic: it publishes
// whatever bytes it likes.
type attacker struct {
	cancel context.CancelFunc
	topic  *pubsub.Topic
	ps     *pubsub.PubSub
}

func newAttacker(t *testing.T, n *testNode, topic string, opts ...pubsub.Option) *attacker {
	ctx, cancel := context.WithCancel(context.Background())
	opts = append([]pubsub.Option{
		pubsub.WithMessageSignaturePolicy(pubsub.StrictNoSign), pubsub.WithNoAuthor(),
		pubsub.WithMessageIdFn(func(m *pb.Message) string { return MessageID(m.Data) }),
		pubsub.WithLogger(testLogger().With("node", "attacker"))}, opts...)
	ps, err := pubsub.NewGossipSub(ctx, n.h, opts...)
	if err != nil {
		t.Fatal(err)
	}
	tp, err := ps.Join(topic)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tp.Subscribe(); err != nil { // be a topic peer; never read
		t.Fatal(err)
	}
	return &attacker{cancel: cancel, topic: tp, ps: ps}
}

func (m *attacker) publish(t *testing.T, facts ...*crdt.Fact) {
	t.Helper()
	m.publishRaw(t, encodeBatch(facts))
}

func (m *attacker) publishRaw(t *testing.T, data []byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := m.topic.Publish(ctx, data); err != nil {
		t.Fatal(err)
	}
}

func TestValidatorRejects(t *testing.T) {
	a := newAccount(t, 3)
	x, y := newNode(t, a, 0), newNode(t, a, 1)
	defer x.close()
	defer y.close()
	mal := &testNode{h: newHost(t, deviceKey(99))}
	defer mal.h.Close()
	m := newAttacker(t, mal, TopicName(a.id))
	defer m.cancel()
	connect(t, x.h, y.h)
	connect(t, mal.h, x.h)
	connect(t, mal.h, y.h)
	waitPeers(t, 2, x, y)
	waitFor(t, 10*time.Second, "attacker on topic", func() bool { return len(m.topic.ListPeers()) == 2 })

	// Gossipsub drops what is published before the attacker's router has
	// settled; probe with valid facts until both nodes receive one.
	good := a.putFacts(t, 2, 0, 50, 60)
	probe := 2
	waitFor(t, 20*time.Second, "attacker's messages arrive", func() bool {
		if probe == len(good) {
			return false
		}
		m.publish(t, good[probe])
		probe++
		time.Sleep(50 * time.Millisecond)
		for _, n := range []*testNode{x, y} {
			if n.g.Stats().GossipFactsIn == 0 {
				return false
			}
		}
		return true
	})

	// A forged fact: device 2's first Put with one bit of its signature
	// flipped.
	raw := append([]byte(nil), good[0].Bytes()...)
	raw[len(raw)-1] ^= 1
	forged, err := crdt.DecodeFact(raw)
	if err != nil {
		t.Fatal(err)
	}
	// An unauthorized fact: a key that is no member of the account.
	stranger := deviceKey(42)
	unauth, err := crdt.NewFact(stranger, a.id, 1, a.epoch, 60, &crdt.Put{Key: "evil", Value: []byte("x")})
	if err != nil {
		t.Fatal(err)
	}
	// A fact of another account, signed by a member.
	other := a.id
	other[0] ^= 0xff
	foreign, err := crdt.NewFact(a.keys[2], other, 1, a.epoch, 60, &crdt.Put{Key: "k", Value: []byte("x")})
	if err != nil {
		t.Fatal(err)
	}
	// A mixed batch: a good fact does not carry a forged one through.
	m.publish(t, forged)
	m.publish(t, unauth)
	m.publish(t, foreign)
	m.publish(t, good[1], forged)
	m.publishRaw(t, []byte{0x81, 0x43, 1, 2, 3})
	m.publishRaw(t, make([]byte, MaxMessageBytes+1))
	m.publish(t, good[0]) // the control: a valid fact relayed by anyone is fine

	for _, n := range []*testNode{x, y} {
		waitFor(t, 10*time.Second, "control fact", func() bool {
			ok, _ := n.j.store.Has(good[0].ID())
			return ok
		})
		want := map[string]uint64{ReasonSignature: 2, ReasonUnauthorized: 1, ReasonAccount: 1, ReasonMalformed: 1, ReasonTooLarge: 1}
		waitFor(t, 10*time.Second, "rejections counted", func() bool {
			r := n.g.Stats().Rejected
			for k, v := range want {
				if r[k] < v {
					return false
				}
			}
			return true
		})
		for _, f := range []*crdt.Fact{forged, unauth, foreign, good[1]} {
			if ok, _ := n.j.store.Has(f.ID()); ok {
				t.Errorf("stored a fact that should have been rejected: %s by %s", f.ID(), f.Author.Short())
			}
		}
		t.Logf("rejected: %v", n.g.Stats().Rejected)
	}
}

func TestPublishCoalesces(t *testing.T) {
	a := newAccount(t, 2)
	x, y := newNode(t, a, 0), newNode(t, a, 1)
	defer x.close()
	defer y.close()
	connect(t, x.h, y.h)
	waitPeers(t, 1, x, y)
	facts := a.putFacts(t, 1, 0, 10, 2000)
	if _, err := y.j.Ingest(facts); err != nil {
		t.Fatal(err)
	}
	for _, f := range facts {
		y.g.Publish([]*crdt.Fact{f})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := y.g.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	s := y.g.Stats()
	if s.FactsPublished != 2000 || s.BatchesPublished > 100 {
		t.Errorf("published %d facts in %d batches", s.FactsPublished, s.BatchesPublished)
	}
	waitFor(t, 30*time.Second, "delivery", func() bool { return converged(uint64(len(a.setup)+2000), x, y) })
}

func TestSyncEvidenceAndRestore(t *testing.T) {
	a := newAccount(t, 3)
	x, y := newNode(t, a, 0, noAutoSync), newNode(t, a, 1, noAutoSync)
	defer x.close()
	defer y.close()

	// Device 2 equivocates at seq 3; x holds both facts, y only one.
	facts := a.putFacts(t, 2, 0, 10, 5)
	twin := a.putFacts(t, 2, 2, 12, 1)[0]
	if _, err := x.j.Ingest(append(facts[:5:5], twin)); err != nil {
		t.Fatal(err)
	}
	if _, err := y.j.Ingest(facts[:3]); err != nil {
		t.Fatal(err)
	}
	connect(t, x.h, y.h)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	stats, err := y.g.SyncWith(ctx, x.h.ID())
	if err != nil {
		t.Fatal(err)
	}
	if stats.FactsIn != 3 { // seq 4, 5 and the conflicting fact
		t.Errorf("got %+v", stats)
	}
	// Both hold both facts; the lower id holds the slot (on x as on y).
	ev, _ := y.j.store.Evidence()
	pair := map[crdt.FactID]bool{facts[2].ID(): true, twin.ID(): true}
	if len(ev) != 1 || !pair[ev[0].Conflict] || !pair[ev[0].Kept] || ev[0].Kept == ev[0].Conflict {
		t.Errorf("evidence %+v", ev)
	}
	hx, _ := x.j.store.ChainHash(dev(a.keys[2]), 5)
	hy, _ := y.j.store.ChainHash(dev(a.keys[2]), 5)
	if hx != hy {
		t.Error("the two chains of the equivocator differ")
	}
	// Again: nothing to send either way.
	stats, err = x.g.SyncWith(ctx, y.h.ID())
	if err != nil || stats.FactsIn != 0 || stats.FactsOut != 0 {
		t.Errorf("second sync: %+v %v", stats, err)
	}

	// x prunes device 2's facts to 4: a fresh node cannot get them.
	if _, _, err := x.j.store.Prune(crdt.VersionVector{dev(a.keys[2]): 4}); err != nil {
		t.Fatal(err)
	}
	z := newNode(t, a, 2, noAutoSync)
	defer z.close()
	connect(t, z.h, x.h)
	stats, err = z.g.SyncWith(ctx, x.h.ID())
	var rn *RestoreNeeded
	if !errors.Is(err, ErrNeedsRestore) || !errors.As(err, &rn) || len(rn.Behind) != 1 || rn.Behind[0].PrunedTo != 4 {
		t.Fatalf("want a restore for device 2, got %v", err)
	}
	if z.j.store.VersionVector().Total() != uint64(len(a.setup)) {
		t.Errorf("z got facts above the floor: %v", z.j.store.VersionVector())
	}
	if stats.FactsOut != 0 {
		t.Errorf("z sent %d facts", stats.FactsOut)
	}
	t.Logf("restore: %v", err)
	if x.g.Stats().SyncFactsOut == 0 || z.g.Stats().RestoresNeeded != 1 {
		t.Errorf("stats x %+v z %+v", x.g.Stats(), z.g.Stats())
	}
}

func noAutoSync(c *Config) {
	c.DisableSyncOnJoin = true
	c.SyncInterval = -1
	c.GapSyncDelay = -1
}

func TestSyncRefusesOtherAccount(t *testing.T) {
	a := newAccount(t, 1)
	x := newNode(t, a, 0, noAutoSync)
	defer x.close()
	bb := &account{keys: []ed25519.PrivateKey{deviceKey(5)}}
	w := crdt.NewWriter(bb.keys[0], crdt.AccountID{}, 0, 0)
	g, err := w.Genesis("other", 1, [16]byte{9})
	if err != nil {
		t.Fatal(err)
	}
	bb.id, bb.setup, bb.epoch = w.Account(), []*crdt.Fact{g}, 1
	y := newNode(t, bb, 0, noAutoSync)
	defer y.close()
	connect(t, x.h, y.h)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := x.g.SyncWith(ctx, y.h.ID()); !errors.Is(err, ErrPeerRefused) {
		t.Errorf("want refusal, got %v", err)
	}
	if x.j.store.VersionVector().Total() != 1 || y.j.store.VersionVector().Total() != 1 {
		t.Error("facts crossed accounts")
	}
}

func TestReconnectCatchesUp(t *testing.T) {
	a := newAccount(t, 2)
	x, y := newNode(t, a, 0), newNode(t, a, 1)
	defer x.close()
	defer y.close()
	connect(t, x.h, y.h)
	waitPeers(t, 1, x, y)
	x.write(t, 50, "before")
	total := uint64(len(a.setup) + 50)
	waitFor(t, 20*time.Second, "first round", func() bool { return converged(total, x, y) }, x, y)

	if err := y.h.Network().ClosePeer(x.h.ID()); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "disconnect", func() bool { return len(x.g.Peers()) == 0 && len(y.g.Peers()) == 0 })
	x.write(t, 200, "offline-x")
	y.write(t, 100, "offline-y")
	total += 300
	connect(t, y.h, x.h)
	waitFor(t, 20*time.Second, "reconvergence", func() bool { return converged(total, x, y) }, x, y)
	// The join sync or gossipsub's IHAVE/IWANT (for messages still in its
	// cache) may carry them; either way nothing is missing.
	t.Logf("after reconnect: x got %d by sync, y %d", x.g.Stats().SyncFactsIn, y.g.Stats().SyncFactsIn)
}

func TestNoPeersNothingBreaks(t *testing.T) {
	a := newAccount(t, 1)
	x := newNode(t, a, 0, func(c *Config) { c.SyncInterval = 20 * time.Millisecond })
	defer x.close()
	x.write(t, 20, "alone")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := x.g.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond) // a few periodic ticks with nobody to sync with
	if s := x.g.Stats(); s.FactsPublished != 20 || s.SyncErrors != 0 || s.PublishErrors != 0 {
		t.Errorf("stats %+v", s)
	}
}

// Each side holds one of an equivocator's two facts for one seq and no
// evidence: the chain heads in HELLO reveal the split, and both end up
// with both facts and the same chain.
func TestSyncHealsSplitEquivocation(t *testing.T) {
	a := newAccount(t, 3)
	x, y := newNode(t, a, 0, noAutoSync), newNode(t, a, 1, noAutoSync)
	defer x.close()
	defer y.close()
	facts := a.putFacts(t, 2, 0, 10, 3)
	twin := a.putFacts(t, 2, 2, 12, 1)[0] // another fact at seq 3
	if _, err := x.j.Ingest(facts); err != nil {
		t.Fatal(err)
	}
	if _, err := y.j.Ingest(append(facts[:2:2], twin)); err != nil {
		t.Fatal(err)
	}
	connect(t, x.h, y.h)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := y.g.SyncWith(ctx, x.h.ID()); err != nil {
		t.Fatal(err)
	}
	// The responder ingests what y sent on its own time.
	waitFor(t, 10*time.Second, "both sides hold both facts", func() bool {
		for _, n := range []*testNode{x, y} {
			for _, f := range []*crdt.Fact{facts[2], twin} {
				if ok, _ := n.j.store.Has(f.ID()); !ok {
					return false
				}
			}
		}
		return true
	})
	d := dev(a.keys[2])
	hx, _ := x.j.store.ChainHash(d, 3)
	hy, _ := y.j.store.ChainHash(d, 3)
	if hx != hy {
		t.Fatal("chains still differ after sync")
	}
}
