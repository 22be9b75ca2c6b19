package node

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"

	"aura/crdt"
	"aura/maintenance"
)

// restoreAsync starts a restore in the background unless one runs. hints
// are offers the caller already has (the completion an Output.Restore
// named); the restore asks the connected devices for theirs as well.
func (n *Node) restoreAsync(hints ...maintenance.Offer) {
	n.mu.Lock()
	if n.restoring || n.closed.Load() {
		n.mu.Unlock()
		return
	}
	n.restoring = true
	n.mu.Unlock()
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		defer func() {
			n.mu.Lock()
			n.restoring = false
			n.mu.Unlock()
		}()
		ctx, cancel := context.WithTimeout(n.ctx, 5*time.Minute)
		defer cancel()
		res, err := n.restore(ctx, hints, nil)
		switch {
		case err != nil && n.ctx.Err() == nil:
			n.log.Warn("restore", "err", err)
		case err == nil && !res.UpToDate:
			n.log.Info("restored", "snapshot", res.Snapshot.ID, "epoch", res.Snapshot.Epoch, "bytes", res.Bytes, "facts", res.Facts)
		}
	}()
}

// RestoreResult reports a restore.
type RestoreResult struct {
	Snapshot SnapshotInfo `json:"snapshot"` // the snapshot the node now rests on
	Bytes    int64        `json:"bytes"`    // snapshot blob bytes restored
	Peers    int          `json:"peers"`
	Facts    uint64       `json:"facts"` // journal facts after the restore
	// UpToDate: no peer offered a snapshot this node lacks, so nothing was
	// restored; Snapshot is the newest one it already holds.
	UpToDate bool `json:"up_to_date,omitempty"`
}

// ErrNoSnapshot: no completed snapshot is known to this node or its peers.
var ErrNoSnapshot = errors.New("no completed snapshot is known: run `aura-cli snapshot propose` on a device of the account first")

// maxRestores bounds the restores of one call: a newer snapshot may
// complete while the previous one is fetched.
const maxRestores = 3

// Restore rebuilds this node from the newest completed snapshot any
// connected device holds (DESIGN §5), keeping the facts it holds above it
// (its own offline writes among them), and replays the tail by sync.
func (n *Node) Restore(ctx context.Context, progress func(done, total int64)) (*RestoreResult, error) {
	return n.restore(ctx, nil, progress)
}

// restore drives the replica's restore: sync with the connected devices,
// ask each for its newest completion (SnapshotProtocol), let the replica
// pick the target (Replica.RestoreTarget), fetch that blob by CID and hand
// it back (Replica.Restore), replay the tail by sync; again while the
// replica names a newer target. It never reports success while a target
// remains.
func (n *Node) restore(ctx context.Context, hints []maintenance.Offer, progress func(done, total int64)) (*RestoreResult, error) {
	n.restoreMu.Lock()
	defer n.restoreMu.Unlock()
	if n.Account().IsZero() {
		return nil, ErrNoAccount
	}
	// A device must be reachable to ask and fetch from.
	if err := n.waitForDevices(ctx); err != nil {
		return nil, err
	}
	// Sync first: the completions may reach the replica, and facts it
	// lacks may still be around.
	n.syncConnected(ctx, 10*time.Second)
	res := &RestoreResult{UpToDate: true}
	var last *crdt.SnapshotCompleted
	refused := map[[16]byte]bool{} // offers whose blob Restore refused as forged
	for i := 0; ; {
		peers := n.connectedKnown()
		res.Peers = len(peers)
		var offers []maintenance.Offer
		for _, o := range append(append([]maintenance.Offer(nil), hints...), n.askSnapshots(ctx, peers)...) {
			if o.Completion != nil && !refused[o.Completion.ProposalID] {
				offers = append(offers, o)
			}
		}
		n.mu.Lock()
		req := n.rep.RestoreTarget(offers)
		n.mu.Unlock()
		if req == nil {
			break
		}
		if i == maxRestores {
			return nil, fmt.Errorf("%w: still behind snapshot %x after %d restores (snapshots complete faster than this device restores them); try again",
				ErrUnavailable, req.Completion.ProposalID[:4], maxRestores)
		}
		got, err := n.restoreFrom(ctx, req, peers, progress)
		if errors.Is(err, maintenance.ErrBadSnapshot) && !refused[req.Completion.ProposalID] && len(refused) < 8 {
			// A device offered a snapshot that does not verify (a fresh
			// device cannot check the signature before the fetch): drop it
			// and ask the replica again.
			n.log.Warn("restore: offered snapshot refused", "snapshot", fmt.Sprintf("%x", req.Completion.ProposalID[:4]), "from", req.From.Short(), "err", err)
			refused[req.Completion.ProposalID] = true
			continue
		}
		if err != nil {
			return nil, err
		}
		i++
		res.Bytes += got
		res.UpToDate = false
		last = &req.Completion
		n.syncConnected(ctx, 20*time.Second) // replay the tail
	}
	n.mu.Lock()
	var id [16]byte
	if last != nil {
		id = last.ProposalID
	} else if pid, base := n.rep.Base(); base != nil {
		id = pid
	} else if c := n.rep.NewestSnapshot(); c != nil {
		id = c.ProposalID
	}
	info := n.snapshotInfoLocked(id, false)
	n.mu.Unlock()
	switch {
	case info != nil:
		res.Snapshot = *info
	case last != nil:
		res.Snapshot = completionInfo(last)
	default:
		return nil, ErrNoSnapshot
	}
	res.Facts = n.store.Stats().Facts
	return res, nil
}

// restoreFrom fetches the blob req names (req.From among the first asked)
// and hands it to the replica. It returns the blob's size.
func (n *Node) restoreFrom(ctx context.Context, req *maintenance.RestoreRequest, peers []peer.ID, progress func(done, total int64)) (int64, error) {
	root, err := cid.Cast(req.BlobCID)
	if err != nil {
		return 0, fmt.Errorf("snapshot blob CID: %w", err)
	}
	if err := n.blobs.Pin(root); err != nil {
		return 0, fmt.Errorf("pin snapshot blob %s: %w", root, err)
	}
	held, _ := n.blobs.Has(ctx, root)
	if !held {
		if len(peers) == 0 {
			return 0, errorf(ErrUnavailable, "no device of the account is connected to fetch snapshot %s from", root)
		}
		if req.From != (crdt.DeviceID{}) {
			first := PeerID(req.From)
			order := []peer.ID{first}
			for _, p := range peers {
				if p != first {
					order = append(order, p)
				}
			}
			peers = order
		}
		if _, err := n.blobs.Fetch(ctx, root, peers, progress); err != nil {
			return 0, fmt.Errorf("fetch snapshot blob %s: %w", root, err)
		}
	} else if progress != nil {
		progress(int64(req.BlobSize), int64(req.BlobSize))
	}
	// The replica reads the blob once, as a stream: it never holds the
	// blob's bytes beside the state it decodes from them.
	blob, err := n.blobs.Open(ctx, root)
	if err != nil {
		return 0, fmt.Errorf("read snapshot blob %s: %w", root, err)
	}
	defer blob.Close()
	n.mu.Lock()
	out, err := n.rep.RestoreFrom(now(), &req.Completion, blob)
	n.invalidateLocked(out, nil)
	n.refreshMembersLocked()
	n.mu.Unlock()
	if err != nil {
		return 0, err
	}
	n.handle(out)
	return blob.Size(), nil
}

// syncConnected runs one sync session with every connected device.
func (n *Node) syncConnected(ctx context.Context, each time.Duration) {
	for _, p := range n.connectedKnown() {
		sctx, cancel := context.WithTimeout(ctx, each)
		_ = n.SyncWith(sctx, p)
		cancel()
	}
}
