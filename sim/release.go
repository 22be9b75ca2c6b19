package sim

import (
	"strings"
)

// Crashes inside the writer fence's release (Faults.Release, "release=P"
// in a spec). A release commits the writes buffered behind the fence, one
// by one, in durable steps: record the seq the write is about to get (a
// Meta put of its buffer entry), commit the fact (a KV batch), drop the
// entry (a Meta delete); then drop the fence record. Random crashes
// almost never land there, so this fault aims at it: when a device's core
// call starts releasing (its first write to a buffer entry outside a
// `write` call), it is armed, with chance P, to crash just before one of
// the release's durable steps, each equally likely. The restarted replica
// finds the fence and the rest of the buffer and releases again; the
// exactly-once invariant (exactly.go) then checks that no write was
// committed twice or lost.

// bufferPrefix is the prefix of the buffered writes' keys in a replica's
// Meta (maintenance/snapshot.go, metaBuffer). TestReleaseCrashes fails if
// it goes stale: no release crash would strike.
const bufferPrefix = "buf/"

// beforeMetaWrite runs before every durable Meta write of d (before its
// crash point): it arms a crash inside a release that is starting, and
// carries out the buffer-seq-lost defect. It reports whether the write
// should be dropped.
func (s *sim) beforeMetaWrite(d *device, key string, isPut bool) (drop bool) {
	if !strings.HasPrefix(key, bufferPrefix) || d.callKind == "write" || d.callKind == "" {
		return false
	}
	if !d.inRelease {
		d.inRelease = true
		s.armRelease(d)
	}
	if isPut && s.cfg.Defects.BufferSeqLost && d.honest() {
		if old, _ := d.meta.Get(key); old != nil {
			s.trace("%s DEFECT drops the seq record of %s", d.name, key)
			return true
		}
	}
	return false
}

// armRelease arms d, with chance Faults.Release, to crash before one of
// the durable steps of the release now starting.
func (s *sim) armRelease(d *device) {
	f := s.cfg.Faults
	if f.Release <= 0 || s.phase != phaseActive || !d.honest() || d.shielded || d.armed >= 0 {
		return
	}
	if s.faultRng.Float64() >= f.Release {
		return
	}
	n := 0
	_ = d.meta.Scan(bufferPrefix, func(string, []byte) error { n++; return nil })
	steps := 3*n + 1 // per write: record seq, commit, drop entry; then the fence
	d.armed, d.armedDur, d.releaseArmed = s.faultRng.IntN(steps), 1000+s.faultRng.Int64N(7000), true
	s.res.Stats.ReleaseArmed++
	s.trace("fault arm %s to crash inside the release of %d buffered writes, before durable step %d of %d", d.name, n, d.armed+1, steps)
}

// endCall clears what beforeMetaWrite kept for one core call: a release
// crash that found no durable step left is disarmed.
func (d *device) endCall() {
	d.callKind, d.inRelease = "", false
	if d.releaseArmed {
		d.releaseArmed = false
		d.armed = -1
	}
}
