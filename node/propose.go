package node

import (
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
	return n.Propose()
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
