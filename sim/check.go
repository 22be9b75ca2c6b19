package sim

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"sort"
	"strings"

	"aura/crdt"
)

// The invariants (doc.go lists them with their names).

// checkCompletionFact checks a SnapshotCompleted fact an honest device
// holds.
func (s *sim) checkCompletionFact(d *device, f *crdt.Fact) {
	body, err := f.DecodeBody()
	if err != nil {
		return
	}
	s.checkCompletion(d.name, body.(*crdt.SnapshotCompleted))
}

// checkCompletion: a completion carries a valid group signature over a
// digest that equals the reduction of exactly its frontier (the branch its
// chain heads name), and its heads hash to its prefix hash.
func (s *sim) checkCompletion(holder string, c *crdt.SnapshotCompleted) {
	enc, _ := crdt.Marshal(&c.Snapshot)
	k := sha256.Sum256(append(append(enc, c.ProposalID[:]...), c.ThresholdSignature...))
	if s.checked[k] {
		return
	}
	s.checked[k] = true
	s.res.Stats.CompletionsChecked++
	id := hex4(c.ProposalID)
	sn := &c.Snapshot
	if err := s.gk.Verify(snapshotMessage(s.account, c), c.ThresholdSignature); err != nil {
		s.violate("snapshot-signature", holder, "completion %x holds no valid group signature: %v", c.ProposalID[:4], err)
		return
	}
	s.checkRemovedShare(holder, c)
	s.checkComparable(holder, c)
	if crdt.PrefixHash(sn.Frontier, sn.Heads) != sn.PrefixHash {
		s.violate("snapshot-frontier", holder, "completion %s: chain heads do not hash to its prefix hash", id)
		return
	}
	st, n, err := s.truth.stateAt(sn.Frontier, sn.Heads)
	if err == errAmbiguous {
		s.res.Stats.CompletionsUnchecked++
		return
	}
	if err != nil {
		s.violate("snapshot-frontier", holder, "completion %s: %v", id, err)
		return
	}
	if got := st.Digest(); got != sn.StateDigest {
		s.violate("snapshot-digest", holder, "completion %s signs digest %s, but the %d facts under its frontier reduce to %s",
			id, sn.StateDigest.String()[:12], n, got.String()[:12])
	}
}

// signedSnapshot is a completion that carries a valid group signature.
type signedSnapshot struct {
	id       [16]byte
	frontier crdt.VersionVector
}

// checkComparable: no two completed snapshots (valid group signatures)
// have incomparable frontiers, whether or not any device rests on both
// (maintenance's cover rule). Checked as each completion is first seen.
func (s *sim) checkComparable(holder string, c *crdt.SnapshotCompleted) {
	f := c.Snapshot.Frontier
	for _, o := range s.signed {
		if o.id == c.ProposalID {
			return
		}
	}
	for _, o := range s.signed {
		if !f.Covers(o.frontier) && !o.frontier.Covers(f) {
			s.violate("snapshot-fork", holder, "snapshots %x and %x both completed with valid group signatures, and their frontiers are incomparable (%d and %d facts)",
				o.id[:4], c.ProposalID[:4], o.frontier.Total(), f.Total())
			break
		}
	}
	s.signed = append(s.signed, signedSnapshot{id: c.ProposalID, frontier: f.Clone()})
}

// checkPruned: GC never prunes above a verified frontier.
func (s *sim) checkPruned(d *device) {
	if !d.honest() || d.rep == nil {
		return
	}
	pruned := d.rep.Store().PrunedTo()
	if len(pruned.Authors()) == 0 {
		return
	}
	pid, base := d.rep.Base()
	if base == nil {
		s.violate("gc-frontier", d.name, "journal pruned to %d facts with no snapshot to rest on", pruned.Total())
		return
	}
	for _, a := range pruned.Authors() {
		if pruned[a] > base.Frontier[a] {
			s.violate("gc-frontier", d.name, "pruned %s to seq %d, above the verified frontier's %d (snapshot %x)",
				s.nameOf(a), pruned[a], base.Frontier[a], pid[:4])
		}
	}
	if ref := d.rep.State().Completed[pid]; ref != nil {
		s.checkCompletion(d.name, &ref.Completed)
	}
}

// pruneAbove is the PruneAboveFrontier defect: the driver prunes the
// journal to its version vector after a GC, past the frontier.
func (s *sim) pruneAbove(d *device) {
	vv := d.rep.Store().VersionVector()
	_, base := d.rep.Base()
	if base == nil {
		return
	}
	v := base.Frontier.Clone()
	grew := false
	for _, a := range vv.Authors() {
		if vv[a] > v[a] {
			v[a] = vv[a]
			grew = true
		}
	}
	if !grew {
		return
	}
	var n uint64
	var err error
	if s.call(d, "prune", func() { n, _, err = d.rep.Store().Prune(v) }) && err == nil {
		s.trace("%s DEFECT pruned %d facts above the frontier", d.name, n)
	}
}

// checkFinal runs the end-of-run invariants on the honest devices, all up.
func (s *sim) checkFinal(label string) {
	s.checkBlobsFinal(label)
	hs := s.honestUp()
	if len(hs) == 0 {
		return
	}
	// convergence: one state digest.
	groups := map[crdt.Hash][]string{}
	var order []crdt.Hash
	for _, d := range hs {
		h := d.rep.State().Digest()
		if groups[h] == nil {
			order = append(order, h)
		}
		groups[h] = append(groups[h], d.name)
	}
	if len(order) > 1 {
		var parts []string
		for _, h := range order {
			parts = append(parts, fmt.Sprintf("{%s}=%s", strings.Join(groups[h], ","), h.String()[:8]))
		}
		a, b := s.byName(groups[order[0]][0]), s.byName(groups[order[1]][0])
		s.violate("convergence", "", "%s: honest devices disagree: %s; %s vs %s: %s", label, strings.Join(parts, " "),
			a.name, b.name, stateDiff(s, a.rep.State(), b.rep.State()))
	}
	s.checkForks(hs, label)
	s.checkAdminOverride(hs, label)
	s.checkOracle(hs, label)
	s.checkExactlyOnce(label)
	for _, d := range hs {
		// every completion valid
		st := d.rep.State()
		ids := make([][16]byte, 0, len(st.Completed))
		for id := range st.Completed {
			ids = append(ids, id)
		}
		sort.Slice(ids, func(i, j int) bool { return bytes.Compare(ids[i][:], ids[j][:]) < 0 })
		for _, id := range ids {
			c := st.Completed[id].Completed
			s.checkCompletion(d.name, &c)
		}
		s.checkPruned(d)
		// fences released, buffers drained
		if pid, _, open := d.rep.Fence(); open {
			s.violate("fence-released", d.name, "%s: fence of proposal %x still up", label, pid[:4])
		}
		if n := d.rep.Buffered(); n > 0 {
			s.violate("fence-released", d.name, "%s: %d writes still buffered behind the fence", label, n)
		}
		s.checkNoLoss(d, label)
		s.checkProposalsAuthentic(d, label)
	}
}

// checkNoLoss: every fact an honest device committed is in d's journal or
// under d's base snapshot frontier, and every acknowledged application
// write is visible with its last value.
func (s *sim) checkNoLoss(d *device, label string) {
	st := d.rep.Store()
	pruned := st.PrunedTo()
	_, base := d.rep.Base()
	lost := 0
	var first string
	for _, f := range s.truth.honest {
		if ok, err := st.Has(f.ID()); err == nil && ok {
			continue
		}
		if f.Seq <= pruned[f.Author] && base != nil && f.Seq <= base.Frontier[f.Author] {
			continue
		}
		if lost == 0 {
			first = fmt.Sprintf("%s seq %d (%s)", s.nameOf(f.Author), f.Seq, f.Kind)
		}
		lost++
	}
	if lost > 0 {
		s.violate("no-fact-lost", d.name, "%s: %d honest facts neither in the journal nor under the snapshot, first %s", label, lost, first)
	}
	state := d.rep.State()
	missing, stale := 0, 0
	first = ""
	for _, k := range s.truth.keys {
		if s.truth.maybe[k] {
			continue
		}
		want := s.truth.writes[k]
		got, ok := state.Value(k)
		switch {
		case !ok:
			missing++
		case string(got) != want:
			stale++
		default:
			continue
		}
		if first == "" {
			first = fmt.Sprintf("%s: want %q, have %q (set=%t)", k, want, got, ok)
		}
	}
	if missing+stale > 0 {
		s.violate("no-write-lost", d.name, "%s: %d acknowledged writes missing, %d with an older value; first %s", label, missing, stale, first)
	}
}

func (s *sim) byName(n string) *device {
	for _, d := range s.devs {
		if d.name == n {
			return d
		}
	}
	return nil
}

// stateDiff names the first few differences between two states.
func stateDiff(s *sim, a, b *crdt.State) string {
	var out []string
	add := func(format string, args ...any) {
		if len(out) < 4 {
			out = append(out, fmt.Sprintf(format, args...))
		}
	}
	if a.Epoch != b.Epoch {
		add("epoch %d vs %d", a.Epoch, b.Epoch)
	}
	if a.SnapshotEpoch != b.SnapshotEpoch {
		add("snapshot epoch %d vs %d", a.SnapshotEpoch, b.SnapshotEpoch)
	}
	keys := map[string]bool{}
	for k := range a.KV {
		keys[k] = true
	}
	for k := range b.KV {
		keys[k] = true
	}
	var ks []string
	for k := range keys {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	for _, k := range ks {
		ea, eb := a.KV[k], b.KV[k]
		switch {
		case ea == nil:
			add("key %s only in the second (%q)", k, eb.Value)
		case eb == nil:
			add("key %s only in the first (%q)", k, ea.Value)
		case !bytes.Equal(ea.Value, eb.Value) || ea.Deleted != eb.Deleted || ea.Stamp != eb.Stamp:
			add("key %s: %q vs %q", k, ea.Value, eb.Value)
		}
	}
	diffIDs := func(what string, x, y map[[16]byte]bool) {
		for _, id := range sortedIDs(x) {
			if !y[id] {
				add("%s %x only in the first", what, id[:4])
			}
		}
		for _, id := range sortedIDs(y) {
			if !x[id] {
				add("%s %x only in the second", what, id[:4])
			}
		}
	}
	pa, pb := map[[16]byte]bool{}, map[[16]byte]bool{}
	for id := range a.Proposals {
		pa[id] = true
	}
	for id := range b.Proposals {
		pb[id] = true
	}
	diffIDs("proposal", pa, pb)
	for _, id := range sortedIDs(pa) {
		p := a.Proposals[id]
		if q := b.Proposals[id]; q != nil && (len(p.Votes) != len(q.Votes) || p.Abandoned != q.Abandoned || p.Stamp != q.Stamp) {
			add("proposal %x: %d votes abandoned=%t vs %d votes abandoned=%t", id[:4], len(p.Votes), p.Abandoned, len(q.Votes), q.Abandoned)
		}
	}
	ca, cb := map[[16]byte]bool{}, map[[16]byte]bool{}
	for id := range a.Completed {
		ca[id] = true
	}
	for id := range b.Completed {
		cb[id] = true
	}
	diffIDs("completion", ca, cb)
	if len(a.Members) != len(b.Members) {
		add("%d vs %d members", len(a.Members), len(b.Members))
	}
	if len(out) == 0 {
		ea, eb := a.Encode(), b.Encode()
		add("encodings of %d and %d bytes differ elsewhere", len(ea), len(eb))
	}
	return strings.Join(out, "; ")
}

func sortedIDs(m map[[16]byte]bool) [][16]byte {
	out := make([][16]byte, 0, len(m))
	for id := range m {
		out = append(out, id)
	}
	sort.Slice(out, func(i, j int) bool { return bytes.Compare(out[i][:], out[j][:]) < 0 })
	return out
}

// checkForks names honest devices that rest on snapshots whose frontiers
// are incomparable: neither can catch up with the other (sync stops at
// pruned floors, and restoring onto a snapshot that does not cover the
// base would drop what only the base covers).
func (s *sim) checkForks(hs []*device, label string) {
	for i, a := range hs {
		pa, ba := a.rep.Base()
		if ba == nil {
			continue
		}
		for _, b := range hs[i+1:] {
			pb, bb := b.rep.Base()
			if bb == nil || pa == pb || ba.Frontier.Covers(bb.Frontier) || bb.Frontier.Covers(ba.Frontier) {
				continue
			}
			s.violate("snapshot-fork", "", "%s: %s rests on snapshot %x and %s on %x, whose frontiers are incomparable (%d and %d facts): both completed",
				label, a.name, pa[:4], b.name, pb[:4], ba.Frontier.Total(), bb.Frontier.Total())
			return
		}
	}
}

// checkRestored is restore-newest: a device that reports a restore done
// holds the newest completed snapshot any device it synced with held at
// the time (what their sync replies and snapshot answers carried, this
// incarnation), unless that one forks from the snapshot it rests on
// (snapshot-fork's concern). Holding it means its journal reaches the
// snapshot's frontier, so nothing under it is left to restore.
func (s *sim) checkRestored(d *device, restored *crdt.SnapshotCompleted) {
	s.res.Stats.RestoresChecked++
	n := d.heard
	if !d.honest() || n == nil || d.rep == nil {
		return
	}
	if _, base := d.rep.Base(); base != nil && !n.Snapshot.Frontier.Covers(base.Frontier) {
		return
	}
	if d.rep.Store().VersionVector().Covers(n.Snapshot.Frontier) {
		return
	}
	if s.gk.Verify(snapshotMessage(s.account, n), n.ThresholdSignature) != nil {
		return // a forgery a doctored replica accepted: snapshot-signature's concern
	}
	s.violate("restore-newest", d.name, "restore of %x (epoch %d, %d facts) reported done, yet a device it synced with held %x (epoch %d, %d facts), which its journal does not reach",
		restored.ProposalID[:4], restored.Snapshot.Epoch, restored.Snapshot.Frontier.Total(), n.ProposalID[:4], n.Snapshot.Epoch, n.Snapshot.Frontier.Total())
}
