package node

import (
	"context"
	"fmt"
	"slices"
	"time"

	"aura/crdt"
)

// demoRemove is the demo's last act: a device is lost, the admin removes
// it while it is online, every device drops it, the key is reshared by
// itself among the others (the devices that joined after the key
// generation get a share too), and a snapshot completes without it.
func demoRemove(ctx context.Context, say func(string, ...any), nodes []*Node, o DemoOptions) error {
	ai, li := -1, -1
	for i, n := range nodes {
		n.mu.Lock()
		st := n.rep.State()
		isAdmin := st.Holds(n.device, crdt.CapAdmin, st.Epoch)
		n.mu.Unlock()
		switch {
		case isAdmin && ai < 0:
			ai = i
		case !isAdmin && li < 0 && n.Status().GroupKey != nil && n.Status().GroupKey.HasShare:
			li = i
		}
	}
	if ai < 0 || li < 0 {
		return fmt.Errorf("no admin or no other share holder to remove")
	}
	admin, lost := nodes[ai], nodes[li]
	an, ln := fmt.Sprintf("node%d", ai+1), fmt.Sprintf("node%d", li+1)
	rest := slices.Delete(slices.Clone(nodes), li, li+1)
	holders := 0
	for _, d := range admin.Devices() {
		if d.HoldsShare {
			holders++
		}
	}
	say("account devices: %d devices, %d of them hold a share of the key", len(nodes), holders)
	res, err := admin.RemoveDevice(ctx, lost.Device().String(), 0)
	if err != nil {
		return fmt.Errorf("remove %s: %w", ln, err)
	}
	say("%s is lost: the admin %s removed it at identity epoch %d; resharing %s", ln, an, res.Epoch, res.Reshare)
	if err := converge(ctx, o.Timeout, rest, func() bool {
		for _, n := range rest {
			if n.gater.isMember(lost.host.ID()) || len(n.host.Network().ConnsToPeer(lost.host.ID())) > 0 {
				return false
			}
		}
		return true
	}); err != nil {
		return fmt.Errorf("drop %s: %w", ln, err)
	}
	say("every device dropped %s and its gater refuses it; facts %s signs from epoch %d on are refused", ln, ln, res.Epoch)
	old := admin.Status().GroupKey
	if err := converge(ctx, 3*o.Timeout, rest, func() bool {
		for _, n := range rest {
			s := n.Status()
			if s.GroupKey == nil || s.GroupKey.KeyEpoch <= old.KeyEpoch || !s.GroupKey.HasShare {
				return false
			}
		}
		return true
	}); err != nil {
		return fmt.Errorf("reshare: %w (%+v)", err, admin.ReshareProgress())
	}
	gk := admin.Status().GroupKey
	say("key reshared at key epoch %d: %d-of-%d among the %d remaining devices, same group public key; %s's old share is now a bad partial",
		gk.KeyEpoch, gk.Threshold, len(gk.Participants), len(rest), ln)
	if err := waitSame(ctx, o.Timeout, rest); err != nil {
		return err
	}
	info, err := rest[len(rest)-1].Propose()
	if err != nil {
		return fmt.Errorf("propose after resharing: %w", err)
	}
	deadline := time.Now().Add(3 * o.Timeout)
	for {
		s := admin.Status()
		if s.NewestSnapshot != nil && s.NewestSnapshot.ID == info.ID {
			if slices.Contains(s.NewestSnapshot.Participants, lost.Device().String()) {
				return fmt.Errorf("snapshot %s counts a vote of the removed %s", short(info.ID), ln)
			}
			say("snapshot %s completed with %d votes under the reshared key, none from %s", short(info.ID), len(s.NewestSnapshot.Participants), ln)
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("snapshot after resharing did not complete in %s", 3*o.Timeout)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}
