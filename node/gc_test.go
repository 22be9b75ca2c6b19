package node

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
	"time"

	"aura/crdt"
)

// ---- helpers shared with bench_test.go ----

// startNodeWith starts (or restarts) a node in home; on first start its
// config is TestConfig edited by edit.
func startNodeWith(tb testing.TB, home string, edit func(*Config)) *Node {
	tb.Helper()
	if _, err := os.Stat(filepath.Join(home, ConfigFile)); err != nil && edit != nil {
		cfg := TestConfig()
		cfg.Name = filepath.Base(home)
		edit(&cfg)
		if _, err := Init(home, InitOptions{Config: &cfg}); err != nil {
			tb.Fatal(err)
		}
	}
	return startNode(tb, home)
}

// restartNode closes n and starts it again on the same home.
func restartNode(tb testing.TB, n *Node) *Node {
	tb.Helper()
	home := n.Home()
	if err := n.Close(); err != nil {
		tb.Fatal(err)
	}
	return startNode(tb, home)
}

// preloadOwn signs count application facts of about factSize bytes as n's
// own device and hands them to n through its ingest path (journal.Ingest,
// the entry gossip and sync use) in durable batches of a few thousand: a
// Put costs one fsync, this one per batch. Keys cycle over keys names under
// prefix, values are random (incompressible). The replica's writer does not
// see these facts, so n must be restarted (restartNode) before it writes
// again; until then it must not write (nor vote). It returns n's seq after
// the load.
func preloadOwn(tb testing.TB, n *Node, prefix string, count, keys, factSize int) uint64 {
	tb.Helper()
	return preloadInto(tb, n, []*Node{n}, prefix, count, keys, factSize)
}

// preloadInto is preloadOwn that hands each batch of n's facts to every
// node of into through its ingest path, as if gossip had brought them: a
// mesh loaded this way holds the same journal everywhere without
// replicating it first. The facts were signed here, so the receivers do
// not check their signatures again. When n is among into it receives
// first; otherwise n only signs (it may be closed) and the facts continue
// the journal of into[0], which must hold every fact n wrote.
func preloadInto(tb testing.TB, n *Node, into []*Node, prefix string, count, keys, factSize int) uint64 {
	tb.Helper()
	var targets []*Node // n first: sync may bring the others n's facts meanwhile, never n itself
	for _, r := range into {
		if r == n {
			targets = append([]*Node{n}, targets...)
		} else {
			targets = append(targets, r)
		}
	}
	head := targets[0] // whose journal the facts continue
	head.mu.Lock()
	acct, epoch := head.rep.Account(), head.rep.State().Epoch
	head.mu.Unlock()
	vv := head.store.VersionVector()
	var lamport uint64
	for a, s := range vv {
		if f, err := head.store.BySeq(a, s); err == nil && f.Lamport > lamport {
			lamport = f.Lamport
		}
	}
	seq := vv[n.device]
	// Size the value so the fact comes out at about factSize bytes.
	probe, err := crdt.NewFact(n.key, acct, seq+1, epoch, lamport+1, &crdt.Put{Key: fmt.Sprintf("%s/%08d", prefix, 0), Value: make([]byte, 100)})
	if err != nil {
		tb.Fatal(err)
	}
	valueSize := max(1, factSize-(probe.Size()-100))
	rng := rand.New(rand.NewChaCha8([32]byte{byte(count), byte(count >> 8), byte(count >> 16), prefix[0]}))
	const batch = 4096
	workers := runtime.GOMAXPROCS(0)
	facts := make([]*crdt.Fact, batch)
	for done := 0; done < count; {
		k := min(batch, count-done)
		values := make([][]byte, k)
		for i := range values {
			values[i] = make([]byte, valueSize)
			for j := 0; j < valueSize; j += 8 {
				v := rng.Uint64()
				for b := 0; b < 8 && j+b < valueSize; b++ {
					values[i][j+b] = byte(v >> (8 * b))
				}
			}
		}
		var wg sync.WaitGroup
		errs := make([]error, workers)
		for w := 0; w < workers; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := w; i < k; i += workers {
					x := uint64(done + i + 1)
					body := &crdt.Put{Key: fmt.Sprintf("%s/%08d", prefix, (done+i)%keys), Value: values[i]}
					f, err := crdt.NewFact(n.key, acct, seq+x, epoch, lamport+x, body)
					if err != nil {
						errs[w] = err
						return
					}
					facts[i] = f
				}
			}()
		}
		wg.Wait()
		if err := errors.Join(errs...); err != nil {
			tb.Fatal(err)
		}
		for _, r := range targets {
			res, err := journal{r}.Ingest(facts[:k])
			if err != nil {
				tb.Fatal(err)
			}
			// Sync may have brought some of them to r already.
			if len(res.Rejected) > 0 || len(res.Added)+res.Duplicates != k || (r == n && len(res.Added) != k) {
				tb.Fatalf("preload: %d of %d facts added (%d held), %d rejected (first: %v)", len(res.Added), k, res.Duplicates, len(res.Rejected), res.Rejected)
			}
		}
		done += k
	}
	return seq + uint64(count)
}

// diskUsage is what a Pebble directory takes on disk (regular files,
// apart from file system blocks): in total, in sstables, and in WAL files
// (Pebble keeps retired WAL files for reuse: a bounded amount that does
// not shrink with the data).
type diskUsage struct{ Total, SST, WAL int64 }

func dirUsage(tb testing.TB, dir string) diskUsage {
	tb.Helper()
	var u diskUsage
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil // removed by Pebble meanwhile
			}
			return err
		}
		if !d.Type().IsRegular() {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		u.Total += info.Size()
		switch filepath.Ext(path) {
		case ".sst":
			u.SST += info.Size()
		case ".log":
			u.WAL += info.Size()
		}
		return nil
	})
	if err != nil {
		tb.Fatal(err)
	}
	return u
}

// storeUsage is the node's Pebble directory after a flush (so the figure
// is sstables, not a WAL a flush would retire).
func storeUsage(tb testing.TB, n *Node) diskUsage {
	tb.Helper()
	if err := n.store.DB().Flush(); err != nil {
		tb.Fatal(err)
	}
	return dirUsage(tb, filepath.Join(n.Home(), DataDir))
}

// shrunkStoreUsage waits up to d for the Pebble directory to drop below
// before bytes (Pebble deletes obsolete files in the background) and
// returns its usage then.
func shrunkStoreUsage(tb testing.TB, n *Node, before int64, d time.Duration) diskUsage {
	tb.Helper()
	deadline := time.Now().Add(d)
	for {
		u := storeUsage(tb, n)
		if u.Total < before || time.Now().After(deadline) {
			return u
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// waitHolds waits until every node's version vector covers want.
func waitHolds(tb testing.TB, d time.Duration, ns []*Node, want crdt.VersionVector) {
	tb.Helper()
	waitFor(tb, d, fmt.Sprintf("%d facts on every node", want.Total()), func() bool {
		for _, n := range ns {
			if !n.VersionVector().Covers(want) {
				return false
			}
		}
		return true
	})
}

// collected reports whether n verified and garbage-collected the snapshot
// round id.
func collected(n *Node, id [16]byte) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	g := n.rep.LastGC()
	return g != nil && g.Proposal == id
}

func proposalID(tb testing.TB, info *SnapshotInfo) [16]byte {
	tb.Helper()
	var id [16]byte
	b, err := hex.DecodeString(info.ID)
	if err != nil || len(b) != len(id) {
		tb.Fatalf("proposal id %q: %v", info.ID, err)
	}
	copy(id[:], b)
	return id
}

// ---- tests ----

func TestGCShrinksPebbleDir(t *testing.T) {
	if testing.Short() {
		t.Skip("20,000 facts")
	}
	ns := newNodes(t, 3)
	formAccount(t, ns, 2)
	keygen(t, ns, 2)
	// 20,000 facts of ~300 bytes over 500 keys: a journal of ~6 MB whose
	// state is small, as when the same keys are rewritten for a while.
	const total = 20_000
	want := ns[0].VersionVector()
	loaded := 0
	for i, n := range ns {
		want[n.device] = preloadOwn(t, n, fmt.Sprintf("gc%d", i), total/len(ns), 500, 300)
		loaded += total / len(ns)
	}
	for i := range ns {
		ns[i] = restartNode(t, ns[i])
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	meshUp(ctx, ns)
	waitHolds(t, 60*time.Second, ns, want)
	waitConverged(t, 30*time.Second, ns)

	before := make([]diskUsage, len(ns))
	for i, n := range ns {
		before[i] = storeUsage(t, n)
	}
	info, err := ns[0].Propose()
	if err != nil {
		t.Fatal(err)
	}
	id := proposalID(t, info)
	waitFor(t, 60*time.Second, "completion and GC everywhere", func() bool {
		for _, n := range ns {
			if !collected(n, id) {
				return false
			}
		}
		return true
	})
	for i, n := range ns {
		after := shrunkStoreUsage(t, n, before[i].Total, 10*time.Second)
		st := n.store.Stats()
		t.Logf("node%d: Pebble dir %.1f MB → %.1f MB (sstables %.1f → %.1f MB, WAL %.1f → %.1f MB); journal %d facts left, %d pruned (%.1f MB)",
			i+1, mb(before[i].Total), mb(after.Total), mb(before[i].SST), mb(after.SST), mb(before[i].WAL), mb(after.WAL),
			st.Facts, st.PrunedFacts, mb(int64(st.PrunedBytes)))
		if after.Total >= before[i].Total || after.SST >= before[i].SST {
			t.Errorf("node%d: Pebble dir did not shrink: %+v → %+v", i+1, before[i], after)
		}
		if st.PrunedFacts < uint64(loaded) {
			t.Errorf("node%d: %d facts pruned, want at least %d", i+1, st.PrunedFacts, loaded)
		}
	}
	// The state survived the GC.
	for _, n := range ns {
		if _, ok := n.Get("gc0/00000499"); !ok {
			t.Fatalf("%s lost gc0/00000499", n.Device().Short())
		}
	}
}

func TestOfflineAcrossGCRestoresAndKeepsWrites(t *testing.T) {
	dir := t.TempDir()
	var ns []*Node
	for i := 0; i < 3; i++ {
		ns = append(ns, startNode(t, filepath.Join(dir, fmt.Sprintf("n%d", i+1))))
	}
	formAccount(t, ns, 2)
	keygen(t, ns, 2)
	for k := 0; k < 30; k++ {
		if _, err := ns[k%3].Put(fmt.Sprintf("before/%d", k), []byte("v")); err != nil {
			t.Fatal(err)
		}
	}
	waitConverged(t, 20*time.Second, ns)
	// The node to stop must know where its peers are to come back.
	waitFor(t, 10*time.Second, "peer addresses saved", func() bool {
		c := 0
		_ = ns[2].nmeta.Scan("peer/", func(string, []byte) error { c++; return nil })
		return c >= 2
	})
	off, up := ns[2], ns[:2]
	offPeer, offDevice, offHome := off.host.ID(), off.Device(), off.Home()
	offVV := off.VersionVector()
	if err := off.Close(); err != nil {
		t.Fatal(err)
	}

	// The others write, complete a snapshot and collect below it.
	for k := 0; k < 40; k++ {
		if _, err := up[k%2].Put(fmt.Sprintf("during/%d", k), []byte("v")); err != nil {
			t.Fatal(err)
		}
	}
	waitConverged(t, 20*time.Second, up)
	info, err := up[0].Propose()
	if err != nil {
		t.Fatal(err)
	}
	id := proposalID(t, info)
	waitFor(t, 30*time.Second, "completion and GC on the devices that are up", func() bool {
		return collected(up[0], id) && collected(up[1], id)
	})
	for _, n := range up {
		// What the stopped node lacks is gone: below the pruned prefix.
		if p := n.store.PrunedTo(); p[up[0].device] <= offVV[up[0].device] || p[up[1].device] <= offVV[up[1].device] {
			t.Fatalf("%s did not prune past what the stopped node holds: pruned %v, stopped node %v", n.Device().Short(), p, offVV)
		}
	}
	for k := 0; k < 10; k++ {
		if _, err := up[1].Put(fmt.Sprintf("tail/%d", k), []byte("v")); err != nil {
			t.Fatal(err)
		}
	}

	// The stopped node writes while offline: its peers refuse it.
	for _, n := range up {
		n.Block(offPeer, true)
	}
	off = startNode(t, offHome)
	const offline = 25
	for k := 0; k < offline; k++ {
		id, err := off.Put(fmt.Sprintf("offline/%d", k), []byte("kept"))
		if err != nil || id == (crdt.FactID{}) {
			t.Fatalf("offline write %d: id %v, %v", k, id, err)
		}
	}
	// Its dials may complete a handshake before the peers' gaters drop the
	// connection, but nothing it wrote offline may reach them.
	offSeq := off.VersionVector()[offDevice]
	for _, n := range up {
		if got := n.VersionVector()[offDevice]; got >= offSeq {
			t.Fatalf("%s got the offline node's writes (seq %d of %d)", n.Device().Short(), got, offSeq)
		}
	}
	if err := off.Close(); err != nil {
		t.Fatal(err)
	}

	// It restarts on the same home with its peers reachable: it must
	// restore from the snapshot, keep its offline writes, and converge.
	for _, n := range up {
		n.Block(offPeer, false)
	}
	off = startNode(t, offHome)
	waitFor(t, 60*time.Second, "the restarted node restored from the snapshot", func() bool {
		off.mu.Lock()
		defer off.mu.Unlock()
		base, _ := off.rep.Base()
		return base == id
	})
	all := []*Node{up[0], up[1], off}
	waitConverged(t, 60*time.Second, all)
	if got := up[0].VersionVector()[offDevice]; got != offSeq {
		t.Fatalf("peers hold the restarted node's facts to seq %d, want %d", got, offSeq)
	}
	for _, n := range all {
		for k := 0; k < offline; k++ {
			if v, ok := n.Get(fmt.Sprintf("offline/%d", k)); !ok || string(v) != "kept" {
				t.Fatalf("%s lacks offline/%d", n.Device().Short(), k)
			}
		}
		for _, key := range []string{"before/0", "before/29", "during/0", "during/39", "tail/9"} {
			if _, ok := n.Get(key); !ok {
				t.Fatalf("%s lacks %s", n.Device().Short(), key)
			}
		}
	}
}

func TestSnapshotAbandonedWhenTooManyDown(t *testing.T) {
	const timeout = 2 * time.Second
	dir := t.TempDir()
	var ns []*Node
	for i := 0; i < 5; i++ {
		ns = append(ns, startNodeWith(t, filepath.Join(dir, fmt.Sprintf("n%d", i+1)), func(c *Config) {
			c.Snapshot.Timeout = Duration(timeout)
		}))
	}
	formAccount(t, ns, 3)
	keygen(t, ns, 3)
	for i, n := range ns {
		if _, err := n.Put(fmt.Sprintf("before/%d", i), []byte("x")); err != nil {
			t.Fatal(err)
		}
	}
	waitConverged(t, 20*time.Second, ns)
	for _, n := range ns[2:] {
		if err := n.Close(); err != nil {
			t.Fatal(err)
		}
	}
	up := ns[:2]
	factsBefore := up[0].store.Stats().Facts
	start := time.Now()
	info, err := up[0].Propose()
	if err != nil {
		t.Fatal(err)
	}
	// During the round the proposer's application writes wait behind the fence.
	for k := 0; k < 3; k++ {
		id, err := up[0].Put(fmt.Sprintf("during/%d", k), []byte("fenced"))
		if err != nil {
			t.Fatal(err)
		}
		if id != (crdt.FactID{}) {
			t.Fatalf("write during the round committed at once (%s)", id)
		}
	}
	if s := up[0].Status(); s.Fence == nil || s.Fence.Buffered != 3 {
		t.Fatalf("fence during the round: %+v", s.Fence)
	}
	if _, ok := up[0].Get("during/0"); ok {
		t.Fatal("a fenced write is visible before the fence dropped")
	}
	waitFor(t, timeout+15*time.Second, "the round abandoned at its deadline", func() bool {
		s, err := up[0].Snapshot(info.ID)
		return err == nil && s.Status == "abandoned" && up[0].Status().Fence == nil
	})
	if el := time.Since(start); el < timeout-100*time.Millisecond {
		t.Fatalf("round abandoned after %s, before its %s deadline", el, timeout)
	}
	// The fence dropped: the buffered writes committed and reach the other
	// live node; new writes commit at once.
	id, err := up[0].Put("after", []byte("y"))
	if err != nil || id == (crdt.FactID{}) {
		t.Fatalf("write after the round: id %v, %v", id, err)
	}
	waitFor(t, 20*time.Second, "the fenced writes on both live nodes", func() bool {
		for _, n := range up {
			for _, k := range []string{"during/0", "during/1", "during/2", "after"} {
				if _, ok := n.Get(k); !ok {
					return false
				}
			}
		}
		return true
	})
	waitConverged(t, 20*time.Second, up)
	for _, n := range up {
		s := n.Status()
		if s.NewestSnapshot != nil || s.LastGC != nil {
			t.Fatalf("%s: an abandoned round completed or collected: %+v %+v", n.Device().Short(), s.NewestSnapshot, s.LastGC)
		}
		if si, err := n.Snapshot(info.ID); err != nil || si.Status != "abandoned" {
			t.Fatalf("%s: round %s: %+v, %v", n.Device().Short(), info.ID, si, err)
		}
	}
	if got := up[0].store.Stats().Facts; got < factsBefore {
		t.Fatalf("journal shrank without a snapshot: %d → %d facts", factsBefore, got)
	}
}

func mb(b int64) float64 { return float64(b) / (1 << 20) }

// With a single device (1-of-1 key) the round completes and collects
// inside Propose; Propose must still name it.
func TestProposeOnSingleDeviceAccountNamesRound(t *testing.T) {
	n := newNodes(t, 1)[0]
	if _, err := n.CreateAccount("solo", 1); err != nil {
		t.Fatal(err)
	}
	keygenAll(t, []*Node{n}, 1)
	for k := 0; k < 10; k++ {
		if _, err := n.Put(fmt.Sprintf("k%d", k), []byte("v")); err != nil {
			t.Fatal(err)
		}
	}
	info, err := n.Propose()
	if err != nil {
		t.Fatal(err)
	}
	if info.ID == "" || info.Status != "completed" || info.StateDigest == "" || info.Facts == 0 {
		t.Fatalf("Propose on a 1-of-1 account: %+v", info)
	}
	if !collected(n, proposalID(t, info)) {
		t.Fatal("the round did not collect")
	}
	if s := n.Status(); s.Fence != nil || s.NewestSnapshot == nil || s.NewestSnapshot.ID != info.ID {
		t.Fatalf("status after the round: fence %+v newest %+v", s.Fence, s.NewestSnapshot)
	}
}
