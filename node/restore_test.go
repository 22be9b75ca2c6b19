package node

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"aura/crdt"
)

// startBootstrapped restarts the node in home with boot as its bootstrap
// peer (its config file untouched).
func startBootstrapped(t *testing.T, home string, boot *Node) *Node {
	t.Helper()
	cfg, err := LoadConfig(home)
	if err != nil {
		t.Fatal(err)
	}
	addrs, err := peer.AddrInfoToP2pAddrs(&peer.AddrInfo{ID: boot.host.ID(), Addrs: boot.host.Addrs()})
	if err != nil || len(addrs) == 0 {
		t.Fatalf("bootstrap address of %s: %v", boot.Device().Short(), err)
	}
	cfg.Bootstrap = []string{addrs[0].String()}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	n, err := New(ctx, Options{Home: home, Config: &cfg, Logger: testLogger(t).With("node", filepath.Base(home)), NoSocket: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	return n
}

// completeSnapshot writes a few facts on the nodes, proposes on the first
// and waits until every one of them collected the round.
func completeSnapshot(t *testing.T, ns []*Node, tag string) [16]byte {
	t.Helper()
	for k := 0; k < 6; k++ {
		if _, err := ns[k%len(ns)].Put(fmt.Sprintf("%s/%d", tag, k), []byte(tag)); err != nil {
			t.Fatal(err)
		}
	}
	waitConverged(t, 20*time.Second, ns)
	info, err := ns[0].Propose()
	if err != nil {
		t.Fatal(err)
	}
	id := proposalID(t, info)
	waitFor(t, 30*time.Second, "snapshot "+tag+" completed and collected", func() bool {
		for _, n := range ns {
			if !collected(n, id) {
				return false
			}
		}
		return true
	})
	return id
}

func base(n *Node) [16]byte {
	n.mu.Lock()
	defer n.mu.Unlock()
	id, _ := n.rep.Base()
	return id
}

// TestOfflineThroughTwoSnapshotsRestoresNewest is issue 10's first
// reproduction: 3 devices, a 2-of-3 key, one completed snapshot; n3 stops,
// restarts alone and writes one fact, stops; n1 and n2 complete two more
// snapshots; n3 starts with n2 as its bootstrap peer. It must restore from
// the newest snapshot (not the stale one it rests on), bring its offline
// write to the others, and end with their digest; `aura-cli restore`
// (Node.Restore) then names the newest snapshot too.
func TestOfflineThroughTwoSnapshotsRestoresNewest(t *testing.T) {
	ns := newNodes(t, 3)
	formAccount(t, ns, 2)
	keygen(t, ns, 2)
	first := completeSnapshot(t, ns, "one")

	n3, up := ns[2], ns[:2]
	home3, peer3 := n3.Home(), n3.host.ID()
	if err := n3.Close(); err != nil {
		t.Fatal(err)
	}
	// Alone: its peers refuse it while it writes.
	for _, n := range up {
		n.Block(peer3, true)
	}
	n3 = startNode(t, home3)
	if base(n3) != first {
		t.Fatalf("n3 should rest on the first snapshot, rests on %x", base(n3))
	}
	offID, err := n3.Put("offline/n3", []byte("kept"))
	if err != nil || offID == (crdt.FactID{}) {
		t.Fatalf("offline write: id %v, %v", offID, err)
	}
	offSeq := n3.VersionVector()[n3.Device()]
	if err := n3.Close(); err != nil {
		t.Fatal(err)
	}
	for _, n := range up {
		n.Block(peer3, false)
		if got := n.VersionVector()[n3.Device()]; got >= offSeq {
			t.Fatalf("%s got the offline write while n3 was alone", n.Device().Short())
		}
	}

	second := completeSnapshot(t, up, "two")
	third := completeSnapshot(t, up, "three")
	if second == first || third == second {
		t.Fatal("the rounds did not complete new snapshots")
	}

	start := time.Now()
	n3 = startBootstrapped(t, home3, up[1])
	waitFor(t, 60*time.Second, "n3 restored from the newest snapshot", func() bool { return base(n3) == third })
	restored := time.Since(start)
	all := []*Node{up[0], up[1], n3}
	waitConverged(t, 60*time.Second, all)
	t.Logf("n3 restored from the newest snapshot %s after start, converged after %s", restored.Round(time.Millisecond), time.Since(start).Round(time.Millisecond))
	for _, n := range all {
		if v, ok := n.Get("offline/n3"); !ok || string(v) != "kept" {
			t.Fatalf("%s lacks n3's offline write", n.Device().Short())
		}
		if got := n.VersionVector()[n3.Device()]; got != offSeq {
			t.Fatalf("%s holds n3's chain to seq %d, want %d", n.Device().Short(), got, offSeq)
		}
		for _, k := range []string{"one/0", "two/5", "three/5"} {
			if _, ok := n.Get(k); !ok {
				t.Fatalf("%s lacks %s", n.Device().Short(), k)
			}
		}
	}
	if d := n3.Digest(); d != up[0].Digest() || d != up[1].Digest() {
		t.Fatal("digests differ")
	}

	// `aura-cli restore` on the caught-up device names the newest snapshot
	// and restores nothing.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res, err := n3.Restore(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if want := proposalHex(third); res.Snapshot.ID != want || !res.UpToDate || res.Bytes != 0 {
		t.Fatalf("restore on a caught-up device: %+v, want snapshot %s up to date", res, want)
	}
}

func proposalHex(id [16]byte) string { return fmt.Sprintf("%x", id[:]) }
