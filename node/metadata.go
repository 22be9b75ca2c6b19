package node

import (
	"fmt"
	"slices"
	"sync"

	"aura/crdt"
	"aura/maintenance"
)

// What this device says of itself in DeviceMetadata: the account protocol
// versions it runs and its upgrade policy.
//
// The policy comes from the config key upgrade.policy, or from `aura-cli
// device policy`, whichever the operator set last: the command records the
// policy with the config value it overrode (node records policyKey and
// policyConfigKey), and a config value that differs from the recorded one
// (the file was edited since) wins at the next start.
const (
	policyKey       = "device/policy"
	policyConfigKey = "device/policy-config"
)

// ErrBadPolicy: an upgrade policy other than manual or auto.
var ErrBadPolicy = fmt.Errorf("%w: the upgrade policy is manual or auto", ErrBadRequest)

// deviceSettings is this device's published self-description.
type deviceSettings struct {
	mu     sync.Mutex
	policy string
}

// DeviceInfo is `aura-cli device policy`'s answer: what this device
// publishes, and whether the account's state already holds it.
type DeviceInfo struct {
	Device    string   `json:"device"`
	Policy    string   `json:"upgrade_policy"`
	Protocols []string `json:"supported_protocols"`
	Published bool     `json:"published"`
}

// SupportedProtocols are the account protocol versions this device
// advertises: AccountProtocols, unless the test-only config key
// upgrade.test_protocols replaces them.
func (n *Node) SupportedProtocols() []string {
	if len(n.cfg.Upgrade.TestProtocols) > 0 {
		return slices.Clone(n.cfg.Upgrade.TestProtocols)
	}
	return slices.Clone(AccountProtocols)
}

// UpgradePolicy is this device's upgrade policy (manual or auto).
func (n *Node) UpgradePolicy() string {
	n.dev.mu.Lock()
	defer n.dev.mu.Unlock()
	if n.dev.policy == "" {
		return n.cfg.Upgrade.Policy
	}
	return n.dev.policy
}

// loadPolicy picks the policy at start (see the comment at the top).
func (n *Node) loadPolicy() {
	p, _ := n.nmeta.Get(policyKey)
	over, _ := n.nmeta.Get(policyConfigKey)
	n.dev.mu.Lock()
	defer n.dev.mu.Unlock()
	n.dev.policy = n.cfg.Upgrade.Policy
	if validPolicy(string(p)) && string(over) == n.cfg.Upgrade.Policy {
		n.dev.policy = string(p)
	}
}

func validPolicy(p string) bool { return p == crdt.PolicyManual || p == crdt.PolicyAuto }

// SetUpgradePolicy changes this device's upgrade policy, records it
// durably, and publishes the new DeviceMetadata.
func (n *Node) SetUpgradePolicy(policy string) (*DeviceInfo, error) {
	if !validPolicy(policy) {
		return nil, fmt.Errorf("%q: %w", policy, ErrBadPolicy)
	}
	if n.Account().IsZero() {
		return nil, ErrNoAccount
	}
	if err := n.nmeta.Put(policyConfigKey, []byte(n.cfg.Upgrade.Policy)); err != nil {
		return nil, fmt.Errorf("record the upgrade policy: %w", err)
	}
	if err := n.nmeta.Put(policyKey, []byte(policy)); err != nil {
		return nil, fmt.Errorf("record the upgrade policy: %w", err)
	}
	n.dev.mu.Lock()
	n.dev.policy = policy
	n.dev.mu.Unlock()
	if err := n.publishMetadata(); err != nil {
		return nil, fmt.Errorf("publish device metadata: %w", err)
	}
	return n.DeviceInfo(), nil
}

// DeviceInfo reports what this device publishes about itself.
func (n *Node) DeviceInfo() *DeviceInfo {
	want := n.wantMetadata()
	info := &DeviceInfo{Device: n.device.String(), Policy: want.UpgradePolicy, Protocols: want.SupportedProtocols}
	n.mu.Lock()
	info.Published = metadataHeld(n.rep.State().Devices[n.device], want)
	n.mu.Unlock()
	return info
}

func (n *Node) wantMetadata() *crdt.DeviceMetadata {
	return &crdt.DeviceMetadata{Name: n.cfg.Name, SupportedProtocols: n.SupportedProtocols(), UpgradePolicy: n.UpgradePolicy()}
}

// metadataHeld reports whether the state's record of a device already says
// what want says.
func metadataHeld(cur *crdt.DeviceMeta, want *crdt.DeviceMetadata) bool {
	return cur != nil && cur.Name == want.Name && cur.Policy == want.UpgradePolicy && sameSet(cur.Protocols, want.SupportedProtocols)
}

// publishMetadata appends DeviceMetadata (this device's name, the account
// protocol versions it supports, its upgrade policy) when the account's
// state does not already say exactly that: at start, after create and
// after join, and when the policy changes.
func (n *Node) publishMetadata() error {
	want := n.wantMetadata()
	var out maintenance.Output
	err := n.withLock(func() error {
		st := n.rep.State()
		if st.Account.IsZero() || !st.Holds(n.device, "", st.Epoch) {
			return nil
		}
		if metadataHeld(st.Devices[n.device], want) {
			return nil
		}
		var err error
		out, err = n.rep.WriteMeta(want)
		return err
	})
	if err != nil {
		n.log.Warn("device metadata not published", "err", err)
		return err
	}
	n.handle(out)
	return nil
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
