package node

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"go.uber.org/goleak"

	"aura/maintenance"
)

func TestMain(m *testing.M) {
	// Tests (not benchmarks, which measure the shortcut) refold the journal
	// wherever the core takes the live state for a frontier, and compare.
	flag.Parse()
	if f := flag.Lookup("test.bench"); f == nil || f.Value.String() == "" {
		maintenance.CheckFoldShortcuts(true)
	}
	goleak.VerifyTestMain(m,
		// Process-wide workers of libp2p dependencies, started once.
		goleak.IgnoreTopFunction("github.com/ipfs/go-log/v2/writer.(*MirrorWriter).logRoutine"),
		goleak.IgnoreTopFunction("go.opencensus.io/stats/view.(*worker).start"),
		goleak.IgnoreAnyFunction("github.com/libp2p/go-libp2p/p2p/transport/quicreuse.(*reuse).gc"),
		goleak.IgnoreAnyFunction("github.com/quic-go/quic-go.(*Transport).listen"),
		goleak.IgnoreAnyFunction("github.com/cockroachdb/pebble/internal/cache.(*shard).evictLocked"),
	)
}

func testLogger(t testing.TB) *slog.Logger {
	if os.Getenv("AURA_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})).With("test", t.Name())
	}
	return slog.New(slog.DiscardHandler)
}

// startNode starts (or restarts) a node in home.
func startNode(t testing.TB, home string) *Node {
	t.Helper()
	if _, err := os.Stat(filepath.Join(home, ConfigFile)); err != nil {
		cfg := TestConfig()
		cfg.Name = filepath.Base(home)
		if _, err := Init(home, InitOptions{Config: &cfg}); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	n, err := New(ctx, Options{Home: home, Logger: testLogger(t).With("node", filepath.Base(home)), NoSocket: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	return n
}

func newNodes(t testing.TB, k int) []*Node {
	t.Helper()
	dir := t.TempDir()
	var ns []*Node
	for i := 0; i < k; i++ {
		ns = append(ns, startNode(t, filepath.Join(dir, fmt.Sprintf("n%d", i+1))))
	}
	return ns
}

// createAndJoin creates an account on ns[0] (threshold m) and joins the
// rest by invite (each dials ns[0] only).
func createAndJoin(t testing.TB, ns []*Node, m uint64) {
	t.Helper()
	if _, err := ns[0].CreateAccount("test", m); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, n := range ns[1:] {
		code, _, err := ns[0].Invite(0)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := n.Join(ctx, code); err != nil {
			t.Fatal(err)
		}
	}
}

// formAccount creates an account on ns[0] (threshold m) and joins the rest
// by invite, then connects every pair.
func formAccount(t testing.TB, ns []*Node, m uint64) {
	t.Helper()
	createAndJoin(t, ns, m)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	meshUp(ctx, ns)
	waitFor(t, 20*time.Second, "membership everywhere", func() bool {
		for _, n := range ns {
			if len(n.Members()) != len(ns) {
				return false
			}
		}
		return true
	})
}

func waitFor(t testing.TB, d time.Duration, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func waitConverged(t testing.TB, d time.Duration, ns []*Node) {
	t.Helper()
	if err := waitSame(context.Background(), d, ns); err != nil {
		t.Fatal(err)
	}
}
