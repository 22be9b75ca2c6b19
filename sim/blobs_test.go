package sim

import (
	"bytes"
	"math/rand/v2"
	"testing"

	"aura/blobstore/unixfs"
)

// TestBlobStoreUsesProductCIDs: the simulator's blob store names bytes as
// the node's blobstore does (unixfs.Sum, checked against boxo and
// blobstore.Store in aura/blobstore), holds a blob over a chunk as several
// blocks, fetches it block by block, and its collection keeps exactly what
// pinned roots reach.
func TestBlobStoreUsesProductCIDs(t *testing.T) {
	a, b := newBlobStore(), newBlobStore()
	sizes := []int{0, 1, unixfs.ChunkSize - 1, unixfs.ChunkSize, unixfs.ChunkSize + 1, 2*unixfs.ChunkSize + 17}
	var roots [][]byte
	for i, n := range sizes {
		rng := rand.New(rand.NewPCG(uint64(i), 1))
		data := make([]byte, n)
		for j := range data {
			data[j] = byte(rng.Uint32())
		}
		c, err := a.Put(data)
		if err != nil {
			t.Fatal(err)
		}
		if want := unixfs.Sum(data).Bytes(); !bytes.Equal(c, want) {
			t.Fatalf("size %d: sim CID differs from the product's", n)
		}
		moved, err := b.fetch(a, c, true)
		got, gerr := b.Get(c)
		if err != nil || gerr != nil || !bytes.Equal(got, data) {
			t.Fatalf("size %d: fetch: %v", n, err)
		}
		if wantBlocks := max(1, (n+unixfs.ChunkSize-1)/unixfs.ChunkSize); n > unixfs.ChunkSize {
			wantBlocks++ // the root
			if moved != wantBlocks {
				t.Fatalf("size %d: fetched %d blocks, want %d", n, moved, wantBlocks)
			}
		}
		roots = append(roots, c)
	}
	// Pin two, collect: the rest goes, the pinned stay whole.
	if err := b.KeepNewest([][]byte{roots[5], roots[2], roots[4]}, 2); err != nil {
		t.Fatal(err)
	}
	b.collect()
	for i, r := range roots {
		if want := i == 5 || i == 2; b.has(r) != want || b.holdsAny(r) != want {
			t.Fatalf("blob %d held=%t after collect, want %t", i, b.has(r), want)
		}
	}
	_ = b.Delete([][]byte{roots[5]})
	b.collect()
	if b.holdsAny(roots[5]) || !b.has(roots[2]) || len(b.blocks) != 1 {
		t.Fatalf("after deleting one: %d blocks", len(b.blocks))
	}
}

// TestBlobWorkloadFreesTombstoned: a clean run stores, fetches and
// tombstones blobs, and snapshots free tombstoned ones (the invariants
// blob-deleted-early and blob-not-freed hold).
func TestBlobWorkloadFreesTombstoned(t *testing.T) {
	cfg := small(t, "net", 3)
	cfg.Events = 1000
	cfg.Workload.BlobEvery = 1000
	r, err := Run(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if r.Failed() {
		t.Fatalf("%s", r.Report())
	}
	st := r.Stats
	if st.BlobsStored == 0 || st.BlobsFetched == 0 || st.BlobsTombstoned == 0 || st.BlobsFreed == 0 {
		t.Fatalf("blob workload did too little: %+v", st)
	}
}
