package sim

import (
	"bytes"
	"fmt"
	"sort"

	"aura/crdt"
)

// The exactly-once invariant: every application write a replica
// acknowledged (committed at once, or buffered behind a writer fence and
// committed by the release) is committed exactly once: one signed fact,
// never none, never two. A second commit of the same put carries the same
// value, so every state-level check passes it; only counting the facts
// sees it. Puts carry a value unique in the run, so each is counted on
// its own; deletes are counted per author and key. A write whose device
// crashed inside the call (Write may or may not have kept it) may be
// committed once more than acknowledged, never twice.

// writeKey names one application write: who, what, which key and value.
type writeKey struct {
	author crdt.DeviceID
	kind   crdt.Kind
	key    string
	value  string
}

// writeLedger counts acknowledged and uncertain writes (truth keeps it).
type writeLedger struct {
	acked, unsure map[writeKey]int
}

func newWriteLedger() writeLedger {
	return writeLedger{acked: map[writeKey]int{}, unsure: map[writeKey]int{}}
}

func putKey(author crdt.DeviceID, body crdt.Body) writeKey {
	switch b := body.(type) {
	case *crdt.Put:
		return writeKey{author, crdt.KindPut, b.Key, string(b.Value)}
	case *crdt.Delete:
		return writeKey{author, crdt.KindDelete, b.Key, ""}
	}
	return writeKey{author: author, kind: body.Kind()}
}

// checkExactlyOnce counts the honest Put and Delete facts of the ground
// truth against the acknowledged writes.
func (s *sim) checkExactlyOnce(label string) {
	committed := map[writeKey]int{}
	first := map[writeKey][]uint64{}
	for _, f := range s.truth.honest {
		if f.Kind != crdt.KindPut && f.Kind != crdt.KindDelete {
			continue
		}
		b, err := f.DecodeBody()
		if err != nil {
			continue
		}
		k := putKey(f.Author, b.(crdt.Body))
		committed[k]++
		first[k] = append(first[k], f.Seq)
	}
	l := &s.truth.ledger
	keys := make([]writeKey, 0, len(committed)+len(l.acked))
	for k := range committed {
		keys = append(keys, k)
	}
	for k := range l.acked {
		if committed[k] == 0 {
			keys = append(keys, k)
		}
	}
	sort.Slice(keys, func(i, j int) bool {
		a, b := keys[i], keys[j]
		if c := bytes.Compare(a.author[:], b.author[:]); c != 0 {
			return c < 0
		}
		if a.key != b.key {
			return a.key < b.key
		}
		if a.kind != b.kind {
			return a.kind < b.kind
		}
		return a.value < b.value
	})
	s.res.Stats.WritesCounted += len(l.acked)
	for _, k := range keys {
		a, u, c := l.acked[k], l.unsure[k], committed[k]
		what := fmt.Sprintf("%s %s", k.kind, k.key)
		if k.kind == crdt.KindPut {
			what += "=" + k.value
		}
		switch {
		case c > a+u:
			s.violate("exactly-once", s.nameOf(k.author), "%s: %s acknowledged %d times (%d uncertain) but committed %d times, at seqs %v",
				label, what, a, u, c, first[k])
		case c < a:
			s.violate("exactly-once", s.nameOf(k.author), "%s: %s acknowledged %d times but committed %d times", label, what, a, c)
		}
	}
}
