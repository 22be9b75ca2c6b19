package pebblestore

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"aura/crdt"
	"aura/crdt/storetest"
)

// BenchmarkPrune1M prunes a Pebble journal of 1,000,000 facts (16 authors,
// Puts of 200-byte values) down to its last 64 facts per author, as a
// snapshot round's garbage collection does, and reports the wall and CPU
// time of Prune (which compacts the journal's range before it returns) and
// the store's size on disk before and after. The journal is loaded outside
// the timer (a few minutes on two cores). Run with -benchtime 1x.
func BenchmarkPrune1M(b *testing.B) {
	const total, authors, keep = 1_000_000, 16, 64
	for range b.N {
		b.StopTimer()
		dir := b.TempDir()
		s, err := Open(dir, Options{})
		if err != nil {
			b.Fatal(err)
		}
		as := make([]*storetest.Author, authors)
		for i := range as {
			as[i] = storetest.NewAuthor(benchAccount, fmt.Sprintf("prune-%d", i))
		}
		for done := 0; done < total; done += benchBatch {
			facts := signFacts(as, min(benchBatch, total-done), 200, uint64(done))
			if _, err := s.Ingest(facts, nil); err != nil {
				b.Fatal(err)
			}
		}
		if err := s.DB().Flush(); err != nil {
			b.Fatal(err)
		}
		v := s.VersionVector()
		to := crdt.VersionVector{}
		for a, seq := range v {
			to[a] = seq - keep
		}
		before := dirSize(b, dir)
		runtime.GC()
		b.StartTimer()
		start, cpu0 := time.Now(), cpuTime()
		n, _, err := s.Prune(to)
		wall, cpu := time.Since(start), cpuTime()-cpu0
		b.StopTimer()
		if err != nil || n != total-authors*keep {
			b.Fatalf("prune: %d facts, %v", n, err)
		}
		b.ReportMetric(wall.Seconds(), "prune-s")
		b.ReportMetric(cpu.Seconds(), "prune-cpu-s")
		b.ReportMetric(float64(before)/1e6, "MB-before")
		b.ReportMetric(float64(dirSize(b, dir))/1e6, "MB-after")
		if st := s.Stats(); st.Facts != authors*keep {
			b.Fatalf("after prune: %d facts held, want %d", st.Facts, authors*keep)
		}
		if err := s.Close(); err != nil {
			b.Fatal(err)
		}
	}
}

func dirSize(b *testing.B, dir string) int64 {
	var n int64
	err := filepath.Walk(dir, func(_ string, fi os.FileInfo, err error) error {
		if err == nil && !fi.IsDir() {
			n += fi.Size()
		}
		return err
	})
	if err != nil {
		b.Fatal(err)
	}
	return n
}
