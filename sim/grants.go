package sim

import (
	"errors"
	"fmt"

	"aura/crdt"
	"aura/maintenance"
)

// Membership across epochs (Workload.GrantEvery, `--grants D`): now and
// then the admin d0 grants a member a capability (each grant opens a new
// identity epoch), or removes a Byzantine device from the account (its
// facts from that epoch on are refused, its earlier ones stay valid).
// Byzantine devices with "backdate" sign writes at epochs where they held
// no write capability, and after their removal; with "impersonate" they
// sign snapshot proposals naming an honest device as proposer. The
// reducer must refuse exactly what the guards refuse: the oracle
// (oracle.go) recomputes every device's members and capabilities by
// epoch, and proposal-authentic checks that no proposal in an honest
// state names anyone but its author.

// grantCaps are the capabilities the admin grants (again, at a later
// epoch: the grant keeps its earliest epoch) or newly.
var grantCaps = []string{crdt.CapUpgradePublish, crdt.CapSnapshotPropose, crdt.CapWrite}

func (s *sim) onGrant(e *event) {
	if s.phase != phaseActive {
		return
	}
	s.at(s.expDelay(s.workRng, s.cfg.Workload.GrantEvery), &event{kind: evGrant})
	admin := s.devs[0]
	if !admin.up || admin.rep == nil || admin.absent {
		return
	}
	st := admin.rep.State()
	var members, byz []*device
	for _, d := range s.devs {
		if !d.admitted || !st.IsMember(d.id) {
			continue
		}
		members = append(members, d)
		if !d.honest() {
			byz = append(byz, d)
		}
	}
	if len(members) == 0 {
		return
	}
	var body crdt.Body
	what := ""
	if len(byz) > 0 && s.workRng.Float64() < 0.3 {
		t := byz[s.workRng.IntN(len(byz))]
		body, what = &crdt.DeviceRemoved{Device: t.id}, "remove "+t.name
	} else {
		t := members[s.workRng.IntN(len(members))]
		c := grantCaps[s.workRng.IntN(len(grantCaps))]
		body, what = &crdt.CapabilityGrant{Device: t.id, Capabilities: []string{c}}, fmt.Sprintf("grant %s to %s", c, t.name)
	}
	s.res.Stats.DeviceEvents++
	var out maintenance.Output
	var err error
	if !s.call(admin, "grant", func() { out, err = admin.rep.Write(s.devNow(admin), body) }) {
		return
	}
	if err != nil {
		s.trace("%s %s refused: %v", admin.name, what, err)
		return
	}
	if body.Kind() == crdt.KindDeviceRemoved {
		s.res.Stats.Removals++
	} else {
		s.res.Stats.Grants++
	}
	s.schedule("%s %s at epoch %d", admin.name, what, admin.rep.State().Epoch)
	s.handleOutput(admin, out, "grant")
}

// byzBackdate signs a write at an epoch where the device could not write:
// before it was added (refused), after its removal (refused), or just
// before its removal (valid: it was a member then).
func (s *sim) byzBackdate(d *device) {
	m := d.rep.State().Members[d.id]
	if m == nil || m.Added < 2 {
		return
	}
	epoch, why := m.Added-1, "before its admission"
	if m.Removed != 0 {
		switch s.byzRng.IntN(3) {
		case 0:
			epoch, why = d.rep.State().Epoch, "after its removal"
		case 1:
			epoch, why = m.Removed-1, "just before its removal"
		}
	}
	key := fmt.Sprintf("byz/%s/backdated", d.name)
	if f := s.byzWriteAt(d, epoch, &crdt.Put{Key: key, Value: []byte(fmt.Sprintf("e%d", epoch))}); f != nil {
		s.trace("%s byz writes at epoch %d, %s", d.name, epoch, why)
		s.publish(d, []*crdt.Fact{f})
	}
}

// byzImpersonate proposes a snapshot of its real frontier with the right
// digest, naming a random honest device as proposer.
func (s *sim) byzImpersonate(d *device) {
	var honest []*device
	for _, p := range s.devs {
		if p.honest() && p.admitted {
			honest = append(honest, p)
		}
	}
	st := d.rep.Store()
	vv := st.VersionVector()
	prefix, err := st.PrefixHash(vv)
	if err != nil || len(honest) == 0 {
		return
	}
	state, err := d.rep.StateAt(vv)
	if err != nil {
		return
	}
	victim := honest[s.byzRng.IntN(len(honest))]
	p := &crdt.SnapshotProposed{ProposalID: s.randomID(), Proposer: victim.id, TargetEpoch: d.rep.State().Epoch,
		Frontier: vv, StateDigest: state.Digest(), Deadline: uint64(s.devNow(d) + s.cfg.Workload.SnapshotTimeout),
		PrefixHash: prefix}
	if f := s.byzWrite(d, p); f != nil {
		s.trace("%s byz proposal %x in the name of %s", d.name, p.ProposalID[:4], victim.name)
		s.publish(d, []*crdt.Fact{f})
	}
}

// checkProposalsAuthentic is proposal-authentic: every snapshot proposal
// in an honest device's state names the author of its fact as proposer.
func (s *sim) checkProposalsAuthentic(d *device, label string) {
	st := d.rep.State()
	ids := map[[16]byte]bool{}
	for id := range st.Proposals {
		ids[id] = true
	}
	for _, id := range sortedIDs(ids) {
		p := st.Proposals[id]
		if p.Stamp != (crdt.Stamp{}) && p.Proposal.Proposer != p.Stamp.Author {
			s.violate("proposal-authentic", d.name, "%s: proposal %x names %s as proposer, but %s signed it",
				label, id[:4], s.nameOf(p.Proposal.Proposer), s.nameOf(p.Stamp.Author))
		}
	}
}

// doctoredFold carries out the grant-epoch-ignored and
// accept-foreign-proposal defects on what an honest replica refused: the
// driver folds the fact into the live state all the same.
func (s *sim) doctoredFold(d *device, res crdt.IngestResult) {
	df := s.cfg.Defects
	if !d.honest() || d.rep == nil || !(df.GrantEpochIgnored || df.ForeignProposal) {
		return
	}
	st := d.rep.State()
	for _, r := range res.Rejected {
		f := s.truth.all[r.ID]
		if f == nil || !errors.Is(r.Err, crdt.ErrUnauthorized) {
			continue
		}
		switch f.Kind {
		case crdt.KindPut, crdt.KindDelete:
			m := st.Members[f.Author]
			if df.GrantEpochIgnored && m != nil && m.Caps[crdt.CapWrite] != 0 {
				st.ApplyChecked(f)
				s.trace("%s DEFECT folds %s seq %d at epoch %d, ignoring the epoch of its grant", d.name, s.nameOf(f.Author), f.Seq, f.Epoch)
			}
		case crdt.KindSnapshotProposed:
			b, err := f.DecodeBody()
			if p, ok := b.(*crdt.SnapshotProposed); df.ForeignProposal && err == nil && ok && p.Proposer != f.Author {
				st.ApplyChecked(f)
				s.trace("%s DEFECT folds proposal %x by %s naming %s", d.name, p.ProposalID[:4], s.nameOf(f.Author), s.nameOf(p.Proposer))
			}
		}
	}
}
