package node

import (
	"bufio"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"

	"aura/crdt"
	"aura/maintenance"
)

// restoreAsync starts a restore in the background unless one runs.
func (n *Node) restoreAsync() {
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
		if _, err := n.Restore(ctx, nil); err != nil && n.ctx.Err() == nil {
			n.log.Warn("restore", "err", err)
		}
	}()
}

// RestoreResult reports a restore.
type RestoreResult struct {
	Snapshot SnapshotInfo `json:"snapshot"`
	Bytes    int64        `json:"bytes"`
	Peers    int          `json:"peers"`
	Facts    uint64       `json:"facts"` // journal facts after the restore
}

// ErrNoSnapshot: no completed snapshot is known to this node or its peers.
var ErrNoSnapshot = errors.New("no completed snapshot is known: run `aura-cli snapshot propose` on a device of the account first")

// Restore rebuilds this node from the newest completed snapshot: it finds
// the completion (its own state's, or a peer's by sync), fetches the blob
// by CID from the connected devices, and hands it to the replica, which
// verifies the threshold signature and digest before it hydrates.
func (n *Node) Restore(ctx context.Context, progress func(done, total int64)) (*RestoreResult, error) {
	n.restoreMu.Lock()
	defer n.restoreMu.Unlock()
	if n.Account().IsZero() {
		return nil, ErrNoAccount
	}
	if err := n.waitForDevices(ctx); err != nil {
		return nil, err
	}
	peers := n.connectedKnown()
	n.mu.Lock()
	c := n.rep.NewestSnapshot()
	n.mu.Unlock()
	if c == nil {
		// Sync with the peers first: the completion may not have reached us.
		for _, p := range peers {
			sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			_ = n.SyncWith(sctx, p)
			cancel()
		}
		n.mu.Lock()
		c = n.rep.NewestSnapshot()
		n.mu.Unlock()
	}
	if c == nil {
		c = n.askSnapshot(ctx, peers)
	}
	if c == nil {
		return nil, ErrNoSnapshot
	}
	root, err := cid.Cast(c.Snapshot.BlobCID)
	if err != nil {
		return nil, fmt.Errorf("snapshot blob CID: %w", err)
	}
	if err := n.blobs.Pin(root); err != nil {
		return nil, err
	}
	held, _ := n.blobs.Has(ctx, root)
	if !held {
		if len(peers) == 0 {
			return nil, errorf(ErrUnavailable, "no device of the account is connected to fetch snapshot %s from", root)
		}
		if _, err := n.blobs.Fetch(ctx, root, peers, progress); err != nil {
			return nil, fmt.Errorf("fetch snapshot blob %s: %w", root, err)
		}
	} else if progress != nil {
		progress(int64(c.Snapshot.BlobSize), int64(c.Snapshot.BlobSize))
	}
	blob, err := n.blobs.Get(ctx, root)
	if err != nil {
		return nil, err
	}
	n.mu.Lock()
	out, err := n.rep.Restore(now(), c, blob)
	n.invalidateLocked(out, nil)
	n.refreshMembersLocked()
	info := n.snapshotInfoLocked(c.ProposalID, false)
	n.mu.Unlock()
	if err != nil {
		return nil, err
	}
	n.handle(out)
	// Replay the tail.
	for _, p := range n.connectedKnown() {
		sctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		_ = n.SyncWith(sctx, p)
		cancel()
	}
	if info == nil {
		info = &SnapshotInfo{ID: hex.EncodeToString(c.ProposalID[:]), Status: "completed", Epoch: c.Snapshot.Epoch,
			Facts: c.Snapshot.Frontier.Total(), StateDigest: c.Snapshot.StateDigest.String(), BlobCID: root.String(),
			BlobSize: c.Snapshot.BlobSize, HeldLocally: true}
	}
	return &RestoreResult{Snapshot: *info, Bytes: int64(len(blob)), Peers: len(peers), Facts: n.store.Stats().Facts}, nil
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
		// The round's id is in the "proposed" event: with M=1 the round
		// completes (and the fence drops) inside Propose.
		for _, e := range out.Events {
			if e.Kind == "proposed" && e.Device == n.device {
				info = n.snapshotInfoLocked(e.Proposal, true)
				break
			}
		}
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

func (n *Node) phase2Routes(mux *http.ServeMux) {
	mux.HandleFunc("POST /v1/snapshots", func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			Force bool `json:"force"`
		}
		if !decode(w, r, &req) {
			return
		}
		info, err := n.ProposeChecked(req.Force)
		reply(w, info, err)
	})
	mux.HandleFunc("GET /v1/snapshots", func(w http.ResponseWriter, r *http.Request) {
		s := n.Snapshots()
		if s == nil {
			s = []SnapshotInfo{}
		}
		reply(w, s, nil)
	})
	mux.HandleFunc("GET /v1/snapshots/{id}", func(w http.ResponseWriter, r *http.Request) {
		info, err := n.Snapshot(r.PathValue("id"))
		reply(w, info, err)
	})
	mux.HandleFunc("POST /v1/restore", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/x-ndjson")
		enc := json.NewEncoder(w)
		fl, _ := w.(http.Flusher)
		last := time.Time{}
		var req struct {
			WaitMS int64 `json:"wait_ms"`
		}
		_ = json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<10)).Decode(&req)
		ctx := withPeerWait(r.Context(), time.Duration(req.WaitMS)*time.Millisecond)
		res, err := n.Restore(ctx, func(done, total int64) {
			if time.Since(last) < 100*time.Millisecond && done < total {
				return
			}
			last = time.Now()
			_ = enc.Encode(map[string]int64{"done": done, "total": total})
			if fl != nil {
				fl.Flush()
			}
		})
		if err != nil {
			_ = enc.Encode(map[string]string{"error": err.Error()})
			return
		}
		_ = enc.Encode(res)
	})
	mux.HandleFunc("POST /v1/threshold/keygen", func(w http.ResponseWriter, r *http.Request) {
		var req struct{ Threshold int }
		if !decode(w, r, &req) {
			return
		}
		info, err := n.Keygen(r.Context(), req.Threshold)
		reply(w, info, err)
	})
	mux.HandleFunc("GET /v1/threshold", func(w http.ResponseWriter, r *http.Request) {
		s := n.Status()
		if s.GroupKey == nil {
			reply(w, nil, errorf(ErrNotFound, "%w", maintenance.ErrNoGroupKey))
			return
		}
		reply(w, s.GroupKey, nil)
	})
}

// SnapshotClient calls.

// Propose starts a snapshot round (force: even when fewer than M key
// holders are online).
func (c *Client) Propose(ctx context.Context, force bool) (SnapshotInfo, error) {
	var s SnapshotInfo
	return s, c.do(ctx, "POST", "/v1/snapshots", map[string]bool{"force": force}, &s)
}

// Snapshots lists snapshots.
func (c *Client) Snapshots(ctx context.Context) ([]SnapshotInfo, error) {
	var s []SnapshotInfo
	return s, c.do(ctx, "GET", "/v1/snapshots", nil, &s)
}

// Snapshot shows one snapshot.
func (c *Client) Snapshot(ctx context.Context, id string) (SnapshotInfo, error) {
	var s SnapshotInfo
	return s, c.do(ctx, "GET", "/v1/snapshots/"+id, nil, &s)
}

// Restore restores the node from the newest snapshot; progress sees the
// bytes fetched.
func (c *Client) Restore(ctx context.Context, progress func(done, total int64)) (RestoreResult, error) {
	var r RestoreResult
	// The node waits for a reachable device at most until shortly before
	// this call gives up, so it can still say why.
	var wait int64
	if dl, ok := ctx.Deadline(); ok {
		wait = max(time.Until(dl).Milliseconds()*9/10, time.Until(dl).Milliseconds()-2000, 1)
	}
	err := c.streamLines(ctx, "POST", "/v1/restore", map[string]int64{"wait_ms": wait}, func(m json.RawMessage) {
		var p struct{ Done, Total int64 }
		if json.Unmarshal(m, &p) == nil && progress != nil {
			progress(p.Done, p.Total)
		}
	}, &r)
	return r, err
}

// Keygen runs a DKG among the account's devices.
func (c *Client) Keygen(ctx context.Context, threshold int) (GroupKeyInfo, error) {
	var g GroupKeyInfo
	return g, c.do(ctx, "POST", "/v1/threshold/keygen", map[string]int{"Threshold": threshold}, &g)
}

// Threshold shows the account's group key.
func (c *Client) Threshold(ctx context.Context) (GroupKeyInfo, error) {
	var g GroupKeyInfo
	return g, c.do(ctx, "GET", "/v1/threshold", nil, &g)
}

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

// askSnapshot asks the peers for their newest completion.
func (n *Node) askSnapshot(ctx context.Context, peers []peer.ID) *crdt.SnapshotCompleted {
	var best *crdt.SnapshotCompleted
	acct := n.Account()
	for _, p := range peers {
		c := func() *crdt.SnapshotCompleted {
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
		}()
		if c != nil && (best == nil || newerSnapshot(c, best)) {
			best = c
		}
	}
	return best
}

func newerSnapshot(a, b *crdt.SnapshotCompleted) bool {
	if a.Snapshot.Epoch != b.Snapshot.Epoch {
		return a.Snapshot.Epoch > b.Snapshot.Epoch
	}
	return a.Snapshot.Frontier.Total() > b.Snapshot.Frontier.Total()
}
