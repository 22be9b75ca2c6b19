package sim

import (
	"errors"
	"fmt"

	"aura/crdt"
	"aura/maintenance"
)

// linkUp reports whether a and b can talk now.
func (s *sim) linkUp(a, b *device) bool {
	if !a.up || !b.up || a.rep == nil || b.rep == nil || !a.admitted || !b.admitted || a.offline || b.offline || a.absent || b.absent {
		return false
	}
	return s.partition == nil || s.partition[a.idx] == s.partition[b.idx]
}

// publish gossips facts from d to every device it can reach. In the
// synchronous phases they go to the broadcast queue instead.
func (s *sim) publish(d *device, facts []*crdt.Fact) {
	if s.syncMode {
		s.bcast = append(s.bcast, pending{from: d.idx, facts: facts})
		return
	}
	m := &message{kind: msgGossip, facts: facts}
	for _, p := range s.devs {
		if p != d {
			s.send(d, p, m)
		}
	}
}

// send puts a message on the wire from a to b, with the network faults of
// the active phase: loss, duplication, delay and reordering.
func (s *sim) send(a, b *device, m *message) {
	if !s.linkUp(a, b) {
		return
	}
	f := s.cfg.Faults
	r := s.netRng
	faults := s.phase == phaseActive
	if faults && f.Loss > 0 && r.Float64() < f.Loss {
		s.res.Stats.Lost++
		s.trace("net lost %s %s->%s", m.kind, a.name, b.name)
		return
	}
	copies := 1
	if faults && f.Dup > 0 && r.Float64() < f.Dup {
		copies = 2
		s.res.Stats.Duplicated++
	}
	for range copies {
		delay := 1 + r.Int64N(f.Delay)
		if faults && f.Reorder > 0 && r.Float64() < f.Reorder {
			delay += r.Int64N(10*f.Delay + 1)
		}
		s.at(delay, &event{kind: evDeliver, dev: b.idx, inc: b.inc, from: a.idx, fromInc: a.inc, msg: m})
	}
}

// deliver hands a message to its device, unless either end crashed since
// it was sent or the link went down meanwhile.
func (s *sim) deliver(e *event) {
	d, src := s.devs[e.dev], s.devs[e.from]
	if !s.alive(d, e.inc) || src.inc != e.fromInc || !s.linkUp(src, d) {
		s.res.Stats.Dropped++
		return
	}
	s.res.Stats.DeviceEvents++
	s.res.Stats.Delivered++
	switch e.msg.kind {
	case msgGossip:
		s.receive(d, src, e.msg.facts, "gossip")
	case msgHello:
		s.onHello(d, src, e.msg.hello)
	case msgSyncReply:
		s.onSyncReply(d, src, e.msg)
	case msgSyncFacts:
		s.receive(d, src, e.msg.facts, "sync")
	}
}

// receive ingests facts from a peer, in frames of at most 1024 facts as
// the sync protocol sends them. It returns how many facts were added.
func (s *sim) receive(d, src *device, facts []*crdt.Fact, via string) int {
	added := 0
	for len(facts) > 0 && d.rep != nil {
		n := min(len(facts), 1024)
		batch := facts[:n]
		facts = facts[n:]
		var res crdt.IngestResult
		var out maintenance.Output
		var err error
		if !s.call(d, "receive", func() { res, out, err = d.rep.Receive(s.devNow(d), batch) }) {
			return added
		}
		if err != nil {
			if errors.Is(err, maintenance.ErrNoAccount) {
				s.trace("%s <- %s %s: no account yet", d.name, src.name, via)
				return added
			}
			s.violate("internal", d.name, "receive from %s: %v", src.name, err)
			return added
		}
		added += len(res.Added)
		s.cacheInvalidate(d, maintenance.Output{}, changedBy(res), len(res.Rechained) > 0)
		for _, f := range res.Added {
			s.truth.add(f)
		}
		rej := ""
		if len(res.Rejected) > 0 {
			rej = " first-rejection: " + res.Rejected[0].Err.Error()
		}
		s.trace("%s <- %s %s n=%d added=%d dup=%d rej=%d pend=%d evid=%d%s", d.name, src.name, via, n,
			len(res.Added), res.Duplicates, len(res.Rejected), res.Pending, res.Evidence, rej)
		s.checkRejections(d, res)
		s.doctoredFold(d, res)
		s.tieByArrival(d, res)
		if d.honest() {
			for _, f := range res.Added {
				if f.Kind == crdt.KindSnapshotCompleted {
					s.checkCompletionFact(d, f)
				}
			}
		}
		s.handleOutput(d, out, via)
		if d.byz != nil {
			s.byzReact(d, res.Added)
		}
	}
	return added
}

// checkRejections: an honest device must never refuse an honest fact as
// unauthorized.
func (s *sim) checkRejections(d *device, res crdt.IngestResult) {
	if !d.honest() {
		return
	}
	for _, r := range res.Rejected {
		a := s.byID[r.Author]
		if a == nil || !a.honest() {
			continue
		}
		if errors.Is(r.Err, crdt.ErrUnauthorized) || errors.Is(r.Err, crdt.ErrBadSignature) || errors.Is(r.Err, crdt.ErrWrongAccount) {
			s.violate("honest-fact-refused", d.name, "%s seq %d refused: %v", a.name, r.Seq, r.Err)
		}
	}
}

// hello describes what d holds (the sync HELLO): crdt.Summarize, as the
// node's gossip sync sends it.
func (s *sim) hello(d *device) *hello {
	h, err := crdt.Summarize(d.rep.Store(), 0)
	if err != nil {
		s.violate("internal", d.name, "summarize: %v", err)
		return &hello{VV: crdt.VersionVector{}, Pruned: crdt.VersionVector{}}
	}
	return h
}

// missing lists the facts d holds that theirs lacks, planned by
// crdt.PlanSync exactly as the node's sync plans them, in causal order,
// then the equivocation evidence they lack.
func (s *sim) missing(d *device, theirs *hello) []*crdt.Fact {
	st := d.rep.Store()
	ranges, evidence, err := crdt.PlanSync(st, s.hello(d), theirs)
	if err != nil {
		s.violate("internal", d.name, "plan sync: %v", err)
		return nil
	}
	var out []*crdt.Fact
	for _, r := range ranges {
		err := st.Range(r.Author, r.From, r.To, func(f *crdt.Fact) error { out = append(out, f); return nil })
		if err != nil {
			s.violate("internal", d.name, "sync: read facts of %s %d..%d: %v", s.nameOf(r.Author), r.From, r.To, err)
		}
	}
	crdt.SortCausal(out)
	for _, id := range evidence {
		if f, err := st.Get(id); err == nil {
			out = append(out, f)
		}
	}
	return out
}

// behind lists the authors for which mine is below theirs' pruned floor.
func behind(mine, theirs *hello) []crdt.DeviceID { return crdt.Behind(mine, theirs) }

// onSync opens an anti-entropy session with a random reachable peer.
func (s *sim) onSync(e *event) {
	d := s.devs[e.dev]
	if !s.alive(d, e.inc) {
		return
	}
	if e.tries >= 0 && (s.phase == phaseActive || s.phase == phaseDrain) {
		w := s.cfg.Workload.SyncEvery
		s.at(w*3/4+s.workRng.Int64N(w/2+1), &event{kind: evSync, dev: d.idx, inc: d.inc})
	}
	var peers []*device
	for _, p := range s.devs {
		if p != d && s.linkUp(d, p) {
			peers = append(peers, p)
		}
	}
	if len(peers) == 0 {
		return
	}
	p := peers[s.workRng.IntN(len(peers))]
	s.res.Stats.DeviceEvents++
	s.res.Stats.Syncs++
	s.send(d, p, &message{kind: msgHello, hello: s.hello(d)})
}

func (s *sim) onHello(d, opener *device, theirs *hello) {
	if d.rep.Account().IsZero() {
		return
	}
	s.send(d, opener, &message{kind: msgSyncReply, hello: s.hello(d), facts: s.missing(d, theirs), offer: d.rep.NewestSnapshot()})
}

func (s *sim) onSyncReply(d, peer *device, m *message) {
	mine := s.hello(d)
	s.learn(d, peer, m.offer)
	s.receive(d, peer, m.facts, "sync")
	if d.rep == nil {
		return
	}
	if back := s.missing(d, m.hello); len(back) > 0 {
		s.send(d, peer, &message{kind: msgSyncFacts, facts: back})
	}
	if b := behind(mine, m.hello); len(b) > 0 {
		s.trace("%s behind %s's pruned floor for %d authors: restore", d.name, peer.name, len(b))
		s.at(1+s.netRng.Int64N(s.cfg.Faults.Delay), &event{kind: evRestore, dev: d.idx, inc: d.inc})
	}
}

// learn records the completion a peer reported: its newest, as the node's
// snapshot protocol answers (the sync reply carries it here). The device
// keeps the newest offer of each peer until it crashes, and the
// restore-newest invariant the newest of all.
func (s *sim) learn(d, from *device, c *crdt.SnapshotCompleted) {
	if c == nil {
		return
	}
	if d.heard == nil || crdt.NewerSnapshot(c, d.heard) {
		d.heard = c
	}
	for i := range d.offers {
		if d.offers[i].From == from.id {
			if crdt.NewerSnapshot(c, d.offers[i].Completion) {
				d.offers[i].Completion = c
			}
			return
		}
	}
	d.offers = append(d.offers, maintenance.Offer{From: from.id, Completion: c})
}

// restoreWanted handles Output.Restore: sync first (the facts may still be
// around), then restore what RestoreTarget picks, from the request and
// what peers offer, if that did not help.
func (s *sim) restoreWanted(d *device, req *maintenance.RestoreRequest) {
	from := s.byID[req.From]
	if from == nil {
		from = d // its own journal
	}
	s.learn(d, from, &req.Completion)
	if s.syncMode {
		_ = s.restoreNow(d)
		return
	}
	s.at(1, &event{kind: evSync, dev: d.idx, inc: d.inc, tries: -1})
	s.at(2*s.cfg.Workload.SyncEvery, &event{kind: evRestore, dev: d.idx, inc: d.inc})
}

func (s *sim) onRestore(e *event) {
	d := s.devs[e.dev]
	if !s.alive(d, e.inc) {
		return
	}
	s.res.Stats.DeviceEvents++
	if err := s.restoreNow(d); errors.Is(err, errNoSource) && e.tries < 5 {
		s.at(s.cfg.Workload.SyncEvery, &event{kind: evRestore, dev: d.idx, inc: d.inc, tries: e.tries + 1})
	}
}

// restoreNow asks every reachable device for its newest completion (the
// node's snapshot protocol), lets the replica pick the target from those
// and the offers it learned (RestoreTarget), fetches that blob from a
// reachable device that holds it (itself, then the one that offered it,
// then any) and hands it back. Nothing to restore is not an error.
func (s *sim) restoreNow(d *device) error {
	for _, p := range s.devs {
		if p != d && s.linkUp(d, p) {
			s.learn(d, p, p.rep.NewestSnapshot())
		}
	}
	var req *maintenance.RestoreRequest
	if s.cfg.Defects.RestoreOwnNewest && d.honest() {
		if c := d.rep.NewestSnapshot(); c != nil {
			req = &maintenance.RestoreRequest{Completion: *c, BlobCID: c.Snapshot.BlobCID, BlobSize: c.Snapshot.BlobSize}
		}
	} else {
		req = d.rep.RestoreTarget(d.offers)
	}
	if req == nil {
		return nil
	}
	c := &req.Completion
	if d.honest() && !d.blobs.has(req.BlobCID) {
		s.tamperedOffers(d, req.BlobCID)
	}
	var blob []byte
	from := ""
	try := func(p *device) bool {
		if p == nil || p == d || !s.linkUp(d, p) {
			return false
		}
		_, err := d.blobs.fetch(p.blobs, req.BlobCID, !s.cfg.Defects.SkipBlockCheck) // block by block, each checked
		s.checkFetched(d, p.name)
		if err != nil {
			return false
		}
		b, err := d.blobs.Get(req.BlobCID)
		if err != nil {
			return false
		}
		blob, from = b, p.name
		return true
	}
	if b, err := d.blobs.Get(req.BlobCID); err == nil {
		blob, from = b, "itself" // held already, as the node checks first
	} else if !try(s.byID[req.From]) {
		off := s.netRng.IntN(len(s.devs))
		for i := range s.devs {
			if try(s.devs[(off+i)%len(s.devs)]) {
				break
			}
		}
	}
	if blob == nil {
		s.trace("%s restore %x: %v", d.name, c.ProposalID[:4], errNoSource)
		return errNoSource
	}
	var out maintenance.Output
	var err error
	if !s.call(d, "restore", func() { out, err = d.rep.Restore(s.devNow(d), c, blob) }) {
		return nil
	}
	s.doctor(d)
	if err != nil {
		s.res.Stats.RestoreErrors++
		s.trace("%s restore %x from %s failed: %v", d.name, c.ProposalID[:4], from, err)
		if s.gk.Verify(snapshotMessage(s.account, c), c.ThresholdSignature) == nil && !errors.Is(err, maintenance.ErrBadSnapshot) {
			s.violate("restore", d.name, "restore from a valid snapshot %x (blob from %s) failed: %v", c.ProposalID[:4], from, err)
		}
		return err
	}
	s.trace("%s restored %x from %s", d.name, c.ProposalID[:4], from)
	if d == s.absence.dev && s.absence.returned {
		s.res.Stats.AbsentRestores++
	}
	s.checkRestored(d, c)
	s.handleOutput(d, out, "restore")
	if !s.syncMode {
		s.at(1, &event{kind: evSync, dev: d.idx, inc: d.inc, tries: -1})
	}
	return nil
}

func snapshotMessage(account crdt.AccountID, c *crdt.SnapshotCompleted) []byte {
	sn := &c.Snapshot
	return crdt.SnapshotMessage(account, c.ProposalID, sn.Epoch, sn.Frontier, sn.PrefixHash, sn.StateDigest)
}

func hex4(id [16]byte) string { return fmt.Sprintf("%x", id[:4]) }
