package pebblestore

import (
	"crypto/ed25519"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"aura/crdt"
	"aura/crdt/storetest"
)

// Benchmarks compare Store.Ingest with signature verification alone on the
// same facts (about 300 bytes: a Put with a 200-byte value) and the same
// parallelism: crypto/ed25519 one by one (VerifyOnly) and the batched check
// Ingest itself runs (VerifyOnlyBatched). Run:
//
//	go test ./crdt/pebblestore -run '^$' -bench 'Ingest$|IngestPipelined|VerifyOnly' -benchtime 100000x -count 5
//	go test ./crdt/pebblestore -run '^$' -bench IngestMillion -benchtime 1x
const benchBatch = 1024

var benchAccount = crdt.AccountID{0xbe}

// benchWire holds the wire bytes of signed facts, grown on demand and shared
// by the benchmarks so they run on the same facts.
var benchWire struct {
	sync.Mutex
	facts [][]byte
}

func wireFacts(b *testing.B, n int) [][]byte {
	b.Helper()
	benchWire.Lock()
	defer benchWire.Unlock()
	if have := len(benchWire.facts); have < n {
		b.StopTimer()
		// A new seed per growth: fresh authors, so every fact is new.
		for _, f := range makeFacts(benchAccount, 16, n-have, 200, uint64(have)) {
			benchWire.facts = append(benchWire.facts, f.Bytes())
		}
		b.StartTimer()
	}
	return benchWire.facts[:n]
}

// BenchmarkIngest: wire bytes → DecodeFact → Store.Ingest (parallel
// signature checks, one fsync'd Pebble batch per 1024 facts).
func BenchmarkIngest(b *testing.B) {
	wire := wireFacts(b, b.N)
	s, err := Open(b.TempDir(), Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	b.ReportAllocs()
	b.SetBytes(int64(len(wire[0])))
	b.ResetTimer()
	start, cpu0 := time.Now(), cpuTime()
	batch := make([]*crdt.Fact, 0, benchBatch)
	for i := 0; i < len(wire); i += benchBatch {
		batch = batch[:0]
		for _, w := range wire[i:min(i+benchBatch, len(wire))] {
			f, err := crdt.DecodeFact(w)
			if err != nil {
				b.Fatal(err)
			}
			batch = append(batch, f)
		}
		res, err := s.Ingest(batch, nil)
		if err != nil || len(res.Added) != len(batch) {
			b.Fatalf("ingest: %v (added %d of %d)", err, len(res.Added), len(batch))
		}
	}
	reportRate(b, start, cpu0)
}

// BenchmarkIngestPipelined is BenchmarkIngest with two callers, as when
// facts come from several peers: one caller's decoding and signature checks
// overlap the other's commit (Ingest checks signatures outside its write
// lock).
func BenchmarkIngestPipelined(b *testing.B) {
	wire := wireFacts(b, b.N)
	s, err := Open(b.TempDir(), Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	b.ReportAllocs()
	b.SetBytes(int64(len(wire[0])))
	b.ResetTimer()
	start, cpu0 := time.Now(), cpuTime()
	var next atomic.Int64
	var wg sync.WaitGroup
	var failed atomic.Value
	for range 2 {
		wg.Go(func() {
			batch := make([]*crdt.Fact, 0, benchBatch)
			for {
				i := int(next.Add(benchBatch)) - benchBatch
				if i >= len(wire) {
					return
				}
				batch = batch[:0]
				for _, w := range wire[i:min(i+benchBatch, len(wire))] {
					f, err := crdt.DecodeFact(w)
					if err != nil {
						failed.Store(err)
						return
					}
					batch = append(batch, f)
				}
				res, err := s.Ingest(batch, nil)
				if err != nil || len(res.Added) != len(batch) {
					failed.Store(fmt.Errorf("ingest: %v (added %d of %d)", err, len(res.Added), len(batch)))
					return
				}
			}
		})
	}
	wg.Wait()
	if err := failed.Load(); err != nil {
		b.Fatal(err)
	}
	reportRate(b, start, cpu0)
}

// reportRate reports facts/s (wall clock) and the process CPU time per fact,
// which is steadier than wall time on a shared machine.
func reportRate(b *testing.B, start time.Time, cpu0 time.Duration) {
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "facts/s")
	b.ReportMetric(float64((cpuTime()-cpu0).Microseconds())/float64(b.N), "cpu-µs/fact")
}

// cpuTime is the CPU time (user + system) used by the process so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkVerifyOnly: ed25519.Verify alone over the same facts (signed
// bytes prepared outside the timer), batches of 1024 on GOMAXPROCS workers.
func BenchmarkVerifyOnly(b *testing.B) {
	wire := wireFacts(b, b.N)
	type job struct {
		pub      ed25519.PublicKey
		msg, sig []byte
	}
	jobs := make([]job, len(wire))
	for i, w := range wire {
		f, err := crdt.DecodeFact(w)
		if err != nil {
			b.Fatal(err)
		}
		jobs[i] = job{f.Author.PublicKey(), f.SigningBytes(), f.Sig}
	}
	workers := runtime.GOMAXPROCS(0)
	b.SetBytes(int64(len(wire[0])))
	b.ResetTimer()
	start, cpu0 := time.Now(), cpuTime()
	for i := 0; i < len(jobs); i += benchBatch {
		batch := jobs[i:min(i+benchBatch, len(jobs))]
		var next atomic.Int64
		var bad atomic.Int64
		var wg sync.WaitGroup
		for range min(workers, len(batch)) {
			wg.Go(func() {
				for {
					k := int(next.Add(1)) - 1
					if k >= len(batch) {
						return
					}
					if !ed25519.Verify(batch[k].pub, batch[k].msg, batch[k].sig) {
						bad.Add(1)
					}
				}
			})
		}
		wg.Wait()
		if bad.Load() > 0 {
			b.Fatal("bad signature")
		}
	}
	reportRate(b, start, cpu0)
}

// BenchmarkVerifyOnlyBatched: the signature check that Ingest runs
// (crdt.VerifyFacts: ed25519 batch verification, ZIP-215 rule, on
// GOMAXPROCS workers) alone over the same facts, decoded outside the timer,
// in batches of 1024. Ingest over this is the share of everything but the
// signature check, with the check Ingest really does.
func BenchmarkVerifyOnlyBatched(b *testing.B) {
	wire := wireFacts(b, b.N)
	facts := make([]*crdt.Fact, len(wire))
	for i, w := range wire {
		f, err := crdt.DecodeFact(w)
		if err != nil {
			b.Fatal(err)
		}
		facts[i] = f
	}
	b.SetBytes(int64(len(wire[0])))
	b.ResetTimer()
	start, cpu0 := time.Now(), cpuTime()
	for i := 0; i < len(facts); i += benchBatch {
		for _, err := range crdt.VerifyFacts(facts[i:min(i+benchBatch, len(facts))]) {
			if err != nil {
				b.Fatal(err)
			}
		}
	}
	reportRate(b, start, cpu0)
}

// BenchmarkPrefixHash: PrefixHash of a vector in the middle of 16 chains
// of 1000 facts (one chain lookup per author).
func BenchmarkPrefixHash(b *testing.B) {
	s, err := Open(b.TempDir(), Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	facts := makeFacts(benchAccount, 16, 16000, 200, 99)
	for i := 0; i < len(facts); i += benchBatch {
		if _, err := s.Ingest(facts[i:min(i+benchBatch, len(facts))], nil); err != nil {
			b.Fatal(err)
		}
	}
	v := s.VersionVector()
	for a := range v {
		v[a] = 500
	}
	b.ResetTimer()
	for b.Loop() {
		if _, err := s.PrefixHash(v); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkIngestMillion ingests 1,000,000 facts of about 300 bytes (signed
// and decoded on the fly, outside the timer, so that they are not all held
// in memory; Ingest checks every signature) into one Pebble store and reports the peak Go heap sampled after each
// batch; it fails above 200 MB. Pebble's memtables and block cache are
// allocated outside the Go heap (cgo), so the peak RSS is reported too.
// Takes about a minute on two cores; run with -benchtime 1x.
func BenchmarkIngestMillion(b *testing.B) {
	const total = 1_000_000
	for b.Loop() {
		s, err := Open(b.TempDir(), Options{})
		if err != nil {
			b.Fatal(err)
		}
		runtime.GC()
		var peakHeap, peakInuse, peakRSS uint64
		var ms runtime.MemStats
		var ingestTime time.Duration
		authors := make([]*storetest.Author, 16)
		for i := range authors {
			authors[i] = storetest.NewAuthor(benchAccount, fmt.Sprintf("million-%d", i))
		}
		for done := 0; done < total; done += benchBatch {
			b.StopTimer()
			n := min(benchBatch, total-done)
			facts := signFacts(authors, n, 200, uint64(done))
			for i, f := range facts { // as received from a peer: signature not checked yet
				g, err := crdt.DecodeFact(f.Bytes())
				if err != nil {
					b.Fatal(err)
				}
				facts[i] = g
			}
			b.StartTimer()
			t0 := time.Now()
			res, err := s.Ingest(facts, nil)
			ingestTime += time.Since(t0)
			if err != nil || len(res.Added) != n {
				b.Fatalf("ingest: %v (added %d of %d)", err, len(res.Added), n)
			}
			runtime.ReadMemStats(&ms)
			peakHeap = max(peakHeap, ms.HeapAlloc)
			peakInuse = max(peakInuse, ms.HeapInuse)
			peakRSS = max(peakRSS, rss())
		}
		st := s.Stats()
		if err := s.Close(); err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(float64(peakHeap)/(1<<20), "MB-heap-peak")
		b.ReportMetric(float64(peakInuse)/(1<<20), "MB-heapinuse-peak")
		b.ReportMetric(float64(peakRSS)/(1<<20), "MB-rss-peak")
		b.ReportMetric(float64(total)/ingestTime.Seconds(), "facts/s")
		b.Logf("%d facts, %d bytes; peak heap %d MB, heap in use %d MB, RSS %d MB", st.Facts, st.Bytes,
			peakHeap>>20, peakInuse>>20, peakRSS>>20)
		if st.Facts != total {
			b.Fatalf("store holds %d facts, want %d", st.Facts, total)
		}
		if peakHeap >= 200<<20 {
			b.Fatalf("peak heap %d MB, want < 200 MB", peakHeap>>20)
		}
	}
}

// rss reads the resident set size from /proc (0 where unavailable).
func rss() uint64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseUint(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err != nil {
				return 0
			}
			return kb << 10
		}
	}
	return 0
}
