package crdt

import (
	"fmt"
)

// Summary is what a replica tells a peer it holds, so that each side can
// send what the other lacks (anti-entropy; gossip's sync HELLO carries it,
// and the simulator exchanges it over its virtual network).
type Summary struct {
	VV     VersionVector // highest gap-free seq per author
	Pruned VersionVector // floors below which facts were collected
	// Heads are h(author, VV[author]): a peer holding that seq compares
	// them with its own chain to find chains that diverged (an equivocating
	// author whose conflicting facts each side got one of).
	Heads    map[DeviceID]Hash
	Evidence []FactID // both ids of every equivocation held (up to a bound)
}

// Summarize describes what st holds, listing at most maxEvidence evidence
// ids (0: no bound).
func Summarize(st Store, maxEvidence int) (*Summary, error) {
	s := &Summary{VV: VersionVector{}, Pruned: VersionVector{}, Heads: map[DeviceID]Hash{}}
	for a, n := range st.VersionVector() {
		if n == 0 {
			continue
		}
		s.VV[a] = n
		h, err := st.ChainHash(a, n)
		if err != nil {
			return nil, fmt.Errorf("summarize: chain head of %s: %w", a.Short(), err)
		}
		s.Heads[a] = h
	}
	for a, n := range st.PrunedTo() {
		if n > 0 {
			s.Pruned[a] = n
		}
	}
	ev, err := st.Evidence()
	if err != nil {
		return nil, fmt.Errorf("summarize: evidence: %w", err)
	}
	for _, e := range ev {
		if maxEvidence > 0 && len(s.Evidence)+2 > maxEvidence {
			break
		}
		s.Evidence = append(s.Evidence, e.Kept, e.Conflict)
	}
	return s, nil
}

// SyncRange is a run of one author's chain facts to send: seqs From..To.
type SyncRange struct {
	Author   DeviceID
	From, To uint64
}

// PlanSync says what st (summarised as mine) holds that a peer summarised
// as theirs lacks: per author the chain facts above their version vector —
// from the overlap's start where the two chains diverged below it — and the
// equivocation evidence they do not list. Authors for which theirs is below
// mine's pruned floor are left out: that peer must restore (Behind).
func PlanSync(st Store, mine, theirs *Summary) ([]SyncRange, []FactID, error) {
	var ranges []SyncRange
	for _, a := range mine.VV.Authors() {
		have, top := theirs.VV[a], mine.VV[a]
		if have < mine.Pruned[a] {
			continue
		}
		from := have + 1
		if have > 0 && have <= top && have > mine.Pruned[a] {
			head, err := st.ChainHash(a, have)
			if err != nil {
				return nil, nil, fmt.Errorf("plan sync: chain of %s at %d: %w", a.Short(), have, err)
			}
			if theirHead, ok := theirs.Heads[a]; ok && head != theirHead {
				from = max(mine.Pruned[a], theirs.Pruned[a]) + 1
			}
		}
		if from <= top {
			ranges = append(ranges, SyncRange{Author: a, From: from, To: top})
		}
	}
	ev, err := st.Evidence()
	if err != nil {
		return nil, nil, fmt.Errorf("plan sync: evidence: %w", err)
	}
	known := make(map[FactID]bool, len(theirs.Evidence))
	for _, id := range theirs.Evidence {
		known[id] = true
	}
	var send []FactID
	for _, e := range ev {
		if !known[e.Conflict] {
			known[e.Conflict] = true
			send = append(send, e.Conflict)
		}
		if !known[e.Kept] && theirs.VV[e.Author] >= e.Seq {
			known[e.Kept] = true
			send = append(send, e.Kept)
		}
	}
	return ranges, send, nil
}

// Behind lists the authors for which mine holds less than theirs' pruned
// floor: facts it can only get by restoring from a snapshot.
func Behind(mine, theirs *Summary) []DeviceID {
	var out []DeviceID
	for _, a := range theirs.Pruned.Authors() {
		if mine.VV[a] < theirs.Pruned[a] {
			out = append(out, a)
		}
	}
	return out
}
