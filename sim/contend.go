package sim

import (
	"fmt"

	"aura/crdt"
)

// Contended writes (Workload.Contend, `--contend P`): a share P of the
// application writes go to a few keys every device writes ("shared/k0"
// … "shared/k3"), a quarter of them deletes; half of them come with a
// second write of the same key by another device at the same virtual
// instant, which, the two devices' Lamport clocks being level after a
// sync, ties on Lamport time and is decided by the author order. The
// last value of a shared key is whatever last-writer-wins says, so
// no-write-lost leaves those keys to the oracle (oracle.go), which
// recomputes it, and to exactly-once, which counts every write.

// With contention on, the operator who proposes a snapshot also writes
// one to three times in the next 200 ms, while the device's writer fence
// is up: those writes are buffered and committed by the release (where
// Faults.Release aims its crashes).

// fencedBurst schedules the operator's writes behind the fence.
func (s *sim) fencedBurst(d *device) {
	for i := s.workRng.IntN(3); i >= 0; i-- {
		s.at(1+s.workRng.Int64N(200), &event{kind: evFencedWrite, dev: d.idx, inc: d.inc})
	}
}

func (s *sim) onFencedWrite(e *event) {
	d := s.devs[e.dev]
	if !s.alive(d, e.inc) || s.phase != phaseActive {
		return
	}
	s.res.Stats.DeviceEvents++
	if s.workRng.Float64() < 0.5 {
		s.contendedWrite(d)
		return
	}
	s.appWrite(d)
}

// sharedKeys is how many keys the contended writes share.
const sharedKeys = 4

func (s *sim) contendedWrite(d *device) {
	k := fmt.Sprintf("shared/k%d", s.workRng.IntN(sharedKeys))
	s.sharedWrite(d, k, s.workRng.Float64() < 0.25)
	if s.workRng.Float64() >= 0.5 {
		return
	}
	var others []*device
	for _, p := range s.honestUp() {
		if p != d && !p.absent {
			others = append(others, p)
		}
	}
	if len(others) == 0 {
		return
	}
	p := others[s.workRng.IntN(len(others))]
	s.res.Stats.ContendedPairs++
	s.sharedWrite(p, k, false)
}

// sharedWrite puts a fresh value under the shared key k, or deletes it.
func (s *sim) sharedWrite(d *device, k string, del bool) {
	if d.rep == nil {
		return
	}
	s.res.Stats.ContendedWrites++
	if del {
		s.issueWrite(d, &crdt.Delete{Key: k}, false)
		return
	}
	d.writes++
	s.issueWrite(d, &crdt.Put{Key: k, Value: []byte(fmt.Sprintf("v%d@%s", d.writes, d.name))}, false)
}

// tieByArrival is the lww-tie-arrival defect: an honest device's driver
// lets a put or delete that just entered the chain win a tie on Lamport
// time against the current entry of its key, by arrival instead of by the
// author order (it overwrites the live state's entry).
func (s *sim) tieByArrival(d *device, res crdt.IngestResult) {
	if !s.cfg.Defects.LWWTieArrival || !d.honest() || d.rep == nil {
		return
	}
	st := d.rep.State()
	for _, f := range res.Chained {
		var e *crdt.Entry
		switch b := s.oracle.body(f).(type) {
		case *crdt.Put:
			e = &crdt.Entry{Value: b.Value}
			if cur := st.KV[b.Key]; cur != nil && cur.Stamp.Lamport == f.Lamport && cur.Stamp.Author != f.Author {
				e.Stamp = crdt.Stamp{Lamport: f.Lamport, Author: f.Author, ID: f.ID()}
				st.KV[b.Key] = e
				s.trace("%s DEFECT lets %s's %s win its tie by arrival", d.name, s.nameOf(f.Author), b.Key)
			}
		case *crdt.Delete:
			if cur := st.KV[b.Key]; cur != nil && cur.Stamp.Lamport == f.Lamport && cur.Stamp.Author != f.Author {
				st.KV[b.Key] = &crdt.Entry{Deleted: true, Stamp: crdt.Stamp{Lamport: f.Lamport, Author: f.Author, ID: f.ID()}}
				s.trace("%s DEFECT lets %s's delete of %s win its tie by arrival", d.name, s.nameOf(f.Author), b.Key)
			}
		}
	}
}
