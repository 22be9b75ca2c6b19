package maintenance

import (
	"crypto/sha256"
	"errors"
	"testing"

	"aura/crdt"
)

const testPlatform = "linux/amd64"

func artifactOf(b []byte) crdt.UpgradeArtifact {
	return crdt.UpgradeArtifact{Platform: testPlatform, SHA256: sha256.Sum256(b), Size: uint64(len(b)), CID: []byte("cid:" + string(b))}
}

func hardFork(version string, fence, minReady uint64, expires uint64, art crdt.UpgradeArtifact) *crdt.UpgradeMetadata {
	m := &crdt.UpgradeMetadata{Package: "aura-node", Version: version, UpgradeKind: crdt.UpgradeHard, ActivationFence: fence,
		MinReady: minReady, Expires: expires, Artifacts: []crdt.UpgradeArtifact{art}}
	m.ID = crdt.UpgradeIDOf(m)
	return m
}

// put writes body on replica i and delivers it everywhere.
func (c *cluster) put(i int, body crdt.Body) {
	c.t.Helper()
	out, err := c.reps[i].Write(c.now, body)
	c.must(err)
	c.deliver(i, out)
}

func (c *cluster) setPolicy(i int, policy string) {
	c.put(i, &crdt.DeviceMetadata{SupportedProtocols: []string{BaseProtocol}, UpgradePolicy: policy})
}

// The hard-fork rule end to end on pure replicas: no readiness without a
// verified hash, no approval-less readiness under manual, no activation
// before min-ready and the fence, exactly the publisher activates, then the
// gate refuses the device that held out.
func TestHardForkActivationRule(t *testing.T) {
	c := newCluster(t, 3, 2)
	st := func() *crdt.State { return c.reps[0].State() }
	c.setPolicy(0, crdt.PolicyAuto)
	c.setPolicy(1, crdt.PolicyAuto) // device 2 stays manual
	bin := []byte("aura-node 2.0.0 linux/amd64")
	m := hardFork("2.0.0", st().Epoch, 2, 0, artifactOf(bin))
	c.must(CheckPublish(st(), m, c.now))
	c.put(0, m)

	plan := FetchPlan(st(), c.reps[1].Device(), testPlatform, c.now)
	if len(plan) != 1 || plan[0].Upgrade != m.ID {
		t.Fatalf("fetch plan %+v", plan)
	}
	if FetchPlan(st(), c.reps[1].Device(), "plan9/386", c.now) != nil {
		t.Fatal("a platform without an artifact was asked to fetch")
	}
	// A bad download is refused and never becomes readiness.
	a := plan[0].Artifact
	if err := VerifyArtifact(&a, a.Size, sha256.Sum256([]byte("tampered build xxxxxxxx"))); !errors.Is(err, ErrHashMismatch) {
		t.Fatalf("mismatch: %v", err)
	}
	if err := VerifyArtifact(&a, a.Size+1, a.SHA256); !errors.Is(err, ErrSizeOverrun) {
		t.Fatalf("overrun: %v", err)
	}
	if err := VerifyArtifact(&a, a.Size-1, a.SHA256); !errors.Is(err, ErrSizeShort) {
		t.Fatalf("short: %v", err)
	}
	if r, err := ReadyFact(st(), m.ID, c.reps[1].Device(), testPlatform, c.now, crdt.Hash{}, false); r != nil || err != nil {
		t.Fatalf("ready without verification: %v %v", r, err)
	}
	if r, _ := ReadyFact(st(), m.ID, c.reps[1].Device(), testPlatform, c.now, sha256.Sum256([]byte("other")), false); r != nil {
		t.Fatal("ready for a hash that is not the signed one")
	}
	ready := func(i int, approved bool) bool {
		r, err := ReadyFact(c.reps[i].State(), m.ID, c.reps[i].Device(), testPlatform, c.now, a.SHA256, approved)
		c.must(err)
		if r != nil {
			c.put(i, r)
		}
		return r != nil
	}
	if !ready(0, false) {
		t.Fatal("auto device not ready after verification")
	}
	if ready(2, false) {
		t.Fatal("manual device ready without approval")
	}
	var coord [3]UpgradeCoordinator
	for i := range coord {
		if acts := coord[i].Activations(c.reps[i].State(), c.reps[i].Device(), c.now); len(acts) != 0 {
			t.Fatalf("device %d activates with 1 of 2 ready", i)
		}
	}
	if err := ActivationDue(st(), m.ID, c.now); !errors.Is(err, ErrNotDue) {
		t.Fatalf("due with 1 of 2 ready: %v", err)
	}
	ready(1, false)
	for i := 1; i < 3; i++ {
		if acts := coord[i].Activations(c.reps[i].State(), c.reps[i].Device(), c.now); len(acts) != 0 {
			t.Fatalf("device %d (not the publisher) activated", i)
		}
	}
	acts := coord[0].Activations(st(), c.reps[0].Device(), c.now)
	if len(acts) != 1 || acts[0].Upgrade != m.ID || acts[0].ToVersion != "2.0.0" {
		t.Fatalf("publisher activations %+v", acts)
	}
	c.put(0, acts[0])
	for i := range c.reps {
		if !InForce(c.reps[i].State(), m.ID) || Phase(c.reps[i].State(), m.ID, c.now) != PhaseActivated {
			t.Fatalf("device %d does not see the fork in force", i)
		}
	}
	err := UpgradeGate(st(), st().MemberList())
	var nr *NotReadyError
	if !errors.As(err, &nr) || nr.Device != c.reps[2].Device() || nr.Version != "2.0.0" || !errors.Is(err, ErrNotReady) {
		t.Fatalf("gate after activation: %v", err)
	}
	if err := UpgradeGate(st(), st().MemberList()[:0]); err != nil {
		t.Fatal(err)
	}
	// The hold-out approves: readiness, and the gate opens.
	if !ready(2, true) {
		t.Fatal("approved manual device not ready")
	}
	if err := UpgradeGate(st(), st().MemberList()); err != nil {
		t.Fatalf("gate with everyone ready: %v", err)
	}
	// Rollback: 2.0.0 again or 1.9.0 is refused, at publish and as a phase.
	old := hardFork("1.9.0", st().Epoch, 1, 0, artifactOf([]byte("old")))
	if err := CheckPublish(st(), old, c.now); !errors.Is(err, ErrRollback) {
		t.Fatalf("rollback publish: %v", err)
	}
	c.put(0, old) // a device that skips the check: the fact is valid, never acted on
	if Phase(st(), old.ID, c.now) != PhaseRollback || FetchPlan(st(), c.reps[1].Device(), testPlatform, c.now) != nil {
		t.Fatal("rollback metadata is actionable")
	}
	if err := ActivationDue(st(), old.ID, c.now); !errors.Is(err, ErrRollback) {
		t.Fatalf("rollback due: %v", err)
	}
	// Even a rogue activation of the lower version never takes force.
	c.put(0, &crdt.UpgradeActivated{Upgrade: old.ID, ToVersion: old.Version, ActivationFence: old.ActivationFence})
	if InForce(st(), old.ID) || !InForce(st(), m.ID) {
		t.Fatal("an activated rollback took force")
	}
}

// Expiry is judged against the driver's now when acting, never in the
// fold; cancellation counts only before the fence.
func TestUpgradeExpiryAndCancel(t *testing.T) {
	c := newCluster(t, 2, 2)
	st := c.reps[0].State()
	exp := hardFork("3.0.0", st.Epoch+5, 1, uint64(c.now+1000), artifactOf([]byte("x")))
	c.put(0, exp)
	if err := Actionable(st, exp.ID, c.now); err != nil {
		t.Fatalf("fresh metadata: %v", err)
	}
	if err := Actionable(st, exp.ID, c.now+1000); !errors.Is(err, ErrUpgradeExpired) {
		t.Fatalf("expired metadata acted on: %v", err)
	}
	if err := CheckPublish(st, exp, c.now+2000); !errors.Is(err, ErrUpgradeExpired) {
		t.Fatalf("publishing expired metadata: %v", err)
	}
	if _, ok := c.reps[1].State().Upgrades[exp.ID]; !ok {
		t.Fatal("expired metadata left the state (the fold must keep it)")
	}
	if r, err := ReadyFact(st, exp.ID, c.reps[0].Device(), testPlatform, c.now+5000, exp.Artifacts[0].SHA256, true); r != nil || !errors.Is(err, ErrUpgradeExpired) {
		t.Fatalf("ready for expired metadata: %v %v", r, err)
	}

	m := hardFork("3.1.0", st.Epoch+1, 1, 0, artifactOf([]byte("y")))
	c.put(0, m)
	c.must(CheckCancel(st, m.ID))
	c.put(0, &crdt.UpgradeCancelled{Upgrade: m.ID})
	if Phase(st, m.ID, c.now) != PhaseCancelled || !errors.Is(Actionable(st, m.ID, c.now), ErrUpgradeCancelled) {
		t.Fatal("cancelled upgrade still actionable")
	}
	at := hardFork("3.2.0", st.Epoch, 1, 0, artifactOf([]byte("z")))
	c.put(0, at)
	if err := CheckCancel(st, at.ID); !errors.Is(err, ErrPastFence) {
		t.Fatalf("cancel at the fence: %v", err)
	}
}

// When the publisher is no longer a member, the lowest other holder of
// upgrade_publish activates at once, the next one after a grace period.
func TestActivatorFallback(t *testing.T) {
	c := newCluster(t, 3, 2)
	c.put(0, &crdt.CapabilityGrant{Device: c.reps[2].Device(), Capabilities: []string{crdt.CapUpgradePublish}})
	c.put(0, &crdt.CapabilityGrant{Device: c.reps[1].Device(), Capabilities: []string{crdt.CapUpgradePublish}})
	st := c.reps[1].State()
	m := hardFork("2.0.0", st.Epoch+1, 1, 0, artifactOf([]byte("b")))
	c.put(0, m)
	c.setPolicy(1, crdt.PolicyAuto)
	r, err := ReadyFact(st, m.ID, c.reps[1].Device(), testPlatform, c.now, m.Artifacts[0].SHA256, false)
	c.must(err)
	c.put(1, r)
	c.put(0, &crdt.DeviceRemoved{Device: c.reps[0].Device()}) // epoch reaches the fence; the publisher is gone
	acts := Activators(st, m.ID)
	if len(acts) != 2 || acts[0] == c.reps[0].Device() {
		t.Fatalf("activators %v", acts)
	}
	first := 1
	if acts[0] == c.reps[2].Device() {
		first = 2
	}
	second := 3 - first
	var co [3]UpgradeCoordinator
	co[first].Grace, co[second].Grace = 1000, 1000
	if len(co[second].Activations(c.reps[second].State(), c.reps[second].Device(), c.now)) != 0 {
		t.Fatal("second activator acted at once")
	}
	if got := co[first].Activations(c.reps[first].State(), c.reps[first].Device(), c.now); len(got) != 1 {
		t.Fatalf("first fallback activator: %v", got)
	}
	if got := co[second].Activations(c.reps[second].State(), c.reps[second].Device(), c.now+999); len(got) != 0 {
		t.Fatal("second fallback activator before its grace")
	}
	if got := co[second].Activations(c.reps[second].State(), c.reps[second].Device(), c.now+1000); len(got) != 1 {
		t.Fatal("second fallback activator never acts")
	}
}
