package blobstore

import (
	"bytes"
	"context"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/cockroachdb/pebble"
	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/p2p/muxer/yamux"
	"github.com/libp2p/go-libp2p/p2p/security/noise"
	"github.com/libp2p/go-libp2p/p2p/transport/tcp"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// Started at init by go-log / opencensus-style packages of deps,
		// not by this package.
		goleak.IgnoreAnyFunction("github.com/ipfs/go-log/v2/writer.(*MirrorWriter).logRoutine"),
		goleak.IgnoreAnyFunction("go.opencensus.io/stats/view.(*worker).start"),
	)
}

// randomBytes returns n bytes from a fixed seed.
func randomBytes(seed uint64, n int) []byte {
	r := rand.New(rand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8)}))
	b := make([]byte, n)
	for i := 0; i < n; i += 8 {
		v := r.Uint64()
		for j := 0; j < 8 && i+j < n; j++ {
			b[i+j] = byte(v >> (8 * j))
		}
	}
	return b
}

type tb interface {
	testing.TB
}

func openDB(t tb, dir string) *pebble.DB {
	t.Helper()
	db, err := pebble.Open(dir, &pebble.Options{Logger: quietLogger{}})
	if err != nil {
		t.Fatalf("open pebble: %v", err)
	}
	t.Cleanup(func() {
		if err := db.Close(); err != nil {
			t.Errorf("close pebble: %v", err)
		}
	})
	return db
}

type quietLogger struct{}

func (quietLogger) Infof(string, ...any)  {}
func (quietLogger) Errorf(string, ...any) {}
func (quietLogger) Fatalf(format string, args ...any) {
	panic("pebble fatal: " + format)
}

// newStore opens a fresh Pebble in a temp dir and a Store over it. Cleanups
// run in reverse, so the Store closes before the DB.
func newStore(t tb, opts ...Option) *Store {
	t.Helper()
	dir := t.TempDir()
	db := openDB(t, dir)
	s, err := New(db, []byte("blob/"), append([]Option{WithPackDir(filepath.Join(dir, "packs"))}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// withoutPacks undoes WithPackDir: block bytes go into Pebble batches.
func withoutPacks() Option { return func(o *options) { o.packDir = "" } }

func newHost(t tb) host.Host {
	t.Helper()
	h, err := libp2p.New(
		libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"),
		libp2p.Transport(tcp.NewTCPTransport),
		libp2p.Security(noise.ID, noise.New),
		libp2p.Muxer(yamux.ID, yamux.DefaultTransport),
		libp2p.DisableRelay(),
	)
	if err != nil {
		t.Fatalf("libp2p host: %v", err)
	}
	t.Cleanup(func() { h.Close() })
	return h
}

func connect(t tb, a host.Host, others ...host.Host) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, b := range others {
		if err := a.Connect(ctx, peer.AddrInfo{ID: b.ID(), Addrs: b.Addrs()}); err != nil {
			t.Fatalf("connect: %v", err)
		}
	}
}

// node is a host with a Store serving on it.
type node struct {
	h host.Host
	s *Store
}

func newNode(t tb, opts ...Option) node {
	t.Helper()
	h := newHost(t)
	return node{h: h, s: newStore(t, append([]Option{WithHost(h)}, opts...)...)}
}

func putBytes(t tb, s *Store, data []byte) cid.Cid {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	root, n, err := s.Put(ctx, bytes.NewReader(data))
	if err != nil {
		t.Fatalf("put: %v", err)
	}
	if n != int64(len(data)) {
		t.Fatalf("put read %d bytes, want %d", n, len(data))
	}
	return root
}

// requestLog records the CIDs each server was asked for.
type requestLog struct {
	mu  sync.Mutex
	got map[string][]cid.Cid // by server name
}

func (l *requestLog) hook(server string, tamper bool) Option {
	return withServeHook(func(_ peer.ID, c cid.Cid, data []byte) []byte {
		l.mu.Lock()
		if l.got == nil {
			l.got = make(map[string][]cid.Cid)
		}
		l.got[server] = append(l.got[server], c)
		l.mu.Unlock()
		if tamper {
			bad := append([]byte(nil), data...)
			bad[len(bad)/2] ^= 0xff
			return bad
		}
		return data
	})
}

func (l *requestLog) reset() {
	l.mu.Lock()
	l.got = nil
	l.mu.Unlock()
}

func (l *requestLog) all() []cid.Cid {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []cid.Cid
	for _, cs := range l.got {
		out = append(out, cs...)
	}
	return out
}

func (l *requestLog) count(server string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.got[server])
}

// waitIdle waits until no stream is being served by s.
func waitIdle(t tb, s *Store) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		s.mu.Lock()
		n := len(s.streams)
		s.mu.Unlock()
		if n == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d streams still served", n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func dirSize(t tb, dir string) int64 {
	t.Helper()
	var total int64
	err := filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil {
			if os.IsNotExist(err) {
				return nil // pebble deletes files while we walk
			}
			return err
		}
		if d.IsDir() {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			if os.IsNotExist(err) {
				return nil
			}
			return err
		}
		total += info.Size()
		return nil
	})
	if err != nil {
		t.Fatalf("walk %s: %v", dir, err)
	}
	return total
}
