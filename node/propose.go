package node

import (
	"errors"
	"fmt"

	"github.com/libp2p/go-libp2p/core/network"

	"aura/crdt"
	"aura/maintenance"
)

// keyHolders counts the holders of the account's threshold key that are
// online (this device when it holds its share, connected devices) and the
// M a round needs; ok is false without a key.
func (n *Node) keyHolders() (online, needed int, ok bool) {
	n.mu.Lock()
	gk := n.rep.State().GroupKey()
	hasShare := n.rep.Share() != nil
	n.mu.Unlock()
	if gk == nil {
		return 0, 0, false
	}
	for _, d := range gk.Participants {
		switch {
		case d == n.device:
			if hasShare {
				online++
			}
		case n.host.Network().Connectedness(PeerID(d)) == network.Connected:
			online++
		}
	}
	return online, int(gk.Threshold), true
}

// ProposeChecked starts a snapshot round, refusing (unless force) when
// fewer than M key holders are online: such a round could only hold the
// writer fence up until its deadline and be abandoned.
func (n *Node) ProposeChecked(force bool) (*SnapshotInfo, error) {
	if online, needed, ok := n.keyHolders(); ok && !force && online < needed {
		return nil, errorf(ErrUnavailable, "%d of %d needed key holders online: start the others (see `aura-cli threshold status`), or pass --force to propose anyway (the round is abandoned at its deadline unless they come)", online, needed)
	}
	info, err := n.Propose()
	if err != nil {
		return nil, sessionHint(err)
	}
	return info, nil
}

// sessionHint adds what to do to a session the core refused
// (maintenance.CheckSession); the error still wraps its sentinel.
func sessionHint(err error) error {
	switch {
	case errors.Is(err, maintenance.ErrUnsupportedProtocol):
		return fmt.Errorf("%w (install a binary that runs it on those devices, or remove them with `aura-cli account remove DEVICE`; see `aura-cli status`)", err)
	case errors.Is(err, maintenance.ErrNotReady):
		return fmt.Errorf("%w (approve the upgrade on that device with `aura-cli upgrade approve ID`, or remove it with `aura-cli account remove DEVICE`)", err)
	case errors.Is(err, maintenance.ErrStaleEpoch):
		return fmt.Errorf("%w (the account's devices changed: run it again)", err)
	}
	return err
}

// requireAdmin refuses an operation of the account's admin on a device
// that is not (what says what it is for the message).
func (n *Node) requireAdmin(what string) error {
	n.mu.Lock()
	st := n.rep.State()
	ok := st.Holds(n.device, crdt.CapAdmin, st.Epoch)
	n.mu.Unlock()
	if !ok {
		return errorf(maintenance.ErrNotPermitted, "only the account's admin may %s; this device lacks the admin capability", what)
	}
	return nil
}
