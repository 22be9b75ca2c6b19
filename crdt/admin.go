package crdt

import (
	"bytes"
	"errors"
	"fmt"
)

// Errors of the admin replacement guard (callers branch on them with
// errors.Is; each also wraps ErrUnauthorized or ErrNotYet).
var (
	// ErrBadThresholdSignature: no group key this state holds verifies
	// the replacement's threshold signature (forged, short, or signed
	// under a key not held yet: the fact is parked, ingest refuses it).
	ErrBadThresholdSignature = errors.New("threshold signature does not verify")
	// ErrNewAdminNotMember: the replacement names a new admin that is not
	// a member of the account at the epoch before its activation.
	ErrNewAdminNotMember = errors.New("the new admin is not a member of the account")
	// ErrBadReplacement: the replacement's fields contradict each other
	// (its fact epoch is not its activation epoch, or it replaces a device
	// by itself).
	ErrBadReplacement = errors.New("malformed admin replacement")
)

// AdminOverride is the winning replacement of one previous admin: New is
// admin from ActivationEpoch on and the previous admin's admin facts at
// epochs from ActivationEpoch on are refused.
//
// The rule between competing replacements of one previous admin (the same
// on every device, in any arrival order): the lower ActivationEpoch wins;
// at equal epochs, the New id lower bytewise wins (Wins). The loser's new
// admin never holds the admin capability through it.
type AdminOverride struct {
	_               struct{} `cbor:",toarray"`
	New             DeviceID
	ActivationEpoch uint64
}

// Wins reports whether o beats p under the rule above.
func (o AdminOverride) Wins(p AdminOverride) bool {
	if o.ActivationEpoch != p.ActivationEpoch {
		return o.ActivationEpoch < p.ActivationEpoch
	}
	return bytes.Compare(o.New[:], p.New[:]) < 0
}

// AdminProposalRef is an admin replacement request and its votes (each
// device's partial signature; the bytewise lowest if a device sent two).
type AdminProposalRef struct {
	Proposal AdminReplaceProposed `cbor:"1,keyasint"`
	Stamp    Stamp                `cbor:"2,keyasint"` // lowest-stamped proposal fact wins if repeated
	Votes    map[DeviceID][]byte  `cbor:"3,keyasint"`
}

// Admin is the current admin by replacement: the genesis admin followed
// through the winning replacements (zero without genesis).
func (s *State) Admin() DeviceID {
	if s.Genesis == nil {
		return DeviceID{}
	}
	a := s.Genesis.Admin
	for range len(s.AdminReplacements) + 1 { // bounded: a cycle cannot loop
		o, ok := s.AdminReplacements[a]
		if !ok {
			break
		}
		a = o.New
	}
	return a
}

// checkAdminReplaced is the guard of an AdminReplaced fact beyond its
// author's membership at at (= f.Epoch-1).
func (s *State) checkAdminReplaced(f *Fact, b *AdminReplaced, at uint64) error {
	if f.Epoch != b.ActivationEpoch || b.Previous == b.New {
		return fmt.Errorf("admin replacement by %s (fact epoch %d, activation %d): %w: %w", f.Author.Short(), f.Epoch, b.ActivationEpoch, ErrUnauthorized, ErrBadReplacement)
	}
	if !s.Holds(b.New, "", at) {
		if at > s.completeTo {
			return &notYetError{f: f, at: at, known: s.completeTo}
		}
		return fmt.Errorf("admin replacement by %s names %s: %w: %w at epoch %d", f.Author.Short(), b.New.Short(), ErrUnauthorized, ErrNewAdminNotMember, at)
	}
	if len(s.GroupKeys) == 0 {
		return &notYetError{f: f, why: "no group key"}
	}
	if !s.verifyThreshold(AdminReplaceMessage(s.Account, b), b.ThresholdSignature) {
		return fmt.Errorf("admin replacement by %s: %w: %w under the group keys held", f.Author.Short(), ErrNotYet, ErrBadThresholdSignature)
	}
	return nil
}

// applyAdminReplaced folds a verified replacement: it opens its
// activation epoch and competes for its previous admin by Wins.
func (s *State) applyAdminReplaced(f *Fact, b *AdminReplaced) {
	s.Epoch = max(s.Epoch, f.Epoch)
	s.open(f.Epoch)
	s.joinReplacement(b.Previous, AdminOverride{New: b.New, ActivationEpoch: b.ActivationEpoch})
}

func (s *State) joinReplacement(prev DeviceID, o AdminOverride) {
	if cur, ok := s.AdminReplacements[prev]; ok && !o.Wins(cur) {
		return
	}
	s.AdminReplacements[prev] = o
	s.deriveAdmins()
}

// deriveAdmins recomputes AdminOverrides and NewAdmins from the winners.
func (s *State) deriveAdmins() {
	clear(s.AdminOverrides)
	clear(s.NewAdmins)
	for prev, o := range s.AdminReplacements {
		s.AdminOverrides[prev] = o.ActivationEpoch
		if cur, ok := s.NewAdmins[o.New]; !ok || o.ActivationEpoch < cur {
			s.NewAdmins[o.New] = o.ActivationEpoch
		}
	}
}

func (s *State) joinAdminProposal(id [16]byte, p *AdminProposalRef) {
	cur := s.AdminProposals[id]
	if cur == nil {
		cur = &AdminProposalRef{Votes: map[DeviceID][]byte{}}
		s.AdminProposals[id] = cur
	}
	if p.Stamp != (Stamp{}) && (cur.Stamp == (Stamp{}) || p.Stamp.Less(cur.Stamp)) {
		cur.Proposal, cur.Stamp = p.Proposal, p.Stamp
	}
	for d, v := range p.Votes {
		if old, ok := cur.Votes[d]; !ok || bytes.Compare(v, old) < 0 {
			cur.Votes[d] = bytes.Clone(v)
		}
	}
}

// joinAdmin is Join's part for the admin records.
func (s *State) joinAdmin(o *State) {
	for prev, r := range o.AdminReplacements {
		s.joinReplacement(prev, r)
	}
	for id, p := range o.AdminProposals {
		s.joinAdminProposal(id, p)
	}
}
