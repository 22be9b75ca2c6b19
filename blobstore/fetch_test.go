package blobstore

import (
	"bytes"
	"context"
	"errors"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"
)

// TestFetchTamperedPeer fetches a 20 MB blob from three peers, one of which
// corrupts every block it serves.
func TestFetchTamperedPeer(t *testing.T) {
	data := randomBytes(20, 20<<20)
	var log requestLog
	bad := newNode(t, log.hook("bad", true))
	// The good peers take 5 ms a block, so that the bad one surely gets work.
	good1 := newNode(t, log.hook("good1", false), slowServe(5*time.Millisecond))
	good2 := newNode(t, log.hook("good2", false), slowServe(5*time.Millisecond))
	var root cid.Cid
	for _, n := range []node{bad, good1, good2} {
		root = putBytes(t, n.s, data)
	}
	client := newNode(t)
	connect(t, client.h, bad.h, good1.h, good2.h)

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var calls int
	var last, lastTotal int64
	progress := func(done, total int64) {
		calls++
		if done < last {
			t.Errorf("progress went back from %d to %d", last, done)
		}
		last, lastTotal = done, total
	}
	// The bad peer comes first: it is handed the root.
	st, err := client.s.Fetch(ctx, root, []peer.ID{bad.h.ID(), good1.h.ID(), good2.h.ID()}, progress)
	if err != nil {
		t.Fatalf("fetch: %v (stats %+v)", err, st)
	}
	got, err := client.s.Get(ctx, root)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("fetched blob differs (err %v)", err)
	}
	if log.count("bad") == 0 {
		t.Fatal("the tampering peer was never asked for a block")
	}
	if b := st.Peers[bad.h.ID()]; !errors.Is(b.Err, ErrTamperedBlock) {
		t.Errorf("bad peer error %v, want ErrTamperedBlock", b.Err)
	}
	if banned := st.Banned(); !slices.Equal(banned, []peer.ID{bad.h.ID()}) {
		t.Errorf("Banned() = %v, want the bad peer", banned)
	}
	if st.Peers[bad.h.ID()].Blocks != 0 {
		t.Errorf("%d blocks accepted from the bad peer", st.Peers[bad.h.ID()].Blocks)
	}
	for _, g := range []node{good1, good2} {
		if ps := st.Peers[g.h.ID()]; ps.Err != nil {
			t.Errorf("good peer dropped: %v", ps.Err)
		}
	}
	if st.Fetched != 21 || st.Blocks != 21 || st.Held != 0 {
		t.Errorf("stats %+v, want 21 blocks fetched", st)
	}
	if calls < 2 || last != lastTotal || lastTotal < int64(len(data)) {
		t.Errorf("progress: %d calls, last %d/%d", calls, last, lastTotal)
	}

	// The ban outlives the fetch: asking only the bad peer fails at once.
	other := putBytes(t, bad.s, randomBytes(21, 1000))
	st, err = client.s.Fetch(ctx, other, []peer.ID{bad.h.ID()}, nil)
	if !errors.Is(err, ErrNoPeers) || !errors.Is(st.Peers[bad.h.ID()].Err, ErrBanned) {
		t.Fatalf("fetch from banned peer: %v, %+v", err, st)
	}
	if !slices.Equal(client.s.Banned(), []peer.ID{bad.h.ID()}) {
		t.Errorf("store bans %v", client.s.Banned())
	}
}

// TestFetchResume cancels a fetch midway, then fetches again and checks
// that no block held after the first attempt is asked for again.
func TestFetchResume(t *testing.T) {
	// 64 KiB chunks and 16 links: 8 MB is 128 leaves under 8 inner nodes.
	layout := withLayout(64<<10, 16)
	data := randomBytes(30, 8<<20)
	var log requestLog
	a := newNode(t, layout, log.hook("a", false))
	b := newNode(t, layout, log.hook("b", false))
	root := putBytes(t, a.s, data)
	putBytes(t, b.s, data)
	client := newNode(t, withFetchWindow(2, 2))
	connect(t, client.h, a.h, b.h)
	peers := []peer.ID{a.h.ID(), b.h.ID()}

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	first, stop := context.WithCancel(ctx)
	st, err := client.s.Fetch(first, root, peers, func(done, total int64) {
		if total > 0 && done >= total/3 {
			stop()
		}
	})
	stop()
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("first fetch: %v, want context.Canceled", err)
	}
	waitIdle(t, a.s)
	waitIdle(t, b.s)
	firstAsked := len(log.all())

	held := map[string]bool{}
	total := 0
	if err := client.s.walkLocal(ctx, root, func(c cid.Cid, h bool, _ int) bool {
		total++
		if h {
			held[c.KeyString()] = true
		}
		return true
	}); err != nil {
		t.Fatal(err)
	}
	t.Logf("first fetch: %d blocks asked, %d stored (%+v)", firstAsked, len(held), st)
	if len(held) == 0 || len(held) >= 137 {
		t.Fatalf("%d of 137 blocks held after the cancelled fetch; want a partial fetch", len(held))
	}

	log.reset()
	st, err = client.s.Fetch(ctx, root, peers, nil)
	if err != nil {
		t.Fatalf("second fetch: %v", err)
	}
	asked := log.all()
	for _, c := range asked {
		if held[c.KeyString()] {
			t.Errorf("block %s held after the first fetch was asked for again", c)
		}
	}
	distinct := map[string]bool{}
	for _, c := range asked {
		distinct[c.KeyString()] = true
	}
	if want := 137 - len(held); len(distinct) != want || st.Fetched != want {
		t.Errorf("second fetch asked for %d distinct blocks, fetched %d; want %d", len(distinct), st.Fetched, want)
	}
	if st.Held < len(held) || st.Blocks != 137 {
		t.Errorf("second fetch stats %+v; want Held ≥ %d, Blocks 137", st, len(held))
	}
	got, err := client.s.Get(ctx, root)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("resumed blob differs (err %v)", err)
	}
	// Nothing left to do: a third fetch asks nobody anything.
	log.reset()
	if st, err := client.s.Fetch(ctx, root, peers, nil); err != nil || st.Fetched != 0 || len(log.all()) != 0 {
		t.Fatalf("third fetch: %v, %+v, %d requests", err, st, len(log.all()))
	}
}

// TestFetchPeerWithout: one peer lacks the blob, another holds it.
func TestFetchPeerWithout(t *testing.T) {
	data := randomBytes(40, 3<<20)
	empty := newNode(t)
	full := newNode(t, slowServe(10*time.Millisecond))
	root := putBytes(t, full.s, data)
	client := newNode(t)
	connect(t, client.h, empty.h, full.h)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	// Only the empty peer: ErrNoPeers.
	if _, err := client.s.Fetch(ctx, root, []peer.ID{empty.h.ID()}, nil); !errors.Is(err, ErrNoPeers) {
		t.Fatalf("fetch from a peer without the blob: %v, want ErrNoPeers", err)
	}
	st, err := client.s.Fetch(ctx, root, []peer.ID{empty.h.ID(), full.h.ID()}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if st.Peers[empty.h.ID()].Missing == 0 {
		t.Errorf("the empty peer was never asked (stats %+v)", st)
	}
	if got, err := client.s.Get(ctx, root); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("blob differs (err %v)", err)
	}
}

// TestFetchStalledPeer: a peer that stops answering does not hold up the
// fetch: the end game asks the other peer for what is stuck there.
func TestFetchStalledPeer(t *testing.T) {
	data := randomBytes(50, 16<<20)
	release := make(chan struct{})
	var stalled atomic.Int32
	var root cid.Cid
	slow := newNode(t, withServeHook(func(_ peer.ID, c cid.Cid, d []byte) []byte {
		if !c.Equals(root) {
			stalled.Add(1)
			<-release
		}
		return d
	}))
	fast := newNode(t, slowServe(2*time.Millisecond))
	root = putBytes(t, slow.s, data)
	putBytes(t, fast.s, data)
	client := newNode(t, withFetchWindow(1, 1))
	connect(t, client.h, slow.h, fast.h)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	defer close(release) // let the stalled handler finish before hosts close
	start := time.Now()
	st, err := client.s.Fetch(ctx, root, []peer.ID{slow.h.ID(), fast.h.ID()}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if stalled.Load() == 0 {
		t.Fatal("the stalled peer was never asked for a leaf")
	}
	if d := time.Since(start); d < DefaultStallAfter {
		t.Errorf("fetch took %v, less than the end-game delay: was the slow peer really stuck?", d)
	}
	if n := st.Peers[fast.h.ID()].Blocks; n < 16 {
		t.Errorf("fast peer served %d blocks, want at least the 16 leaves (%+v)", n, st)
	}
	if ps := st.Peers[slow.h.ID()]; ps.Requested < 1 || ps.Err != nil {
		t.Errorf("slow peer stats %+v", ps)
	}
	if d := time.Since(start); d > 5*DefaultStallAfter {
		t.Errorf("fetch took %v with a stalled peer", d)
	}
}

func TestFetchNoHost(t *testing.T) {
	s := newStore(t)
	if _, err := s.Fetch(context.Background(), randomCID(t), nil, nil); !errors.Is(err, ErrNoHost) {
		t.Fatalf("Fetch without host: %v", err)
	}
}

// slowServe delays every block served by d. Several serve hooks compose.
func slowServe(d time.Duration) Option {
	return withServeHook(func(_ peer.ID, _ cid.Cid, data []byte) []byte {
		time.Sleep(d)
		return data
	})
}
