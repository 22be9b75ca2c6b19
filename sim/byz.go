package sim

import (
	"crypto/ed25519"
	"encoding/binary"

	"aura/crdt"
	"aura/maintenance"
	"aura/threshold"
)

// byzantine is what a Byzantine device adds to the replica it runs: its
// own writer (so it can sign anything it likes with its member key), a
// stranger's writer (a key that is no member), and its threshold share.
type byzantine struct {
	modes  ByzMode
	w      *crdt.Writer
	sw     *crdt.Writer
	share  *threshold.Share
	votes  map[[16]byte]bool
	equivs int
}

// maxEquivocations bounds equivocations per Byzantine device and run, so
// the ground truth can still tell which branch a snapshot took.
const maxEquivocations = 6

func (s *sim) byzSetup(d *device) {
	b := d.byz
	b.share = d.share
	b.w = crdt.NewWriter(d.key, s.account, d.rep.Store().VersionVector()[d.id], 0)
	b.sw = crdt.NewWriter(s.stranger, s.account, 0, 0)
	d.rep.SetShare(nil)
}

// byzWrite signs body with the Byzantine device's own key at its next
// seq, feeds it to its own replica, and returns it.
func (s *sim) byzWrite(d *device, body crdt.Body) *crdt.Fact {
	epoch := d.rep.State().Epoch
	switch body.Kind() {
	case crdt.KindDeviceAdded, crdt.KindDeviceRemoved, crdt.KindCapabilityGrant:
		epoch++
	}
	return s.byzWriteAt(d, epoch, body)
}

// byzWriteAt is byzWrite at an epoch of the device's choosing.
func (s *sim) byzWriteAt(d *device, epoch uint64, body crdt.Body) *crdt.Fact {
	b := d.byz
	b.w.Observe(s.maxLamport(d))
	f, err := b.w.Write(epoch, body)
	if err != nil {
		s.trace("%s byz write %s: %v", d.name, body.Kind(), err)
		return nil
	}
	s.truth.add(f)
	if _, out, err := d.rep.Receive(s.devNow(d), []*crdt.Fact{f}); err == nil {
		s.handleOutput(d, out, "byz")
	}
	s.res.Stats.ByzActs++
	return f
}

// maxLamport is the highest Lamport time d's journal heads carry.
func (s *sim) maxLamport(d *device) uint64 {
	var m uint64
	st := d.rep.Store()
	vv := st.VersionVector()
	for _, a := range vv.Authors() {
		if f, err := st.BySeq(a, vv[a]); err == nil && f.Lamport > m {
			m = f.Lamport
		}
	}
	return m
}

// byzReact: a Byzantine device with badpartial votes on every proposal it
// sees with an invalid partial of the right length and its own index.
func (s *sim) byzReact(d *device, added []*crdt.Fact) {
	s.thiefReact(d, added)
	b := d.byz
	if b.modes&ByzBadPartial == 0 || (s.phase != phaseActive && s.phase != phaseProbe) {
		return
	}
	for _, f := range added {
		if f.Kind != crdt.KindSnapshotProposed || f.Author == d.id {
			continue
		}
		body, err := f.DecodeBody()
		if err != nil {
			continue
		}
		p := body.(*crdt.SnapshotProposed)
		if b.votes[p.ProposalID] {
			continue
		}
		b.votes[p.ProposalID] = true
		partial := s.badPartial(d, p)
		v := s.byzWrite(d, &crdt.SnapshotVote{ProposalID: p.ProposalID, StateDigest: p.StateDigest, Partial: partial})
		if v != nil {
			s.trace("%s byz bad partial for %x", d.name, p.ProposalID[:4])
			s.publish(d, []*crdt.Fact{v})
		}
	}
}

// badPartial is either garbage bytes behind the device's index, or a valid
// curve point that signs another message (it passes every structural
// check and fails only the pairing).
func (s *sim) badPartial(d *device, p *crdt.SnapshotProposed) []byte {
	b := d.byz
	if s.byzRng.IntN(2) == 0 {
		other := append([]byte("not the snapshot message"), p.ProposalID[:]...)
		if part, err := threshold.SignPartial(b.share, other); err == nil {
			return part
		}
	}
	out := make([]byte, threshold.PartialLen(threshold.NewBN256()))
	binary.BigEndian.PutUint16(out, uint16(b.share.Index()))
	for i := 2; i < len(out); i++ {
		out[i] = byte(s.byzRng.IntN(256))
	}
	return out
}

// onByz: a Byzantine device acts now and then.
func (s *sim) onByz(e *event) {
	d := s.devs[e.dev]
	if !s.alive(d, e.inc) || s.phase != phaseActive {
		return
	}
	s.at(s.expDelay(s.byzRng, 2000), &event{kind: evByz, dev: d.idx, inc: d.inc})
	b := d.byz
	var acts []func(*device)
	if b.modes&ByzLie != 0 {
		acts = append(acts, s.byzLie)
	}
	if b.modes&ByzEquivocate != 0 && b.equivs < maxEquivocations {
		acts = append(acts, s.byzEquivocate)
	}
	if b.modes&ByzUnauth != 0 {
		acts = append(acts, s.byzMembership, s.byzForge)
	}
	if b.modes&(ByzUnauth|ByzStranger) != 0 {
		acts = append(acts, s.byzStranger)
	}
	if b.modes&ByzBackdate != 0 {
		acts = append(acts, s.byzBackdate)
	}
	if b.modes&ByzImpersonate != 0 {
		acts = append(acts, s.byzImpersonate)
	}
	if len(acts) == 0 {
		return
	}
	s.res.Stats.DeviceEvents++
	acts[s.byzRng.IntN(len(acts))](d)
}

func (s *sim) randomID() [16]byte {
	var id [16]byte
	binary.BigEndian.PutUint64(id[:8], s.byzRng.Uint64())
	binary.BigEndian.PutUint64(id[8:], s.byzRng.Uint64())
	return id
}

func (s *sim) randomHash() crdt.Hash {
	var h crdt.Hash
	for i := 0; i < len(h); i += 8 {
		binary.BigEndian.PutUint64(h[i:], s.byzRng.Uint64())
	}
	return h
}

// byzLie proposes a snapshot of its real frontier with a wrong digest.
func (s *sim) byzLie(d *device) {
	st := d.rep.Store()
	vv := st.VersionVector()
	prefix, err := st.PrefixHash(vv)
	if err != nil {
		return
	}
	p := &crdt.SnapshotProposed{ProposalID: s.randomID(), Proposer: d.id, TargetEpoch: d.rep.State().Epoch,
		Frontier: vv, StateDigest: s.randomHash(), Deadline: uint64(s.devNow(d) + s.cfg.Workload.SnapshotTimeout),
		PrefixHash: prefix}
	if f := s.byzWrite(d, p); f != nil {
		s.trace("%s byz lying proposal %x", d.name, p.ProposalID[:4])
		s.publish(d, []*crdt.Fact{f})
	}
}

// byzEquivocate signs two different facts with one seq and sends one to
// half of its peers, the other to the rest.
func (s *sim) byzEquivocate(d *device) {
	b := d.byz
	b.equivs++
	key := "byz/" + d.name + "/eq" + string(rune('a'+b.equivs))
	f1 := s.byzWrite(d, &crdt.Put{Key: key, Value: []byte("one")})
	if f1 == nil {
		return
	}
	f2, err := crdt.NewFact(d.key, s.account, f1.Seq, f1.Epoch, f1.Lamport, &crdt.Put{Key: key, Value: []byte("two")})
	if err != nil {
		return
	}
	s.truth.add(f2)
	s.trace("%s byz equivocates at seq %d", d.name, f1.Seq)
	if s.syncMode {
		s.publish(d, []*crdt.Fact{f1})
		return
	}
	m1 := &message{kind: msgGossip, facts: []*crdt.Fact{f1}}
	m2 := &message{kind: msgGossip, facts: []*crdt.Fact{f2}}
	for _, p := range s.devs {
		if p == d {
			continue
		}
		if p.idx%2 == 0 {
			s.send(d, p, m1)
		} else {
			s.send(d, p, m2)
		}
	}
}

// byzStranger writes from a key that is no member of the account.
func (s *sim) byzStranger(d *device) {
	b := d.byz
	b.sw.Observe(s.maxLamport(d))
	f, err := b.sw.Write(d.rep.State().Epoch, &crdt.Put{Key: "stranger/" + d.name, Value: []byte("intruder")})
	if err != nil {
		return
	}
	s.truth.add(f)
	s.res.Stats.ByzActs++
	s.trace("%s byz publishes a stranger's fact", d.name)
	s.publish(d, []*crdt.Fact{f})
}

// byzMembership: a member without the admin capability adds a device.
func (s *sim) byzMembership(d *device) {
	id := crdt.DeviceIDFromKey(s.stranger.Public().(ed25519.PublicKey))
	if f := s.byzWrite(d, &crdt.DeviceAdded{Device: id, Capabilities: crdt.AllCapabilities, Name: "intruder"}); f != nil {
		s.trace("%s byz admits a stranger without the admin capability", d.name)
		s.publish(d, []*crdt.Fact{f})
	}
}

// byzForge publishes a snapshot completion with a forged threshold
// signature over a made-up digest of its frontier.
func (s *sim) byzForge(d *device) {
	st := d.rep.Store()
	vv := st.VersionVector()
	heads := map[crdt.DeviceID]crdt.Hash{}
	for _, a := range vv.Authors() {
		h, err := st.ChainHash(a, vv[a])
		if err != nil {
			return
		}
		heads[a] = h
	}
	sig := make([]byte, 64)
	for i := range sig {
		sig[i] = byte(s.byzRng.IntN(256))
	}
	digest := s.randomHash()
	c := &crdt.SnapshotCompleted{ProposalID: s.randomID(), Participants: []crdt.DeviceID{d.id}, ThresholdSignature: sig,
		Snapshot: crdt.SnapshotV1{Epoch: d.rep.State().Epoch, Frontier: vv, StateDigest: digest,
			BlobCID: maintenance.MemCID(digest[:]), BlobSize: 1, PrefixHash: crdt.PrefixHash(vv, heads), Heads: heads}}
	if f := s.byzWrite(d, c); f != nil {
		s.trace("%s byz forges completion %x", d.name, c.ProposalID[:4])
		s.publish(d, []*crdt.Fact{f})
	}
}
