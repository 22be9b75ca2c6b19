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
	"sync"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"

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
	blob, err := n.blobs.Get(ctx, root)
	if err != nil {
		return 0, fmt.Errorf("read snapshot blob %s: %w", root, err)
	}
	n.mu.Lock()
	out, err := n.rep.Restore(now(), &req.Completion, blob)
	n.invalidateLocked(out, nil)
	n.refreshMembersLocked()
	n.mu.Unlock()
	if err != nil {
		return 0, err
	}
	n.handle(out)
	return int64(len(blob)), nil
}

// syncConnected runs one sync session with every connected device.
func (n *Node) syncConnected(ctx context.Context, each time.Duration) {
	for _, p := range n.connectedKnown() {
		sctx, cancel := context.WithTimeout(ctx, each)
		_ = n.SyncWith(sctx, p)
		cancel()
	}
}

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
