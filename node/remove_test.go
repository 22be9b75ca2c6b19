package node

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"aura/crdt"
	"aura/threshold"
)

func shareOf(n *Node) *threshold.Share {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.rep.Share()
}

func groupKeyOf(t *testing.T, n *Node) (*crdt.GroupKey, *threshold.GroupKey) {
	t.Helper()
	n.mu.Lock()
	gk := n.rep.State().GroupKey()
	n.mu.Unlock()
	if gk == nil {
		t.Fatal("no group key")
	}
	k, err := threshold.ParseGroupKey(gk.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	return gk, k
}

// TestRemoveDeviceOnline: the admin removes a device while it is online.
// Every device drops it and refuses it, its new facts are refused, the
// key is reshared by itself without it (same group public key: an earlier
// snapshot still verifies), a snapshot round completes without it, and
// partials of old shares are bad partials under the new key.
func TestRemoveDeviceOnline(t *testing.T) {
	ns := newNodes(t, 4)
	formAccount(t, ns, 3)
	keygen(t, ns, 3)
	gone, rest := ns[3], ns[:3]
	before, err := ns[0].Propose()
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "a snapshot before the removal", func() bool {
		s := ns[0].Status()
		return s.NewestSnapshot != nil && s.NewestSnapshot.ID == before.ID
	})
	oldShares := []*threshold.Share{shareOf(ns[1]), shareOf(gone)}

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	res, err := ns[0].RemoveDevice(ctx, gone.Device().String(), 0)
	if err != nil {
		t.Fatal(err)
	}
	if res.Epoch < 2 || res.Device != gone.Device().String() {
		t.Fatalf("remove result %+v", res)
	}
	waitFor(t, 20*time.Second, "every device to drop the removed one", func() bool {
		for _, n := range rest {
			if n.gater.isMember(gone.host.ID()) || len(n.host.Network().ConnsToPeer(gone.host.ID())) > 0 {
				return false
			}
		}
		return true
	})
	// It cannot come back.
	dctx, dcancel := context.WithTimeout(ctx, 5*time.Second)
	err = gone.Connect(dctx, ns[0].AddrInfo())
	dcancel()
	time.Sleep(300 * time.Millisecond)
	if err == nil && len(ns[0].host.Network().ConnsToPeer(gone.host.ID())) > 0 {
		t.Fatal("the removed device reconnected")
	}

	// Its facts from the removal epoch on are refused everywhere; earlier
	// epochs still pass the guard.
	vv := ns[0].VersionVector()
	w := crdt.NewWriter(gone.key, ns[0].Account(), vv[gone.Device()], 1<<40)
	late, err := w.Write(res.Epoch, &crdt.Put{Key: "after-removal", Value: []byte("x")})
	if err != nil {
		t.Fatal(err)
	}
	for i, n := range rest {
		r, err := n.receive([]*crdt.Fact{late})
		if err != nil {
			t.Fatal(err)
		}
		refused := false
		for _, rj := range r.Rejected {
			refused = refused || (rj.ID == late.ID() && errors.Is(rj.Err, crdt.ErrUnauthorized))
		}
		if !refused || len(r.Added) != 0 {
			t.Fatalf("device %d did not refuse the removed device's fact: %+v", i, r)
		}
		if _, ok := n.Get("after-removal"); ok {
			t.Fatalf("device %d applied the removed device's write", i)
		}
		n.mu.Lock()
		st := n.rep.State()
		held := st.Holds(gone.Device(), crdt.CapWrite, res.Epoch-1)
		n.mu.Unlock()
		if !held {
			t.Fatalf("device %d no longer honours the removed device's earlier epoch", i)
		}
	}

	// The removal reshares the key by itself among the three left.
	waitFor(t, 60*time.Second, "the reshared key on every remaining device", func() bool {
		for _, n := range rest {
			s := n.Status()
			if s.GroupKey == nil || s.GroupKey.KeyEpoch < 2 || !s.GroupKey.HasShare || len(s.GroupKey.Participants) != 3 {
				return false
			}
		}
		return true
	})
	gk, key := groupKeyOf(t, ns[0])
	if slices.Contains(gk.Participants, gone.Device()) {
		t.Fatal("the reshared key still names the removed device")
	}
	if p := ns[0].ReshareProgress(); p == nil || p.State != "done" || !p.Auto {
		t.Fatalf("resharing progress %+v", p)
	}
	// Same group public key: the earlier completion still verifies.
	ns[0].mu.Lock()
	done := ns[0].rep.State().Completed
	var old *crdt.SnapshotCompleted
	for _, c := range done {
		c := c.Completed
		old = &c
	}
	acct := ns[0].rep.State().Account
	ns[0].mu.Unlock()
	if old == nil {
		t.Fatal("no completion held")
	}
	msg := crdt.SnapshotMessage(acct, old.ProposalID, old.Snapshot.Epoch, old.Snapshot.Frontier, old.Snapshot.PrefixHash, old.Snapshot.StateDigest)
	if err := key.Verify(msg, old.ThresholdSignature); err != nil {
		t.Fatalf("a snapshot signed before the resharing no longer verifies: %v", err)
	}
	// Old shares make bad partials under the new key.
	v := threshold.NewVerifier(key)
	for i, sh := range oldShares {
		p, err := threshold.SignPartial(sh, msg)
		if err != nil {
			t.Fatal(err)
		}
		if err := v.VerifyPartial(msg, p); !errors.Is(err, threshold.ErrBadPartial) && !errors.Is(err, threshold.ErrBadIndex) {
			t.Fatalf("old share %d: partial accepted under the new key (%v)", i, err)
		}
	}
	for _, n := range rest {
		if sh := shareOf(n); sh == nil || !sh.Matches(key) {
			t.Fatalf("device %s votes with a share of another key", n.Device().Short())
		}
	}

	// A snapshot round completes without the removed device.
	waitConverged(t, 20*time.Second, rest)
	after, err := ns[1].Propose()
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "a snapshot after the resharing", func() bool {
		for _, n := range rest {
			s := n.Status()
			if s.NewestSnapshot == nil || s.NewestSnapshot.ID != after.ID {
				return false
			}
		}
		return true
	})
	s := ns[0].Status()
	if slices.Contains(s.NewestSnapshot.Participants, gone.Device().String()) || len(s.NewestSnapshot.Participants) < 3 {
		t.Fatalf("snapshot participants %v", s.NewestSnapshot.Participants)
	}
	devs := ns[0].Devices()
	for _, d := range devs {
		if d.ID == gone.Device().String() && (d.RemovedEpoch != res.Epoch || d.HoldsShare) {
			t.Fatalf("account devices shows the removed device as %+v", d)
		}
		if d.ID != gone.Device().String() && !d.HoldsShare {
			t.Fatalf("account devices shows %s without a share", d.ID)
		}
	}
}

// TestReshareNeedsThresholdHoldersOnline: with M-1 share holders online
// resharing fails with a clear error and changes nothing; with exactly M
// it succeeds, and the device that was offline no longer votes.
func TestReshareNeedsThresholdHoldersOnline(t *testing.T) {
	ns := newNodes(t, 4)
	formAccount(t, ns, 3)
	keygen(t, ns, 3)
	gk0, _ := groupKeyOf(t, ns[0])
	home2 := ns[2].Home()
	ns[2].Close()
	ns[3].Close()
	waitFor(t, 10*time.Second, "the closed devices to be gone", func() bool {
		return len(ns[0].host.Network().ConnsToPeer(ns[2].host.ID())) == 0 && len(ns[0].host.Network().ConnsToPeer(ns[3].host.ID())) == 0
	})
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	_, err := ns[0].Reshare(ctx, 2)
	if !errors.Is(err, threshold.ErrReshareQuorum) || !errors.Is(err, ErrReshare) {
		t.Fatalf("resharing with 2 of 3 holders: %v, want ErrReshareQuorum", err)
	}
	gk, _ := groupKeyOf(t, ns[0])
	if gk.KeyEpoch != gk0.KeyEpoch || shareOf(ns[0]) == nil || shareOf(ns[1]) == nil {
		t.Fatalf("a failed resharing changed the key (epoch %d → %d) or the shares", gk0.KeyEpoch, gk.KeyEpoch)
	}
	n2 := startNode(t, home2)
	ns[2] = n2
	waitFor(t, 30*time.Second, "the restarted device to reconnect", func() bool {
		return len(ns[0].host.Network().ConnsToPeer(n2.host.ID())) > 0 && len(ns[1].host.Network().ConnsToPeer(n2.host.ID())) > 0
	})
	info, err := ns[0].Reshare(ctx, 3)
	if err != nil {
		t.Fatal(err)
	}
	if info.KeyEpoch != gk0.KeyEpoch+1 || len(info.Participants) != 3 || info.Threshold != 3 {
		t.Fatalf("reshared key %+v", info)
	}
	waitFor(t, 20*time.Second, "new shares on the three devices", func() bool {
		for _, n := range ns[:3] {
			s := n.Status()
			if s.GroupKey == nil || s.GroupKey.KeyEpoch != info.KeyEpoch || !s.GroupKey.HasShare {
				return false
			}
		}
		return true
	})
	// The fourth device comes back: its share belongs to the old key, so
	// it holds none for the new one.
	n3 := startNode(t, ns[3].Home())
	waitFor(t, 30*time.Second, "the fourth device to learn the new key", func() bool {
		s := n3.Status()
		return s.GroupKey != nil && s.GroupKey.KeyEpoch == info.KeyEpoch && !s.GroupKey.HasShare
	})
}
