package node

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cockroachdb/pebble"
	"github.com/cockroachdb/pebble/vfs"

	"aura/crdt"
	"aura/threshold"
)

// The benchmarks below build their mesh and journal with the timer
// stopped and time one snapshot round per iteration; each iteration builds
// everything again. Run them with -benchtime 1x:
//
//	go test ./node/ -run '^$' -bench 'SnapshotRound100k|GCDisk100MB' -benchtime 1x

// keygenAll runs a DKG for an m-of-N key from ns[0] and waits until every
// node holds its share and the group key fact. The session's own
// deadlines are the product's (threshold.KeygenTimeouts); the waits after
// it grow with the mesh (meshWait), since the key fact has to reach every
// device sharing the same cores.
func keygenAll(tb testing.TB, ns []*Node, m int) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*dkgStreamDeadline)
	defer cancel()
	if _, err := ns[0].Keygen(ctx, m); err != nil {
		tb.Fatalf("keygen %d-of-%d: %v", m, len(ns), err)
	}
	wait := meshWait(len(ns))
	waitFor(tb, wait, "group key and shares everywhere", func() bool {
		for _, n := range ns {
			s := n.Status()
			if s.GroupKey == nil || !s.GroupKey.HasShare {
				return false
			}
		}
		return true
	})
	waitConverged(tb, wait, ns)
}

// meshWait is how long the benchmarks wait for something to reach every
// one of k devices (membership, a key fact, convergence): 20 s, plus 2 s a
// device beyond 5.
func meshWait(k int) time.Duration {
	return 20*time.Second + time.Duration(max(0, k-5))*2*time.Second
}

// formMesh is formAccount with budgets that grow with the mesh: it creates
// the account on ns[0] (threshold m), joins every other node by invite,
// each join with its own deadline (formAccount's createAndJoin shares one
// 30 s deadline among all the joins, and meshUp one 30 s deadline among
// all k(k-1)/2 dials, which 30 devices on 2 loaded cores can run out of:
// the later joins then fail dialing), connects every pair, and waits for
// the full membership on every node.
func formMesh(tb testing.TB, ns []*Node, m uint64) {
	tb.Helper()
	if _, err := ns[0].CreateAccount("test", m); err != nil {
		tb.Fatalf("create the account: %v", err)
	}
	for i, n := range ns[1:] {
		code, _, err := ns[0].Invite(0)
		if err != nil {
			tb.Fatalf("invite device %d: %v", i+2, err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		_, err = n.Join(ctx, code)
		cancel()
		if err != nil {
			tb.Fatalf("join device %d of %d: %v", i+2, len(ns), err)
		}
	}
	pairs := len(ns) * (len(ns) - 1) / 2
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second+time.Duration(pairs)*200*time.Millisecond)
	defer cancel()
	meshUp(ctx, ns)
	waitFor(tb, meshWait(len(ns)), "membership everywhere", func() bool {
		for _, n := range ns {
			if len(n.Members()) != len(ns) {
				return false
			}
		}
		return true
	})
}

// loadedMesh starts k nodes on 127.0.0.1 (config TestConfig edited by
// edit), forms an account with an m-of-k threshold key, and fills the
// journal with total Put facts of about factSize bytes over keys keys,
// authored evenly by the k devices (each writes its own keys/k of them).
// The facts go into ns[0] alone, through its ingest path, with the other
// nodes closed (each device signs its own share); then shareJournal gives ns[0]'s journal to the others, and every
// node starts again on its store (so its writer resumes after those facts
// and its state is folded from the journal, as at any start). It returns
// once every node holds every fact and all agree on the state.
func loadedMesh(tb testing.TB, k, m, total, keys, factSize int, edit func(*Config)) []*Node {
	tb.Helper()
	dir := tb.TempDir()
	ns := make([]*Node, k)
	for i := range ns {
		ns[i] = startNodeWith(tb, filepath.Join(dir, fmt.Sprintf("n%d", i+1)), edit)
	}
	formMesh(tb, ns, uint64(m))
	keygenAll(tb, ns, m)
	// Every node is handed every device's facts directly: replicating
	// them over the mesh first is the catch-up benchmark's job (in
	// gossip), and with 30 devices it would take most of an hour here.
	// They are ingested on one node only: ingesting them on every node (k
	// times the work, k stores and replicas growing at once) had not loaded
	// 30 devices × 1M facts after 15 minutes, at 10.6 GB resident.
	t0 := time.Now()
	for _, n := range ns[1:] {
		if err := n.Close(); err != nil {
			tb.Fatal(err)
		}
	}
	want := ns[0].VersionVector()
	// The devices split the keys: the state (and so the snapshot blob)
	// has keys keys whatever the number of devices.
	ownKeys := max(1, keys/k)
	for _, n := range ns[1:] {
		if !n.VersionVector().Equal(want) {
			tb.Fatalf("device %s closed holding %v, device %s %v: the journals differ before the load", n.Device().Short(), n.VersionVector(), ns[0].Device().Short(), want)
		}
	}
	for i, n := range ns {
		per := total / k
		if i == 0 {
			per += total % k
		}
		want[n.device] = preloadInto(tb, n, ns[:1], fmt.Sprintf("d%d", i), per, ownKeys, factSize)
	}
	if err := ns[0].Close(); err != nil {
		tb.Fatal(err)
	}
	homes := make([]string, k)
	for i, n := range ns {
		homes[i] = n.Home()
	}
	t1 := time.Now()
	shareJournal(tb, homes[0], homes[1:])
	t2 := time.Now()
	for i := range ns {
		ns[i] = startNode(tb, homes[i])
	}
	t3 := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if k > 1 {
		meshUp(ctx, ns)
	}
	waitHolds(tb, 5*time.Minute, ns, want)
	waitConverged(tb, time.Minute, ns)
	tb.Logf("journal of %d facts loaded on %d devices in %.1f s: signed and ingested on one %.1f s, shared %.1f s, started %.1f s, converged %.1f s",
		total, k, time.Since(t0).Seconds(), t1.Sub(t0).Seconds(), t2.Sub(t1).Seconds(), t3.Sub(t2).Seconds(), time.Since(t3).Seconds())
	return ns
}

// shareJournal gives each closed node home in to the journal of the
// closed node home from, laid out in Pebble as ingest left it there: the
// node's store becomes a DB.Checkpoint of from's (taken through a file
// system that refuses hard links, so every store has files of its own),
// in which everything outside the journal's key range
// (crdt.JournalKeyRange) is replaced by what the node's own store held
// there: its records, its replica's metadata, its blobs (and their pack
// files). Nothing derived
// from the journal lives outside that range (the journal's heads and
// counters are in it, and the replica folds its state from it when the
// node starts). Every journal in to must be part of from's (loadedMesh
// checks that all held the same facts before from was loaded): a node must
// never lose a fact it wrote.
func shareJournal(tb testing.TB, from string, to []string) {
	tb.Helper()
	if len(to) == 0 {
		return
	}
	src, err := openStore(from, &pebble.Options{FS: noLinkFS{vfs.Default}, Logger: quietLog{}})
	if err != nil {
		tb.Fatal(err)
	}
	defer src.Close()
	vv := src.VersionVector()
	for _, home := range to {
		data := filepath.Join(home, DataDir)
		own, held := storeOutsideJournal(tb, home)
		if !vv.Covers(held) {
			tb.Fatalf("%s holds facts %s does not (%v, %v): its journal cannot be replaced", home, from, held, vv)
		}
		if err := os.Rename(data, data+".own"); err != nil {
			tb.Fatal(err)
		}
		if err := src.DB().Checkpoint(data); err != nil {
			tb.Fatalf("checkpoint %s into %s: %v", from, data, err)
		}
		// The node's blob bytes (pack files, beside Pebble's) stay its own,
		// as its blob catalogue does below.
		if err := os.Rename(blobPacks(data+".own"), blobPacks(data)); err != nil && !errors.Is(err, os.ErrNotExist) {
			tb.Fatal(err)
		}
		st, err := openStore(home, &pebble.Options{Logger: quietLog{}})
		if err != nil {
			tb.Fatal(err)
		}
		b := st.DB().NewBatch()
		for _, kv := range outsideJournal(tb, st.DB()) {
			if err := b.Delete(kv[0], nil); err != nil {
				tb.Fatal(err)
			}
		}
		for _, kv := range own {
			if err := b.Set(kv[0], kv[1], nil); err != nil {
				tb.Fatal(err)
			}
		}
		if err := errors.Join(b.Commit(pebble.Sync), st.Close()); err != nil {
			tb.Fatal(err)
		}
		if err := os.RemoveAll(data + ".own"); err != nil {
			tb.Fatal(err)
		}
	}
}

// noLinkFS is a file system on which hard links fail, so that Pebble
// copies what it would link (vfs.LinkOrCopy).
type noLinkFS struct{ vfs.FS }

func (noLinkFS) Link(string, string) error { return errors.New("no hard links here") }

// storeOutsideJournal returns the keys and values of home's store outside
// the journal's key range, and the journal's version vector.
func storeOutsideJournal(tb testing.TB, home string) ([][2][]byte, crdt.VersionVector) {
	tb.Helper()
	st, err := openStore(home, &pebble.Options{ReadOnly: true, Logger: quietLog{}})
	if err != nil {
		tb.Fatal(err)
	}
	defer st.Close()
	return outsideJournal(tb, st.DB()), st.VersionVector()
}

// outsideJournal returns db's keys and values outside crdt.JournalKeyRange.
func outsideJournal(tb testing.TB, db *pebble.DB) [][2][]byte {
	tb.Helper()
	lo, hi := crdt.JournalKeyRange()
	var kvs [][2][]byte
	for _, r := range []pebble.IterOptions{{UpperBound: lo}, {LowerBound: hi}} {
		it, err := db.NewIter(&r)
		if err != nil {
			tb.Fatal(err)
		}
		for it.First(); it.Valid(); it.Next() {
			kvs = append(kvs, [2][]byte{bytes.Clone(it.Key()), bytes.Clone(it.Value())})
		}
		if err := errors.Join(it.Error(), it.Close()); err != nil {
			tb.Fatal(err)
		}
	}
	return kvs
}

// roundFigures are the phases of one snapshot round, as the proposer and
// the mesh see them.
type roundFigures struct {
	digest     time.Duration // proposer: StateAt(frontier) + encode + digest
	propose    time.Duration // Propose call: fence, digest, SnapshotProposed, own vote
	voting     time.Duration // proposal published → M votes held by the proposer
	completion time.Duration // M votes held → completion verified and GC done on every node
	proposerGC time.Duration // M votes held → completion and GC done on the proposer
	round      time.Duration // Propose called → GC done on every node
	blob       uint64        // state blob bytes
}

// snapshotRound times one round proposed by ns[0] with threshold m.
func snapshotRound(tb testing.TB, ns []*Node, m int, limit time.Duration) roundFigures {
	tb.Helper()
	var fig roundFigures
	p := ns[0]

	// Digest: what Propose computes, on the proposer's replica directly.
	p.mu.Lock()
	frontier := p.store.VersionVector()
	t0 := time.Now()
	st, err := p.rep.StateAt(frontier)
	if err != nil {
		p.mu.Unlock()
		tb.Fatal(err)
	}
	digest := crdt.DigestOf(st.Encode())
	fig.digest = time.Since(t0)
	p.mu.Unlock()

	before := p.store.VersionVector()
	start := time.Now()
	info, err := p.Propose()
	if err != nil {
		tb.Fatal(err)
	}
	published := time.Now()
	fig.propose = published.Sub(start)
	if info.StateDigest != digest.String() {
		tb.Fatalf("proposal digest %s, the replica's state at its frontier %s", info.StateDigest, digest)
	}
	id := proposalID(tb, info)

	// Voting: the proposer signed its own vote in Propose; the round has M
	// votes once M-1 other devices' vote facts are in its journal (it
	// completes in the same ingest). Nothing else is written meanwhile.
	deadline := published.Add(limit)
	var voters []crdt.DeviceID
	for len(voters) < m-1 {
		if time.Now().After(deadline) {
			tb.Fatalf("proposer holds %d of %d votes after %s", len(voters)+1, m, limit)
		}
		voters = voters[:0]
		for a, s := range p.store.VersionVector() {
			if a != p.device && s > before[a] {
				voters = append(voters, a)
			}
		}
		if len(voters) < m-1 {
			time.Sleep(200 * time.Microsecond)
		}
	}
	held := time.Now()
	fig.voting = held.Sub(published)
	for _, a := range voters {
		if f, err := p.store.BySeq(a, before[a]+1); err != nil || f.Kind != crdt.KindSnapshotVote {
			tb.Fatalf("device %s's first fact in the round is not a vote: %v %v", a.Short(), f, err)
		}
	}

	// Completion: every node verified the completion and collected (the
	// proposer first: it completes the round).
	for i, n := range ns {
		for !collected(n, id) {
			if time.Now().After(deadline) {
				tb.Fatalf("%s has not collected the snapshot after %s", n.Device().Short(), limit)
			}
			time.Sleep(time.Millisecond)
		}
		if i == 0 {
			fig.proposerGC = time.Since(held)
		}
	}
	done := time.Now()
	fig.completion = done.Sub(held)
	fig.round = done.Sub(start)
	if s, err := p.Snapshot(info.ID); err == nil {
		fig.blob = s.BlobSize
	}
	return fig
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// BenchmarkSnapshotRound100k: a 5-device mesh on loopback, a 3-of-5 key,
// 100,000 facts in the journal; one snapshot round split into its phases.
func BenchmarkSnapshotRound100k(b *testing.B) {
	const (
		devices  = 5
		m        = 3
		total    = 100_000
		keys     = 10_000
		factSize = 200
	)
	edit := func(c *Config) {
		c.Snapshot.Timeout = Duration(2 * time.Minute) // the round must not be abandoned on a slow machine
	}
	var sum roundFigures
	var journalBytes uint64
	b.StopTimer()
	for i := 0; i < b.N; i++ {
		ns := loadedMesh(b, devices, m, total, keys, factSize, edit)
		journalBytes = ns[0].store.Stats().Bytes
		b.StartTimer()
		fig := snapshotRound(b, ns, m, 2*time.Minute)
		b.StopTimer()
		sum.digest += fig.digest
		sum.propose += fig.propose
		sum.voting += fig.voting
		sum.completion += fig.completion
		sum.proposerGC += fig.proposerGC
		sum.round += fig.round
		sum.blob = fig.blob
		for _, n := range ns {
			_ = n.Close()
		}
	}
	n := time.Duration(b.N)
	b.ReportMetric(ms(sum.digest/n), "digest-ms")
	b.ReportMetric(ms(sum.propose/n), "propose-ms")
	b.ReportMetric(ms(sum.voting/n), "voting-ms")
	b.ReportMetric(ms(sum.completion/n), "completion-ms")
	b.ReportMetric(ms(sum.proposerGC/n), "proposer-gc-ms")
	b.ReportMetric(ms(sum.round/n), "round-ms")
	b.ReportMetric(float64(journalBytes)/(1<<20), "journal-MB")
	b.ReportMetric(float64(sum.blob)/(1<<20), "blob-MB")
}

// BenchmarkGCDisk100MB: one device (its account's only member, so a 1-of-1
// key dealt locally: Keygen's single-device path), ~100 MB of ~300-byte
// facts over 1,000 keys; the Pebble directory before and after one
// snapshot and its GC (prune + compaction). The timed part is the round:
// with M=1 the proposer votes, completes and collects inside Propose.
func BenchmarkGCDisk100MB(b *testing.B) {
	const (
		total    = 333_000
		keys     = 1_000
		factSize = 300
	)
	var before, after diskUsage
	var journalBytes uint64
	var gcTime time.Duration
	b.StopTimer()
	for i := 0; i < b.N; i++ {
		ns := loadedMesh(b, 1, 1, total, keys, factSize, nil)
		n := ns[0]
		journalBytes = n.store.Stats().Bytes
		before = storeUsage(b, n)
		b.StartTimer()
		start := time.Now()
		info, err := n.Propose()
		if err != nil {
			b.Fatal(err)
		}
		id := proposalID(b, info)
		waitFor(b, 2*time.Minute, "GC", func() bool { return collected(n, id) })
		gcTime += time.Since(start)
		b.StopTimer()
		after = shrunkStoreUsage(b, n, before.Total, 30*time.Second)
		_ = n.Close()
	}
	b.ReportMetric(float64(journalBytes)/(1<<20), "journal-MB")
	b.ReportMetric(mb(before.Total), "disk-MB-before")
	b.ReportMetric(mb(after.Total), "disk-MB-after")
	b.ReportMetric(float64(after.Total)/float64(before.Total), "after/before")
	b.ReportMetric(mb(before.SST), "sst-MB-before")
	b.ReportMetric(mb(after.SST), "sst-MB-after")
	b.ReportMetric(mb(after.WAL), "wal-MB-after")
	b.ReportMetric(ms(gcTime/time.Duration(b.N)), "round+gc-ms")
}

// ---- scale curves (issue 17 item 3) ----
//
// The devices of one benchmark share this process and its cores, so the
// per-device figures are the process's CPU time divided by the number of
// devices, next to the wall time:
//
//	go test ./node/ -run '^$' -bench 'ScaleRound/devices=(3|5|10)/facts=100k' -benchtime 1x -timeout 60m
//	go test ./node/ -run '^$' -bench 'ScaleRound/devices=5/facts=1M' -benchtime 1x -timeout 60m
//	go test ./node/ -run '^$' -bench 'ScaleKeygen' -benchtime 1x -timeout 30m
//	go test ./node/ -run '^$' -bench 'ScaleReshare' -benchtime 1x -timeout 30m
//
// The catch-up curve is gossip's BenchmarkCatchUp100k and BenchmarkCatchUp1M.

// processCPU is the CPU time, in seconds, this process has used (user and
// system, all threads).
func processCPU(tb testing.TB) float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		tb.Fatal(err)
	}
	return float64(ru.Utime.Nano()+ru.Stime.Nano()) / 1e9
}

// memPerDevice is the Go heap in use and the process's resident set, in
// MiB per device, after a collection.
func memPerDevice(devices int) (heap, rss float64) {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	heap = float64(ms.HeapInuse) / (1 << 20) / float64(devices)
	if b, err := os.ReadFile("/proc/self/status"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if kb, ok := strings.CutPrefix(line, "VmRSS:"); ok {
				var n float64
				if _, err := fmt.Sscanf(strings.TrimSpace(kb), "%f", &n); err == nil {
					rss = n / 1024 / float64(devices)
				}
			}
		}
	}
	return heap, rss
}

// BenchmarkScaleRound: one snapshot round (proposal, votes, completion and
// GC on every device) on a loopback mesh of N devices with a majority key,
// over a journal of F ~200-byte facts on 10,000 keys. Reports the round's
// wall time, the CPU seconds per device it cost, and memory per device with
// the journal loaded.
func BenchmarkScaleRound(b *testing.B) {
	for _, facts := range []struct {
		name string
		n    int
	}{{"100k", 100_000}, {"1M", 1_000_000}} {
		for _, devices := range []int{3, 5, 10, 30} {
			b.Run(fmt.Sprintf("devices=%d/facts=%s", devices, facts.name), func(b *testing.B) {
				benchScaleRound(b, devices, facts.n)
			})
		}
	}
}

// settleStorage waits (off the clock) until no node's Pebble runs a flush
// or compaction: loading a million facts per node leaves
// minutes of compaction behind it, which would otherwise be measured as
// the round's cost (the devices share two cores here; on their own
// machines each compacts beside nothing else).
func settleStorage(b *testing.B, ns []*Node, limit time.Duration) {
	b.Helper()
	deadline := time.Now().Add(limit)
	for {
		busy := 0
		for _, n := range ns {
			m := n.store.DB().Metrics()
			if m.Compact.NumInProgress > 0 || m.Flush.NumInProgress > 0 {
				busy++
			}
		}
		if busy == 0 {
			return
		}
		if time.Now().After(deadline) {
			b.Logf("storage still compacting on %d nodes after %s; measuring anyway", busy, limit)
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func benchScaleRound(b *testing.B, devices, total int) {
	m := devices/2 + 1
	edit := func(c *Config) {
		c.Snapshot.Timeout = Duration(10 * time.Minute) // the round must not be abandoned on a slow machine
	}
	var wall, voting, completion time.Duration
	var cpu, heap, rss float64
	b.StopTimer()
	for i := 0; i < b.N; i++ {
		ns := loadedMesh(b, devices, m, total, 10_000, 200, edit)
		settleStorage(b, ns, 5*time.Minute)

		h, r := memPerDevice(devices)
		heap, rss = heap+h, rss+r
		cpu0 := processCPU(b)
		// AURA_ROUND_PROFILE=FILE: a CPU profile of the round alone (not of
		// loading the journal).
		var pf *os.File
		if p := os.Getenv("AURA_ROUND_PROFILE"); p != "" {
			pf, _ = os.Create(p)
			_ = pprof.StartCPUProfile(pf)
		}
		b.StartTimer()
		fig := snapshotRound(b, ns, m, 10*time.Minute)
		b.StopTimer()
		if pf != nil {
			pprof.StopCPUProfile()
			_ = pf.Close()
		}
		cpu += processCPU(b) - cpu0
		wall += fig.round
		voting += fig.voting
		completion += fig.completion
		for _, n := range ns {
			_ = n.Close()
		}
	}
	n := float64(b.N)
	b.ReportMetric(wall.Seconds()/n, "round-s")
	b.ReportMetric(voting.Seconds()/n, "voting-s")
	b.ReportMetric(completion.Seconds()/n, "completion-s")
	b.ReportMetric(cpu/n/float64(devices), "cpu-s/device")
	b.ReportMetric(heap/n, "heap-MB/device")
	b.ReportMetric(rss/n, "rss-MB/device")
	b.ReportMetric(0, "ns/op")
}

// scaleMesh starts devices nodes on loopback and forms their account with
// a majority threshold, which it returns.
func scaleMesh(b *testing.B, devices int) ([]*Node, int) {
	b.Helper()
	dir := b.TempDir()
	ns := make([]*Node, devices)
	for k := range ns {
		ns[k] = startNodeWith(b, filepath.Join(dir, fmt.Sprintf("n%d", k+1)), nil)
	}
	m := devices/2 + 1
	formMesh(b, ns, uint64(m))
	return ns, m
}

// BenchmarkScaleKeygen: a distributed key generation for a majority key on
// a loopback mesh of N devices, from the first Keygen call until every
// device holds its share and the group key fact. BenchmarkScaleReshare is
// the resharing of that key on the same meshes.
func BenchmarkScaleKeygen(b *testing.B) {
	benchScaleSession(b, "keygen-s", func(b *testing.B, ns []*Node, m int) (func(), func()) {
		return func() { keygenAll(b, ns, m) }, nil
	})
}

// BenchmarkScaleReshare: the resharing `aura-cli threshold reshare` runs
// (Node.Reshare on the admin's device, the threshold kept) of a majority
// key on a loopback mesh of N devices, every device online and holding a
// share of the key BenchmarkScaleKeygen's session made: from the Reshare
// call until every device holds its share of the new key and the group
// key fact of the next key epoch names all N devices. The group public key
// must not change. Reports the wall time and the process's CPU seconds
// over it per device, as BenchmarkScaleKeygen does.
func BenchmarkScaleReshare(b *testing.B) {
	benchScaleSession(b, "reshare-s", func(b *testing.B, ns []*Node, m int) (func(), func()) {
		keygenAll(b, ns, m)
		before := ns[0].Status().GroupKey
		pub := groupPublicKey(b, ns[0])
		return func() { reshareAll(b, ns, before.KeyEpoch) }, func() {
			for _, n := range ns {
				if got := groupPublicKey(b, n); !bytes.Equal(got, pub) {
					b.Fatalf("device %s: the resharing changed the group public key", n.Device().Short())
				}
			}
		}
	})
}

// benchScaleSession runs a threshold session on meshes of 5, 10, 20 and 30
// devices: setup (untimed) prepares a fresh mesh and returns the timed
// step and a check run after it (untimed, may be nil). Reports the step's
// wall time as metric and the process's CPU seconds over it per device.
func benchScaleSession(b *testing.B, metric string, setup func(b *testing.B, ns []*Node, m int) (timed, check func())) {
	for _, devices := range []int{5, 10, 20, 30} {
		b.Run(fmt.Sprintf("devices=%d", devices), func(b *testing.B) {
			var wall time.Duration
			var cpu float64
			b.StopTimer()
			for i := 0; i < b.N; i++ {
				ns, m := scaleMesh(b, devices)
				timed, check := setup(b, ns, m)
				cpu0, start := processCPU(b), time.Now()
				b.StartTimer()
				timed()
				b.StopTimer()
				wall += time.Since(start)
				cpu += processCPU(b) - cpu0
				if check != nil {
					check()
				}
				for _, n := range ns {
					_ = n.Close()
				}
			}
			b.ReportMetric(wall.Seconds()/float64(b.N), metric)
			b.ReportMetric(cpu/float64(b.N)/float64(devices), "cpu-s/device")
			b.ReportMetric(0, "ns/op")
		})
	}
}

// reshareAll reshares the group key from ns[0] (the admin), keeping its
// threshold, and waits until every node holds the group key fact of the
// next key epoch, naming every node, and its share of that key.
func reshareAll(tb testing.TB, ns []*Node, epoch uint64) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*dkgStreamDeadline)
	defer cancel()
	info, err := ns[0].Reshare(ctx, 0)
	if err != nil {
		tb.Fatalf("reshare among %d devices: %v", len(ns), err)
	}
	if info.KeyEpoch != epoch+1 || len(info.Participants) != len(ns) {
		tb.Fatalf("reshared key at epoch %d for %d devices, want epoch %d for all %d", info.KeyEpoch, len(info.Participants), epoch+1, len(ns))
	}
	waitFor(tb, meshWait(len(ns)), "the reshared key and its shares everywhere", func() bool {
		for _, n := range ns {
			s := n.Status().GroupKey
			if s == nil || s.KeyEpoch != info.KeyEpoch || !s.HasShare || len(s.Participants) != len(ns) {
				return false
			}
		}
		return true
	})
	for _, n := range ns {
		n.mu.Lock()
		sh, gk := n.rep.Share(), n.rep.State().GroupKey()
		n.mu.Unlock()
		key, err := threshold.ParseGroupKey(gk.PublicKey)
		if err != nil {
			tb.Fatalf("device %s: parse the reshared key: %v", n.Device().Short(), err)
		}
		if !sh.Matches(key) {
			tb.Fatalf("device %s votes with a share of another key", n.Device().Short())
		}
	}
}

// groupPublicKey is the group public key n's state names (resharing keeps
// it; the commitments change).
func groupPublicKey(tb testing.TB, n *Node) []byte {
	tb.Helper()
	n.mu.Lock()
	gk := n.rep.State().GroupKey()
	n.mu.Unlock()
	if gk == nil {
		tb.Fatalf("device %s holds no group key", n.Device().Short())
	}
	key, err := threshold.ParseGroupKey(gk.PublicKey)
	if err != nil {
		tb.Fatalf("device %s: parse the group key: %v", n.Device().Short(), err)
	}
	return key.PublicKey()
}
