package node

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/network"

	"aura/crdt"
	"aura/maintenance"
)

// activateHardFork has the admin ns[0] publish and activate a hard fork
// naming protocol proto, every node in ready declaring readiness first.
func activateHardFork(t *testing.T, ns []*Node, proto string, ready ...*Node) {
	t.Helper()
	epoch := ns[0].Status().IdentityEpoch
	m := &crdt.UpgradeMetadata{Package: "aura-node", Version: "2.0.0", UpgradeKind: "hard", Protocol: proto, ActivationFence: epoch,
		MinReady: 1, Artifacts: []crdt.UpgradeArtifact{{Platform: "none/none", SHA256: crdt.Hash{1}, Size: 1, CID: []byte{1}}}}
	m.ID = crdt.UpgradeIDOf(m)
	pkg := m.ID
	if _, err := ns[0].write(m); err != nil {
		t.Fatal(err)
	}
	waitConverged(t, 20*time.Second, ns)
	for _, n := range ready {
		if _, err := n.write(&crdt.UpgradeReady{Upgrade: pkg}); err != nil {
			t.Fatal(err)
		}
	}
	waitConverged(t, 20*time.Second, ns)
	if _, err := ns[0].write(&crdt.UpgradeActivated{Upgrade: pkg, ToVersion: "2.0.0", ActivationFence: epoch}); err != nil {
		t.Fatal(err)
	}
	waitConverged(t, 20*time.Second, ns)
}

// A device whose metadata lacks the protocol sessions must run: a snapshot
// round and a key generation refuse to start, naming it, and `status` and
// `peers` show it incompatible with the reason.
func TestSessionRefusedForDeviceLackingProtocol(t *testing.T) {
	dir := t.TempDir()
	both := func(c *Config) { c.Upgrade.TestProtocols = []string{"aura/1", "aura/2"} }
	ns := []*Node{
		startNodeWith(t, filepath.Join(dir, "n1"), both),
		startNodeWith(t, filepath.Join(dir, "n2"), both),
		startNodeWith(t, filepath.Join(dir, "old"), func(c *Config) { c.Upgrade.TestProtocols = []string{"aura/1"} }),
	}
	formAccount(t, ns, 2)
	keygen(t, ns, 2)
	old := ns[2].Device()
	activateHardFork(t, ns, "aura/2", ns...)

	if _, err := ns[0].Put("k", []byte("v")); err != nil {
		t.Fatal(err)
	}
	_, err := ns[0].ProposeChecked(false)
	var pe *maintenance.ProtocolError
	if !errors.Is(err, maintenance.ErrUnsupportedProtocol) || !errors.As(err, &pe) || len(pe.Devices) != 1 || pe.Devices[0] != old {
		t.Fatalf("propose: %v, want a *ProtocolError naming only %s", err, old.Short())
	}
	if !strings.Contains(err.Error(), old.Short()) || !strings.Contains(err.Error(), "aura/2") || statusOf(err) != 409 || ErrorCode(err) != CodeUnsupportedProtocol {
		t.Fatalf("propose error %q (status %d, code %q) does not name the device and version", err, statusOf(err), ErrorCode(err))
	}
	if s := ns[0].Status(); s.Fence != nil {
		t.Fatal("a refused round raised the fence")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := ns[0].Keygen(ctx, 2); !errors.As(err, &pe) || pe.Devices[0] != old {
		t.Fatalf("keygen: %v, want a *ProtocolError naming %s", err, old.Short())
	}

	s := ns[0].Status()
	if s.RequiredProtocol != "aura/2" || len(s.Incompatible) != 1 || s.Incompatible[0].Device != old.String() ||
		s.Incompatible[0].Code != CodeUnsupportedProtocol || !strings.Contains(s.Incompatible[0].Reason, "aura/2") ||
		strings.Join(s.Incompatible[0].Protocols, ",") != "aura/1" {
		t.Fatalf("status: required %q incompatible %+v", s.RequiredProtocol, s.Incompatible)
	}
	if a := s.LastSessionAbort; a == nil || a.Session != "keygen" || a.Code != CodeUnsupportedProtocol {
		t.Fatalf("last session abort %+v, want the refused keygen", a)
	}
	var seen bool
	for _, p := range ns[0].Peers() {
		switch p.Peer {
		case PeerID(old).String():
			seen = p.IncompatibleCode == CodeUnsupportedProtocol && strings.Contains(p.Incompatible, "aura/2")
		case PeerID(ns[1].Device()).String():
			if p.Incompatible != "" {
				t.Fatalf("compatible peer shown incompatible: %q", p.Incompatible)
			}
		}
	}
	if !seen {
		t.Fatalf("peers does not show %s incompatible: %+v", old.Short(), ns[0].Peers())
	}
}

// The identity epoch moves (a device joins) while a snapshot round runs:
// the round aborts with the reason, the proposer retries under the new
// epoch, and the retry completes; status shows why.
func TestSnapshotRoundAbortedByJoinIsRetried(t *testing.T) {
	ns := newNodes(t, 3)
	formAccount(t, ns, 3)
	keygen(t, ns, 3)
	if _, err := ns[0].Put("k", []byte("v")); err != nil {
		t.Fatal(err)
	}
	waitConverged(t, 20*time.Second, ns)
	home2 := ns[2].Home()
	ns[2].Close() // 3 of 3: the round waits for it
	first, err := ns[0].Propose()
	if err != nil {
		t.Fatal(err)
	}
	epoch := ns[0].Status().IdentityEpoch

	joiner := startNode(t, filepath.Join(t.TempDir(), "joiner"))
	code, _, err := ns[0].Invite(0)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := joiner.Join(ctx, code); err != nil {
		t.Fatal(err)
	}
	var retry string
	waitFor(t, 20*time.Second, "the round aborted and retried under the new epoch", func() bool {
		s := ns[0].Status()
		a := s.LastSessionAbort
		if a == nil || s.Fence == nil || s.Fence.Proposal == first.ID {
			return false
		}
		retry = s.Fence.Proposal
		return a.Session == "snapshot" && a.Proposal == first.ID && a.Code == CodeStaleEpoch && strings.Contains(a.Retry, "retrying")
	})
	if s := ns[0].Status(); s.IdentityEpoch != epoch+1 || !strings.Contains(s.LastSessionAbort.Reason, "identity epoch") {
		t.Fatalf("status after the abort: epoch %d, abort %+v", s.IdentityEpoch, s.LastSessionAbort)
	}
	if info, err := ns[0].Snapshot(first.ID); err != nil || info.Status != "abandoned" {
		t.Fatalf("first round: %+v %v, want abandoned", info, err)
	}
	ns[2] = startNode(t, home2)
	waitFor(t, 45*time.Second, "the retry completed", func() bool {
		s := ns[0].Status()
		return s.NewestSnapshot != nil && s.NewestSnapshot.ID == retry && s.Fence == nil
	})
	if s := ns[0].Status(); s.NewestSnapshot.Epoch != epoch+1 || s.SessionAborts != 1 {
		t.Fatalf("snapshot epoch %d (want %d), %d aborts", s.NewestSnapshot.Epoch, epoch+1, s.SessionAborts)
	}
}

// `device policy` publishes the new policy in the device's metadata, and
// it holds across a restart (the config still says manual).
func TestDevicePolicyPublished(t *testing.T) {
	ns := newNodes(t, 2)
	formAccount(t, ns, 2)
	policyOn := func(n *Node, d crdt.DeviceID) string {
		n.mu.Lock()
		defer n.mu.Unlock()
		if m := n.rep.State().Devices[d]; m != nil {
			return m.Policy
		}
		return ""
	}
	d1 := ns[1].Device()
	waitFor(t, 20*time.Second, "the default policy published", func() bool { return policyOn(ns[0], d1) == crdt.PolicyManual })
	if _, err := ns[1].SetUpgradePolicy("sometimes"); !errors.Is(err, ErrBadPolicy) || !errors.Is(err, ErrBadRequest) {
		t.Fatalf("bad policy: %v", err)
	}
	info, err := ns[1].SetUpgradePolicy(crdt.PolicyAuto)
	if err != nil || info.Policy != crdt.PolicyAuto || !info.Published {
		t.Fatalf("set policy: %+v %v", info, err)
	}
	waitFor(t, 20*time.Second, "the new policy at the other device", func() bool { return policyOn(ns[0], d1) == crdt.PolicyAuto })

	home := ns[1].Home()
	ns[1].Close()
	ns[1] = startNode(t, home)
	if p := ns[1].UpgradePolicy(); p != crdt.PolicyAuto {
		t.Fatalf("policy after restart %q, want auto", p)
	}
	if s := ns[1].Status(); s.UpgradePolicy != crdt.PolicyAuto {
		t.Fatalf("status policy %q", s.UpgradePolicy)
	}
}

// The identity epoch moves while a key generation runs (the admin writes a
// membership fact as the first participant answers): the hub aborts the
// session with the reason, runs it again under the new epoch, and that
// one succeeds; status shows the abort.
func TestKeygenAbortedByEpochMoveIsRetried(t *testing.T) {
	ns := newNodes(t, 3)
	formAccount(t, ns, 2)
	epoch := ns[0].Status().IdentityEpoch
	var once sync.Once
	p := ns[1]
	p.host.SetStreamHandler(DKGProtocol, p.guardStream(func(s network.Stream) {
		once.Do(func() {
			if _, err := ns[0].write(&crdt.CapabilityGrant{Device: ns[2].Device(), Capabilities: []string{crdt.CapWrite}}); err != nil {
				t.Errorf("grant: %v", err)
			}
		})
		p.handleDKG(s)
	}))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	info, err := ns[0].Keygen(ctx, 2)
	if err != nil {
		t.Fatalf("keygen: %v", err)
	}
	s := ns[0].Status()
	if a := s.LastSessionAbort; a == nil || a.Session != "keygen" || a.Code != CodeStaleEpoch || !strings.Contains(a.Retry, "retrying") ||
		!strings.Contains(a.Reason, "identity epoch") || s.SessionAborts != 1 {
		t.Fatalf("status: abort %+v (%d aborts)", s.LastSessionAbort, s.SessionAborts)
	}
	if s.IdentityEpoch != epoch+1 || info.KeyEpoch != 1 {
		t.Fatalf("epoch %d (want %d), key epoch %d", s.IdentityEpoch, epoch+1, info.KeyEpoch)
	}
	waitFor(t, 20*time.Second, "the retried key's shares everywhere", func() bool {
		for _, n := range ns {
			if st := n.Status(); st.GroupKey == nil || !st.GroupKey.HasShare {
				return false
			}
		}
		return true
	})
	// The shares are of the published key: a snapshot round completes.
	if _, err := ns[0].Put("k", []byte("v")); err != nil {
		t.Fatal(err)
	}
	waitConverged(t, 20*time.Second, ns)
	first, err := ns[0].Propose()
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 20*time.Second, "a snapshot under the new key", func() bool {
		st := ns[0].Status()
		return st.NewestSnapshot != nil && st.NewestSnapshot.ID == first.ID
	})
}
