package gossip

import (
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	pb "github.com/libp2p/go-libp2p-pubsub/pb"
	"github.com/libp2p/go-libp2p/core/host"

	"aura/crdt"
	"aura/crdt/pebblestore"
)

// Benchmarks run three nodes in a line, pub – mid – far, so that the far
// node is two hops from the publisher in both the raw and the fact
// benchmark. Run them with a fixed count, e.g.
//
//	go test -run '^$' -bench . -benchtime 20000x ./gossip/
//
// Nodes use the Pebble store (what the node runs) in temporary
// directories; GOSSIP_BENCH_STORE=mem uses the memory store.

func benchStore(b *testing.B, account crdt.AccountID) crdt.Store {
	b.Helper()
	if os.Getenv("GOSSIP_BENCH_STORE") == "mem" {
		return crdt.NewMemStore(account)
	}
	s, err := pebblestore.Open(b.TempDir(), pebblestore.Options{Account: account})
	if err != nil {
		b.Fatal(err)
	}
	return s
}

// BenchmarkRawGossipsub is the baseline: plain gossipsub with gossip's
// message options (default queues), one ~300-byte message per Publish,
// counted at the far node. b.N is the number of messages.
//
//   - burst: publish as fast as Publish returns (what the brief asks); the
//     publisher's per-peer queue overflows and most messages are lost.
//   - window16: at most 16 messages in flight (published, not yet delivered
//     at the far node), which keeps gossipsub lossless: its best rate.
func BenchmarkRawGossipsub(b *testing.B) {
	b.Run("burst", func(b *testing.B) { benchRaw(b, 0) })
	b.Run("window16", func(b *testing.B) { benchRaw(b, 16) })
}

func benchRaw(b *testing.B, window int) {
	hosts := make([]host.Host, 3)
	topics := make([]*pubsub.Topic, 3)
	subs := make([]*pubsub.Subscription, 3)
	drops := make([]metrics, 3) // what each router dropped, for the log
	ctx, cancel := context.WithCancel(context.Background())
	for i := range hosts {
		hosts[i] = newHost(b, deviceKey(200+i))
		drops[i].init()
		ps, err := pubsub.NewGossipSub(ctx, hosts[i],
			pubsub.WithMessageSignaturePolicy(pubsub.StrictNoSign), pubsub.WithNoAuthor(),
			pubsub.WithMessageIdFn(func(m *pb.Message) string { return MessageID(m.Data) }),
			pubsub.WithRawTracer(&dropTracer{m: &drops[i]}))
		if err != nil {
			b.Fatal(err)
		}
		if topics[i], err = ps.Join("/bench/raw"); err != nil {
			b.Fatal(err)
		}
		if subs[i], err = topics[i].Subscribe(); err != nil {
			b.Fatal(err)
		}
	}
	defer func() {
		cancel()
		for _, h := range hosts {
			_ = h.Close()
		}
	}()
	connect(b, hosts[0], hosts[1])
	connect(b, hosts[1], hosts[2])
	waitFor(b, 10*time.Second, "mesh", func() bool {
		return len(topics[0].ListPeers()) == 1 && len(topics[1].ListPeers()) == 2 && len(topics[2].ListPeers()) == 1
	})
	time.Sleep(time.Second) // let the routers settle (see TestValidatorRejects)

	var delivered atomic.Int64
	var last atomic.Int64 // unix nanos of the last delivery at the far node
	tokens := make(chan struct{}, max(window, 1))
	var wg sync.WaitGroup
	for i, s := range subs {
		wg.Go(func() {
			for {
				if _, err := s.Next(ctx); err != nil {
					return
				}
				if i == 2 {
					delivered.Add(1)
					last.Store(time.Now().UnixNano())
					select {
					case <-tokens:
					default:
					}
				}
			}
		})
	}
	defer wg.Wait()
	defer cancel()

	msg := make([]byte, 300)
	b.ResetTimer()
	start, cpu0 := time.Now(), processCPU(b)
	for i := 0; i < b.N; i++ {
		if window > 0 {
			select {
			case tokens <- struct{}{}:
			case <-time.After(100 * time.Millisecond): // a message was lost: go on
			}
		}
		binary.BigEndian.PutUint64(msg, uint64(i))
		binary.BigEndian.PutUint64(msg[8:], uint64(start.UnixNano()))
		if err := topics[0].Publish(ctx, msg); err != nil {
			b.Fatal(err)
		}
	}
	publishing := time.Since(start)
	waitIdle(func() int64 { return delivered.Load() }, int64(b.N), time.Second)
	cpu := processCPU(b) - cpu0
	b.StopTimer()
	got := delivered.Load()
	elapsed := time.Duration(last.Load() - start.UnixNano())
	if got == 0 {
		b.Fatal("nothing delivered")
	}
	b.ReportMetric(float64(got)/elapsed.Seconds(), "msgs/s")
	b.ReportMetric(cpu*1e6/float64(got), "cpu-µs/msg") // the three nodes', idle waits included
	b.ReportMetric(100*float64(int64(b.N)-got)/float64(b.N), "loss_%")
	if b.N > 1 {
		b.Logf("%d published in %v, %d delivered at the far node in %v; dropped by pub/mid/far: %d/%d/%d", b.N,
			publishing, got, elapsed, drops[0].pubsubDropped.Load(), drops[1].pubsubDropped.Load(), drops[2].pubsubDropped.Load())
	}
}

// waitIdle waits until count reaches want or stops moving for idle.
func waitIdle(count func() int64, want int64, idle time.Duration) {
	prev, since := count(), time.Now()
	for {
		n := count()
		if n >= want {
			return
		}
		if n != prev {
			prev, since = n, time.Now()
		} else if time.Since(since) > idle {
			return
		}
		time.Sleep(time.Millisecond)
	}
}

// signFacts makes n ~300-byte Put facts of device i, signed in parallel.
func signFacts(tb testing.TB, a *account, i, n int) []*crdt.Fact {
	tb.Helper()
	out := make([]*crdt.Fact, n)
	workers := runtime.GOMAXPROCS(0)
	var wg sync.WaitGroup
	var failed atomic.Bool
	for w := range workers {
		wg.Go(func() {
			val := make([]byte, 160)
			for k := w; k < n; k += workers {
				copy(val, fmt.Sprintf("value %d of device %d", k, i))
				f, err := crdt.NewFact(a.keys[i], a.id, uint64(k+1), a.epoch, uint64(100+k),
					&crdt.Put{Key: fmt.Sprintf("dev%d/key%07d", i, k), Value: val})
				if err != nil {
					failed.Store(true)
					return
				}
				out[k] = f
			}
		})
	}
	wg.Wait()
	if failed.Load() {
		tb.Fatal("sign facts")
	}
	return out
}

var (
	benchFactsMu sync.Mutex
	benchFacts   = map[int][]*crdt.Fact{}
)

// cachedFacts returns signFacts(a, 1, n), made once per n. The account is
// deterministic, so the facts are the same in every run.
func cachedFacts(b *testing.B, a *account, n int) []*crdt.Fact {
	benchFactsMu.Lock()
	defer benchFactsMu.Unlock()
	if fs, ok := benchFacts[n]; ok {
		return fs
	}
	fs := signFacts(b, a, 1, n)
	benchFacts[n] = fs
	return fs
}

func sizeOf(fs []*crdt.Fact) (n uint64) {
	for _, f := range fs {
		n += uint64(f.Size())
	}
	return n
}

// BenchmarkMeshFacts publishes b.N pre-signed ~300-byte Put facts on one
// node of a line of three, one fact per Publish call, and measures until
// both others hold all of them. The facts are ingested at the publisher
// before the clock starts: the figure is gossip's (coalescing, validation,
// ingest at the receivers). A final sync repairs what gossip lost; any
// fact still missing after it fails the benchmark.
func BenchmarkMeshFacts(b *testing.B) {
	a := newAccount(b, 3)
	facts := cachedFacts(b, a, b.N)
	gapSyncOnly := func(c *Config) { c.DisableSyncOnJoin, c.SyncInterval = true, -1 }
	pub := newNodeOn(b, a, 1, benchStore(b, a.id), gapSyncOnly)
	mid := newNodeOn(b, a, 0, benchStore(b, a.id), gapSyncOnly)
	far := newNodeOn(b, a, 2, benchStore(b, a.id), gapSyncOnly)
	defer pub.close()
	defer mid.close()
	defer far.close()
	connect(b, pub.h, mid.h)
	connect(b, mid.h, far.h)
	waitFor(b, 10*time.Second, "mesh", func() bool {
		return len(pub.g.Peers()) == 1 && len(mid.g.Peers()) == 2 && len(far.g.Peers()) == 1
	})
	time.Sleep(time.Second)
	for k := 0; k < len(facts); k += 4096 {
		if _, err := pub.j.Ingest(facts[k:min(k+4096, len(facts))]); err != nil {
			b.Fatal(err)
		}
	}
	author := dev(a.keys[1])
	held := func(n *testNode) int64 { return int64(n.j.store.VersionVector()[author]) }
	both := func() int64 { return min(held(mid), held(far)) }

	b.ResetTimer()
	start, cpu0 := time.Now(), processCPU(b)
	for _, f := range facts {
		pub.g.Publish([]*crdt.Fact{f})
	}
	waitIdle(both, int64(b.N), 2*time.Second)
	elapsed := time.Since(start)
	cpu := processCPU(b) - cpu0
	// Repair what gossip lost (the gap syncs did not), then demand
	// everything.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if held(mid) < int64(b.N) {
		if _, err := mid.g.SyncWith(ctx, pub.h.ID()); err != nil {
			b.Fatal(err)
		}
	}
	if held(far) < int64(b.N) {
		if _, err := far.g.SyncWith(ctx, mid.h.ID()); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	total := time.Since(start)
	if held(mid) != int64(b.N) || held(far) != int64(b.N) {
		b.Fatalf("lost facts: mid %d far %d of %d", held(mid), held(far), b.N)
	}
	viaGossip := int64(mid.g.Stats().GossipFactsIn + far.g.Stats().GossipFactsIn)
	if total > elapsed+100*time.Millisecond {
		elapsed = total
	}
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "facts/s")
	b.ReportMetric(cpu*1e6/float64(b.N), "cpu-µs/fact") // the three nodes', idle waits included
	b.ReportMetric(100*float64(2*int64(b.N)-viaGossip)/float64(2*b.N), "synced_%")
	s := pub.g.Stats()
	b.ReportMetric(float64(s.FactsPublished)/float64(max(1, s.BatchesPublished)), "facts/msg")
	b.ReportMetric(0, "loss_%")
}

// BenchmarkCatchUp100k: one node holds 100,000 facts; a fresh node
// connects and syncs. Reports the seconds to catch up, the CPU seconds the
// process spent meanwhile (both nodes) and the bytes the fresh node read
// from the stream per byte of missing facts. BenchmarkCatchUp1M is the
// same with a million facts (target: under 30 s); run it with -benchtime 1x.
func BenchmarkCatchUp100k(b *testing.B) { benchCatchUp(b, 100_000) }

func BenchmarkCatchUp1M(b *testing.B) { benchCatchUp(b, 1_000_000) }

func benchCatchUp(b *testing.B, n int) {
	a := newAccount(b, 3)
	facts := cachedFacts(b, a, n)
	missing := sizeOf(facts)
	var secs, cpu, ratio float64
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		src := newNodeOn(b, a, 1, benchStore(b, a.id), noAutoSync)
		for k := 0; k < n; k += 4096 {
			if _, err := src.j.Ingest(facts[k:min(k+4096, n)]); err != nil {
				b.Fatal(err)
			}
		}
		dst := newNodeOn(b, a, 2, benchStore(b, a.id), noAutoSync)
		b.StartTimer()
		start, cpu0 := time.Now(), processCPU(b)
		connect(b, dst.h, src.h)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		stats, err := dst.g.SyncWith(ctx, src.h.ID())
		cancel()
		el := time.Since(start)
		cpu += processCPU(b) - cpu0
		b.StopTimer()
		if err != nil {
			b.Fatal(err)
		}
		if !dst.j.store.VersionVector().Equal(src.j.store.VersionVector()) || stats.FactsIn != uint64(n) {
			b.Fatalf("caught up %d of %d", stats.FactsIn, n)
		}
		secs += el.Seconds()
		ratio += float64(stats.BytesIn) / float64(missing)
		src.close()
		dst.close()
	}
	b.ReportMetric(secs/float64(b.N), "s/catchup")
	b.ReportMetric(cpu/float64(b.N), "cpu-s/catchup")
	b.ReportMetric(ratio/float64(b.N), "wire/missing")
	b.ReportMetric(float64(n)/(secs/float64(b.N)), "facts/s")
	b.ReportMetric(0, "ns/op")
}

// processCPU is the CPU time, in seconds, this process has used (user and
// system, all threads).
func processCPU(b *testing.B) float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return float64(ru.Utime.Nano()+ru.Stime.Nano()) / 1e9
}
