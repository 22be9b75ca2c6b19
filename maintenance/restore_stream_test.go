package maintenance

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"testing"
	"testing/iotest"

	"aura/crdt"
)

// streamBlobs is MemBlobs with the streaming interfaces, counting what
// was aborted.
type streamBlobs struct {
	*MemBlobs
	aborted int
}

type memWriter struct {
	b   *streamBlobs
	buf bytes.Buffer
}

func (w *memWriter) Write(p []byte) (int, error)   { return w.buf.Write(p) }
func (w *memWriter) Commit() ([]byte, error)       { return w.b.Put(w.buf.Bytes()) }
func (w *memWriter) Abort()                        { w.b.aborted++ }
func (b *streamBlobs) Create() (BlobWriter, error) { return &memWriter{b: b}, nil }
func (b *streamBlobs) Open(c []byte) (io.ReadCloser, error) {
	v, err := b.Get(c)
	if err != nil {
		return nil, err
	}
	return io.NopCloser(iotest.HalfReader(bytes.NewReader(v))), nil
}

// snapshotWithTail completes a snapshot in a 4-device cluster and writes a
// tail above it that overwrites, deletes and adds keys. It returns the
// completion, its blob, and the tail (every fact device 2 holds).
func snapshotWithTail(t *testing.T) (*cluster, *crdt.SnapshotCompleted, []byte, []*crdt.Fact) {
	c := newCluster(t, 4, 3)
	for i := range 12 {
		c.write(i%4, fmt.Sprintf("k%d", i), "before")
	}
	out, err := c.reps[0].Propose(c.now)
	c.must(err)
	c.deliver(0, out)
	snap := c.reps[1].State().NewestSnapshot()
	if snap == nil {
		t.Fatal("no snapshot")
	}
	blob, err := c.blobs[1].Get(snap.Snapshot.BlobCID)
	c.must(err)
	c.write(1, "k3", "after")
	c.write(2, "new", "after")
	_, err = c.reps[3].Write(c.now, &crdt.Delete{Key: "k5"})
	c.must(err)
	c.deliver(3, Output{Publish: []*crdt.Fact{c.lastOwn(3)}})
	var tail []*crdt.Fact
	c.must(c.reps[2].Store().All(func(f *crdt.Fact) error { tail = append(tail, f); return nil }))
	return c, snap, blob, tail
}

func (c *cluster) lastOwn(i int) *crdt.Fact {
	var last *crdt.Fact
	d := c.reps[i].Device()
	c.must(c.reps[i].Store().All(func(f *crdt.Fact) error {
		if f.Author == d && (last == nil || f.Seq > last.Seq) {
			last = f
		}
		return nil
	}))
	return last
}

func freshConfig(k int, blobs Blobs) Config {
	return Config{Key: key(k), Store: crdt.NewMemStore(crdt.AccountID{}), Meta: NewMemMeta(), Blobs: blobs, SnapshotTimeout: 10_000, Watermark: -1}
}

// Hydrate (no key/value held) leaves a device whose opened replica is the
// one Restore and Receive build, and reports that state's digest; Restore
// from a stream is Restore from bytes.
func TestHydrateIsRestore(t *testing.T) {
	c, snap, blob, tail := snapshotWithTail(t)
	want := c.reps[2].State().Digest()

	viaBytes := newReplica(t, key(40), NewMemBlobs())
	_, err := viaBytes.Restore(c.now, snap, blob)
	c.must(err)
	_, _, err = viaBytes.Receive(c.now, tail)
	c.must(err)
	if viaBytes.State().Digest() != want {
		t.Fatal("Restore and Receive differ from the peer")
	}

	sb := &streamBlobs{MemBlobs: NewMemBlobs()}
	viaStream, err := Open(freshConfig(41, sb))
	c.must(err)
	_, err = viaStream.RestoreFrom(c.now, snap, iotest.OneByteReader(bytes.NewReader(blob)))
	c.must(err)
	if got, err := sb.Get(snap.Snapshot.BlobCID); err != nil || !bytes.Equal(got, blob) {
		t.Fatalf("RestoreFrom did not store the blob: %v", err)
	}
	_, _, err = viaStream.Receive(c.now, tail)
	c.must(err)
	if viaStream.State().Digest() != want {
		t.Fatal("RestoreFrom differs from Restore")
	}

	hb := &streamBlobs{MemBlobs: NewMemBlobs()}
	cfg := freshConfig(42, hb)
	staged, err := Stage(hb, bytes.NewReader(blob))
	c.must(err)
	h, err := Hydrate(cfg, snap, staged, tail)
	c.must(err)
	if h.Digest != want || h.Account != c.reps[0].Account() || h.Member || len(h.Tail.Added) == 0 {
		t.Fatalf("hydrate: digest %s (want %s), member %v, added %d", h.Digest, want, h.Member, len(h.Tail.Added))
	}
	if len(h.Blobs.Keep) == 0 || !bytes.Equal(h.Blobs.Keep[0], snap.Snapshot.BlobCID) {
		t.Fatal("blob plan does not keep the restored snapshot")
	}
	opened, err := Open(cfg)
	c.must(err)
	if opened.State().Digest() != want {
		t.Fatal("the hydrated device opens with another state")
	}
	for k, v := range map[string]string{"k3": "after", "new": "after", "k7": "before"} {
		if got, ok := opened.State().Value(k); !ok || string(got) != v {
			t.Fatalf("hydrated %s = %q %v, want %q", k, got, ok, v)
		}
	}
	if _, ok := opened.State().Value("k5"); ok {
		t.Fatal("a key the tail deleted is back")
	}
	// Hydrate refuses a device that holds a journal.
	if _, err := Hydrate(cfg, snap, staged, tail); !errors.Is(err, ErrHasAccount) {
		t.Fatalf("hydrate twice: %v", err)
	}
}

// A blob that does not verify is refused before anything is written but
// the staged (unpinned) blob.
func TestHydrateRefuses(t *testing.T) {
	c, snap, blob, tail := snapshotWithTail(t)
	flipped := append([]byte(nil), blob...)
	flipped[len(flipped)-40] ^= 1 // inside the last key/value's stamp: still canonical
	forged := *snap
	forged.ThresholdSignature = append([]byte(nil), snap.ThresholdSignature...)
	forged.ThresholdSignature[3] ^= 1
	cases := map[string]struct {
		c    *crdt.SnapshotCompleted
		blob []byte
	}{
		"digest":    {snap, flipped},
		"signature": {&forged, blob},
		"truncated": {snap, blob[:len(blob)-1]},
	}
	for name, tc := range cases {
		sb := &streamBlobs{MemBlobs: NewMemBlobs()}
		cfg := freshConfig(43, sb)
		staged, err := Stage(sb, bytes.NewReader(tc.blob))
		if err == nil {
			_, err = Hydrate(cfg, tc.c, staged, tail)
		}
		if !errors.Is(err, ErrBadSnapshot) {
			t.Fatalf("%s: %v", name, err)
		}
		if len(cfg.Store.VersionVector()) != 0 || cfg.Store.Account() != (crdt.AccountID{}) {
			t.Fatalf("%s: the journal was written", name)
		}
		if b, _ := cfg.Meta.Get(metaBase); b != nil {
			t.Fatalf("%s: a base record was written", name)
		}
		if name == "truncated" && (sb.aborted != 1 || sb.Len() != 0) {
			t.Fatalf("truncated: %d aborted, %d blobs stored", sb.aborted, sb.Len())
		}
		// RestoreFrom refuses it too, and aborts what it staged.
		rb := &streamBlobs{MemBlobs: NewMemBlobs()}
		r, err := Open(freshConfig(44, rb))
		c.must(err)
		if _, err := r.RestoreFrom(c.now, tc.c, bytes.NewReader(tc.blob)); !errors.Is(err, ErrBadSnapshot) {
			t.Fatalf("%s: RestoreFrom: %v", name, err)
		}
		if rb.aborted != 1 || rb.Len() != 0 {
			t.Fatalf("%s: RestoreFrom kept the blob (%d aborted)", name, rb.aborted)
		}
	}
}
