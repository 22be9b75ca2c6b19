package node

import (
	"bytes"
	"context"
	"errors"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/ipfs/go-cid"

	"aura/blobstore/unixfs"
)

func blobBytes(seed uint64, n int) []byte {
	r := rand.New(rand.NewChaCha8([32]byte{byte(seed), 0xb1}))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func blobStatus(n *Node, c string) string {
	l, err := n.Blobs()
	if err != nil {
		return ""
	}
	for _, b := range l.Blobs {
		if b.CID == c {
			return b.Status
		}
	}
	return ""
}

// TestBlobsFreedAfterSnapshot: a blob put on one device and fetched by the
// others stays on every device after `blob rm` until a snapshot completes;
// then every device's blob plan unpins it and the blob GC frees the space
// (blob store bytes and the Pebble directory both shrink), while a live
// blob stays. A restart re-applies the plan and loses nothing.
func TestBlobsFreedAfterSnapshot(t *testing.T) {
	if testing.Short() {
		t.Skip("three nodes, 8 MiB blob")
	}
	ns := newNodes(t, 3)
	formAccount(t, ns, 2)
	keygen(t, ns, 2)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()

	big := blobBytes(1, 8<<20+123) // nine 1 MiB leaves and a root
	small := blobBytes(2, 5000)
	bigInfo, err := ns[0].PutBlob(ctx, bytes.NewReader(big), "big.bin")
	if err != nil {
		t.Fatal(err)
	}
	if want := unixfs.Sum(big).String(); bigInfo.CID != want || bigInfo.Size != uint64(len(big)) || !bigInfo.Held {
		t.Fatalf("put: %+v, want CID %s", bigInfo, want)
	}
	smallInfo, err := ns[0].PutBlob(ctx, bytes.NewReader(small), "small.txt")
	if err != nil {
		t.Fatal(err)
	}
	bigC, _ := cid.Decode(bigInfo.CID)
	smallC, _ := cid.Decode(smallInfo.CID)
	waitFor(t, 20*time.Second, "BlobStored everywhere", func() bool {
		for _, n := range ns {
			if blobStatus(n, bigInfo.CID) != "live" || blobStatus(n, smallInfo.CID) != "live" {
				return false
			}
		}
		return true
	})
	for _, n := range ns[1:] {
		var last int64
		bi, err := n.FetchBlob(ctx, bigC, func(done, total int64) { last = done })
		if err != nil || !bi.Held || last < int64(len(big)) {
			t.Fatalf("fetch on %s: %+v %v (progress ended at %d)", n.Device().Short(), bi, err, last)
		}
		r, err := n.OpenBlob(ctx, bigC)
		if err != nil {
			t.Fatal(err)
		}
		var buf bytes.Buffer
		if _, err := r.WriteTo(&buf); err != nil || !bytes.Equal(buf.Bytes(), big) {
			t.Fatalf("read back on %s: %v", n.Device().Short(), err)
		}
		r.Close()
	}
	if _, err := ns[1].FetchBlob(ctx, smallC, nil); err != nil {
		t.Fatal(err)
	}

	if _, err := ns[2].RemoveBlob(bigC); err != nil {
		t.Fatal(err)
	}
	if _, err := ns[2].RemoveBlob(bigC); !errors.Is(err, ErrNotFound) {
		t.Fatalf("second rm: %v", err)
	}
	waitFor(t, 20*time.Second, "the tombstone everywhere", func() bool {
		for _, n := range ns {
			if blobStatus(n, bigInfo.CID) != "removed" {
				return false
			}
		}
		return true
	})
	if _, err := ns[0].FetchBlob(ctx, bigC, nil); !errors.Is(err, ErrNotFound) {
		t.Fatalf("fetch of a removed blob: %v", err)
	}
	if _, err := ns[0].PutBlob(ctx, bytes.NewReader(big), ""); !errors.Is(err, ErrBadRequest) {
		t.Fatalf("put of a removed blob: %v", err)
	}
	// No snapshot yet: the bytes stay, even across a blob GC.
	type figures struct {
		blob BlobStoreInfo
		disk diskUsage
	}
	before := make([]figures, len(ns))
	for i, n := range ns {
		runs := n.BlobStoreStats
		r0, _ := runs()
		n.collectBlobs()
		waitFor(t, 10*time.Second, "a blob GC", func() bool { r, _ := runs(); return r.GCRuns > r0.GCRuns })
		if ok, _ := n.blobs.Has(ctx, bigC); !ok {
			t.Fatalf("%s dropped the removed blob before a snapshot covered its tombstone", n.Device().Short())
		}
		before[i].blob, _ = n.BlobStoreStats()
		before[i].disk = storeUsage(t, n)
	}

	info, err := ns[1].Propose()
	if err != nil {
		t.Fatal(err)
	}
	id := proposalID(t, info)
	waitFor(t, 60*time.Second, "completion and GC everywhere", func() bool {
		for _, n := range ns {
			if !collected(n, id) {
				return false
			}
		}
		return true
	})
	for i, n := range ns {
		var after BlobStoreInfo
		waitFor(t, 20*time.Second, "the blob freed on "+n.Device().Short(), func() bool {
			after, _ = n.BlobStoreStats()
			return after.Freed-before[i].blob.Freed >= int64(len(big)) && after.Bytes < before[i].blob.Bytes-int64(len(big))+64<<10
		})
		disk := shrunkStoreUsage(t, n, before[i].disk.Total, 10*time.Second)
		t.Logf("node%d: blob store %.2f MB → %.2f MB (%d → %d blocks; %.2f MB freed by blob GC); Pebble dir %.3f MB → %.3f MB (sstables %.3f → %.3f MB)",
			i+1, mb(before[i].blob.Bytes), mb(after.Bytes), before[i].blob.Blocks, after.Blocks, mb(after.Freed),
			mb(before[i].disk.Total), mb(disk.Total), mb(before[i].disk.SST), mb(disk.SST))
		if disk.Total >= before[i].disk.Total {
			t.Errorf("node%d: Pebble dir did not shrink: %+v → %+v", i+1, before[i].disk, disk)
		}
		if ok, _ := n.blobs.Has(ctx, bigC); ok {
			t.Errorf("node%d still holds the removed blob", i+1)
		}
		if g := n.Status().LastGC; g == nil || g.BlobsDeleted != 1 {
			t.Errorf("node%d: GC figures %+v, want 1 blob deleted", i+1, g)
		}
	}
	for _, n := range ns[:2] {
		if ok, _ := n.blobs.Has(ctx, smallC); !ok {
			t.Fatalf("%s lost the live blob", n.Device().Short())
		}
	}
	// A restart applies the plan again: the live blob and the snapshot blob
	// stay pinned, the removed one stays gone.
	ns[0] = restartNode(t, ns[0])
	waitFor(t, 10*time.Second, "the restart's blob GC", func() bool { s, _ := ns[0].BlobStoreStats(); return s.GCRuns > 0 })
	if ok, _ := ns[0].blobs.Has(ctx, smallC); !ok {
		t.Fatal("the live blob did not survive a restart")
	}
	snap := ns[0].Status().NewestSnapshot
	if snap == nil || !snap.HeldLocally {
		t.Fatalf("snapshot blob after restart: %+v", snap)
	}
}
