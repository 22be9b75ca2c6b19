package node

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"

	"aura/crdt"
)

func TestMeshConvergesUnderConcurrentWrites(t *testing.T) {
	ns := newNodes(t, 4)
	formAccount(t, ns, 1)
	const per = 40
	var wg sync.WaitGroup
	for i, n := range ns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := 0; k < per; k++ {
				if _, err := n.Put(fmt.Sprintf("k/%d/%d", i, k), []byte(fmt.Sprintf("v%d", k))); err != nil {
					t.Error(err)
					return
				}
				if _, err := n.Put("shared", []byte(fmt.Sprintf("%d-%d", i, k))); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	waitConverged(t, 30*time.Second, ns)
	for _, n := range ns {
		for i := range ns {
			for k := 0; k < per; k++ {
				if v, ok := n.Get(fmt.Sprintf("k/%d/%d", i, k)); !ok || string(v) != fmt.Sprintf("v%d", k) {
					t.Fatalf("%s lacks k/%d/%d", n.Device().Short(), i, k)
				}
			}
		}
	}
	a, _ := ns[0].Get("shared")
	for _, n := range ns[1:] {
		if b, _ := n.Get("shared"); string(a) != string(b) {
			t.Fatalf("last-writer-wins differs: %q vs %q", a, b)
		}
	}
}

func TestOfflineNodeCatchesUp(t *testing.T) {
	if testing.Short() {
		t.Skip("10,000 facts")
	}
	dir := t.TempDir()
	var ns []*Node
	for i := 0; i < 3; i++ {
		ns = append(ns, startNode(t, filepath.Join(dir, fmt.Sprintf("n%d", i+1))))
	}
	formAccount(t, ns, 1)
	// Let the reconnect loop remember addresses, then stop node 3.
	waitFor(t, 10*time.Second, "peer addresses saved", func() bool {
		c := 0
		_ = ns[2].nmeta.Scan("peer/", func(string, []byte) error { c++; return nil })
		return c >= 2
	})
	if err := ns[2].Close(); err != nil {
		t.Fatal(err)
	}
	const total = 10_000
	start := time.Now()
	var wg sync.WaitGroup
	for w := 0; w < 2; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := w; k < total; k += 2 {
				if _, err := ns[w].Put(fmt.Sprintf("offline/%05d", k), []byte("x")); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	t.Logf("%d facts written in %s", total, time.Since(start))
	waitConverged(t, 120*time.Second, ns[:2])
	t.Logf("online nodes converged after %s", time.Since(start))
	ns[2] = startNode(t, filepath.Join(dir, "n3"))
	waitConverged(t, 120*time.Second, ns)
	t.Logf("restarted node caught up after %s", time.Since(start))
	for k := 0; k < total; k++ {
		if _, ok := ns[2].Get(fmt.Sprintf("offline/%05d", k)); !ok {
			t.Fatalf("restarted node lacks offline/%05d", k)
		}
	}
}

func TestOutsiderCannotConnectOrInject(t *testing.T) {
	ns := newNodes(t, 3)
	formAccount(t, ns[:2], 1)
	outsider := ns[2]
	if _, err := outsider.CreateAccount("other", 1); err != nil {
		t.Fatal(err)
	}
	// The outsider trusts the member (as if told about it). Right after an
	// invite the member admits unknown peers as guests, but only for the
	// join protocol: sync streams are refused.
	outsider.gater.trust(ns[0].host.ID(), true)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ai := peer.AddrInfo{ID: ns[0].host.ID(), Addrs: ns[0].host.Addrs()}
	if err := outsider.Connect(ctx, ai); err == nil {
		if err := outsider.SyncWith(ctx, ns[0].host.ID()); err == nil {
			t.Fatal("a guest ran a sync session with a member")
		}
	}
	_ = outsider.host.Network().ClosePeer(ns[0].host.ID())
	// Once no invite is open (nor recently closed), the connection itself
	// is refused.
	ns[0].mu.Lock()
	for _, r := range ns[0].invites {
		r.Expires = now() - 2*inviteGrace.Milliseconds()
	}
	ns[0].mu.Unlock()
	outsider.host.Peerstore().RemovePeer(ns[0].host.ID())
	if err := outsider.Connect(ctx, ai); err == nil {
		time.Sleep(200 * time.Millisecond)
		if ns[0].host.Network().Connectedness(outsider.host.ID()) == network.Connected {
			t.Fatal("member admitted a device outside the account")
		}
	}
	// Facts an outsider signs for the member's account are refused and never stored.
	acct := ns[0].Account()
	forged, err := crdt.NewFact(outsider.key, acct, 1, 1, 100, &crdt.Put{Key: "evil", Value: []byte("x")})
	if err != nil {
		t.Fatal(err)
	}
	res, err := journal{ns[0]}.Ingest([]*crdt.Fact{forged})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Added) != 0 || len(res.Rejected) != 1 {
		t.Fatalf("outsider's fact: added %d rejected %d", len(res.Added), len(res.Rejected))
	}
	if has, _ := ns[0].store.Has(forged.ID()); has {
		t.Fatal("outsider's fact stored")
	}
	if _, ok := ns[0].Get("evil"); ok {
		t.Fatal("outsider's fact changed the state")
	}
}

func TestForgedAndUnauthorizedFactsRejected(t *testing.T) {
	ns := newNodes(t, 2)
	formAccount(t, ns, 1)
	acct := ns[0].Account()
	// A member's fact with a broken signature.
	w := crdt.NewWriter(ns[1].key, acct, ns[1].VersionVector()[ns[1].Device()], 1000)
	good, err := w.Write(ns[1].Status().IdentityEpoch, &crdt.Put{Key: "forged", Value: []byte("x")})
	if err != nil {
		t.Fatal(err)
	}
	raw := append([]byte(nil), good.Bytes()...)
	raw[len(raw)-1] ^= 0xff
	bad, err := crdt.DecodeFact(raw)
	if err != nil {
		t.Fatal(err)
	}
	// A member (not admin) adding a device: lacks the admin capability.
	w2 := crdt.NewWriter(ns[1].key, acct, ns[1].VersionVector()[ns[1].Device()], 1000)
	var stranger crdt.DeviceID
	stranger[0] = 9
	unauth, err := w2.Write(ns[1].Status().IdentityEpoch+1, &crdt.DeviceAdded{Device: stranger, Capabilities: crdt.AllCapabilities})
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []*crdt.Fact{bad, unauth} {
		res, err := journal{ns[0]}.Ingest([]*crdt.Fact{f})
		if err != nil {
			t.Fatal(err)
		}
		if len(res.Added) != 0 {
			t.Fatalf("%s fact was stored", f.Kind)
		}
		if has, _ := ns[0].store.Has(f.ID()); has {
			t.Fatalf("%s fact stored", f.Kind)
		}
	}
	for _, d := range ns[0].Members() {
		if d == stranger {
			t.Fatal("unauthorized DeviceAdded took effect")
		}
	}
	// Nor does gossip validation let them through: the guard refuses.
	if err := (journal{ns[0]}).Check(unauth); !errors.Is(err, crdt.ErrUnauthorized) {
		t.Fatalf("Check(unauthorized) = %v", err)
	}
}

func TestInviteExpiredOrReused(t *testing.T) {
	ns := newNodes(t, 3)
	if _, err := ns[0].CreateAccount("t", 1); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	expired, _, err := ns[0].Invite(time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(20 * time.Millisecond)
	if _, err := ns[1].Join(ctx, expired); err == nil || !strings.Contains(err.Error(), "invite expired") {
		t.Fatalf("expired invite: %v", err)
	}
	code, _, err := ns[0].Invite(0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ns[1].Join(ctx, code); err != nil {
		t.Fatal(err)
	}
	if _, err := ns[2].Join(ctx, code); err == nil || !strings.Contains(err.Error(), "invite already used") {
		t.Fatalf("reused invite: %v", err)
	}
	if !ns[2].Account().IsZero() {
		t.Fatal("refused joiner bound to the account")
	}
	// The refusal survives a restart of the inviter (the record is durable).
	if _, err := decodeInvite("aura1garbage"); err == nil {
		t.Fatal("damaged code accepted")
	}
}

// Devices that joined through the admin, with no bootstrap peers and no
// mDNS, find each other by peer exchange, and keep working together when
// the admin is gone.
func TestDevicesFindEachOtherThroughPeers(t *testing.T) {
	ns := newNodes(t, 3)
	createAndJoin(t, ns, 1)
	a, b := ns[1], ns[2]
	waitFor(t, 20*time.Second, "the two joiners to connect", func() bool {
		return a.host.Network().Connectedness(b.host.ID()) == network.Connected
	})
	ns[0].Close()
	if _, err := a.Put("after-admin", []byte("still here")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 20*time.Second, "the write to reach the other joiner", func() bool {
		v, ok := b.Get("after-admin")
		return ok && string(v) == "still here"
	})
}

func TestRestartLosesNothingAcknowledged(t *testing.T) {
	dir := t.TempDir()
	home := filepath.Join(dir, "a")
	a := startNode(t, home)
	if _, err := a.CreateAccount("t", 1); err != nil {
		t.Fatal(err)
	}
	for k := 0; k < 200; k++ {
		if _, err := a.Put(fmt.Sprintf("k%d", k), []byte("v")); err != nil {
			t.Fatal(err)
		}
	}
	digest := a.Digest()
	a.Close()
	a = startNode(t, home)
	if a.Digest() != digest {
		t.Fatal("state changed across restart")
	}
	for k := 0; k < 200; k++ {
		if _, ok := a.Get(fmt.Sprintf("k%d", k)); !ok {
			t.Fatalf("k%d lost", k)
		}
	}
	// Offline-first: writes work with no peers at all.
	if _, err := a.Put("offline", []byte("yes")); err != nil {
		t.Fatal(err)
	}
}

func TestDemo(t *testing.T) {
	if testing.Short() {
		t.Skip("demo")
	}
	var b strings.Builder
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	if err := RunDemo(ctx, &b, DemoOptions{Nodes: 3, Dir: t.TempDir(), Logger: testLogger(t)}); err != nil {
		t.Fatalf("%v\n%s", err, b.String())
	}
	t.Log(b.String())
}
