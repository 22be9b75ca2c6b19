package maintenance

import (
	"errors"
	"fmt"
	"testing"

	"aura/crdt"
)

// round writes a few facts and completes a snapshot proposed by replica p.
func (c *cluster) round(p int, tag string) *crdt.SnapshotCompleted {
	c.t.Helper()
	for i := 0; i < 3; i++ {
		c.write(p, fmt.Sprintf("%s/%d", tag, i), tag)
	}
	out, err := c.reps[p].Propose(c.now)
	c.must(err)
	c.deliver(p, out)
	s := c.reps[p].State().NewestSnapshot()
	if s == nil || c.reps[p].LastGC() == nil || c.reps[p].LastGC().Proposal != s.ProposalID {
		c.t.Fatalf("round %s did not complete and collect on replica %d", tag, p)
	}
	return s
}

// missedTwo is the first reproduction on the cores: three devices,
// a 2-of-3 key, one snapshot everyone collected; device 2 goes away,
// writes one fact alone, and the others complete two more snapshots.
func missedTwo(t *testing.T) (c *cluster, s1, s2, s3 *crdt.SnapshotCompleted) {
	c = newCluster(t, 3, 2)
	s1 = c.round(0, "one")
	if _, base := c.reps[2].Base(); base == nil || c.reps[2].LastGC().Proposal != s1.ProposalID {
		t.Fatal("device 2 did not collect the first snapshot")
	}
	c.down[2] = true
	_, err := c.reps[2].Write(c.now, &crdt.Put{Key: "offline", Value: []byte("mine")})
	c.must(err)
	s2 = c.round(0, "two")
	s3 = c.round(1, "three")
	return c, s1, s2, s3
}

func TestRestoreTargetPicksNewestOffered(t *testing.T) {
	c, s1, s2, s3 := missedTwo(t)
	r := c.reps[2]
	d0, d1 := c.reps[0].Device(), c.reps[1].Device()
	// Its own state names only the stale snapshot it rests on: alone, it
	// sees nothing to restore (the bug: restoring "the newest" it knows
	// restores s1 again and reports success).
	if r.NewestSnapshot().ProposalID != s1.ProposalID {
		t.Fatal("device 2 should know only the first snapshot")
	}
	if req := r.RestoreTarget(nil); req != nil {
		t.Fatalf("with no offers: target %x, want none", req.Completion.ProposalID[:4])
	}
	cases := []struct {
		name   string
		offers []Offer
		want   *crdt.SnapshotCompleted
		from   crdt.DeviceID
	}{
		{"newest first", []Offer{{d0, s3}, {d1, s2}}, s3, d0},
		{"newest last", []Offer{{d1, s2}, {d0, s3}}, s3, d0},
		{"only the middle one", []Offer{{d1, s2}}, s2, d1},
		{"the stale one it rests on", []Offer{{d0, s1}}, nil, crdt.DeviceID{}},
		{"the same from two peers", []Offer{{d1, s3}, {d0, s3}}, s3, d1},
		{"nil completions", []Offer{{d0, nil}, {d1, s3}}, s3, d1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			req := r.RestoreTarget(tc.offers)
			if tc.want == nil {
				if req != nil {
					t.Fatalf("target %x, want none", req.Completion.ProposalID[:4])
				}
				return
			}
			if req == nil {
				t.Fatalf("no target, want %x", tc.want.ProposalID[:4])
			}
			if req.Completion.ProposalID != tc.want.ProposalID || req.From != tc.from ||
				string(req.BlobCID) != string(tc.want.Snapshot.BlobCID) || req.BlobSize != tc.want.Snapshot.BlobSize {
				t.Fatalf("target %x from %s, want %x from %s", req.Completion.ProposalID[:4], req.From.Short(),
					tc.want.ProposalID[:4], tc.from.Short())
			}
		})
	}
	// Devices that hold the newest snapshot need nothing.
	for i := 0; i < 2; i++ {
		if req := c.reps[i].RestoreTarget([]Offer{{d0, s3}, {d1, s2}, {d0, s1}}); req != nil {
			t.Fatalf("replica %d holds s3 yet is told to restore %x", i, req.Completion.ProposalID[:4])
		}
	}
}

func TestRestoreTargetDropsForgedOffers(t *testing.T) {
	c, _, s2, s3 := missedTwo(t)
	r := c.reps[2]
	d0, d1 := c.reps[0].Device(), c.reps[1].Device()
	// A forgery that would be newest: a later epoch, a bigger frontier.
	forged := *s3
	forged.ProposalID = [16]byte{0xee}
	forged.Snapshot.Epoch += 5
	if req := r.RestoreTarget([]Offer{{d1, &forged}, {d0, s2}}); req == nil || req.Completion.ProposalID != s2.ProposalID {
		t.Fatalf("forged signature: target %+v, want s2", req)
	}
	// Heads that do not hash to the signed prefix hash.
	heads := *s3
	heads.Snapshot.Heads = map[crdt.DeviceID]crdt.Hash{d0: {1}}
	if req := r.RestoreTarget([]Offer{{d1, &heads}, {d0, s2}}); req == nil || req.Completion.ProposalID != s2.ProposalID {
		t.Fatalf("bad heads: target %+v, want s2", req)
	}
}

func TestRestoreFromTargetKeepsOfflineWriteAndCatchesUp(t *testing.T) {
	c, s1, s2, s3 := missedTwo(t)
	r := c.reps[2]
	c.down[2] = false
	// It hears of the newest snapshot by sync: the completion fact lands
	// (pending or chained), and it is below the others' pruned floors.
	c.syncFrom(0, 2)
	offers := []Offer{{c.reps[1].Device(), s2}, {c.reps[0].Device(), s3}}
	req := r.RestoreTarget(offers)
	if req == nil || req.Completion.ProposalID != s3.ProposalID {
		t.Fatalf("target %+v, want s3", req)
	}
	blob, err := c.blobs[1].Get(req.BlobCID)
	c.must(err)
	out, err := r.Restore(c.now, &req.Completion, blob)
	c.must(err)
	restored := false
	for _, e := range out.Events {
		restored = restored || (e.Kind == EventRestored && e.Proposal == s3.ProposalID)
	}
	if !restored {
		t.Fatalf("no restored event: %v", out.Events)
	}
	c.deliver(2, out)
	if req := r.RestoreTarget(offers); req != nil {
		t.Fatalf("after restoring s3, still told to restore %x", req.Completion.ProposalID[:4])
	}
	c.syncFrom(0, 2)
	for i := 0; i < 2; i++ {
		c.syncFrom(2, i)
	}
	for i := 0; i < 3; i++ {
		if v, ok := c.reps[i].State().Value("offline"); !ok || string(v) != "mine" {
			t.Fatalf("replica %d lacks the offline write", i)
		}
		if c.reps[i].State().Digest() != c.reps[0].State().Digest() {
			t.Fatalf("replica %d did not converge", i)
		}
	}
	// Restoring what it no longer needs changes nothing and says so; an
	// older snapshot than its base is refused.
	out, err = r.Restore(c.now, s3, blob)
	if err != nil || len(out.Events) != 1 || out.Events[0].Kind != EventRestoreSkipped || out.Collected != nil {
		t.Fatalf("restore of the snapshot it rests on: %v %v", out.Events, err)
	}
	blob1, err := c.blobs[2].Get(s1.Snapshot.BlobCID)
	c.must(err)
	if _, err := r.Restore(c.now, s1, blob1); !errors.Is(err, ErrStaleProposal) {
		t.Fatalf("restore of an older snapshot: %v", err)
	}
}

// behindOne: device 2 misses three writes of device 1, then device 0's
// snapshot completes and both collect. Device 2 holds device 0's whole
// chain (it was up for it), so the completion enters its state, but not
// device 1's facts under the frontier, which are gone.
func behindOne(t *testing.T) (c *cluster, s *crdt.SnapshotCompleted) {
	c = newCluster(t, 3, 2)
	c.down[2] = true
	for i := 0; i < 3; i++ {
		c.write(1, fmt.Sprintf("missed/%d", i), "v")
	}
	c.down[2] = false
	c.write(0, "seen", "v")
	c.down[2] = true // the round itself reaches it later, by sync
	out, err := c.reps[0].Propose(c.now)
	c.must(err)
	c.deliver(0, out)
	s = c.reps[0].State().NewestSnapshot()
	if s == nil || c.reps[1].LastGC() == nil {
		t.Fatal("the round did not complete and collect")
	}
	c.down[2] = false
	return c, s
}

// The completion fact reaching a device that cannot sync up to it asks
// for a restore (Output.Restore, From unknown); RestoreTarget then names
// it, or a newer one a peer offers.
func TestOutputRestoreFeedsRestoreTarget(t *testing.T) {
	c, s1 := behindOne(t)
	r := c.reps[2]
	_, out, err := r.Receive(c.now, collectFacts(c, 0))
	c.must(err)
	if r.State().Completed[s1.ProposalID] == nil {
		t.Fatal("the completion did not enter device 2's state")
	}
	want := out.Restore
	if want == nil || want.Completion.ProposalID != s1.ProposalID || want.From != (crdt.DeviceID{}) ||
		string(want.BlobCID) != string(s1.Snapshot.BlobCID) || want.BlobSize != s1.Snapshot.BlobSize {
		t.Fatalf("Output.Restore %+v, want s1 from nobody", want)
	}
	d0, d1 := c.reps[0].Device(), c.reps[1].Device()
	if req := r.RestoreTarget([]Offer{{Completion: &want.Completion}}); req == nil || req.Completion.ProposalID != s1.ProposalID {
		t.Fatalf("target %+v, want s1", req)
	}
	// A completion already in the state is taken from the state, not from
	// what the peer sent (the blob CID is not signed); the peer becomes
	// where to fetch it from.
	lying := *s1
	lying.Snapshot.BlobCID = []byte("elsewhere")
	req := r.RestoreTarget([]Offer{{Completion: &want.Completion}, {d1, &lying}})
	if req == nil || string(req.BlobCID) != string(s1.Snapshot.BlobCID) || req.From != d1 {
		t.Fatalf("lying blob CID: target %+v", req)
	}
	// A newer snapshot a peer offers wins over the one Output.Restore named.
	c.down[2] = true
	s2 := c.round(1, "two")
	req = r.RestoreTarget([]Offer{{Completion: &want.Completion}, {d0, s2}})
	if req == nil || req.Completion.ProposalID != s2.ProposalID || req.From != d0 {
		t.Fatalf("target %+v, want s2 from device 0", req)
	}
}

func collectFacts(c *cluster, i int) []*crdt.Fact {
	var facts []*crdt.Fact
	c.must(c.reps[i].Store().All(func(f *crdt.Fact) error { facts = append(facts, f); return nil }))
	return facts
}

// A fresh device has no group key to check offers against: it takes the
// newest, and Restore checks the signature against the blob's genesis.
func TestRestoreTargetOnFreshDevice(t *testing.T) {
	c, _, s2, s3 := missedTwo(t)
	fresh := newReplica(t, key(99), NewMemBlobs())
	c.must(fresh.Join(c.reps[0].Account()))
	offers := []Offer{{c.reps[1].Device(), s2}, {c.reps[0].Device(), s3}}
	req := fresh.RestoreTarget(offers)
	if req == nil || req.Completion.ProposalID != s3.ProposalID || req.From != c.reps[0].Device() {
		t.Fatalf("fresh device: target %+v, want s3 from device 0", req)
	}
	blob, err := c.blobs[0].Get(req.BlobCID)
	c.must(err)
	if _, err := fresh.Restore(c.now, &req.Completion, blob); err != nil {
		t.Fatal(err)
	}
	if req := fresh.RestoreTarget(offers); req != nil {
		t.Fatalf("after the restore, still told to restore %x", req.Completion.ProposalID[:4])
	}
}

// A device that met a completion before the facts under it asks for a
// restore; when sync brings those facts after all, it needs none
// (RestoreTarget names nothing) and collects the snapshot by itself.
func TestCaughtUpBySyncCollectsWithoutRestore(t *testing.T) {
	c := newCluster(t, 3, 2)
	c.down[2] = true
	for i := 0; i < 3; i++ {
		c.write(1, fmt.Sprintf("missed/%d", i), "v")
	}
	missed := collectFacts(c, 1) // still held somewhere (say, a backup peer)
	c.down[2] = false
	c.write(0, "seen", "v")
	c.down[2] = true
	out, err := c.reps[0].Propose(c.now)
	c.must(err)
	c.deliver(0, out)
	s := c.reps[0].State().NewestSnapshot()
	r := c.reps[2]
	_, o, err := r.Receive(c.now, collectFacts(c, 0))
	c.must(err)
	if o.Restore == nil || o.Restore.Completion.ProposalID != s.ProposalID {
		t.Fatalf("no restore request for the snapshot it cannot reach: %+v", o.Restore)
	}
	if r.LastGC() != nil {
		t.Fatal("collected without the facts")
	}
	_, _, err = r.Receive(c.now, missed)
	c.must(err)
	c.now += 1000
	r.Tick(c.now)
	if req := r.RestoreTarget([]Offer{{c.reps[0].Device(), s}}); req != nil {
		t.Fatalf("caught up by sync, yet told to restore %x", req.Completion.ProposalID[:4])
	}
	if g := r.LastGC(); g == nil || g.Proposal != s.ProposalID {
		t.Fatalf("caught up by sync, yet did not collect the snapshot: %+v", g)
	}
	if id, _ := r.Base(); id != s.ProposalID {
		t.Fatalf("rests on %x, want %x", id[:4], s.ProposalID[:4])
	}
}
