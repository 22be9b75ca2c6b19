package blobstore

import (
	"bytes"
	"context"
	"errors"
	"io"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/cockroachdb/pebble"
	"github.com/cockroachdb/pebble/vfs"
	unixfsio "github.com/ipfs/boxo/ipld/unixfs/io"
	blocks "github.com/ipfs/go-block-format"
	"github.com/ipfs/go-cid"
	ipld "github.com/ipfs/go-ipld-format"
	"github.com/libp2p/go-libp2p/core/peer"
	mh "github.com/multiformats/go-multihash"
)

func TestPutGetRoundTrip(t *testing.T) {
	cases := []struct {
		name   string
		size   int
		layout Option // nil: the default layout
	}{
		{"empty", 0, nil},
		{"one byte", 1, nil},
		{"one chunk", ChunkSize, nil},
		{"chunk plus one", ChunkSize + 1, nil},
		{"6.5 MB", 6*ChunkSize + ChunkSize/2, nil},
		// 64 KiB chunks, 4 links per node: a DAG four levels deep.
		{"deep DAG", 3<<20 + 17, withLayout(64<<10, 4)},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var opts []Option
			if tc.layout != nil {
				opts = append(opts, tc.layout)
			}
			s := newStore(t, opts...)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			data := randomBytes(uint64(i), tc.size)
			root := putBytes(t, s, data)

			if root.Version() != 1 || root.Prefix().MhType != mh.SHA2_256 {
				t.Errorf("root %s: want CIDv1 sha2-256", root)
			}
			if tc.size > ChunkSize && root.Type() != cid.DagProtobuf {
				t.Errorf("root codec 0x%x, want dag-pb", root.Type())
			}
			got, err := s.Get(ctx, root)
			if err != nil {
				t.Fatalf("get: %v", err)
			}
			if !bytes.Equal(got, data) {
				t.Fatalf("get returned %d bytes that differ from the %d put", len(got), len(data))
			}
			ok, err := s.Has(ctx, root)
			if err != nil || !ok {
				t.Fatalf("Has = %v, %v; want true", ok, err)
			}

			// Same bytes, same CID (and nothing rewritten).
			if again := putBytes(t, s, data); !again.Equals(root) {
				t.Errorf("second put gave %s, first %s", again, root)
			}

			// Open reads and seeks.
			r, err := s.Open(ctx, root)
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			if r.Size() != int64(len(data)) {
				t.Errorf("Size = %d, want %d", r.Size(), len(data))
			}
			if len(data) > 10 {
				off := int64(len(data) / 3)
				if _, err := r.Seek(off, io.SeekStart); err != nil {
					t.Fatal(err)
				}
				buf := make([]byte, 10)
				if _, err := io.ReadFull(r, buf); err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(buf, data[off:off+10]) {
					t.Errorf("read after seek differs")
				}
			}
		})
	}
}

func TestDefaultLayoutIsUnixFSv1_2025(t *testing.T) {
	p := unixfsio.UnixFS_v1_2025
	if p.ChunkSize != ChunkSize || p.FileDAGWidth != MaxLinks || !p.RawLeaves ||
		p.CidBuilder() != (cid.Prefix{Version: 1, Codec: cid.DagProtobuf, MhType: mh.SHA2_256, MhLength: -1}) {
		t.Errorf("layout differs from the unixfs-v1-2025 profile %+v", p)
	}
	s := newStore(t)
	data := randomBytes(7, 3*ChunkSize+5)
	root := putBytes(t, s, data)
	nd, err := nodeGetter{s}.Get(context.Background(), root)
	if err != nil {
		t.Fatal(err)
	}
	links := nd.Links()
	if len(links) != 4 {
		t.Fatalf("root has %d links, want 4 leaves", len(links))
	}
	for i, l := range links {
		if l.Cid.Type() != cid.Raw {
			t.Errorf("leaf %d codec 0x%x, want raw", i, l.Cid.Type())
		}
		want := ChunkSize
		if i == 3 {
			want = 5
		}
		if int(l.Size) != want {
			t.Errorf("leaf %d size %d, want %d", i, l.Size, want)
		}
		sum, _ := mh.Sum(data[i*ChunkSize:min(len(data), (i+1)*ChunkSize)], mh.SHA2_256, -1)
		if !bytes.Equal(sum, l.Cid.Hash()) {
			t.Errorf("leaf %d is not the raw chunk", i)
		}
	}
}

func TestIncomplete(t *testing.T) {
	s := newStore(t, withLayout(64<<10, 4))
	ctx := context.Background()
	root := putBytes(t, s, randomBytes(3, 1<<20))
	nd, err := nodeGetter{s}.Get(ctx, root)
	if err != nil {
		t.Fatal(err)
	}
	// Delete a block two levels down.
	inner, err := nodeGetter{s}.Get(ctx, nd.Links()[1].Cid)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Blockstore().DeleteBlock(ctx, inner.Links()[2].Cid); err != nil {
		t.Fatal(err)
	}
	ok, err := s.Has(ctx, root)
	if err != nil || ok {
		t.Fatalf("Has = %v, %v; want false", ok, err)
	}
	if _, err := s.Open(ctx, root); !errors.Is(err, ErrIncomplete) {
		t.Fatalf("Open: %v, want ErrIncomplete", err)
	}
	if ok, err := s.Has(ctx, randomCID(t)); err != nil || ok {
		t.Fatalf("Has(unknown) = %v, %v", ok, err)
	}
}

func TestPutCancelled(t *testing.T) {
	s := newStore(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, _, err := s.Put(ctx, bytes.NewReader(randomBytes(1, 3<<20))); !errors.Is(err, context.Canceled) {
		t.Fatalf("Put on cancelled ctx: %v", err)
	}
}

func TestUnsupportedCID(t *testing.T) {
	s := newStore(t)
	h, _ := mh.Sum([]byte("x"), mh.SHA2_512, -1)
	c := cid.NewCidV1(cid.Raw, h)
	if _, err := s.Has(context.Background(), c); !errors.Is(err, ErrUnsupportedCID) {
		t.Errorf("Has(sha2-512): %v", err)
	}
	if err := s.Pin(cid.NewCidV1(cid.DagCBOR, randomCID(t).Hash())); !errors.Is(err, ErrUnsupportedCID) {
		t.Errorf("Pin(dag-cbor): %v", err)
	}
}

func randomCID(t testing.TB) cid.Cid {
	h, err := mh.Sum(randomBytes(uint64(time.Now().UnixNano()), 32), mh.SHA2_256, -1)
	if err != nil {
		t.Fatal(err)
	}
	return cid.NewCidV1(cid.Raw, h)
}

func TestBlockstoreView(t *testing.T) {
	s := newStore(t)
	bs := s.Blockstore()
	ctx := context.Background()
	var want []cid.Cid
	var blks []blocks.Block
	for i := range 5 {
		b := blocks.NewBlock(randomBytes(uint64(100+i), 1000+i))
		blks = append(blks, b)
		want = append(want, cid.NewCidV1(cid.Raw, b.Cid().Hash()))
	}
	if err := bs.PutMany(ctx, blks); err != nil {
		t.Fatal(err)
	}
	for i, b := range blks {
		got, err := bs.Get(ctx, b.Cid())
		if err != nil || !bytes.Equal(got.RawData(), b.RawData()) {
			t.Fatalf("Get %d: %v", i, err)
		}
		if n, err := bs.GetSize(ctx, b.Cid()); err != nil || n != 1000+i {
			t.Fatalf("GetSize %d = %d, %v", i, n, err)
		}
	}
	ch, err := bs.AllKeysChan(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var got []cid.Cid
	for c := range ch {
		got = append(got, c)
	}
	key := func(a, b cid.Cid) int { return bytes.Compare(a.Bytes(), b.Bytes()) }
	slices.SortFunc(got, key)
	slices.SortFunc(want, key)
	if !slices.EqualFunc(got, want, cid.Cid.Equals) {
		t.Fatalf("AllKeysChan = %v, want %v", got, want)
	}
	if err := bs.DeleteBlock(ctx, blks[0].Cid()); err != nil {
		t.Fatal(err)
	}
	if _, err := bs.Get(ctx, blks[0].Cid()); !ipld.IsNotFound(err) {
		t.Fatalf("Get after delete: %v", err)
	}
	if ok, _ := bs.Has(ctx, blks[0].Cid()); ok {
		t.Fatal("Has after delete")
	}
}

func TestPinsAndKeepNewest(t *testing.T) {
	s := newStore(t)
	var roots []cid.Cid // newest first
	for i := range 4 {
		roots = append([]cid.Cid{putBytes(t, s, randomBytes(uint64(200+i), 10_000))}, roots...)
	}
	other := putBytes(t, s, randomBytes(300, 10_000))
	if err := s.Pin(other); err != nil {
		t.Fatal(err)
	}
	for _, r := range roots {
		if err := s.Pin(r); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.KeepNewest(roots, 0); err != nil {
		t.Fatal(err)
	}
	pins, err := s.Pins()
	if err != nil {
		t.Fatal(err)
	}
	want := []cid.Cid{roots[0], roots[1], other}
	if !sameSet(pins, want) {
		t.Fatalf("pins %v, want %v", pins, want)
	}
	if err := s.Unpin(other); err != nil {
		t.Fatal(err)
	}
	if err := s.KeepNewest(roots, 3); err != nil {
		t.Fatal(err)
	}
	pins, _ = s.Pins()
	if !sameSet(pins, roots[:3]) {
		t.Fatalf("pins %v, want %v", pins, roots[:3])
	}
	// GC keeps exactly the pinned blobs.
	st, err := s.GC(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if st.Blocks != 2 || st.BytesFreed != 20_000 {
		t.Errorf("GC %+v, want 2 blocks / 20000 bytes freed", st)
	}
	for i, r := range append(roots, other) {
		ok, _ := s.Has(context.Background(), r)
		if ok != (i < 3) {
			t.Errorf("root %d held = %v after GC", i, ok)
		}
	}
}

func sameSet(a, b []cid.Cid) bool {
	if len(a) != len(b) {
		return false
	}
	for _, x := range a {
		if !slices.ContainsFunc(b, x.Equals) {
			return false
		}
	}
	return true
}

func TestGCShrinksDisk(t *testing.T) {
	for _, mode := range []struct {
		name string
		opts []Option
	}{{"packs", nil}, {"batch", []Option{withoutPacks()}}} {
		t.Run(mode.name, func(t *testing.T) { testGCShrinksDisk(t, mode.opts...) })
	}
}

func testGCShrinksDisk(t *testing.T, opts ...Option) {
	dir := t.TempDir()
	db := openDB(t, dir)
	s, err := New(db, []byte("blob/"), append([]Option{WithPackDir(filepath.Join(dir, "packs"))}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	kept := putBytes(t, s, randomBytes(10, 2<<20))
	if err := s.Pin(kept); err != nil {
		t.Fatal(err)
	}
	// A partial DAG under a pin is kept too.
	partial := putBytes(t, s, randomBytes(11, 3<<20))
	nd, _ := nodeGetter{s}.Get(ctx, partial)
	if err := s.Blockstore().DeleteBlock(ctx, nd.Links()[0].Cid); err != nil {
		t.Fatal(err)
	}
	if err := s.Pin(partial); err != nil {
		t.Fatal(err)
	}
	const garbage = 24 << 20
	dropped := putBytes(t, s, randomBytes(12, garbage))
	if err := db.Flush(); err != nil { // as after a while of normal running
		t.Fatal(err)
	}
	before := dirSize(t, dir)

	st, err := s.GC(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.BytesFreed < garbage || st.BytesFreed > garbage+4096 {
		t.Errorf("BytesFreed = %d, want %d + root", st.BytesFreed, garbage)
	}
	if st.Blocks != garbage/ChunkSize+1 {
		t.Errorf("deleted %d blocks, want %d", st.Blocks, garbage/ChunkSize+1)
	}
	if ok, _ := s.Has(ctx, dropped); ok {
		t.Error("unpinned blob still complete after GC")
	}
	if _, err := s.Get(ctx, kept); err != nil {
		t.Errorf("pinned blob lost: %v", err)
	}
	if _, err := s.getBlock(nd.Links()[1].Cid); err != nil {
		t.Errorf("held block of pinned partial blob lost: %v", err)
	}

	// Pebble deletes obsolete files in the background.
	deadline := time.Now().Add(10 * time.Second)
	var after int64
	for {
		after = dirSize(t, dir)
		if before-after >= garbage*3/4 || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("pebble dir %d → %d bytes after GC freed %d", before, after, st.BytesFreed)
	if before-after < garbage*3/4 {
		t.Fatalf("pebble dir shrank by %d bytes, want at least %d", before-after, garbage*3/4)
	}
}

// TestBatchFallback: without a pack directory (here over a Pebble on an
// in-memory filesystem) the Store writes block bytes through batches and
// everything still works.
func TestBatchFallback(t *testing.T) {
	db, err := pebble.Open("", &pebble.Options{FS: vfs.NewMem(), Logger: quietLogger{}})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	h := newHost(t)
	s, err := New(db, []byte("blob/"), WithHost(h))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if s.packs != nil {
		t.Fatal("a Store without WithPackDir writes pack files")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	data := randomBytes(60, 3<<20+100)
	root := putBytes(t, s, data)
	if got, err := s.Get(ctx, root); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("round trip through batches: %v", err)
	}

	// Fetch into the in-memory store from a normal peer.
	other := newNode(t)
	remote := putBytes(t, other.s, randomBytes(61, 5<<20))
	connect(t, h, other.h)
	if _, err := s.Fetch(ctx, remote, []peer.ID{other.h.ID()}, nil); err != nil {
		t.Fatal(err)
	}
	if ok, _ := s.Has(ctx, remote); !ok {
		t.Fatal("fetched blob incomplete")
	}
	if err := s.Pin(root); err != nil {
		t.Fatal(err)
	}
	st, err := s.GC(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Blocks != 6 {
		t.Errorf("GC deleted %d blocks, want the 6 of the fetched blob", st.Blocks)
	}
	if got, err := s.Get(ctx, root); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("pinned blob after GC: %v", err)
	}
}

// TestReopen: block numbers continue after a restart, so new blobs never
// overwrite old ones.
func TestReopen(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	open := func() (*pebble.DB, *Store) {
		db, err := pebble.Open(dir, &pebble.Options{Logger: quietLogger{}})
		if err != nil {
			t.Fatal(err)
		}
		s, err := New(db, []byte("blob/"), WithPackDir(filepath.Join(dir, "packs")))
		if err != nil {
			t.Fatal(err)
		}
		return db, s
	}
	a := randomBytes(70, 2<<20+1)
	db, s := open()
	rootA := putBytes(t, s, a)
	s.Close()
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	b := randomBytes(71, 2<<20+2)
	db, s = open()
	defer db.Close()
	defer s.Close()
	rootB := putBytes(t, s, b)
	for _, tc := range []struct {
		root cid.Cid
		data []byte
	}{{rootA, a}, {rootB, b}} {
		if got, err := s.Get(ctx, tc.root); err != nil || !bytes.Equal(got, tc.data) {
			t.Fatalf("blob %s after reopen: %v", tc.root, err)
		}
	}
}

// TestGCDropsOrphans: block bytes no catalogue entry points to (a crash
// between ingestion and the catalogue write) go at the next GC.
func TestGCDropsOrphans(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	orphan := s.blockKey(s.allocSeq(1))
	if err := s.db.Set(orphan, randomBytes(80, 1000), pebble.NoSync); err != nil {
		t.Fatal(err)
	}
	kept := putBytes(t, s, randomBytes(81, 2<<20))
	if err := s.Pin(kept); err != nil {
		t.Fatal(err)
	}
	putBytes(t, s, randomBytes(82, 1<<20)) // garbage, so that GC runs
	if _, err := s.GC(ctx); err != nil {
		t.Fatal(err)
	}
	if _, closer, err := s.db.Get(orphan); !errors.Is(err, pebble.ErrNotFound) {
		if closer != nil {
			closer.Close()
		}
		t.Fatalf("orphan block still there: %v", err)
	}
	if _, err := s.Get(ctx, kept); err != nil {
		t.Fatal(err)
	}
}

// TestPutPinnedSurvivesGC: PutPinned's root is pinned when it returns, so
// a GC right after keeps it; UnpinAll and a GC then free it all, and Stats
// counts what is held.
func TestPutPinnedSurvivesGC(t *testing.T) {
	s := newStore(t, withLayout(64<<10, 4))
	ctx := context.Background()
	data := randomBytes(3, 1<<20+5)
	root, _, err := s.PutPinned(ctx, bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	other := putBytes(t, s, randomBytes(4, 1000)) // not pinned
	if _, err := s.GC(ctx); err != nil {
		t.Fatal(err)
	}
	if ok, _ := s.Has(ctx, root); !ok {
		t.Fatal("pinned put lost its blocks to a GC")
	}
	if ok, _ := s.Has(ctx, other); ok {
		t.Fatal("unpinned put survived a GC")
	}
	st, err := s.Stats()
	if err != nil || st.Pins != 1 || st.Bytes < int64(len(data)) || st.Blocks < 17 {
		t.Fatalf("stats %+v %v", st, err)
	}
	if err := s.UnpinAll([]cid.Cid{root, other}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GC(ctx); err != nil {
		t.Fatal(err)
	}
	if st, err := s.Stats(); err != nil || st != (Stats{}) {
		t.Fatalf("after unpin and GC: %+v %v", st, err)
	}
}
