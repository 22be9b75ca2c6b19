package sim

import (
	"aura/crdt"
	"aura/maintenance"
)

// A crash can also strike in the middle of a core call: the device's disk
// (its journal's KV and its Meta) counts durable writes, and an armed
// device dies just before the write it was armed for, with a panic that
// unwinds the call. What earlier writes committed stays; the rest of the
// call never happens. This is how a real process dies between two fsyncs.

// midCrash is the panic value of a crash point.
type midCrash struct{}

// crashPoint is called before every durable write of d: it panics when the
// armed crash is due.
func (d *device) crashPoint() {
	if d.armed < 0 || d.shielded {
		return
	}
	if d.armed == 0 {
		d.armed = -1
		panic(midCrash{})
	}
	d.armed--
}

// diskKV is a device's journal KV with crash points on batch commits.
type diskKV struct {
	*crdt.MemKV
	d *device
}

func (k diskKV) NewBatch() crdt.KVBatch { return diskBatch{KVBatch: k.MemKV.NewBatch(), d: k.d} }

type diskBatch struct {
	crdt.KVBatch
	d *device
}

func (b diskBatch) Commit(sync bool) error {
	b.d.crashPoint()
	return b.KVBatch.Commit(sync)
}

// diskMeta is a device's Meta with crash points on writes.
type diskMeta struct {
	*maintenance.MemMeta
	d *device
	s *sim
}

func (m diskMeta) Put(key string, value []byte) error {
	drop := m.s.beforeMetaWrite(m.d, key, true)
	m.d.crashPoint()
	if drop {
		return nil
	}
	return m.MemMeta.Put(key, value)
}

func (m diskMeta) Delete(key string) error {
	m.s.beforeMetaWrite(m.d, key, false)
	m.d.crashPoint()
	return m.MemMeta.Delete(key)
}

// call runs one core call on d; a crash point reached inside it crashes
// the device (the call's outputs are lost with it) and call reports false.
// Calls of a kind listed in Faults.MidCallSkip are shielded.
func (s *sim) call(d *device, kind string, fn func()) (ok bool) {
	d.callKind = kind
	defer d.endCall()
	if s.cfg.Faults.skipMidCall(kind) {
		d.shielded = true
		defer func() { d.shielded = false }()
	}
	defer func() {
		if r := recover(); r != nil {
			if m, isFold := r.(*maintenance.FoldMismatch); isFold {
				// The core's state would depend on the order facts came
				// in: reported, and the device goes on (its call's outputs
				// are lost, as in a crash).
				s.violate("fold-order", d.name, "%s", m.Detail)
				ok = false
				return
			}
			if _, mid := r.(midCrash); !mid {
				panic(r)
			}
			s.res.Stats.MidCallCrashes++
			if d.releaseArmed {
				s.res.Stats.ReleaseCrashes++
			}
			s.crash(d, d.armedDur, "in the middle of a call")
			ok = false
		}
	}()
	fn()
	return true
}
