package sim

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"sort"
	"strings"

	"aura/crdt"
)

// The oracle (invariant "oracle") is a reference reducer written apart
// from crdt's, from the rules of DESIGN §3 and crdt/doc.go, as plainly as
// it can be: no parking, no retries, no joins of partial states. It takes
// a set of facts all at once and decides validity declaratively:
//
//   - a genesis counts when it is its account's self-certifying founding
//     fact (seq 1, epoch 1, account = AccountIDFor(author, nonce));
//   - membership facts (device added, removed, capability granted) are
//     taken epoch by epoch, lowest first: one opening epoch E counts when
//     its author held admin at E−1 by the membership facts of epochs below
//     E that counted (they cannot depend on one another: every record is
//     keyed by the epoch it starts at);
//   - any other fact counts when its author held the capability its kind
//     needs at the fact's epoch, by the final membership: a member from
//     the epoch it was added, until the epoch it was removed, holding a
//     capability from the epoch it was granted;
//   - a snapshot proposal must name its author as proposer; a completion
//     (and an admin replacement) must carry a threshold signature that
//     one of the counted group keys verifies;
//   - application keys are last-writer-wins by (Lamport, author, fact
//     id), a delete winning like a put and leaving a tombstone; a blob is
//     tombstoned from the lowest epoch of a tombstone fact naming it.
//
// At the end of a run, every honest device's state must equal the
// oracle's fold of exactly the facts it stands on: those under the
// frontier of the snapshot its journal rests on (from the ground truth,
// along the branch the snapshot's chain heads name) and the chain facts
// of its journal above that. The comparison covers what users and the
// guards rely on: identity and snapshot epochs, members (added, removed,
// capabilities by epoch), key/values (value, tombstone, stamp), blobs
// (stamp, size, tombstone epoch), group keys, completed snapshots,
// proposals (proposer, voters, abandoned) and cache floors. Admin
// replacement is not modelled yet: a state that stands on an AdminReplaced
// fact is counted unchecked (Stats.OracleUnchecked) and left to
// admin-override.

// refStamp is the oracle's own last-writer-wins order.
type refStamp struct {
	lamport uint64
	author  crdt.DeviceID
	id      crdt.FactID
}

func stampFor(f *crdt.Fact) refStamp { return refStamp{f.Lamport, f.Author, f.ID()} }

// newer reports whether a wins over b.
func (a refStamp) newer(b refStamp) bool {
	if a.lamport != b.lamport {
		return a.lamport > b.lamport
	}
	if c := bytes.Compare(a.author[:], b.author[:]); c != 0 {
		return c > 0
	}
	return bytes.Compare(a.id[:], b.id[:]) > 0
}

func (a refStamp) String() string {
	return fmt.Sprintf("(%d,%s,%s)", a.lamport, a.author.Short(), hex.EncodeToString(a.id[:4]))
}

type refMember struct {
	added   uint64            // 0: never added
	removed uint64            // 0: never removed
	caps    map[string]uint64 // capability → lowest epoch granted
}

type refEntry struct {
	value   string
	deleted bool
	stamp   refStamp
}

type refBlob struct {
	stored    bool
	stamp     refStamp
	size      uint64
	tombstone uint64 // lowest epoch of a tombstone, 0: none
}

type refProposal struct {
	proposer  crdt.DeviceID // of the lowest-stamped proposal fact
	stamp     refStamp
	has       bool
	voters    map[crdt.DeviceID]bool
	abandoned bool
}

// refState is the oracle's account state.
type refState struct {
	epoch, snapshotEpoch uint64
	members              map[crdt.DeviceID]*refMember
	overrides, newAdmins map[crdt.DeviceID]uint64
	kv                   map[string]refEntry
	blobs                map[string]*refBlob
	groupKeys            map[uint64][]byte // key epoch → public key (lowest-stamped fact)
	gkStamp              map[uint64]refStamp
	completed            map[[16]byte]bool
	proposals            map[[16]byte]*refProposal
	floors               map[string]uint64
}

// capNeeded is the capability each kind needs ("" is membership alone),
// DESIGN §3: admins manage membership and keys, writers write, proposers
// propose and abandon, voters vote, publishers publish upgrades.
func capNeeded(k crdt.Kind) string {
	switch k {
	case crdt.KindDeviceAdded, crdt.KindDeviceRemoved, crdt.KindCapabilityGrant, crdt.KindGroupKey:
		return crdt.CapAdmin
	case crdt.KindPut, crdt.KindDelete, crdt.KindBlobStored, crdt.KindBlobTombstoned, crdt.KindEnvelope, crdt.KindCacheInvalidated:
		return crdt.CapWrite
	case crdt.KindSnapshotProposed, crdt.KindSnapshotAbandoned:
		return crdt.CapSnapshotPropose
	case crdt.KindSnapshotVote:
		return crdt.CapSnapshotVote
	case crdt.KindUpgradeMetadata, crdt.KindUpgradeActivated:
		return crdt.CapUpgradePublish
	}
	return ""
}

func isMembershipKind(k crdt.Kind) bool {
	return k == crdt.KindDeviceAdded || k == crdt.KindDeviceRemoved || k == crdt.KindCapabilityGrant
}

// holds: d held capability c (c == "": was a member) at epoch e.
func (r *refState) holds(d crdt.DeviceID, c string, e uint64) bool {
	m := r.members[d]
	if m == nil || m.added == 0 || m.added > e || (m.removed != 0 && e >= m.removed) {
		return false
	}
	if c == crdt.CapAdmin {
		if from, ok := r.overrides[d]; ok && e >= from {
			return false
		}
		if from, ok := r.newAdmins[d]; ok && e >= from {
			return true
		}
	}
	if c == "" {
		return true
	}
	g, ok := m.caps[c]
	return ok && g <= e
}

func (r *refState) member(d crdt.DeviceID) *refMember {
	m := r.members[d]
	if m == nil {
		m = &refMember{caps: map[string]uint64{}}
		r.members[d] = m
	}
	return m
}

func lowest(cur, e uint64) uint64 {
	if cur == 0 || e < cur {
		return e
	}
	return cur
}

func (r *refState) grant(d crdt.DeviceID, caps []string, e uint64) {
	m := r.member(d)
	for _, c := range caps {
		if g, ok := m.caps[c]; !ok || e < g {
			m.caps[c] = e
		}
	}
}

// oracle folds fact sets; it caches decoded bodies across devices.
type oracle struct {
	s      *sim
	bodies map[crdt.FactID]any
	bad    map[crdt.FactID]bool // undecodable or badly signed
}

func newOracle(s *sim) *oracle {
	return &oracle{s: s, bodies: map[crdt.FactID]any{}, bad: map[crdt.FactID]bool{}}
}

func (o *oracle) body(f *crdt.Fact) any {
	id := f.ID()
	if b, ok := o.bodies[id]; ok {
		return b
	}
	if o.bad[id] {
		return nil
	}
	b, err := f.DecodeBody()
	if err == nil && f.VerifyOnce() != nil {
		err = crdt.ErrBadSignature
	}
	if err != nil {
		o.bad[id] = true
		return nil
	}
	o.bodies[id] = b
	return b
}

// fold is the reference reduction of a set of facts of one account.
func (o *oracle) fold(account crdt.AccountID, facts []*crdt.Fact) *refState {
	r := &refState{members: map[crdt.DeviceID]*refMember{}, overrides: map[crdt.DeviceID]uint64{},
		newAdmins: map[crdt.DeviceID]uint64{}, kv: map[string]refEntry{}, blobs: map[string]*refBlob{},
		groupKeys: map[uint64][]byte{}, gkStamp: map[uint64]refStamp{}, completed: map[[16]byte]bool{},
		proposals: map[[16]byte]*refProposal{}, floors: map[string]uint64{}}
	type item struct {
		f *crdt.Fact
		b any
	}
	var genesis, membership, rest []item
	for _, f := range facts {
		b := o.body(f)
		if b == nil || f.Account != account {
			continue
		}
		switch {
		case f.Kind == crdt.KindGenesis:
			genesis = append(genesis, item{f, b})
		case f.Epoch == 0:
		case isMembershipKind(f.Kind):
			membership = append(membership, item{f, b})
		default:
			rest = append(rest, item{f, b})
		}
	}
	for _, it := range genesis {
		g := it.b.(*crdt.Genesis)
		if it.f.Seq != 1 || it.f.Epoch != 1 || g.Threshold == 0 || crdt.AccountIDFor(it.f.Author, g.Nonce) != account {
			continue
		}
		m := r.member(it.f.Author)
		m.added = lowest(m.added, 1)
		r.grant(it.f.Author, crdt.AllCapabilities, 1)
		r.epoch = max(r.epoch, 1)
	}
	if r.epoch == 0 {
		return r // no founding fact: nothing else counts
	}
	sort.Slice(membership, func(i, j int) bool { return membership[i].f.Epoch < membership[j].f.Epoch })
	for i := 0; i < len(membership); {
		e := membership[i].f.Epoch
		j := i
		for j < len(membership) && membership[j].f.Epoch == e {
			j++
		}
		var ok []item
		for _, it := range membership[i:j] {
			if e >= 2 && r.holds(it.f.Author, crdt.CapAdmin, e-1) {
				ok = append(ok, it)
			}
		}
		for _, it := range ok {
			switch b := it.b.(type) {
			case *crdt.DeviceAdded:
				m := r.member(b.Device)
				m.added = lowest(m.added, e)
				r.grant(b.Device, b.Capabilities, e)
			case *crdt.DeviceRemoved:
				m := r.member(b.Device)
				m.removed = lowest(m.removed, e)
			case *crdt.CapabilityGrant:
				r.grant(b.Device, b.Capabilities, e)
			}
			r.epoch = max(r.epoch, e)
		}
		i = j
	}
	valid := func(it item) bool { return r.holds(it.f.Author, capNeeded(it.f.Kind), it.f.Epoch) }
	// Group keys first: completions are judged by them.
	for _, it := range rest {
		if g, isKey := it.b.(*crdt.GroupKey); isKey && valid(it) {
			st := stampFor(it.f)
			if cur, seen := r.gkStamp[g.KeyEpoch]; !seen || cur.newer(st) {
				r.groupKeys[g.KeyEpoch], r.gkStamp[g.KeyEpoch] = g.PublicKey, st
			}
		}
	}
	signed := func(msg, sig []byte) bool {
		for _, pk := range r.groupKeys {
			if o.s.truth.verify(pk, msg, sig) == nil {
				return true
			}
		}
		return false
	}
	for _, it := range rest {
		if !valid(it) {
			continue
		}
		f, st := it.f, stampFor(it.f)
		switch b := it.b.(type) {
		case *crdt.Put:
			if cur, ok := r.kv[b.Key]; !ok || st.newer(cur.stamp) {
				r.kv[b.Key] = refEntry{value: string(b.Value), stamp: st}
			}
		case *crdt.Delete:
			if cur, ok := r.kv[b.Key]; !ok || st.newer(cur.stamp) {
				r.kv[b.Key] = refEntry{deleted: true, stamp: st}
			}
		case *crdt.BlobStored:
			bl := r.blob(b.CID)
			if !bl.stored || st.newer(bl.stamp) {
				bl.stored, bl.stamp, bl.size = true, st, b.Size
			}
		case *crdt.BlobTombstoned:
			bl := r.blob(b.CID)
			bl.tombstone = lowest(bl.tombstone, f.Epoch)
		case *crdt.SnapshotProposed:
			if b.Proposer != f.Author {
				continue
			}
			p := r.proposal(b.ProposalID)
			if !p.has || p.stamp.newer(st) {
				p.proposer, p.stamp, p.has = b.Proposer, st, true
			}
		case *crdt.SnapshotVote:
			r.proposal(b.ProposalID).voters[f.Author] = true
		case *crdt.SnapshotAbandoned:
			r.proposal(b.ProposalID).abandoned = true
		case *crdt.SnapshotCompleted:
			sn := &b.Snapshot
			if signed(crdt.SnapshotMessage(account, b.ProposalID, sn.Epoch, sn.Frontier, sn.PrefixHash, sn.StateDigest), b.ThresholdSignature) {
				r.completed[b.ProposalID] = true
				r.snapshotEpoch = max(r.snapshotEpoch, sn.Epoch)
			}
		case *crdt.CacheInvalidated:
			for _, k := range b.Keys {
				r.floors[k] = max(r.floors[k], b.EpochFloor)
			}
		}
	}
	return r
}

func (r *refState) blob(cid []byte) *refBlob {
	k := hex.EncodeToString(cid)
	b := r.blobs[k]
	if b == nil {
		b = &refBlob{}
		r.blobs[k] = b
	}
	return b
}

func (r *refState) proposal(id [16]byte) *refProposal {
	p := r.proposals[id]
	if p == nil {
		p = &refProposal{voters: map[crdt.DeviceID]bool{}}
		r.proposals[id] = p
	}
	return p
}

// standsOn lists the facts d's state is the fold of: those under its base
// snapshot's frontier (the branch its heads name, from the ground truth)
// and its journal's chain facts above the pruned floor. ok is false when
// the ground truth cannot tell the branch.
func (o *oracle) standsOn(d *device) (facts []*crdt.Fact, ok bool) {
	seen := map[crdt.FactID]bool{}
	add := func(f *crdt.Fact) {
		if seen[f.ID()] {
			return
		}
		seen[f.ID()] = true
		if t := o.s.truth.all[f.ID()]; t != nil {
			f = t // the signed value: its signature is checked already
		}
		facts = append(facts, f)
	}
	if _, base := d.rep.Base(); base != nil {
		for _, a := range base.Frontier.Authors() {
			h, has := base.Heads[a]
			c, err := o.s.truth.chain(a, base.Frontier[a], h, has)
			if err != nil {
				return nil, false
			}
			for _, f := range c {
				add(f)
			}
		}
	}
	st := d.rep.Store()
	pruned, vv := st.PrunedTo(), st.VersionVector()
	for _, a := range vv.Authors() {
		if vv[a] <= pruned[a] {
			continue
		}
		if err := st.Range(a, pruned[a]+1, vv[a], func(f *crdt.Fact) error { add(f); return nil }); err != nil {
			return nil, false
		}
	}
	return facts, true
}

// checkOracle compares every honest device's state with the oracle's fold
// of the facts it stands on.
func (s *sim) checkOracle(hs []*device, label string) {
	for _, d := range hs {
		facts, ok := s.oracle.standsOn(d)
		for _, f := range facts {
			// Admin replacement (admin.go) is not modelled here yet: its
			// own invariant, admin-override, checks those states.
			ok = ok && f.Kind != crdt.KindAdminReplaced
		}
		if !ok {
			s.res.Stats.OracleUnchecked++
			continue
		}
		ref := s.oracle.fold(s.account, facts)
		s.res.Stats.OracleChecked++
		s.res.Stats.OracleFacts += len(facts)
		s.res.Stats.LamportTies += s.oracle.ties(ref, facts)
		if diff := ref.diff(s, d.rep.State()); diff != "" {
			s.violate("oracle", d.name, "%s: state differs from the reference fold of its %d facts: %s", label, len(facts), diff)
		}
	}
}

// ties counts the keys whose winning write tied on Lamport time with a
// losing write by another device (the tie the author order breaks).
func (o *oracle) ties(r *refState, facts []*crdt.Fact) int {
	n := 0
	counted := map[string]bool{}
	for _, f := range facts {
		if f.Kind != crdt.KindPut && f.Kind != crdt.KindDelete {
			continue
		}
		var key string
		switch x := o.body(f).(type) {
		case *crdt.Put:
			key = x.Key
		case *crdt.Delete:
			key = x.Key
		}
		w, ok := r.kv[key]
		if ok && !counted[key] && w.stamp.lamport == f.Lamport && w.stamp.author != f.Author {
			counted[key] = true
			n++
		}
	}
	return n
}

// diff names the first differences between the reference state and a
// device's state ("" when they agree).
func (r *refState) diff(s *sim, st *crdt.State) string {
	var out []string
	more := 0
	add := func(format string, args ...any) {
		if len(out) < 5 {
			out = append(out, fmt.Sprintf(format, args...))
		} else {
			more++
		}
	}
	if st.Epoch != r.epoch {
		add("identity epoch %d, reference %d", st.Epoch, r.epoch)
	}
	if st.SnapshotEpoch != r.snapshotEpoch {
		add("snapshot epoch %d, reference %d", st.SnapshotEpoch, r.snapshotEpoch)
	}
	// Members: the device may keep records of devices named only by
	// facts that did not count for the oracle (never added); compare the
	// records that say something.
	var ids []crdt.DeviceID
	for id := range r.members {
		ids = append(ids, id)
	}
	for id := range st.Members {
		if r.members[id] == nil {
			ids = append(ids, id)
		}
	}
	sort.Slice(ids, func(i, j int) bool { return bytes.Compare(ids[i][:], ids[j][:]) < 0 })
	for _, id := range ids {
		rm, m := r.members[id], st.Members[id]
		switch {
		case m == nil:
			add("member %s missing (reference: added %d, removed %d)", s.nameOf(id), rm.added, rm.removed)
		case rm == nil:
			add("member %s (added %d, removed %d, caps %v) that no counted fact names", s.nameOf(id), m.Added, m.Removed, m.Caps)
		case m.Added != rm.added || m.Removed != rm.removed:
			add("member %s added %d removed %d, reference added %d removed %d", s.nameOf(id), m.Added, m.Removed, rm.added, rm.removed)
		case !sameCaps(m.Caps, rm.caps):
			add("member %s capabilities %v, reference %v", s.nameOf(id), m.Caps, rm.caps)
		}
	}
	var keys []string
	for k := range r.kv {
		keys = append(keys, k)
	}
	for k := range st.KV {
		if _, ok := r.kv[k]; !ok {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	for _, k := range keys {
		re, ok := r.kv[k]
		e := st.KV[k]
		switch {
		case e == nil:
			add("key %s missing (reference %q deleted=%t by %s)", k, re.value, re.deleted, s.nameOf(re.stamp.author))
		case !ok:
			add("key %s=%q deleted=%t that no counted fact writes (by %s)", k, e.Value, e.Deleted, s.nameOf(e.Stamp.Author))
		case string(e.Value) != re.value || e.Deleted != re.deleted || e.Stamp.Lamport != re.stamp.lamport || e.Stamp.Author != re.stamp.author || e.Stamp.ID != re.stamp.id:
			add("key %s=%q deleted=%t stamp %s, reference %q deleted=%t stamp %s", k, e.Value, e.Deleted,
				refStamp{e.Stamp.Lamport, e.Stamp.Author, e.Stamp.ID}, re.value, re.deleted, re.stamp)
		}
	}
	var bks []string
	for k := range r.blobs {
		bks = append(bks, k)
	}
	for k := range st.Blobs {
		if r.blobs[k] == nil {
			bks = append(bks, k)
		}
	}
	sort.Strings(bks)
	for _, k := range bks {
		rb, b := r.blobs[k], st.Blobs[k]
		short := k[len(k)-8:]
		switch {
		case b == nil:
			add("blob …%s missing (reference tombstone %d)", short, rb.tombstone)
		case rb == nil:
			add("blob …%s (tombstone %d) that no counted fact names", short, b.Tombstone)
		case b.Tombstone != rb.tombstone:
			add("blob …%s tombstone epoch %d, reference %d", short, b.Tombstone, rb.tombstone)
		case rb.stored && (b.Size != rb.size || b.Stamp.ID != rb.stamp.id):
			add("blob …%s stored by %s, reference by %s", short, hex.EncodeToString(b.Stamp.ID[:4]), hex.EncodeToString(rb.stamp.id[:4]))
		case !rb.stored && b.Stamp != (crdt.Stamp{}):
			add("blob …%s stored, reference only tombstoned", short)
		}
	}
	var gks []string
	for e := range r.groupKeys {
		if st.GroupKeys[e] == nil {
			gks = append(gks, fmt.Sprintf("%d missing", e))
		} else if !bytes.Equal(st.GroupKeys[e].Key.PublicKey, r.groupKeys[e]) {
			gks = append(gks, fmt.Sprintf("%d differs", e))
		}
	}
	for e := range st.GroupKeys {
		if r.groupKeys[e] == nil {
			gks = append(gks, fmt.Sprintf("%d uncounted", e))
		}
	}
	if len(gks) > 0 {
		sort.Strings(gks)
		add("group keys: %s", strings.Join(gks, ", "))
	}
	for _, id := range sortedIDs(r.completed) {
		if st.Completed[id] == nil {
			add("completion %x missing", id[:4])
		}
	}
	for id := range st.Completed {
		if !r.completed[id] {
			add("completion %x that no counted fact completes", id[:4])
		}
	}
	pids := map[[16]byte]bool{}
	for id := range r.proposals {
		pids[id] = true
	}
	for id := range st.Proposals {
		pids[id] = true
	}
	for _, id := range sortedIDs(pids) {
		rp, p := r.proposals[id], st.Proposals[id]
		switch {
		case p == nil:
			add("proposal %x missing", id[:4])
		case rp == nil:
			add("proposal %x (proposer %s, by %s) that no counted fact makes", id[:4], s.nameOf(p.Proposal.Proposer), s.nameOf(p.Stamp.Author))
		case rp.has && (p.Proposal.Proposer != rp.proposer || p.Stamp.ID != rp.stamp.id):
			add("proposal %x proposer %s, reference %s", id[:4], s.nameOf(p.Proposal.Proposer), s.nameOf(rp.proposer))
		case !rp.has && p.Stamp != (crdt.Stamp{}):
			add("proposal %x has a proposal fact, reference only votes", id[:4])
		case len(p.Votes) != len(rp.voters) || p.Abandoned != rp.abandoned:
			add("proposal %x: %d votes abandoned=%t, reference %d votes abandoned=%t", id[:4], len(p.Votes), p.Abandoned, len(rp.voters), rp.abandoned)
		default:
			for v := range p.Votes {
				if !rp.voters[v] {
					add("proposal %x: vote of %s that does not count", id[:4], s.nameOf(v))
				}
			}
		}
	}
	var fks []string
	for k := range r.floors {
		fks = append(fks, k)
	}
	for k := range st.CacheFloors {
		if _, ok := r.floors[k]; !ok {
			fks = append(fks, k)
		}
	}
	sort.Strings(fks)
	for _, k := range fks {
		if st.CacheFloors[k] != r.floors[k] {
			add("cache floor of %s %d, reference %d", k, st.CacheFloors[k], r.floors[k])
		}
	}
	if more > 0 {
		out = append(out, fmt.Sprintf("and %d more", more))
	}
	return strings.Join(out, "; ")
}

func sameCaps(a, b map[string]uint64) bool {
	if len(a) != len(b) {
		return false
	}
	for c, e := range a {
		if g, ok := b[c]; !ok || g != e {
			return false
		}
	}
	return true
}
