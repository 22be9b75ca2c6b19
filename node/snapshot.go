package node

import (
	"context"
	"encoding/hex"
	"sort"

	"github.com/ipfs/go-cid"

	"aura/crdt"
)

func completionInfo(c *crdt.SnapshotCompleted) SnapshotInfo {
	info := SnapshotInfo{ID: hex.EncodeToString(c.ProposalID[:]), Status: "completed", Epoch: c.Snapshot.Epoch,
		Facts: c.Snapshot.Frontier.Total(), StateDigest: c.Snapshot.StateDigest.String(),
		BlobSize: c.Snapshot.BlobSize, HeldLocally: true}
	if cc, err := cid.Cast(c.Snapshot.BlobCID); err == nil {
		info.BlobCID = cc.String()
	}
	return info
}

// snapshotInfoLocked describes a proposal or completion; n.mu is held.
func (n *Node) snapshotInfoLocked(id [16]byte, frontier bool) *SnapshotInfo {
	st := n.rep.State()
	info := &SnapshotInfo{ID: hex.EncodeToString(id[:])}
	if p := st.Proposals[id]; p != nil {
		info.Status = "open"
		if p.Abandoned {
			info.Status = "abandoned"
		}
		info.Proposer = p.Proposal.Proposer.String()
		info.Votes = len(p.Votes)
		info.Epoch = p.Proposal.TargetEpoch
		info.StateDigest = p.Proposal.StateDigest.String()
		info.Facts = p.Proposal.Frontier.Total()
		if frontier {
			info.Frontier = vvJSON(p.Proposal.Frontier)
		}
	}
	if c := st.Completed[id]; c != nil {
		s := c.Completed.Snapshot
		info.Status = "completed"
		info.Epoch, info.Facts, info.StateDigest, info.BlobSize = s.Epoch, s.Frontier.Total(), s.StateDigest.String(), s.BlobSize
		if cc, err := cid.Cast(s.BlobCID); err == nil {
			info.BlobCID = cc.String()
			info.HeldLocally, _ = n.blobs.Has(context.Background(), cc)
		}
		for _, d := range c.Completed.Participants {
			info.Participants = append(info.Participants, d.String())
		}
		if frontier {
			info.Frontier = vvJSON(s.Frontier)
		}
	}
	if info.Status == "" {
		return nil
	}
	return info
}

// Propose starts a snapshot round on this device.
func (n *Node) Propose() (*SnapshotInfo, error) {
	n.mu.Lock()
	if n.rep.Account().IsZero() {
		n.mu.Unlock()
		return nil, ErrNoAccount
	}
	out, err := n.rep.Propose(now())
	n.invalidateLocked(out, nil)
	var info *SnapshotInfo
	if err == nil {
		// With M=1 the round completes (and the fence drops) inside Propose.
		info = n.snapshotInfoLocked(out.Proposed, true)
	}
	n.mu.Unlock()
	if err != nil {
		return nil, err
	}
	n.handle(out)
	if info == nil {
		info = &SnapshotInfo{Status: "proposed"}
	}
	return info, nil
}

// Snapshots lists proposals and completions, newest first.
func (n *Node) Snapshots() []SnapshotInfo {
	n.mu.Lock()
	defer n.mu.Unlock()
	return cachedLocked(n, "snapshots", n.snapshotsLocked)
}

func (n *Node) snapshotsLocked() []SnapshotInfo {
	st := n.rep.State()
	ids := map[[16]byte]bool{}
	for id := range st.Proposals {
		ids[id] = true
	}
	for id := range st.Completed {
		ids[id] = true
	}
	var out []SnapshotInfo
	for id := range ids {
		if info := n.snapshotInfoLocked(id, false); info != nil {
			out = append(out, *info)
		}
	}
	// crdt.NewerSnapshot's order (epoch, frontier total, lower id), over
	// proposals and completions alike.
	sort.Slice(out, func(i, j int) bool {
		if out[i].Epoch != out[j].Epoch {
			return out[i].Epoch > out[j].Epoch
		}
		if out[i].Facts != out[j].Facts {
			return out[i].Facts > out[j].Facts
		}
		return out[i].ID < out[j].ID
	})
	return out
}

// Snapshot describes one snapshot by id (a prefix of the hex id is enough).
func (n *Node) Snapshot(id string) (*SnapshotInfo, error) {
	var match *SnapshotInfo
	for _, s := range n.Snapshots() {
		if len(id) >= 4 && len(id) <= len(s.ID) && s.ID[:len(id)] == id {
			if match != nil {
				return nil, errorf(ErrBadRequest, "%q names more than one snapshot; give more of the id", id)
			}
			s := s
			match = &s
		}
	}
	if match == nil {
		return nil, errorf(ErrNotFound, "no snapshot %q (see `aura-cli snapshot list`)", id)
	}
	b, _ := hex.DecodeString(match.ID)
	var pid [16]byte
	copy(pid[:], b)
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.snapshotInfoLocked(pid, true), nil
}
