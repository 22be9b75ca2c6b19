package sim

import (
	"errors"
	"fmt"
	"math/rand/v2"

	"aura/crdt"
	"aura/maintenance"
)

// Epoch-scoped sessions (maintenance/session.go) under the simulator.
//
// Workloads (Workload.HardFork, Workload.Rekey):
//
//   - HardFork: at setup the admin publishes a hard fork and activates it;
//     every group device but the last honest non-admin one declares
//     readiness first. From then on that device takes part in no session:
//     the snapshot round runs without it, and a key generation refuses to
//     start.
//   - Rekey: once in the active phase the admin runs a key generation
//     session among the group devices the way node does (CheckSession at
//     the start, the hub's gate on every event until the final is out,
//     the caller retrying a stale epoch up to SessionRetries times). In its
//     first attempt the admin grants a capability early (a membership fact:
//     the identity epoch moves while the session runs), so the attempt
//     aborts and a retry runs under the new epoch. The account keeps its
//     dealt key (the session's key is checked, not published), so the
//     snapshot invariants still see one group key.
//
// Invariants (Violation.Invariant), each proven by a planted defect:
//
//   - session-epoch: no session runs under a stale identity epoch: every
//     snapshot vote or completion an honest device commits is for a round
//     whose TargetEpoch is that device's identity epoch, and a key
//     generation that succeeds saw no epoch move before its final. Defect
//     keygen-ignore-epoch: the keygen driver skips the gate while the
//     session runs.
//   - session-ready: after an activation, a device lacking readiness never
//     takes part in a session: no honest device lacking it commits a vote,
//     no completion names it among its signers, and no key generation
//     that includes it runs. The oracle reads readiness from the
//     committing device's state by its own loop (not UpgradeGate). Defect
//     keygen-skip-gate: the keygen driver does not check the session before
//     it starts.

// hardForkMeta is Workload.HardFork's upgrade (its artifact is for no
// platform the simulator fetches; readiness is declared directly).
func hardForkMeta(epoch uint64) *crdt.UpgradeMetadata {
	m := &crdt.UpgradeMetadata{Package: "aura-node", Version: "2.0.0", UpgradeKind: crdt.UpgradeHard, ActivationFence: epoch, MinReady: 1,
		Artifacts: []crdt.UpgradeArtifact{{Platform: "none/none", SHA256: crdt.Hash{1}, Size: 1, CID: []byte{1}}}}
	m.ID = crdt.UpgradeIDOf(m)
	return m
}

// hardForkFacts has the admin publish and activate a hard fork, with
// readiness from every group device but unready, and delivers it to every
// group device (setup time, after the account's own setup facts).
func (s *sim) hardForkFacts(unready *device) ([]*crdt.Fact, error) {
	admin := s.devs[0]
	epoch := admin.rep.State().Epoch
	var facts []*crdt.Fact
	meta := hardForkMeta(epoch)
	hardForkPackage := meta.ID
	out, err := admin.rep.Write(s.devNow(admin), meta)
	if err != nil {
		return nil, fmt.Errorf("hard fork metadata: %w", err)
	}
	facts = append(facts, out.Publish...)
	for _, d := range s.devs[:s.cfg.Nodes] {
		if d == unready {
			continue
		}
		if d != admin {
			if _, _, err := d.rep.Receive(s.devNow(d), facts); err != nil {
				return nil, err
			}
		}
		out, err := d.rep.Write(s.devNow(d), &crdt.UpgradeReady{Upgrade: hardForkPackage})
		if err != nil {
			return nil, fmt.Errorf("readiness of %s: %w", d.name, err)
		}
		facts = append(facts, out.Publish...)
	}
	if _, _, err := admin.rep.Receive(s.devNow(admin), facts); err != nil {
		return nil, err
	}
	out, err = admin.rep.Write(s.devNow(admin), &crdt.UpgradeActivated{Upgrade: hardForkPackage, ToVersion: "2.0.0", ActivationFence: epoch})
	if err != nil {
		return nil, fmt.Errorf("activation: %w", err)
	}
	facts = append(facts, out.Publish...)
	for _, d := range s.devs[1:s.cfg.Nodes] {
		if _, _, err := d.rep.Receive(s.devNow(d), facts); err != nil {
			return nil, err
		}
	}
	for _, f := range facts {
		s.truth.add(f)
	}
	name := "nobody"
	if unready != nil {
		name = unready.name
	}
	s.tr.printf(0, "hard fork 2.0.0 activated at identity epoch %d; %s is not ready", epoch, name)
	return facts, nil
}

// unreadyDevice is the device Workload.HardFork leaves unready: the last
// honest group device other than the admin (nil when there is none).
func (s *sim) unreadyDevice() *device {
	for i := s.cfg.Nodes - 1; i > 0; i-- {
		if d := s.devs[i]; d.honest() {
			return d
		}
	}
	return nil
}

// lacksReadiness is the oracle's own readiness rule: d lacks readiness on
// st when some activated upgrade has no readiness fact of d.
func lacksReadiness(st *crdt.State, d crdt.DeviceID) bool {
	for _, u := range st.Upgrades {
		if u.Activated != nil && !u.Ready[d] {
			return true
		}
	}
	return false
}

// checkSessionFact checks a snapshot fact an honest device committed.
func (s *sim) checkSessionFact(d *device, f *crdt.Fact) {
	if d.rep == nil {
		return
	}
	st := d.rep.State()
	var round [16]byte
	switch f.Kind {
	case crdt.KindSnapshotVote, crdt.KindSnapshotCompleted:
	default:
		return
	}
	b, err := f.DecodeBody()
	if err != nil {
		return
	}
	var signers []crdt.DeviceID
	switch v := b.(type) {
	case *crdt.SnapshotVote:
		round, signers = v.ProposalID, []crdt.DeviceID{f.Author}
	case *crdt.SnapshotCompleted:
		round, signers = v.ProposalID, v.Participants
	}
	if ref := st.Proposals[round]; ref != nil && ref.Stamp != (crdt.Stamp{}) && ref.Proposal.TargetEpoch != st.Epoch {
		s.violate("session-epoch", d.name, "%s for round %x under identity epoch %d, but the device is at %d",
			f.Kind, round[:4], ref.Proposal.TargetEpoch, st.Epoch)
	}
	for _, p := range signers {
		if lacksReadiness(st, p) {
			s.violate("session-ready", d.name, "%s for round %x counts %s, which lacks readiness for an activated upgrade",
				f.Kind, round[:4], s.nameOf(p))
		}
	}
}

// onRekey runs Workload.Rekey's key generation session (see above).
func (s *sim) onRekey() {
	admin := s.devs[0]
	n := s.cfg.Nodes
	if !admin.up || admin.rep == nil || s.cfg.Threshold < 2 {
		return
	}
	parts := make([]crdt.DeviceID, n)
	for i, d := range s.devs[:n] {
		parts[i] = d.id
	}
	moveEpoch := true
	for attempt := 1; ; attempt++ {
		st := admin.rep.State()
		scope := maintenance.ScopeOf(st)
		if !s.cfg.Defects.KeygenSkipGate {
			if err := maintenance.CheckSession(st, scope, parts); err != nil {
				s.res.Stats.SessionRefusals++
				s.trace("rekey attempt %d refused: %v", attempt, err)
				return
			}
		}
		for _, p := range parts {
			if lacksReadiness(st, p) {
				s.violate("session-ready", admin.name, "rekey attempt %d runs with %s, which lacks readiness for an activated upgrade", attempt, s.nameOf(p))
			}
		}
		err := s.rekeyAttempt(attempt, parts, scope, moveEpoch)
		moveEpoch = false
		if err == nil {
			return
		}
		s.res.Stats.SessionAborts++
		if !maintenance.RetrySession(err, attempt) {
			s.trace("rekey attempt %d failed, not retried: %v", attempt, err)
			return
		}
		s.trace("rekey attempt %d aborted, retrying under the new epoch: %v", attempt, err)
	}
}

// rekeyAttempt runs one key generation session among parts under scope;
// with move, the admin grants a capability after the first frames (the
// identity epoch moves). It returns the session's error, nil on success
// (checked like Workload.Keygen's).
func (s *sim) rekeyAttempt(num int, parts []crdt.DeviceID, scope maintenance.Scope, move bool) error {
	admin := s.devs[0]
	s.res.Stats.KeygenAttempts++
	r := rand.New(rand.NewPCG(s.cfg.Seed, 0x72656b79+uint64(num))) // "reky"
	a := s.newAttempt(100+num, len(parts), r, nil)
	a.gate = func() error { return maintenance.CheckSession(admin.rep.State(), scope, parts) }
	if move {
		a.moveAt = 1 + r.IntN(len(parts))
		a.move = func() {
			out, err := admin.rep.Write(s.devNow(admin), &crdt.CapabilityGrant{Device: parts[len(parts)-1], Capabilities: []string{crdt.CapWrite}})
			if err != nil {
				s.trace("rekey: grant refused: %v", err)
				return
			}
			s.schedule("rekey attempt %d: the admin grants a capability: the identity epoch moves to %d", num, admin.rep.State().Epoch)
			s.handleOutput(admin, out, "grant")
		}
	}
	_, _, ok := a.run(parts)
	if a.movedBeforeFinal && a.hubOut != nil && a.hubOut.Done != nil {
		s.violate("session-epoch", admin.name, "rekey attempt %d succeeded under identity epoch %d although the epoch moved to %d before its final",
			num, scope.Identity, admin.rep.State().Epoch)
	}
	if ok {
		s.trace("rekey attempt %d succeeded under identity epoch %d", num, scope.Identity)
		return nil
	}
	if a.hubOut != nil && a.hubOut.Err != nil {
		return a.hubOut.Err
	}
	return errors.New("rekey attempt did not end")
}
