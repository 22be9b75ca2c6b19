package maintenance

import (
	"errors"
	"fmt"
	"testing"

	"aura/crdt"
)

func TestSnapshotCompletesWithTwoDown(t *testing.T) {
	c := newCluster(t, 5, 3)
	for i := 0; i < 20; i++ {
		c.write(i%5, fmt.Sprintf("k%d", i), "v")
	}
	c.down[3], c.down[4] = true, true
	out, err := c.reps[0].Propose(c.now)
	c.must(err)
	c.deliver(0, out)
	for i := 0; i < 3; i++ {
		if c.reps[i].State().NewestSnapshot() == nil {
			t.Fatalf("replica %d saw no completion", i)
		}
		if _, _, open := c.reps[i].Fence(); open {
			t.Fatalf("replica %d fence still up", i)
		}
		if c.reps[i].LastGC() == nil || c.reps[i].LastGC().PrunedFacts == 0 {
			t.Fatalf("replica %d did not collect", i)
		}
	}
	// The digests agree after GC: the state is the same.
	d := c.reps[0].State().Digest()
	for i := 1; i < 3; i++ {
		if c.reps[i].State().Digest() != d {
			t.Fatalf("replica %d state differs after GC", i)
		}
	}
}

func TestSnapshotAbandonedWithThreeDownKeepsBufferedWrites(t *testing.T) {
	c := newCluster(t, 5, 3)
	c.write(1, "a", "1")
	c.down[2], c.down[3], c.down[4] = true, true, true
	out, err := c.reps[0].Propose(c.now)
	c.must(err)
	c.deliver(0, out)
	if _, _, open := c.reps[0].Fence(); !open {
		t.Fatal("fence not up during the round")
	}
	// Writes behind the fence are buffered, not committed, not lost.
	for i := 0; i < 3; i++ {
		out, err := c.reps[0].Write(c.now, &crdt.Put{Key: fmt.Sprintf("fenced%d", i), Value: []byte("x")})
		c.must(err)
		if len(out.Publish) != 0 {
			t.Fatal("fenced write committed during the round")
		}
	}
	if c.reps[0].Buffered() != 3 {
		t.Fatalf("buffered %d, want 3", c.reps[0].Buffered())
	}
	c.tick(5_000)
	if c.reps[0].State().NewestSnapshot() != nil {
		t.Fatal("completed with only 2 of 3 needed votes")
	}
	c.tick(6_000) // past the 10 s deadline
	if _, _, open := c.reps[0].Fence(); open {
		t.Fatal("fence still up after the deadline")
	}
	if !c.hasEvent(EventAbandoned, nil) {
		t.Fatal("no abandon event")
	}
	for i := 0; i < 3; i++ {
		if v, ok := c.reps[1].State().Value(fmt.Sprintf("fenced%d", i)); !ok || string(v) != "x" {
			t.Fatalf("buffered write %d lost", i)
		}
	}
	if c.reps[0].Buffered() != 0 {
		t.Fatal("buffer not drained")
	}
}

func TestFenceSurvivesRestart(t *testing.T) {
	c := newCluster(t, 5, 3)
	c.down[2], c.down[3], c.down[4] = true, true, true
	out, err := c.reps[0].Propose(c.now)
	c.must(err)
	c.deliver(0, out)
	_, err = c.reps[0].Write(c.now, &crdt.Put{Key: "durable", Value: []byte("yes")})
	c.must(err)
	// Restart replica 0 on the same storage.
	old := c.reps[0]
	r, err := Open(old.cfg)
	c.must(err)
	r.SetShare(old.Share())
	c.reps[0] = r
	if _, _, open := r.Fence(); !open || r.Buffered() != 1 {
		t.Fatalf("fence/buffer lost across restart: open=%v buffered=%d", open, r.Buffered())
	}
	c.tick(11_000)
	if v, ok := c.reps[1].State().Value("durable"); !ok || string(v) != "yes" {
		t.Fatal("buffered write lost across restart")
	}
}

// crashingMeta panics (the process "dies") on the Delete numbered crashAt,
// before it happens.
type crashingMeta struct {
	Meta
	deletes, crashAt int
}

func (m *crashingMeta) Delete(key string) error {
	m.deletes++
	if m.deletes == m.crashAt {
		panic("crash")
	}
	return m.Meta.Delete(key)
}

// A crash in the middle of releasing the buffer (after a write was
// committed, before its buffer entry was deleted) neither commits that
// write twice on restart nor lets a new buffered write overwrite the
// remaining entries.
func TestReleaseInterruptedByCrashCommitsOnce(t *testing.T) {
	c := newCluster(t, 5, 3)
	c.down[2], c.down[3], c.down[4] = true, true, true
	meta := &crashingMeta{Meta: c.reps[0].cfg.Meta}
	cfg := c.reps[0].cfg
	cfg.Meta = meta
	r, err := Open(cfg)
	c.must(err)
	r.SetShare(c.reps[0].Share())
	c.reps[0] = r
	out, err := r.Propose(c.now)
	c.must(err)
	c.deliver(0, out)
	for i := 0; i < 3; i++ {
		_, err := r.Write(c.now, &crdt.Put{Key: fmt.Sprintf("fenced%d", i), Value: []byte("x")})
		c.must(err)
	}
	// Past the deadline the release commits fenced0 and fenced1, deletes
	// the entry of fenced0 and dies deleting the entry of fenced1.
	meta.crashAt = meta.deletes + 2
	func() {
		defer func() {
			if recover() == nil {
				t.Fatal("release did not reach the crash point")
			}
		}()
		r.Tick(c.now + 11_000)
	}()
	r, err = Open(cfg) // restart on what was durable
	c.must(err)
	r.SetShare(c.reps[0].Share())
	c.reps[0] = r
	// fenced1 was committed before the crash: Open settles its entry, and
	// fenced2 is left.
	if _, _, open := r.Fence(); !open || r.Buffered() != 1 {
		t.Fatalf("after the crash: fence open=%v buffered=%d, want open and 1", open, r.Buffered())
	}
	_, err = r.Write(c.now, &crdt.Put{Key: "late", Value: []byte("y")})
	c.must(err)
	c.tick(11_000)
	if _, _, open := r.Fence(); open || r.Buffered() != 0 {
		t.Fatalf("after the restart's release: fence open=%v buffered=%d", open, r.Buffered())
	}
	c.syncFrom(0, 1)
	for _, k := range []string{"fenced0", "fenced1", "fenced2", "late"} {
		if _, ok := c.reps[1].State().Value(k); !ok {
			t.Errorf("buffered write %s lost", k)
		}
	}
	puts := map[string]int{}
	c.must(r.cfg.Store.All(func(f *crdt.Fact) error {
		if f.Author == r.Device() && f.Kind == crdt.KindPut {
			b, err := f.DecodeBody()
			if err != nil {
				return err
			}
			puts[b.(*crdt.Put).Key]++
		}
		return nil
	}))
	for k, n := range puts {
		if n != 1 {
			t.Errorf("%s committed %d times", k, n)
		}
	}
}

// A release interrupted after committing a write and before dropping its
// entry, then a GC (here: the journal pruned past that write) before the
// release runs again: the write is still committed once. (Before Open
// settled the buffer, the next release looked the recorded seq up in the
// journal, found nothing and committed the write again: sim exactly-once,
// seed 60 of the contend sweep.)
func TestReleaseInterruptedThenPrunedCommitsOnce(t *testing.T) {
	c := newCluster(t, 5, 3)
	c.down[2], c.down[3], c.down[4] = true, true, true
	meta := &crashingMeta{Meta: c.reps[0].cfg.Meta}
	cfg := c.reps[0].cfg
	cfg.Meta = meta
	r, err := Open(cfg)
	c.must(err)
	r.SetShare(c.reps[0].Share())
	c.reps[0] = r
	out, err := r.Propose(c.now)
	c.must(err)
	c.deliver(0, out)
	for i := 0; i < 2; i++ {
		_, err := r.Write(c.now, &crdt.Put{Key: fmt.Sprintf("fenced%d", i), Value: []byte("x")})
		c.must(err)
	}
	// The release commits fenced0 and dies deleting its entry.
	meta.crashAt = meta.deletes + 1
	func() {
		defer func() {
			if recover() == nil {
				t.Fatal("release did not reach the crash point")
			}
		}()
		r.Tick(c.now + 11_000)
	}()
	r, err = Open(cfg)
	c.must(err)
	r.SetShare(c.reps[0].Share())
	c.reps[0] = r
	if _, _, err := r.store.Prune(r.store.VersionVector()); err != nil {
		t.Fatal(err)
	}
	c.tick(11_000)
	if _, _, open := r.Fence(); open || r.Buffered() != 0 {
		t.Fatalf("after the restart's release: fence open=%v buffered=%d", open, r.Buffered())
	}
	puts := map[string]int{}
	for s := uint64(1); s <= r.store.VersionVector()[r.Device()]; s++ {
		f, err := r.store.BySeq(r.Device(), s)
		if err != nil {
			continue // pruned
		}
		if b, err := f.DecodeBody(); err == nil && f.Kind == crdt.KindPut {
			puts[b.(*crdt.Put).Key]++
		}
	}
	if puts["fenced0"] != 0 || puts["fenced1"] != 1 {
		t.Fatalf("after the prune, the release committed %v; want fenced1 once and fenced0 (pruned) not again", puts)
	}
}

func TestBadPartialIsNamedAndExcluded(t *testing.T) {
	c := newCluster(t, 5, 3)
	c.write(2, "x", "y")
	bad := c.reps[4]
	// Device 4 is Byzantine: it votes with garbage of the right shape.
	c.down[4] = true
	out, err := c.reps[0].Propose(c.now)
	c.must(err)
	c.down[1], c.down[2] = true, true // only 0 and 3 vote honestly at first
	c.deliver(0, out)
	var prop *crdt.SnapshotProposed
	for _, f := range out.Publish {
		if b, _ := f.DecodeBody(); f.Kind == crdt.KindSnapshotProposed {
			prop = b.(*crdt.SnapshotProposed)
		}
	}
	c.down[4] = false
	// Feed device 4 what it missed (without its share it cannot vote
	// honestly), then let it forge a vote.
	bad.SetShare(nil)
	c.syncFrom(0, 4)
	partial := make([]byte, 66)
	partial[1] = 4 // its own index
	for i := 2; i < len(partial); i++ {
		partial[i] = byte(i)
	}
	o, err := bad.write(&crdt.SnapshotVote{ProposalID: prop.ProposalID, StateDigest: prop.StateDigest, Partial: partial})
	c.must(err)
	c.deliver(4, o)
	if c.reps[0].State().NewestSnapshot() != nil {
		t.Fatal("completed with a forged partial")
	}
	dev := bad.Device()
	if !c.hasEvent(EventBadPartial, &dev) {
		t.Fatalf("forger not named; events: %v", c.events)
	}
	c.down[1] = false
	c.syncFrom(0, 1)
	c.tick(1)
	if c.reps[0].State().NewestSnapshot() == nil {
		t.Fatal("honest votes did not complete the round")
	}
	got := c.reps[0].State().NewestSnapshot().Participants
	for _, p := range got {
		if p == dev {
			t.Fatal("forger listed as participant")
		}
	}
}

// syncFrom delivers every fact replica from holds to replica to.
func (c *cluster) syncFrom(from, to int) {
	var facts []*crdt.Fact
	c.must(c.reps[from].Store().All(func(f *crdt.Fact) error { facts = append(facts, f); return nil }))
	_, out, err := c.reps[to].Receive(c.now, facts)
	c.must(err)
	c.deliver(to, out)
}

func TestDigestMismatchGetsNoVote(t *testing.T) {
	c := newCluster(t, 5, 3)
	c.write(1, "k", "v")
	r := c.reps[0]
	frontier := r.Store().VersionVector()
	_, prefix, err := r.heads(frontier)
	c.must(err)
	lie := &crdt.SnapshotProposed{ProposalID: [16]byte{9}, Proposer: r.Device(), TargetEpoch: r.State().Epoch,
		Frontier: frontier, StateDigest: crdt.Hash{1, 2, 3}, PrefixHash: prefix}
	out, err := r.write(lie)
	c.must(err)
	c.deliver(0, out)
	for i := 1; i < 5; i++ {
		if v := c.reps[i].State().Proposals[lie.ProposalID]; v == nil {
			t.Fatal("proposal not received")
		} else if len(v.Votes) != 0 {
			t.Fatalf("a lying proposal got %d votes", len(v.Votes))
		}
	}
	if !c.hasEvent(EventMismatch, nil) {
		t.Fatal("no mismatch event")
	}
}

func TestStaleProposalRefused(t *testing.T) {
	c := newCluster(t, 5, 3)
	c.write(1, "k", "v")
	r := c.reps[1]
	old := r.Store().VersionVector()
	st, err := r.StateAt(old)
	c.must(err)
	_, prefix, err := r.heads(old)
	c.must(err)
	c.write(2, "k2", "v")
	out, err := c.reps[0].Propose(c.now)
	c.must(err)
	c.deliver(0, out)
	if c.reps[0].State().NewestSnapshot() == nil {
		t.Fatal("first round did not complete")
	}
	// A proposal below the newest snapshot's frontier gets no vote.
	below := &crdt.SnapshotProposed{ProposalID: [16]byte{5}, Proposer: r.Device(), TargetEpoch: r.State().Epoch,
		Frontier: old, StateDigest: st.Digest(), PrefixHash: prefix}
	o, err := r.write(below)
	c.must(err)
	c.deliver(1, o)
	if v := c.reps[0].State().Proposals[below.ProposalID]; v == nil || len(v.Votes) != 0 {
		t.Fatal("stale proposal got votes (or was lost)")
	}
	if !c.hasEvent(EventRefused, nil) {
		t.Fatal("no refusal event")
	}
	// And this device cannot propose while its own round is open.
	c.down[2], c.down[3], c.down[4] = true, true, true
	c.write(1, "k3", "v")
	out, err = c.reps[1].Propose(c.now)
	c.must(err)
	c.deliver(1, out)
	if _, err := c.reps[1].Propose(c.now); !errors.Is(err, ErrRoundOpen) {
		t.Fatalf("second proposal during an open round: got %v", err)
	}
}

func TestOfflineDeviceRestoresAndKeepsItsWrites(t *testing.T) {
	c := newCluster(t, 5, 3)
	for i := 0; i < 10; i++ {
		c.write(i%4, fmt.Sprintf("k%d", i), "v")
	}
	c.down[4] = true
	c.must(c.reps[4].Store().All(func(*crdt.Fact) error { return nil }))
	off, err := c.reps[4].Write(c.now, &crdt.Put{Key: "offline", Value: []byte("mine")})
	c.must(err)
	_ = off
	for i := 10; i < 20; i++ {
		c.write(i%4, fmt.Sprintf("k%d", i), "w")
	}
	out, err := c.reps[0].Propose(c.now)
	c.must(err)
	c.deliver(0, out)
	snap := c.reps[0].State().NewestSnapshot()
	if snap == nil {
		t.Fatal("no snapshot")
	}
	// Device 4 comes back: the facts below the frontier are gone everywhere.
	c.down[4] = false
	blob, err := c.blobs[0].Get(snap.Snapshot.BlobCID)
	c.must(err)
	// Receiving the completion tells it to restore.
	var completion []*crdt.Fact
	c.must(c.reps[0].Store().All(func(f *crdt.Fact) error {
		if f.Kind != crdt.KindSnapshotVote {
			completion = append(completion, f)
		}
		return nil
	}))
	o, err := c.reps[4].Restore(c.now, snap, blob)
	c.must(err)
	c.deliver(4, o)
	c.syncFrom(0, 4)
	for i := 0; i < 4; i++ {
		c.syncFrom(4, i)
	}
	for i := 0; i < 5; i++ {
		if v, ok := c.reps[i].State().Value("offline"); !ok || string(v) != "mine" {
			t.Fatalf("replica %d lacks the offline write", i)
		}
		if v, ok := c.reps[i].State().Value("k19"); !ok || string(v) != "w" {
			t.Fatalf("replica %d lacks k19", i)
		}
	}
	if c.reps[4].State().Digest() != c.reps[0].State().Digest() {
		t.Fatal("restored replica did not converge")
	}
	// A tampered blob is refused.
	bad := append([]byte(nil), blob...)
	bad[len(bad)/2] ^= 1
	fresh := newReplica(t, key(42), NewMemBlobs())
	if _, err := fresh.Restore(c.now, snap, bad); !errors.Is(err, ErrBadSnapshot) {
		t.Fatalf("tampered blob: got %v", err)
	}
	forged := *snap
	forged.ThresholdSignature = append([]byte(nil), snap.ThresholdSignature...)
	forged.ThresholdSignature[3] ^= 1
	if _, err := fresh.Restore(c.now, &forged, blob); !errors.Is(err, ErrBadSnapshot) {
		t.Fatalf("forged signature: got %v", err)
	}
}

func TestFreshDeviceRestoresWhileProposerOffline(t *testing.T) {
	c := newCluster(t, 5, 3)
	for i := 0; i < 12; i++ {
		c.write(i%5, fmt.Sprintf("k%d", i), "v")
	}
	out, err := c.reps[0].Propose(c.now)
	c.must(err)
	c.deliver(0, out)
	snap := c.reps[1].State().NewestSnapshot()
	if snap == nil {
		t.Fatal("no snapshot")
	}
	c.down[0] = true // the proposer is gone
	// A brand-new device, admitted by the journal it will restore.
	fresh := newReplica(t, key(77), NewMemBlobs())
	c.must(fresh.Join(c.reps[1].Account()))
	blob, err := c.blobs[2].Get(snap.Snapshot.BlobCID) // from a peer, not the proposer
	c.must(err)
	o, err := fresh.Restore(c.now, snap, blob)
	c.must(err)
	if o.Collected == nil && len(o.Events) == 0 {
		t.Fatal("restore reported nothing")
	}
	var tail []*crdt.Fact
	c.must(c.reps[2].Store().All(func(f *crdt.Fact) error { tail = append(tail, f); return nil }))
	if _, _, err := fresh.Receive(c.now, tail); err != nil {
		t.Fatal(err)
	}
	if fresh.State().Digest() != c.reps[2].State().Digest() {
		t.Fatal("restored device differs from its peer")
	}
	if v, ok := fresh.State().Value("k11"); !ok || string(v) != "v" {
		t.Fatal("restored state lacks a key")
	}
	if got := fresh.Store().PrunedTo(); !got.Covers(snap.Snapshot.Frontier) {
		t.Fatal("journal does not rest on the snapshot frontier")
	}
}
