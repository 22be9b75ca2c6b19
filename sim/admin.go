package sim

import (
	"bytes"
	"fmt"
	"sort"

	"aura/crdt"
	"aura/maintenance"
)

// AdminWorkload is the admin replacement workload (issue 11 item 6,
// `--admin-replace K`, which also turns fresh devices off): 3 s into the run, every honest device that is up advertises its
// protocols (DeviceMetadata, which the core's session check needs), then
// Candidates honest devices other than the admin d0 each ask to replace
// d0 by themselves (maintenance.Replica.ProposeAdminReplace, `aura-cli
// admin replace --new SELF`), and every other honest device's operator
// approves one of them at random (ApproveAdminReplace, `--approve`). With
// more than one candidate the requests compete; with M ≤ N/2 two of them
// can both complete. Off when Candidates is 0.
//
// Fresh admissions (onAdmit) go through the device the ground truth names
// as admin. (Admin acts of a losing new admin, made before it learns of
// the winner, are a known race of competing replacements, crdt/admin.go;
// the workload does not make them.)
type AdminWorkload struct {
	Candidates int
}

// adminAt is when the workload starts, ms after the start of the run.
const adminAt = 3000

// scheduleAdmin puts the workload on the timeline (setup).
func (s *sim) scheduleAdmin() {
	if s.cfg.Workload.Admin.Candidates > 0 {
		s.at(adminAt, &event{kind: evReplace})
	}
}

// adminStart is the evReplace event.
func (s *sim) adminStart() {
	w := s.cfg.Workload.Admin
	if w.Candidates <= 0 || s.phase != phaseActive {
		return
	}
	s.res.Stats.DeviceEvents++
	var up []*device
	for _, d := range s.devs {
		if d.honest() && d.admitted && d.up && d.rep != nil && !d.absent {
			up = append(up, d)
		}
	}
	for _, d := range up {
		var out maintenance.Output
		var err error
		if !s.call(d, "admin-meta", func() {
			out, err = d.rep.WriteMeta(&crdt.DeviceMetadata{Name: d.name, SupportedProtocols: []string{maintenance.BaseProtocol}, UpgradePolicy: crdt.PolicyManual})
		}) {
			continue
		}
		if err != nil {
			s.trace("%s metadata refused: %v", d.name, err)
			continue
		}
		s.handleOutput(d, out, "admin-meta")
	}
	var cands []*device
	for _, d := range up {
		if d.idx != 0 && d.rep != nil {
			cands = append(cands, d)
		}
	}
	s.workRng.Shuffle(len(cands), func(i, j int) { cands[i], cands[j] = cands[j], cands[i] })
	cands = cands[:min(w.Candidates, len(cands))]
	if len(cands) == 0 {
		return
	}
	s.schedule("admin replacement: %d candidates", len(cands))
	isCand := map[int]bool{}
	for _, c := range cands {
		isCand[c.idx] = true
	}
	// Approvals first (they wait for the request), then the requests.
	for _, d := range up {
		if isCand[d.idx] || d.rep == nil {
			continue
		}
		c := cands[s.workRng.IntN(len(cands))]
		var out maintenance.Output
		var err error
		if !s.call(d, "admin-approve", func() { out, err = d.rep.ApproveAdminReplace(s.devNow(d), c.id) }) {
			continue
		}
		s.trace("%s approves admin %s: %v", d.name, c.name, err)
		s.handleOutput(d, out, "admin-approve")
	}
	for _, c := range cands {
		if c.rep == nil || !c.up {
			continue
		}
		var out maintenance.Output
		var err error
		if !s.call(c, "admin-propose", func() { out, _, err = c.rep.ProposeAdminReplace(s.devNow(c), c.id) }) {
			continue
		}
		if err != nil {
			s.trace("%s admin request refused: %v", c.name, err)
			continue
		}
		s.handleOutput(c, out, "admin-propose")
	}
}

// expectedOverrides is the oracle of admin-override: recomputed from the
// ground truth, not from any replica's fold. Every AdminReplaced fact a
// member signed whose threshold signature verifies under the
// account's group key competes for its previous admin; the lowest
// activation epoch wins, then the lowest new admin id (DESIGN §6, the rule
// written in crdt/admin.go).
func (s *sim) expectedOverrides() map[crdt.DeviceID]crdt.AdminOverride {
	want := map[crdt.DeviceID]crdt.AdminOverride{}
	for _, f := range s.truth.all {
		if a := s.byID[f.Author]; f.Kind != crdt.KindAdminReplaced || a == nil || !a.admitted {
			continue
		}
		b, err := f.DecodeBody()
		if err != nil {
			continue
		}
		r := b.(*crdt.AdminReplaced)
		if f.Epoch != r.ActivationEpoch || s.truth.verify(s.gk.Bytes(), crdt.AdminReplaceMessage(s.account, r), r.ThresholdSignature) != nil {
			continue
		}
		cur, ok := want[r.Previous]
		if !ok || r.ActivationEpoch < cur.ActivationEpoch ||
			(r.ActivationEpoch == cur.ActivationEpoch && bytes.Compare(r.New[:], cur.New[:]) < 0) {
			want[r.Previous] = crdt.AdminOverride{New: r.New, ActivationEpoch: r.ActivationEpoch}
		}
	}
	return want
}

// adminDevice is the device the ground truth names admin: d0 followed
// through the expected overrides.
func (s *sim) adminDevice() *device {
	want := s.expectedOverrides()
	a := s.devs[0]
	for range len(want) + 1 {
		o, ok := want[a.id]
		if !ok || s.byID[o.New] == nil {
			break
		}
		a = s.byID[o.New]
	}
	return a
}

// checkAdminOverride is the invariant admin-override: one admin override
// wins on every device. Each honest device's fold (State.AdminReplacements)
// and what it keeps under maintenance:admin_override equal the oracle's.
func (s *sim) checkAdminOverride(hs []*device, label string) {
	want := s.expectedOverrides()
	show := func(m map[crdt.DeviceID]crdt.AdminOverride) string {
		var parts []string
		for p, o := range m {
			parts = append(parts, fmt.Sprintf("%s→%s@%d", s.nameOf(p), s.nameOf(o.New), o.ActivationEpoch))
		}
		sort.Strings(parts)
		return fmt.Sprint(parts)
	}
	same := func(m map[crdt.DeviceID]crdt.AdminOverride) bool {
		if len(m) != len(want) {
			return false
		}
		for p, o := range want {
			if m[p] != o {
				return false
			}
		}
		return true
	}
	for _, d := range hs {
		if got := d.rep.State().AdminReplacements; !same(got) {
			s.violate("admin-override", d.name, "%s: state holds overrides %s, the ground truth's winner is %s", label, show(got), show(want))
			continue
		}
		saved, err := d.rep.AdminOverrides()
		if err != nil {
			s.violate("admin-override", d.name, "%s: read %s: %v", label, maintenance.MetaAdminOverride, err)
			continue
		}
		if len(want) > 0 && !same(saved) {
			s.violate("admin-override", d.name, "%s: %s holds %s, the winner is %s", label, maintenance.MetaAdminOverride, show(saved), show(want))
		}
	}
}

// adminOutput carries out the admin-persist-own defect: the driver keeps
// the first replacement its device appended and persists it under
// maintenance:admin_override after every output (as the seed's
// replace_admin_stub persists what it appends), over the core's winner.
func (s *sim) adminOutput(d *device, out maintenance.Output) {
	if !s.cfg.Defects.AdminPersistOwn || !d.honest() {
		return
	}
	for _, f := range out.Publish {
		if f.Kind != crdt.KindAdminReplaced || d.adminOwn != nil {
			continue
		}
		b, err := f.DecodeBody()
		if err != nil {
			continue
		}
		r := b.(*crdt.AdminReplaced)
		d.adminOwn, _ = crdt.Marshal(map[crdt.DeviceID]crdt.AdminOverride{r.Previous: {New: r.New, ActivationEpoch: r.ActivationEpoch}})
	}
	if d.adminOwn != nil {
		_ = d.meta.Put(maintenance.MetaAdminOverride, d.adminOwn)
	}
}
