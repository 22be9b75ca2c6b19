package node

import (
	"context"
	"errors"
	"fmt"
	"time"

	"aura/crdt"
	"aura/maintenance"
)

// autoReshareEvery is how often the automatic resharing after a removal
// checks whether enough share holders are online, and retries.
const autoReshareEvery = 2 * time.Second

// autoReshareFor bounds how long it keeps trying; after that the operator
// runs `aura-cli threshold reshare`.
const autoReshareFor = 30 * time.Minute

// startAutoReshare starts, unless one runs already, the resharing a
// removal asks for (maintenance.NeedsReshare): it waits until the key's M
// share holders are connected, runs Reshare(m), and retries failures
// until the key no longer names a removed device. It returns what it did,
// for the operator.
func (n *Node) startAutoReshare(m int) string {
	n.mu.Lock()
	st := n.rep.State()
	need := maintenance.NeedsReshare(st)
	_, planErr := maintenance.PlanReshare(st, m)
	n.mu.Unlock()
	if !need {
		return "not needed (no share holder was removed)"
	}
	if planErr != nil {
		return fmt.Sprintf("not started: %v; run `aura-cli threshold reshare --threshold M`", planErr)
	}
	n.rs.mu.Lock()
	if n.rs.auto {
		n.rs.mu.Unlock()
		return "already waiting to reshare"
	}
	n.rs.auto = true
	n.rs.mu.Unlock()
	n.setReshareStatus(func(s *ReshareStatus) {
		*s = ReshareStatus{State: "waiting", Detail: "waiting for enough share holders to be online", Started: time.Now(), Hub: true, Auto: true}
	})
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		defer func() { n.rs.mu.Lock(); n.rs.auto = false; n.rs.mu.Unlock() }()
		n.autoReshare(m)
	}()
	return "started: the key is reshared as soon as enough share holders are online (see `aura-cli threshold status`)"
}

func (n *Node) autoReshare(m int) {
	deadline := time.Now().Add(autoReshareFor)
	t := time.NewTimer(0)
	defer t.Stop()
	for time.Now().Before(deadline) {
		select {
		case <-n.ctx.Done():
			return
		case <-t.C:
		}
		t.Reset(autoReshareEvery)
		online, need, ok := n.holdersOnline()
		if !ok {
			n.setReshareStatus(func(s *ReshareStatus) { s.State, s.Detail = "done", "nothing to reshare any more" })
			return
		}
		if online < need {
			n.setReshareStatus(func(s *ReshareStatus) {
				s.State, s.Detail = "waiting", fmt.Sprintf("%d of the %d share holders needed are online", online, need)
			})
			continue
		}
		ctx, cancel := context.WithTimeout(n.ctx, dkgStreamDeadline)
		_, err := n.Reshare(ctx, m)
		cancel()
		if err == nil {
			return
		}
		n.log.Warn("automatic resharing", "err", err)
		if errors.Is(err, ErrBadRequest) {
			return // a threshold the devices cannot meet: the operator decides
		}
		n.setReshareStatus(func(s *ReshareStatus) { s.State, s.Detail, s.Auto = "waiting", "retrying after: "+err.Error(), true })
	}
}

// holdersOnline counts the current key's share holders that are members
// and connected (this device included), and the key's M. ok is false when
// no resharing is needed any more.
func (n *Node) holdersOnline() (online, need int, ok bool) {
	n.mu.Lock()
	st := n.rep.State()
	gk := st.GroupKey()
	if gk == nil || !maintenance.NeedsReshare(st) {
		n.mu.Unlock()
		return 0, 0, false
	}
	var holders []crdt.DeviceID
	for _, d := range gk.Participants {
		if st.IsMember(d) {
			holders = append(holders, d)
		}
	}
	need = int(gk.Threshold)
	n.mu.Unlock()
	for _, d := range holders {
		if d == n.device || len(n.host.Network().ConnsToPeer(PeerID(d))) > 0 {
			online++
		}
	}
	return online, need, true
}

// resumeAutoReshare restarts, on the admin's device, the resharing a
// removal asked for when the node stopped before it was done.
func (n *Node) resumeAutoReshare() {
	n.mu.Lock()
	st := n.rep.State()
	need := !n.rep.Account().IsZero() && st.Holds(n.device, crdt.CapAdmin, st.Epoch) && maintenance.NeedsReshare(st)
	n.mu.Unlock()
	if need {
		n.log.Info("a removed device still holds a share: resharing as soon as enough share holders are online")
		n.startAutoReshare(0)
	}
}
