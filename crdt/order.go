package crdt

import (
	"bytes"
	"cmp"
	"slices"
)

// One definition of each ordering rule, used by every package (the
// journal, the replica, gossip's validator and sync, the simulator and the
// node's listing), so they can never disagree.

// CausalLess orders facts by (Lamport time, author, seq), then fact id,
// so that the order is total: every fact comes after the facts its author
// had seen, and equal stamps never tie.
func CausalLess(a, b *Fact) bool {
	if a.Lamport != b.Lamport {
		return a.Lamport < b.Lamport
	}
	if c := bytes.Compare(a.Author[:], b.Author[:]); c != 0 {
		return c < 0
	}
	if a.Seq != b.Seq {
		return a.Seq < b.Seq
	}
	ai, bi := a.ID(), b.ID()
	return bytes.Compare(ai[:], bi[:]) < 0
}

// SortCausal sorts facts in CausalLess order (stably: copies of one fact
// keep their order). Facts already in order, as a sender's batch usually
// is, cost one pass.
func SortCausal(fs []*Fact) {
	if slices.IsSortedFunc(fs, causalCmp) {
		return
	}
	slices.SortStableFunc(fs, causalCmp)
}

// causalCmp is CausalLess as a three-way comparison.
func causalCmp(a, b *Fact) int {
	if a.Lamport != b.Lamport {
		return cmp.Compare(a.Lamport, b.Lamport)
	}
	if c := bytes.Compare(a.Author[:], b.Author[:]); c != 0 {
		return c
	}
	if a.Seq != b.Seq {
		return cmp.Compare(a.Seq, b.Seq)
	}
	return bytes.Compare(a.id[:], b.id[:])
}

// ChangesGuards reports whether a fact of kind k can change what the
// guards decide for later facts (membership, capabilities, the group key,
// admin replacement): such a fact can turn a parked fact valid.
func ChangesGuards(k Kind) bool {
	switch k {
	case KindGenesis, KindDeviceAdded, KindDeviceRemoved, KindCapabilityGrant, KindGroupKey, KindAdminReplaced:
		return true
	}
	return false
}
