package gossip

import (
	"context"
	"errors"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/peer"

	"aura/crdt"
)

// maxFactsPerMessage bounds the entries of a gossip message; every fact
// takes more than 64 bytes, so a full message holds fewer.
const maxFactsPerMessage = MaxMessageBytes / 64

// localBatch marks a message published by this node: its facts are
// already stored, so the validator accepts it without work.
type localBatch struct{}

// validate is the topic validator. It decodes the batch once, hands the
// facts that are new to the receive loop through msg.ValidatorData, and
// decides:
//
//   - Reject: oversized, malformed or non-canonical, a bad signature, a
//     fact of another account, or an author without the capability.
//   - Ignore: every fact is already held, or no fact can be admitted yet
//     (ErrNotYet: it depends on facts this node lacks; sync delivers).
//   - Accept: otherwise.
//
// Guards are checked against the current state, so a fact that depends on
// an earlier fact of the same batch (a device's first write after the
// DeviceAdded that admits it) would fail. Facts are therefore checked in
// causal order, and once a fact that changes guards (genesis, membership,
// group key, admin replacement) passed, the verdicts on later facts of the
// batch are left to Ingest, which folds the batch in causal order.
func (g *Gossip) validate(ctx context.Context, src peer.ID, msg *pubsub.Message) pubsub.ValidationResult {
	if src == g.self {
		if _, ok := msg.ValidatorData.(localBatch); ok {
			return pubsub.ValidationAccept
		}
	}
	g.m.validated.Add(1)
	res, reason, facts := g.judge(msg.Data)
	switch res {
	case pubsub.ValidationAccept:
		msg.ValidatorData = facts
		if reason == ReasonNotYet {
			g.syn.gapSeen(src, true)
		}
	case pubsub.ValidationIgnore:
		g.m.reject(reason)
		if reason == ReasonNotYet {
			g.syn.gapSeen(src, true)
		}
	default:
		g.m.reject(reason)
		g.log.Debug("rejected gossip message", "from", src, "reason", reason)
	}
	return res
}

// judge validates a message's bytes. On Accept it returns the facts to
// ingest and, as reason, ReasonNotYet when some facts had to be left out.
func (g *Gossip) judge(data []byte) (pubsub.ValidationResult, string, []*crdt.Fact) {
	if len(data) > MaxMessageBytes {
		return pubsub.ValidationReject, ReasonTooLarge, nil
	}
	facts, err := decodeBatch(data, maxFactsPerMessage)
	if err != nil {
		return pubsub.ValidationReject, reasonOf(err), nil
	}
	if len(facts) == 0 {
		return pubsub.ValidationReject, ReasonMalformed, nil
	}
	for _, f := range facts {
		if f.Account != g.account {
			return pubsub.ValidationReject, ReasonAccount, nil
		}
	}
	// A fact above its author's version vector is new unless the store
	// holds facts ahead of a gap; only the others cost a lookup.
	st := g.j.Store()
	vv, pending := st.VersionVector(), st.Stats().Pending > 0
	fresh := facts[:0:0]
	seen := make(map[crdt.FactID]struct{}, len(facts))
	for _, f := range facts {
		if _, dup := seen[f.ID()]; dup {
			continue
		}
		seen[f.ID()] = struct{}{}
		if f.Seq <= vv[f.Author] || pending {
			held, err := st.Has(f.ID())
			if err != nil {
				return pubsub.ValidationIgnore, ReasonOther, nil
			}
			if held {
				continue
			}
		}
		fresh = append(fresh, f)
	}
	if len(fresh) == 0 {
		return pubsub.ValidationIgnore, ReasonDuplicate, nil
	}
	if err := verifyAll(fresh); err != nil {
		return pubsub.ValidationReject, ReasonSignature, nil
	}
	crdt.SortCausal(fresh)
	admit := fresh[:0:0]
	changed, notYet := false, false
	for _, f := range fresh {
		err := g.j.Check(f)
		switch {
		case err == nil:
			admit = append(admit, f)
			if crdt.ChangesGuards(f.Kind) {
				changed = true
			}
		case changed && (errors.Is(err, crdt.ErrNotYet) || errors.Is(err, crdt.ErrUnauthorized)):
			admit = append(admit, f) // may depend on an earlier fact of the batch: Ingest decides
		case errors.Is(err, crdt.ErrNotYet):
			notYet = true
		default:
			return pubsub.ValidationReject, reasonOf(err), nil
		}
	}
	if len(admit) == 0 {
		return pubsub.ValidationIgnore, ReasonNotYet, nil
	}
	if notYet {
		return pubsub.ValidationAccept, ReasonNotYet, admit
	}
	return pubsub.ValidationAccept, "", admit
}

// verifyAll checks every signature (marking the facts verified, so Ingest
// does not check them again), batched and in parallel, and returns the
// first failure.
func verifyAll(fs []*crdt.Fact) error {
	for _, err := range crdt.VerifyFacts(fs) {
		if err != nil {
			return err
		}
	}
	return nil
}
