package node

import (
	"slices"

	"aura/crdt"
	"aura/maintenance"
)

// publishMetadata appends DeviceMetadata (this device's name, the account
// protocol versions this binary supports, its upgrade policy) when the
// account's state does not already say exactly that: at start, after
// create and after join.
func (n *Node) publishMetadata() {
	want := &crdt.DeviceMetadata{Name: n.cfg.Name, SupportedProtocols: AccountProtocols, UpgradePolicy: crdt.PolicyManual}
	var out maintenance.Output
	err := n.withLock(func() error {
		st := n.rep.State()
		if st.Account.IsZero() || !st.Holds(n.device, "", st.Epoch) {
			return nil
		}
		if cur := st.Devices[n.device]; cur != nil && cur.Name == want.Name && cur.Policy == want.UpgradePolicy && sameSet(cur.Protocols, want.SupportedProtocols) {
			return nil
		}
		var err error
		out, err = n.rep.WriteMeta(want)
		return err
	})
	if err != nil {
		n.log.Warn("device metadata not published", "err", err)
		return
	}
	n.handle(out)
}

func sameSet(have map[string]bool, want []string) bool {
	if len(have) != len(want) {
		return false
	}
	for p := range have {
		if !slices.Contains(want, p) {
			return false
		}
	}
	return true
}
