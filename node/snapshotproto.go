package node

import (
	"bufio"
	"context"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"

	"aura/crdt"
	"aura/maintenance"
)

// SnapshotProtocol answers with the fact of the newest completed snapshot
// the node knows. A new device uses it to restore: it holds no state yet,
// so it cannot take the completion from sync (its guards need the genesis,
// which peers pruned); the replica verifies the completion's threshold
// signature against the snapshot state itself before trusting it.
const SnapshotProtocol = protocol.ID("/aura/snapshot/1")

func (n *Node) handleSnapshotInfo(s network.Stream) {
	defer s.Close()
	_ = s.SetDeadline(time.Now().Add(10 * time.Second))
	var raw []byte
	n.mu.Lock()
	st := n.rep.State()
	if c := st.NewestSnapshot(); c != nil {
		if ref := st.Completed[c.ProposalID]; ref != nil {
			if f, err := n.store.Get(ref.Stamp.ID); err == nil {
				raw = f.Bytes()
			}
		}
	}
	n.mu.Unlock()
	_ = writeMsg(s, &snapshotAnswer{Fact: raw})
}

type snapshotAnswer struct {
	Fact []byte `cbor:"1,keyasint,omitempty"`
}

// askSnapshots asks each peer for its newest completion, at once. The
// answers are unverified offers: the replica checks them.
func (n *Node) askSnapshots(ctx context.Context, peers []peer.ID) []maintenance.Offer {
	acct := n.Account()
	answers := make([]*crdt.SnapshotCompleted, len(peers))
	var wg sync.WaitGroup
	for i, p := range peers {
		wg.Go(func() { answers[i] = n.askSnapshot(ctx, p, acct) })
	}
	wg.Wait()
	var offers []maintenance.Offer
	for i, c := range answers {
		if c == nil {
			continue
		}
		o := maintenance.Offer{Completion: c}
		if d, ok := DeviceOf(peers[i]); ok {
			o.From = d
		}
		offers = append(offers, o)
	}
	return offers
}

// askSnapshot asks one peer for its newest completion (nil: none, or no
// answer).
func (n *Node) askSnapshot(ctx context.Context, p peer.ID, acct crdt.AccountID) *crdt.SnapshotCompleted {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	s, err := n.host.NewStream(ctx, p, SnapshotProtocol)
	if err != nil {
		return nil
	}
	defer s.Close()
	_ = s.SetDeadline(time.Now().Add(5 * time.Second))
	var a snapshotAnswer
	if err := readMsg(bufio.NewReader(s), &a, crdt.MaxFactSize+16); err != nil || a.Fact == nil {
		return nil
	}
	f, err := crdt.DecodeVerifiedFact(a.Fact)
	if err != nil || f.Kind != crdt.KindSnapshotCompleted || f.Account != acct {
		return nil
	}
	b, err := f.DecodeBody()
	if err != nil {
		return nil
	}
	c, _ := b.(*crdt.SnapshotCompleted)
	return c
}
