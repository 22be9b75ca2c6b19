package maintenance

import (
	"crypto/ed25519"
	"errors"
	"strings"
	"testing"

	"aura/crdt"
)

// writeAs appends body as device i (a helper for facts with no method of
// their own: metadata, upgrade facts) and delivers it.
func (c *cluster) writeAs(i int, body crdt.Body) {
	c.t.Helper()
	out, err := c.reps[i].write(body)
	c.must(err)
	c.deliver(i, out)
}

// activate publishes a hard fork naming protocol proto, makes the devices
// in ready declare readiness, and activates it (device 0 is the admin).
func (c *cluster) activate(proto string, ready ...int) {
	c.t.Helper()
	m := &crdt.UpgradeMetadata{Package: "aura-node", Version: "2.0.0", UpgradeKind: "hard", Protocol: proto,
		ActivationFence: c.reps[0].State().Epoch, MinReady: 1, Artifacts: []crdt.UpgradeArtifact{{Platform: "none/none", SHA256: crdt.Hash{1}, Size: 1, CID: []byte{1}}}}
	m.ID = crdt.UpgradeIDOf(m)
	pkg := m.ID
	c.writeAs(0, m)
	for _, i := range ready {
		c.writeAs(i, &crdt.UpgradeReady{Upgrade: pkg})
	}
	c.writeAs(0, &crdt.UpgradeActivated{Upgrade: pkg, ToVersion: "2.0.0", ActivationFence: c.reps[0].State().Epoch})
}

func (c *cluster) eventsOf(kind EventKind) []Event {
	var out []Event
	for _, e := range c.events {
		if e.Kind == kind {
			out = append(out, e)
		}
	}
	return out
}

// A device whose metadata advertises only another protocol keeps every
// snapshot round from starting, and the error names it.
func TestProposeRefusedWhenParticipantLacksProtocol(t *testing.T) {
	c := newCluster(t, 3, 2)
	c.writeAs(0, &crdt.DeviceMetadata{SupportedProtocols: []string{BaseProtocol}})
	c.writeAs(2, &crdt.DeviceMetadata{SupportedProtocols: []string{"aura/0"}})
	c.write(0, "k", "v")
	_, err := c.reps[0].Propose(c.now)
	var pe *ProtocolError
	if !errors.Is(err, ErrUnsupportedProtocol) || !errors.As(err, &pe) {
		t.Fatalf("propose: %v, want a *ProtocolError", err)
	}
	if len(pe.Devices) != 1 || pe.Devices[0] != c.reps[2].Device() || pe.Protocol != BaseProtocol {
		t.Fatalf("error names %v for %s, want only d2 for %s", pe.Devices, pe.Protocol, BaseProtocol)
	}
	if !strings.Contains(err.Error(), c.reps[2].Device().Short()) {
		t.Fatalf("message %q does not name the device", err)
	}
	if _, _, open := c.reps[0].Fence(); open {
		t.Fatal("a refused round raised the fence")
	}
	// Once the device advertises the protocol too, the round starts.
	c.writeAs(2, &crdt.DeviceMetadata{SupportedProtocols: []string{BaseProtocol, "aura/0"}})
	out, err := c.reps[0].Propose(c.now)
	c.must(err)
	c.deliver(0, out)
	if c.reps[1].State().NewestSnapshot() == nil {
		t.Fatal("the round did not complete once every participant supports the protocol")
	}
}

// catchUp hands replica i every fact replica 0 holds (anti-entropy after
// it was down), and delivers its reactions.
func (c *cluster) catchUp(i int) {
	c.t.Helper()
	var facts []*crdt.Fact
	c.must(c.reps[0].Store().All(func(f *crdt.Fact) error { facts = append(facts, f); return nil }))
	_, out, err := c.reps[i].Receive(c.now, facts)
	c.must(err)
	c.deliver(i, out)
}

// addDevice has the admin (device 0) admit a new device: the identity
// epoch moves.
func (c *cluster) addDevice(seed int) {
	c.t.Helper()
	k := key(seed)
	out, err := c.reps[0].AddDevice(crdt.DeviceIDFromKey(k.Public().(ed25519.PublicKey)), "new", nil)
	c.must(err)
	c.deliver(0, out)
}

// The identity epoch moves (a device joins) while a round runs: the
// proposer abandons it with the stale-epoch reason and proposes again
// under the new epoch, which completes.
func TestRoundAbortsOnEpochMoveAndRetries(t *testing.T) {
	c := newCluster(t, 3, 3)
	c.write(0, "k", "v")
	c.down[2] = true // 3 of 3: the round waits for d2
	out, err := c.reps[0].Propose(c.now)
	c.must(err)
	c.deliver(0, out)
	first := out.Proposed
	epoch := c.reps[0].State().Epoch
	c.addDevice(9)
	c.tick(1)
	if ref := c.reps[0].State().Proposals[first]; ref == nil || !ref.Abandoned {
		t.Fatal("the round under the old epoch was not abandoned")
	}
	aborts := c.eventsOf(EventSessionAborted)
	if len(aborts) != 1 || aborts[0].Proposal != first || !strings.Contains(aborts[0].Detail, "retrying") {
		t.Fatalf("session-aborted events %v, want one retrying the first round", aborts)
	}
	var se *StaleEpochError
	if !errors.As(aborts[0].Err, &se) || se.Session.Identity != epoch || se.Current.Identity != epoch+1 {
		t.Fatalf("abort cause %v, want a *StaleEpochError from %d to %d", aborts[0].Err, epoch, epoch+1)
	}
	retry, _, open := c.reps[0].Fence()
	if !open || retry == first {
		t.Fatal("no retry round is open")
	}
	if p := c.reps[0].State().Proposals[retry]; p == nil || p.Proposal.TargetEpoch != epoch+1 {
		t.Fatal("the retry does not run under the new epoch")
	}
	c.down[2] = false
	c.catchUp(2)
	c.tick(1)
	done := c.reps[1].State().NewestSnapshot()
	if done == nil || done.ProposalID != retry || done.Snapshot.Epoch != epoch+1 {
		t.Fatalf("newest snapshot %v, want the retry under epoch %d", done, epoch+1)
	}
	// d2 voted only for the retry: it refused the stale round.
	if _, ok := c.reps[1].State().Proposals[first].Votes[c.reps[2].Device()]; ok {
		t.Fatal("d2 voted for the round under the old epoch")
	}
}

// The retries are bounded: an account whose epoch moves under every round
// gives up after SessionRetries, with the reason.
func TestRoundRetriesAreBounded(t *testing.T) {
	c := newCluster(t, 3, 3)
	c.write(0, "k", "v")
	c.down[2] = true
	out, err := c.reps[0].Propose(c.now)
	c.must(err)
	c.deliver(0, out)
	for i := 0; i <= SessionRetries; i++ {
		c.addDevice(10 + i)
		c.tick(1)
	}
	aborts := c.eventsOf(EventSessionAborted)
	if len(aborts) != SessionRetries+1 {
		t.Fatalf("%d aborts, want %d", len(aborts), SessionRetries+1)
	}
	if last := aborts[len(aborts)-1]; !strings.Contains(last.Detail, "gave up") || !errors.Is(last.Err, ErrStaleEpoch) {
		t.Fatalf("last abort %v, want a give-up on a stale epoch", last)
	}
	if _, _, open := c.reps[0].Fence(); open {
		t.Fatal("a round is still open after the retries ran out")
	}
	if got := len(c.eventsOf(EventProposed)); got != SessionRetries+1 {
		t.Fatalf("%d proposals, want the first and %d retries", got, SessionRetries)
	}
}

// After a hard fork activates, a share holder without readiness takes no
// part: it does not vote, its vote would be refused, and the round
// completes with the ready holders. With too few ready, no round starts.
func TestUnreadyDeviceRefusedAfterActivation(t *testing.T) {
	c := newCluster(t, 3, 2)
	c.activate("", 0, 1)
	c.write(0, "k", "v")
	out, err := c.reps[0].Propose(c.now)
	c.must(err)
	c.deliver(0, out)
	done := c.reps[0].State().NewestSnapshot()
	if done == nil {
		t.Fatal("the round of the ready devices did not complete")
	}
	for _, d := range done.Participants {
		if d == c.reps[2].Device() {
			t.Fatal("the unready device signed the snapshot")
		}
	}
	if _, ok := c.reps[0].State().Proposals[done.ProposalID].Votes[c.reps[2].Device()]; ok {
		t.Fatal("the unready device voted")
	}
	var ne *NotReadyError
	found := false
	for _, e := range c.eventsOf(EventRefused) {
		if errors.As(e.Err, &ne) && ne.Device == c.reps[2].Device() && e.Err.Error() == "device "+c.reps[2].Device().Short()+" not ready for 2.0.0" {
			found = true
		}
	}
	if !found {
		t.Fatal("no refusal names the unready device with \"device X not ready for V\"")
	}
	// An unready proposer starts no round.
	c.write(2, "k2", "v")
	if _, err := c.reps[2].Propose(c.now); !errors.Is(err, ErrNotReady) {
		t.Fatalf("unready proposer: %v, want ErrNotReady", err)
	}
}

func TestProposeRefusedWhenTooFewReady(t *testing.T) {
	c := newCluster(t, 3, 2)
	c.activate("", 0)
	c.write(0, "k", "v")
	_, err := c.reps[0].Propose(c.now)
	var ne *NotReadyError
	if !errors.As(err, &ne) || ne.Device != c.reps[1].Device() && ne.Device != c.reps[2].Device() {
		t.Fatalf("propose with 1 of 2 needed ready: %v, want a *NotReadyError naming an unready holder", err)
	}
}

// A hard fork that names a protocol makes it the required one.
func TestActivatedProtocolRequired(t *testing.T) {
	c := newCluster(t, 3, 2)
	for i := 0; i < 3; i++ {
		c.writeAs(i, &crdt.DeviceMetadata{SupportedProtocols: []string{BaseProtocol}})
	}
	c.activate("aura/2", 0, 1, 2)
	if got := RequiredProtocol(c.reps[0].State()); got != "aura/2" {
		t.Fatalf("required protocol %q", got)
	}
	c.write(0, "k", "v")
	_, err := c.reps[0].Propose(c.now)
	var pe *ProtocolError
	if !errors.As(err, &pe) || len(pe.Devices) != 3 {
		t.Fatalf("propose: %v, want all three devices named", err)
	}
}

func TestRetrySession(t *testing.T) {
	stale := &StaleEpochError{Session: Scope{Identity: 1}, Current: Scope{Identity: 2}}
	for _, tc := range []struct {
		err     error
		attempt int
		want    bool
	}{
		{stale, 1, true},
		{stale, SessionRetries, true},
		{stale, SessionRetries + 1, false},
		{&ProtocolError{Protocol: BaseProtocol}, 1, false},
		{&NotReadyError{Version: "2"}, 1, false},
	} {
		if got := RetrySession(tc.err, tc.attempt); got != tc.want {
			t.Errorf("RetrySession(%v, %d) = %v", tc.err, tc.attempt, got)
		}
	}
}

// A device with no metadata yet runs the base protocol only.
func TestSupportsWithoutMetadata(t *testing.T) {
	st := crdt.NewState(crdt.AccountID{1}, nil)
	d := crdt.DeviceID{2}
	if !Supports(st, d, BaseProtocol) || Supports(st, d, "aura/2") {
		t.Fatal("a device without metadata must support the base protocol and nothing else")
	}
}

// Only an upgrade in force sets the protocol: a later activation of a
// lower version of the same package (a rollback nobody acts on) names a
// protocol no session may require.
func TestRequiredProtocolIgnoresRollbackActivation(t *testing.T) {
	c := newCluster(t, 3, 2)
	c.activate("aura/2", 0, 1, 2)
	m := &crdt.UpgradeMetadata{Package: "aura-node", Version: "1.5.0", UpgradeKind: "hard", Protocol: "aura/9",
		ActivationFence: c.reps[0].State().Epoch, MinReady: 1, Artifacts: []crdt.UpgradeArtifact{{Platform: "none/none", SHA256: crdt.Hash{2}, Size: 1, CID: []byte{2}}}}
	m.ID = crdt.UpgradeIDOf(m)
	c.writeAs(0, m)
	for i := 0; i < 3; i++ {
		c.writeAs(i, &crdt.UpgradeReady{Upgrade: m.ID})
	}
	c.writeAs(0, &crdt.UpgradeActivated{Upgrade: m.ID, ToVersion: "1.5.0", ActivationFence: m.ActivationFence})
	if got := RequiredProtocol(c.reps[0].State()); got != "aura/2" {
		t.Fatalf("required protocol %q after a rollback activation, want aura/2", got)
	}
}
