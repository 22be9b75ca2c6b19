package maintenance

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"

	"aura/crdt"
)

func (c *cluster) blobWrite(i int, body crdt.Body) {
	c.t.Helper()
	out, err := c.reps[i].Write(c.now, body)
	c.must(err)
	c.deliver(i, out)
}

func (c *cluster) snapshot(i int) *crdt.SnapshotCompleted {
	c.t.Helper()
	before := c.reps[i].State().NewestSnapshot()
	out, err := c.reps[i].Propose(c.now)
	c.must(err)
	c.deliver(i, out)
	s := c.reps[i].State().NewestSnapshot()
	if s == nil || (before != nil && s.ProposalID == before.ProposalID) {
		c.t.Fatal("the snapshot did not complete")
	}
	c.now += 10
	return s
}

func has(list [][]byte, c []byte) bool {
	for _, x := range list {
		if bytes.Equal(x, c) {
			return true
		}
	}
	return false
}

// TestBlobPlanDeletesOnlyCoveredTombstones: a tombstone under the frontier
// of the snapshot a device rests on puts the blob in Delete (on every
// device, with the count in GCStats); one written after it does not, until
// the next snapshot; a live blob never; and a tombstone naming a snapshot
// blob never deletes it.
func TestBlobPlanDeletesOnlyCoveredTombstones(t *testing.T) {
	c := newCluster(t, 3, 2)
	a, b, live := []byte("cid-a"), []byte("cid-b"), []byte("cid-live")
	for _, x := range [][]byte{a, b, live} {
		c.blobWrite(0, &crdt.BlobStored{CID: x, Size: 10})
	}
	c.blobWrite(1, &crdt.BlobTombstoned{CID: a})
	for i, r := range c.reps {
		if p := r.BlobPlan(); len(p.Delete) != 0 || len(p.Keep) != 0 {
			t.Fatalf("device %d before any snapshot: %+v", i, p)
		}
	}
	s1 := c.snapshot(0)
	c.blobWrite(2, &crdt.BlobTombstoned{CID: b}) // after the frontier
	c.blobWrite(2, &crdt.BlobTombstoned{CID: s1.Snapshot.BlobCID})
	for i, r := range c.reps {
		p := r.BlobPlan()
		if len(p.Delete) != 1 || !bytes.Equal(p.Delete[0], a) {
			t.Fatalf("device %d after snapshot 1: delete %q", i, p.Delete)
		}
		if len(p.Keep) != 1 || !bytes.Equal(p.Keep[0], s1.Snapshot.BlobCID) {
			t.Fatalf("device %d after snapshot 1: keep %x", i, p.Keep)
		}
		if g := r.LastGC(); g == nil || g.BlobsDeleted != 1 {
			t.Fatalf("device %d: GC stats %+v", i, g)
		}
	}
	s2 := c.snapshot(1)
	for i, r := range c.reps {
		p := r.BlobPlan()
		if len(p.Delete) != 2 || !has(p.Delete, a) || !has(p.Delete, b) || has(p.Delete, live) || has(p.Delete, s1.Snapshot.BlobCID) {
			id, _ := r.Base()
			t.Fatalf("device %d after snapshot 2 (base %x, s2 %x): delete %q; %v", i, id[:4], s2.ProposalID[:4], p.Delete, c.events[len(c.events)-12:])
		}
		if len(p.Keep) != 2 || !bytes.Equal(p.Keep[0], s2.Snapshot.BlobCID) || !bytes.Equal(p.Keep[1], s1.Snapshot.BlobCID) {
			t.Fatalf("device %d after snapshot 2: keep %x", i, p.Keep)
		}
		if g := r.LastGC(); g.BlobsDeleted != 1 {
			t.Fatalf("device %d: second GC counts %d blobs, want the newly covered 1", i, g.BlobsDeleted)
		}
	}
	// KeepSnapshots (2 by default) bounds the pins: the oldest is released.
	s3 := c.snapshot(2)
	p := c.reps[0].BlobPlan()
	if len(p.Keep) != 2 || !bytes.Equal(p.Keep[0], s3.Snapshot.BlobCID) || !bytes.Equal(p.Keep[1], s2.Snapshot.BlobCID) ||
		len(p.Release) != 1 || !bytes.Equal(p.Release[0], s1.Snapshot.BlobCID) {
		t.Fatalf("after snapshot 3: keep %x release %x", p.Keep, p.Release)
	}
	// A blob tombstoned in the snapshot's state is deleted also where the
	// device restored rather than collected.
	fresh := newReplica(t, key(9), NewMemBlobs())
	blob, err := c.blobs[0].Get(s3.Snapshot.BlobCID)
	c.must(err)
	o, err := fresh.Restore(c.now, s3, blob)
	c.must(err)
	if o.Blobs == nil || !has(o.Blobs.Delete, a) || !has(o.Blobs.Delete, b) || !bytes.Equal(o.Blobs.Keep[0], s3.Snapshot.BlobCID) {
		t.Fatalf("restore's plan: %+v", o.Blobs)
	}
}

// TestBlobPlanRemainsAfterReopen: the plan is derived from durable state,
// so a driver that crashed before applying it gets it again after Open.
func TestBlobPlanRemainsAfterReopen(t *testing.T) {
	c := newCluster(t, 3, 2)
	c.blobWrite(0, &crdt.BlobStored{CID: []byte("x"), Size: 1})
	c.blobWrite(0, &crdt.BlobTombstoned{CID: []byte("x")})
	c.snapshot(0)
	want := c.reps[1].BlobPlan()
	r, err := Open(c.reps[1].cfg)
	c.must(err)
	if got := r.BlobPlan(); fmt.Sprint(got) != fmt.Sprint(want) || len(got.Delete) != 1 {
		t.Fatalf("after reopen %+v, before %+v", got, want)
	}
}

type recordApplier struct {
	calls []string
	fail  string
}

func (a *recordApplier) step(s string) error {
	a.calls = append(a.calls, s)
	if strings.HasPrefix(s, a.fail) && a.fail != "" {
		return errors.New("disk full")
	}
	return nil
}

func (a *recordApplier) KeepNewest(roots [][]byte, n int) error {
	return a.step(fmt.Sprintf("keep %s n=%d", bytes.Join(roots, []byte(",")), n))
}

func (a *recordApplier) Delete(cids [][]byte) error {
	return a.step(fmt.Sprintf("delete %s", bytes.Join(cids, []byte(","))))
}

func (a *recordApplier) Collect() error { return a.step("collect") }

// TestBlobPlanApplyOrder: pins, then deletions, then one collection; a
// failing step stops the rest and its error says which.
func TestBlobPlanApplyOrder(t *testing.T) {
	p := BlobPlan{Keep: [][]byte{[]byte("s3"), []byte("s2")}, Release: [][]byte{[]byte("s1")}, Delete: [][]byte{[]byte("x"), []byte("y")}}
	a := &recordApplier{}
	if err := p.Apply(a); err != nil {
		t.Fatal(err)
	}
	if got, want := strings.Join(a.calls, "; "), "keep s3,s2,s1 n=2; delete x,y; collect"; got != want {
		t.Fatalf("calls %q, want %q", got, want)
	}
	a = &recordApplier{fail: "keep"}
	if err := p.Apply(a); err == nil || !strings.Contains(err.Error(), "keep snapshot blobs") || len(a.calls) != 1 {
		t.Fatalf("failing keep: %v after %q", err, a.calls)
	}
	a = &recordApplier{}
	if err := (&BlobPlan{}).Apply(a); err != nil || strings.Join(a.calls, ";") != "collect" {
		t.Fatalf("empty plan: %v %q", err, a.calls)
	}
}
