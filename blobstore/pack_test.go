package blobstore

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"
)

// packFiles lists the pack files of s by number, with their sizes.
func packFiles(t *testing.T, s *Store) map[uint64]int64 {
	t.Helper()
	files, err := s.packs.list()
	if err != nil {
		t.Fatal(err)
	}
	return files
}

// A blob's bytes are in pack files, not in Pebble, and read back equal,
// also after the Store is opened again.
func TestPackRoundTripAndReopen(t *testing.T) {
	dir := t.TempDir()
	db := openDB(t, dir)
	packs := filepath.Join(dir, "packs")
	s, err := New(db, []byte("blob/"), WithPackDir(packs))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	a := randomBytes(90, 5<<20+3)
	rootA := putBytes(t, s, a)
	if n := len(packFiles(t, s)); n != 1 {
		t.Fatalf("%d pack files after one 5 MB put, want 1", n)
	}
	lo, hi := s.blockRange()
	it, err := db.NewIter(nil)
	if err != nil {
		t.Fatal(err)
	}
	for ok := it.SeekGE(lo); ok && bytes.Compare(it.Key(), hi) < 0; ok = it.Next() {
		t.Errorf("block bytes in Pebble at %x", it.Key())
	}
	it.Close()
	s.Close()

	s, err = New(db, []byte("blob/"), WithPackDir(packs))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	b := randomBytes(91, 3<<20)
	rootB := putBytes(t, s, b)
	for root, want := range map[cid.Cid][]byte{rootA: a, rootB: b} {
		if got, err := s.Get(ctx, root); err != nil || !bytes.Equal(got, want) {
			t.Fatalf("blob %s after reopen: %v", root, err)
		}
	}
	if n := len(packFiles(t, s)); n != 2 {
		t.Fatalf("%d pack files, want 2 (numbers go on after a reopen)", n)
	}
}

// A store whose blocks were written into Pebble (by the Store before pack
// files, or without WithPackDir) keeps serving them with a pack directory,
// and GC frees both kinds.
func TestPebbleBlocksStayReadable(t *testing.T) {
	dir := t.TempDir()
	db := openDB(t, dir)
	ctx := context.Background()
	old, err := New(db, []byte("blob/"))
	if err != nil {
		t.Fatal(err)
	}
	keepData, dropData := randomBytes(92, 2<<20+7), randomBytes(93, 3<<20)
	keepOld, dropOld := putBytes(t, old, keepData), putBytes(t, old, dropData)
	old.Close()

	s, err := New(db, []byte("blob/"), WithPackDir(filepath.Join(dir, "packs")))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for root, want := range map[cid.Cid][]byte{keepOld: keepData, dropOld: dropData} {
		if got, err := s.Get(ctx, root); err != nil || !bytes.Equal(got, want) {
			t.Fatalf("Pebble-held blob %s: %v", root, err)
		}
	}
	newData := randomBytes(94, 2<<20)
	keepNew := putBytes(t, s, newData)
	dropNew := putBytes(t, s, randomBytes(95, 1<<20+1))
	if err := s.KeepNewest([]cid.Cid{keepNew, keepOld, dropNew, dropOld}, 2); err != nil {
		t.Fatal(err)
	}
	st, err := s.GC(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Blocks != 4+3 || st.PacksRemoved != 1 {
		t.Fatalf("GC %+v, want 7 blocks (4 in Pebble, 3 in a pack) and 1 pack removed", st)
	}
	for root, want := range map[cid.Cid][]byte{keepOld: keepData, keepNew: newData} {
		if got, err := s.Get(ctx, root); err != nil || !bytes.Equal(got, want) {
			t.Fatalf("kept blob %s after GC: %v", root, err)
		}
	}
	for _, root := range []cid.Cid{dropOld, dropNew} {
		if ok, _ := s.Has(ctx, root); ok {
			t.Fatalf("unpinned blob %s survived GC", root)
		}
	}
}

// When a pinned blob shares a block with an unpinned one, GC copies the
// shared block out of the unpinned blob's pack and deletes the pack: the
// disk space comes back even though one of its blocks lives on.
func TestGCMovesLiveBlocksOutOfSparsePacks(t *testing.T) {
	dir := t.TempDir()
	s := newStoreIn(t, dir)
	ctx := context.Background()
	first := randomBytes(96, 8*ChunkSize)
	rootA := putBytes(t, s, first)
	// B's first leaf is A's first: the put finds it held and writes only
	// B's second leaf and root into a pack of their own.
	b := append(append([]byte(nil), first[:ChunkSize]...), randomBytes(97, ChunkSize)...)
	rootB := putBytes(t, s, b)
	if err := s.Pin(rootB); err != nil {
		t.Fatal(err)
	}
	packsBefore := packFiles(t, s)
	if len(packsBefore) != 2 {
		t.Fatalf("%d packs, want 2", len(packsBefore))
	}
	before := dirSize(t, filepath.Join(dir, "packs"))

	st, err := s.GC(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Moved != ChunkSize || st.PacksRemoved != 1 {
		t.Fatalf("GC %+v: want the shared 1 MiB leaf moved and A's pack removed", st)
	}
	after := dirSize(t, filepath.Join(dir, "packs"))
	if before-after < 6*ChunkSize {
		t.Fatalf("packs %d → %d bytes, want at least 6 MiB freed", before, after)
	}
	if got, err := s.Get(ctx, rootB); err != nil || !bytes.Equal(got, b) {
		t.Fatalf("pinned blob after its block moved: %v", err)
	}
	if ok, _ := s.Has(ctx, rootA); ok {
		t.Fatal("unpinned blob still complete")
	}
	// A second GC finds nothing to move or remove.
	if st, err := s.GC(ctx); err != nil || st.Moved != 0 || st.PacksRemoved != 0 {
		t.Fatalf("second GC %+v, %v", st, err)
	}
}

// newStoreIn is newStore over a Pebble in dir with its packs in dir/packs.
func newStoreIn(t *testing.T, dir string) *Store {
	t.Helper()
	s, err := New(openDB(t, dir), []byte("blob/"), WithPackDir(filepath.Join(dir, "packs")))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// A crash after a pack was written but before its catalogue entries were
// committed leaves a pack nobody points to; GC deletes it and keeps the
// rest. Pack numbers never reuse the orphan's.
func TestGCDropsOrphanPacks(t *testing.T) {
	dir := t.TempDir()
	s := newStoreIn(t, dir)
	ctx := context.Background()
	kept := putBytes(t, s, randomBytes(98, 2<<20))
	if err := s.Pin(kept); err != nil {
		t.Fatal(err)
	}
	p, err := s.packs.create()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.w.Write(randomBytes(99, 3<<20)); err != nil {
		t.Fatal(err)
	}
	if err := p.finish(s.packs); err != nil { // the crash: no entries
		t.Fatal(err)
	}
	st, err := s.GC(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.PacksRemoved != 1 || st.Blocks != 0 {
		t.Fatalf("GC %+v, want the orphan pack removed and no block", st)
	}
	if _, err := os.Stat(s.packs.path(p.num)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("orphan pack still there: %v", err)
	}
	if _, err := s.Get(ctx, kept); err != nil {
		t.Fatal(err)
	}
	next := putBytes(t, s, randomBytes(100, 1<<20))
	if _, err := s.Get(ctx, next); err != nil {
		t.Fatal(err)
	}
	for num := range packFiles(t, s) {
		if num == p.num {
			t.Fatal("a new pack took the orphan's number")
		}
	}
}

// Damaged pack files come back as errors naming the pack and wrapping
// ErrNotFound, never as wrong bytes or a panic: a truncated pack, a
// missing one. The damaged blocks then count as missing, so a fetch from
// a peer that holds them makes the blob whole again.
func TestDamagedPacks(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	for _, damage := range []struct {
		name, says string
		do         func(path string, size int64) error
	}{
		{"truncated", "shorter than its catalogue", func(path string, size int64) error { return os.Truncate(path, size/2) }},
		{"missing", "missing", func(path string, _ int64) error { return os.Remove(path) }},
	} {
		before := packFiles(t, s)
		root := putBytes(t, s, randomBytes(uint64(101+len(before)), 3<<20))
		var num uint64
		for n := range packFiles(t, s) {
			if _, old := before[n]; !old {
				num = n
			}
		}
		s.packs.close() // drop cached readers, as after a restart
		if err := damage.do(s.packs.path(num), packFiles(t, s)[num]); err != nil {
			t.Fatal(err)
		}
		// The root is written last: the damage reaches it either way.
		_, err := s.getBlock(root)
		if !errors.Is(err, ErrNotFound) || !bytes.Contains([]byte(err.Error()), []byte(damage.says)) {
			t.Fatalf("%s pack: read gave %v", damage.name, err)
		}
		if ok, err := s.Has(ctx, root); ok || err != nil {
			t.Fatalf("%s pack: blob with damaged blocks still counts as held (%v)", damage.name, err)
		}
		if _, err := s.Get(ctx, root); !errors.Is(err, ErrIncomplete) {
			t.Fatalf("%s pack: second read gave %v, want ErrIncomplete", damage.name, err)
		}
	}
}

// A blob whose pack was lost is fetched again from a peer that holds it.
func TestFetchHealsLostPack(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	a, b := newNode(t), newNode(t)
	connect(t, a.h, b.h)
	data := randomBytes(102, 4<<20+9)
	root := putBytes(t, a.s, data)
	if _, err := b.s.Fetch(ctx, root, []peer.ID{a.h.ID()}, nil); err != nil {
		t.Fatal(err)
	}
	for num := range packFiles(t, b.s) {
		if err := os.Remove(b.s.packs.path(num)); err != nil {
			t.Fatal(err)
		}
	}
	b.s.packs.close()
	if _, err := b.s.Get(ctx, root); !errors.Is(err, ErrIncomplete) {
		t.Fatalf("read of a lost pack: %v, want ErrIncomplete", err)
	}
	if ok, err := b.s.Has(ctx, root); ok || err != nil {
		t.Fatalf("blob of a lost pack still counts as held (%v)", err)
	}
	st, err := b.s.Fetch(ctx, root, []peer.ID{a.h.ID()}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if st.Fetched != 6 {
		t.Fatalf("fetched %d blocks again, want all 6 (5 leaves, the root)", st.Fetched)
	}
	if got, err := b.s.Get(ctx, root); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("blob after fetching it again: %v", err)
	}
}

// Catalogue entries of both kinds round-trip, and no byte string makes
// decodeLocation panic or accept trailing bytes.
func FuzzDecodeLocation(f *testing.F) {
	for _, l := range []location{{size: 1 << 20, seq: 7}, {size: 12, pack: 3, off: 1 << 33}, {}} {
		f.Add(l.encode())
	}
	f.Add([]byte{0x80})
	f.Add([]byte{1, 2, 3, 4})
	f.Fuzz(func(t *testing.T, v []byte) {
		l, err := decodeLocation(v)
		if err != nil {
			return
		}
		if l.size < 0 || l.size > MaxBlockSize || l.off < 0 {
			t.Fatalf("accepted %+v", l)
		}
		if got, err := decodeLocation(l.encode()); err != nil || got != l {
			t.Fatalf("%+v → %x → %+v, %v", l, l.encode(), got, err)
		}
	})
}

// GC over a pinned blob whose pack was damaged finishes (its walk meets
// the damage under GC's own lock), counts the damaged blocks as missing,
// and a put of the same bytes then stores them again.
func TestGCWithDamagedPack(t *testing.T) {
	for _, remove := range []bool{false, true} {
		s := newStore(t)
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		data := randomBytes(103, 3<<20+1)
		root := putBytes(t, s, data)
		if err := s.Pin(root); err != nil {
			t.Fatal(err)
		}
		s.packs.close()
		for num, size := range packFiles(t, s) {
			var err error
			if remove {
				err = os.Remove(s.packs.path(num))
			} else {
				err = os.Truncate(s.packs.path(num), size-100) // the root, written last, is cut
			}
			if err != nil {
				t.Fatal(err)
			}
		}
		done := make(chan error, 1)
		go func() { _, err := s.GC(ctx); done <- err }()
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("GC over a damaged pack (removed %v): %v", remove, err)
			}
		case <-ctx.Done():
			t.Fatalf("GC over a damaged pack (removed %v) did not finish", remove)
		}
		if ok, err := s.Has(ctx, root); ok || err != nil {
			t.Fatalf("damaged blob still counts as held (%v)", err)
		}
		if again := putBytes(t, s, data); !again.Equals(root) {
			t.Fatal("CID changed")
		}
		if got, err := s.Get(ctx, root); err != nil || !bytes.Equal(got, data) {
			t.Fatalf("blob put again after damage (removed %v): %v", remove, err)
		}
		cancel()
	}
}
