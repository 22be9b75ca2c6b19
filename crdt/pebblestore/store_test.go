package pebblestore

import (
	"bufio"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"aura/crdt"
	"aura/crdt/storetest"
)

func pebbleHarness() storetest.Harness {
	var mu sync.Mutex
	dirs := map[crdt.Store]string{}
	return storetest.Harness{
		Open: func(tb testing.TB, account crdt.AccountID) crdt.Store {
			dir := tb.TempDir()
			s, err := Open(dir, Options{Account: account})
			if err != nil {
				tb.Fatal(err)
			}
			mu.Lock()
			dirs[s] = dir
			mu.Unlock()
			return s
		},
		Reopen: func(tb testing.TB, s crdt.Store) crdt.Store {
			mu.Lock()
			dir := dirs[s]
			mu.Unlock()
			if err := s.Close(); err != nil {
				tb.Fatal(err)
			}
			s2, err := Open(dir, Options{})
			if err != nil {
				tb.Fatal(err)
			}
			mu.Lock()
			dirs[s2] = dir
			mu.Unlock()
			return s2
		},
	}
}

func TestConformance(t *testing.T) { storetest.Run(t, pebbleHarness()) }

func TestOpenWithOtherAccount(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir, Options{Account: crdt.AccountID{1}})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	if _, err := Open(dir, Options{Account: crdt.AccountID{2}}); !errors.Is(err, crdt.ErrWrongAccount) {
		t.Fatalf("open with another account: %v, want ErrWrongAccount", err)
	}
	s, err = Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if s.Account() != (crdt.AccountID{1}) {
		t.Fatalf("account %s", s.Account())
	}
}

// The node shares the database: keys outside the journal prefix are left
// alone, by ingest and by prune.
func TestSharedKeyspace(t *testing.T) {
	s, err := Open(t.TempDir(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.DB().Set([]byte("b/block"), []byte("blob"), nil); err != nil {
		t.Fatal(err)
	}
	acc := crdt.AccountID{7}
	a := storetest.NewAuthor(acc, "a")
	if _, err := s.Ingest(a.Chain(t, 5), nil); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Prune(s.VersionVector()); err != nil {
		t.Fatal(err)
	}
	v, closer, err := s.DB().Get([]byte("b/block"))
	if err != nil || string(v) != "blob" {
		t.Fatalf("blob key: %q %v", v, err)
	}
	closer.Close()
}

// makeFacts signs n Put facts with values of valueSize random bytes, spread
// round-robin over new authors named by seed, in parallel.
func makeFacts(acc crdt.AccountID, authors, n, valueSize int, seed uint64) []*crdt.Fact {
	as := make([]*storetest.Author, authors)
	for i := range as {
		as[i] = storetest.NewAuthor(acc, fmt.Sprintf("gen-%d-%d", seed, i))
	}
	return signFacts(as, n, valueSize, seed)
}

// signFacts makes the next n facts of the authors, round-robin, one
// goroutine per author.
func signFacts(as []*storetest.Author, n, valueSize int, seed uint64) []*crdt.Fact {
	out := make([]*crdt.Fact, n)
	var wg sync.WaitGroup
	for w, a := range as {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(seed, uint64(w)))
			for i := w; i < n; i += len(as) {
				val := make([]byte, valueSize)
				for j := range val {
					val[j] = byte(rng.Uint32())
				}
				a.Seq++
				a.Lamport++
				f, err := crdt.NewFact(a.Key, a.Account, a.Seq, 1, a.Lamport, &crdt.Put{Key: fmt.Sprintf("key/%d", i), Value: val})
				if err != nil {
					panic(err)
				}
				out[i] = f
			}
		})
	}
	wg.Wait()
	return out
}

func dirBytes(tb testing.TB, dir string) int64 {
	tb.Helper()
	var n int64
	err := filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		info, err := d.Info()
		if errors.Is(err, fs.ErrNotExist) {
			return nil // deleted by Pebble meanwhile
		}
		if err != nil {
			return err
		}
		n += info.Size()
		return nil
	})
	if err != nil {
		tb.Fatal(err)
	}
	return n
}

func TestPruneShrinksDirectory(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir, Options{MemTableSize: 256 << 10})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	acc := crdt.AccountID{3}
	facts := makeFacts(acc, 4, 10000, 200, 1)
	for i := 0; i < len(facts); i += 500 {
		res, err := s.Ingest(facts[i:min(i+500, len(facts))], nil)
		if err != nil || len(res.Rejected) > 0 {
			t.Fatalf("ingest: %v %v", err, res.Rejected)
		}
	}
	if err := s.DB().Flush(); err != nil {
		t.Fatal(err)
	}
	lo, hi := crdt.JournalKeyRange()
	if err := s.DB().Compact(lo, hi, true); err != nil {
		t.Fatal(err)
	}
	before := dirBytes(t, dir)
	v := s.VersionVector()
	for a, seq := range v {
		v[a] = seq * 9 / 10
	}
	n, freed, err := s.Prune(v)
	if err != nil {
		t.Fatal(err)
	}
	// Pebble deletes obsolete files in the background: give it a moment.
	after := dirBytes(t, dir)
	for i := 0; i < 50 && after > before/2; i++ {
		time.Sleep(20 * time.Millisecond)
		after = dirBytes(t, dir)
	}
	if testing.Verbose() {
		listDir(t, dir)
	}
	t.Logf("pruned %d facts (%d bytes): directory %d → %d bytes", n, freed, before, after)
	if n != 9000 {
		t.Fatalf("pruned %d facts, want 9000", n)
	}
	if after > before/2 {
		t.Fatalf("directory shrank from %d to %d bytes only", before, after)
	}
}

const crashEnv = "AURA_PEBBLESTORE_CRASH_DIR"

// TestCrashKeepsAcknowledgedFacts runs a child that ingests batches and
// prints the id of each fact after Ingest returns, SIGKILLs it in the
// middle, and checks that the store opens and holds every acknowledged fact.
func TestCrashKeepsAcknowledgedFacts(t *testing.T) {
	if dir := os.Getenv(crashEnv); dir != "" {
		crashChild(dir)
		return
	}
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashKeepsAcknowledgedFacts$", "-test.count=1")
	cmd.Env = append(os.Environ(), crashEnv+"="+dir)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	killAt := 1500 + rand.IntN(1000)
	var acked []crdt.FactID
	killed := false
	sc := bufio.NewScanner(out)
	deadline := time.AfterFunc(2*time.Minute, func() { cmd.Process.Kill() })
	defer deadline.Stop()
	for sc.Scan() {
		line, ok := strings.CutPrefix(sc.Text(), "ack ")
		if !ok {
			continue
		}
		if line, ok = strings.CutSuffix(line, " ."); !ok {
			continue // cut short by the kill: not acknowledged
		}
		b, err := hex.DecodeString(line)
		if err != nil || len(b) != 32 {
			t.Fatalf("bad ack line %q", sc.Text())
		}
		acked = append(acked, crdt.FactID(b))
		if !killed && len(acked) >= killAt {
			if err := cmd.Process.Kill(); err != nil { // SIGKILL
				t.Fatal(err)
			}
			killed = true
		}
	}
	cmd.Wait()
	if !killed {
		t.Fatalf("child ended after %d acks without being killed", len(acked))
	}
	s, err := Open(dir, Options{})
	if err != nil {
		t.Fatalf("reopen after SIGKILL: %v", err)
	}
	defer s.Close()
	for _, id := range acked {
		ok, err := s.Has(id)
		if err != nil || !ok {
			t.Fatalf("acknowledged fact %s lost (%v)", id, err)
		}
	}
	st := s.Stats()
	if st.Facts < uint64(len(acked)) || st.Facts != s.VersionVector().Total() || st.Pending != 0 {
		t.Fatalf("after crash: stats %+v, version vector total %d, %d acknowledged", st, s.VersionVector().Total(), len(acked))
	}
	t.Logf("killed after %d acknowledged facts; store holds %d", len(acked), st.Facts)
}

func crashChild(dir string) {
	s, err := Open(dir, Options{})
	if err != nil {
		fmt.Fprintln(os.Stderr, "child open:", err)
		os.Exit(2)
	}
	acc := crdt.AccountID{4}
	w := bufio.NewWriter(os.Stdout)
	stop := time.Now().Add(90 * time.Second) // the parent kills long before
	for round := uint64(0); time.Now().Before(stop); round++ {
		facts := makeFacts(acc, 4, 200, 100, round)
		// Fresh authors each round: seed differs, so all facts are new.
		res, err := s.Ingest(facts, nil)
		if err != nil || len(res.Rejected) > 0 {
			fmt.Fprintln(os.Stderr, "child ingest:", err, res.Rejected)
			os.Exit(2)
		}
		for _, f := range res.Added {
			id := f.ID()
			fmt.Fprintf(w, "ack %s .\n", hex.EncodeToString(id[:]))
		}
		w.Flush()
	}
	os.Exit(0)
}

func listDir(t *testing.T, dir string) {
	es, _ := os.ReadDir(dir)
	for _, e := range es {
		info, err := e.Info()
		if err != nil {
			continue
		}
		t.Logf("%10d %s", info.Size(), e.Name())
	}
}
