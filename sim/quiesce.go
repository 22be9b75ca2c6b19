package sim

import (
	"aura/crdt"
	"aura/maintenance"
)

// quiesce ends the run: faults stop and the network heals, crashed
// devices restart and offline ones come back; timers and anti-entropy run
// on a clean network for a round timeout and two sync periods; then synchronous rounds (every
// device ticks and syncs with every other, deliveries immediate) until
// nothing changes, and the final checks. Two liveness probes follow, each
// checked the same way.
func (s *sim) quiesce() {
	s.res.Stats.ActiveEvents = s.res.Stats.DeviceEvents
	s.res.Stats.ActiveMs = s.now - t0
	s.phase = phaseDrain
	s.trace("quiesce: faults stop, the network heals")
	for _, d := range s.devs {
		d.armed = -1
	}
	if s.partition != nil {
		s.partition = nil
		s.schedule("partition healed (quiesce)")
	}
	for _, d := range s.devs {
		if d.offline {
			d.offline = false
			s.schedule("online %s (quiesce)", d.name)
		}
	}
	s.absenceEnd("quiesce")
	for _, d := range s.devs {
		if !d.up && d.admitted && !d.dead {
			s.restart(d)
		}
	}
	for _, d := range s.devs {
		if d.up && d.rep != nil {
			s.at(1, &event{kind: evSync, dev: d.idx, inc: d.inc, tries: -1})
		}
	}
	w := s.cfg.Workload
	until := s.now + w.SnapshotTimeout + 2*w.SyncEvery
	for s.tl.len() > 0 && s.tl.q[0].at <= until {
		s.step(s.tl.pop())
	}
	s.now = until
	s.tl = timeline{}
	s.phase = phaseConverge
	s.syncMode = true
	s.converge("after the run")
	s.checkFinal("after the run")
	if len(s.res.Violations) > 0 {
		return // the probes would only add noise
	}
	s.probeLiveness()
	s.converge("after the liveness probe")
	s.checkFinal("after the liveness probe")
	if len(s.res.Violations) > 0 {
		return
	}
	s.probeWatermark()
	s.converge("after the watermark probe")
	s.checkFinal("after the watermark probe")
}

// flush delivers the broadcast queue synchronously, reactions included:
// Byzantine devices first (so their votes reach proposers before honest
// ones), then the others in index order.
func (s *sim) flush() {
	for steps := 0; len(s.bcast) > 0; steps++ {
		if steps > 200_000 {
			s.violate("convergence", "", "synchronous delivery does not terminate")
			s.bcast = nil
			return
		}
		p := s.bcast[0]
		s.bcast = s.bcast[1:]
		src := s.devs[p.from]
		for pass := 0; pass < 2; pass++ {
			for _, d := range s.devs {
				if d == src || (pass == 0) != (d.byz != nil) || !s.linkUp(src, d) {
					continue
				}
				s.res.Stats.DeviceEvents++
				s.receive(d, src, p.facts, "gossip")
			}
		}
	}
}

// up lists the member devices that are up.
func (s *sim) up() []*device {
	var out []*device
	for _, d := range s.devs {
		if d.up && d.admitted && d.rep != nil {
			out = append(out, d)
		}
	}
	return out
}

// tickAll advances the clock one tick and ticks every device.
func (s *sim) tickAll() {
	s.now += s.cfg.Workload.TickEvery
	for _, d := range s.up() {
		s.res.Stats.DeviceEvents++
		var out maintenance.Output
		if s.call(d, "tick", func() { out = d.rep.Tick(s.devNow(d)) }) {
			s.handleOutput(d, out, "tick")
		}
		s.flush()
	}
}

// syncPair runs one anti-entropy session between a and b at once.
func (s *sim) syncPair(a, b *device) int {
	ha, hb := s.hello(a), s.hello(b)
	s.res.Stats.DeviceEvents += 2
	s.res.Stats.Syncs++
	n := s.receive(a, b, s.missing(b, ha), "sync")
	n += s.receive(b, a, s.missing(a, hb), "sync")
	s.flush()
	s.learn(a, b, b.rep.NewestSnapshot())
	s.learn(b, a, a.rep.NewestSnapshot())
	if len(behind(ha, hb)) > 0 {
		_ = s.restoreNow(a)
	}
	if len(behind(hb, ha)) > 0 && b.rep != nil {
		_ = s.restoreNow(b)
	}
	s.flush()
	return n
}

// converge runs synchronous rounds until a round adds no fact, no honest
// fence is up and the honest version vectors agree.
func (s *sim) converge(label string) bool {
	w := s.cfg.Workload
	rounds := int(3*w.SnapshotTimeout/w.TickEvery) + 12
	for i := 0; i < rounds; i++ {
		facts := len(s.truth.all)
		s.tickAll()
		added := s.syncAll()
		if i > 0 && added == 0 && len(s.truth.all) == facts && s.settled() {
			s.trace("settled %s after %d rounds", label, i+1)
			return true
		}
	}
	s.violate("convergence", "", "%s: not settled after %d synchronous rounds of %d ms (facts still flowing or fences up)",
		label, rounds, w.TickEvery)
	return false
}

// settled: no honest fence up or write buffered, honest version vectors
// equal.
func (s *sim) settled() bool {
	var vv crdt.VersionVector
	for _, d := range s.honestUp() {
		if _, _, open := d.rep.Fence(); open || d.rep.Buffered() > 0 {
			return false
		}
		v := d.rep.Store().VersionVector()
		if vv == nil {
			vv = v
		} else if !vv.Equal(v) {
			return false
		}
	}
	return true
}

// shareHolders lists the honest devices of the threshold group that are up.
func (s *sim) shareHolders() []*device {
	var out []*device
	for _, d := range s.honestUp() {
		if !d.fresh && d.share != nil {
			out = append(out, d)
		}
	}
	return out
}

// probeLiveness: with N−M devices down or Byzantine, an operator's
// snapshot completes within the round timeout, and the Byzantine devices
// that voted with bad partials are named.
func (s *sim) probeLiveness() {
	s.phase = phaseProbe
	hs := s.shareHolders()
	if len(hs) < s.cfg.Threshold {
		return
	}
	p := hs[0]
	s.appWrite(p) // something new to snapshot
	s.flush()
	down := s.cfg.Nodes - s.cfg.Threshold - s.cfg.Faults.Byzantine - s.reshare.removedHolders()
	var crashed []*device
	for i := len(hs) - 1; i > 0 && len(crashed) < down; i-- {
		crashed = append(crashed, hs[i])
		s.crash(hs[i], 0, "liveness probe")
	}
	s.trace("probe: liveness with %d down and %d Byzantine", len(crashed), s.cfg.Faults.Byzantine)
	id, ok := s.propose(p, "liveness probe")
	s.flush()
	if !ok {
		s.violate("liveness", p.name, "the probe's proposal was refused")
	} else {
		deadline := s.now + s.cfg.Workload.SnapshotTimeout
		for p.rep.State().Completed[id] == nil && s.now < deadline {
			s.tickAll()
		}
		if p.rep.State().Completed[id] == nil {
			s.violate("liveness", p.name, "with %d of %d devices down and %d Byzantine, snapshot %x did not complete within %d ms",
				len(crashed), s.cfg.Nodes, s.cfg.Faults.Byzantine, id[:4], s.cfg.Workload.SnapshotTimeout)
		} else {
			// A bad vote that reached the proposer's state must have been
			// named (one held back, e.g. behind a gap in its author's
			// chain, never counts).
			ref := p.rep.State().Proposals[id]
			for _, d := range s.devs {
				if d.byz == nil || !d.byz.votes[id] || s.named[d.idx] || ref == nil {
					continue
				}
				if _, in := ref.Votes[d.id]; in {
					s.violate("byzantine-named", d.name, "its bad partial in %x reached the proposer's state, yet no honest device named it", id[:4])
				}
			}
		}
	}
	for _, d := range crashed {
		s.restart(d)
	}
}

// probeWatermark: a device whose journal passes the watermark proposes a
// snapshot by itself, even cut off from everyone (it must not wait on
// rounds it can never see end), and once back a snapshot completes.
// Byzantine devices must block neither.
func (s *sim) probeWatermark() {
	wm := s.cfg.Workload.Watermark
	if wm < 0 {
		return
	}
	hs := s.shareHolders()
	if len(hs) == 0 {
		return
	}
	s.phase = phaseProbe
	w := hs[0]
	w.offline = true
	s.schedule("offline %s (watermark probe)", w.name)
	for i := 0; int64(w.rep.Store().Stats().Bytes) <= wm && i < 20_000; i++ {
		s.appWrite(w)
	}
	size := w.rep.Store().Stats().Bytes
	s.trace("probe: watermark, journal of %s at %d bytes, offline", w.name, size)
	proposed := s.proposedBy[w.idx]
	limit := w.jitter + 3*s.cfg.Workload.TickEvery
	for deadline := s.now + limit; s.proposedBy[w.idx] == proposed && s.now < deadline; {
		s.tickAll()
	}
	if s.proposedBy[w.idx] == proposed {
		s.violate("watermark", w.name, "journal at %d bytes, past the %d-byte watermark, yet no proposal within %d ms (watermark proposals blocked by rounds that never end?)",
			size, wm, limit)
	}
	w.offline = false
	s.schedule("online %s (watermark probe)", w.name)
	before := s.res.Stats.Completed
	limit = 3*s.cfg.Workload.SnapshotTimeout + w.jitter
	for deadline := s.now + limit; s.res.Stats.Completed == before && s.now < deadline; {
		s.tickAll()
		s.syncAll()
	}
	if s.res.Stats.Completed == before {
		s.violate("watermark", w.name, "journal past the %d-byte watermark, yet no snapshot completed within %d ms of the device coming back",
			wm, limit)
	}
}

// syncAll runs a session between every pair of devices that are up; it
// returns the facts added.
func (s *sim) syncAll() int {
	added := 0
	ups := s.up()
	for _, a := range ups {
		for _, b := range ups {
			if a != b && a.rep != nil && b.rep != nil {
				added += s.syncPair(a, b)
			}
		}
	}
	return added
}
