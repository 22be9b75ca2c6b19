package node

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"aura/crdt"
	"aura/maintenance"
)

// The control API: JSON over HTTP on the Unix socket HOME/aura.sock (0600).
// Every answer is one JSON document; failures are {"error": "..."} with a
// 4xx/5xx status.

// JournalInfo are the journal's size figures.
type JournalInfo struct {
	Facts         uint64 `json:"facts"`
	Bytes         uint64 `json:"bytes"`
	Pending       uint64 `json:"pending"`
	Equivocations uint64 `json:"equivocations"`
	PrunedFacts   uint64 `json:"pruned_facts"`
	PrunedBytes   uint64 `json:"pruned_bytes"`
}

// SnapshotInfo describes a completed snapshot.
type SnapshotInfo struct {
	ID           string            `json:"id"`
	Epoch        uint64            `json:"epoch"`
	Facts        uint64            `json:"facts"` // frontier total
	Frontier     map[string]uint64 `json:"frontier,omitempty"`
	StateDigest  string            `json:"state_digest"`
	BlobCID      string            `json:"blob_cid"`
	BlobSize     uint64            `json:"blob_size"`
	Participants []string          `json:"participants,omitempty"`
	Status       string            `json:"status"` // completed, open, abandoned
	Proposer     string            `json:"proposer,omitempty"`
	Votes        int               `json:"votes"`
	HeldLocally  bool              `json:"held_locally"`
}

// FenceInfo is the writer fence of this device's open round.
type FenceInfo struct {
	Proposal string    `json:"proposal"`
	Deadline time.Time `json:"deadline"`
	Buffered int       `json:"buffered"`
}

// GCInfo are the figures of the last garbage collection.
type GCInfo struct {
	Proposal     string `json:"proposal"`
	FactsBefore  uint64 `json:"facts_before"`
	BytesBefore  uint64 `json:"bytes_before"`
	FactsAfter   uint64 `json:"facts_after"`
	BytesAfter   uint64 `json:"bytes_after"`
	PrunedFacts  uint64 `json:"pruned_facts"`
	PrunedBytes  uint64 `json:"pruned_bytes"`
	BlobsDeleted int    `json:"blobs_deleted"`
}

// GroupKeyInfo is the account's threshold key.
type GroupKeyInfo struct {
	KeyEpoch     uint64   `json:"key_epoch"`
	Threshold    uint64   `json:"threshold"`
	Participants []string `json:"participants"`
	HasShare     bool     `json:"has_share"`
	ShareIndex   int      `json:"share_index,omitempty"`
}

// Status is `aura-cli status`.
type Status struct {
	Version        string            `json:"version"`
	Device         string            `json:"device"`
	Name           string            `json:"name"`
	Account        string            `json:"account,omitempty"`
	Admin          bool              `json:"admin"`
	Addrs          []string          `json:"addrs"`
	Peers          int               `json:"peers"`
	Devices        []string          `json:"devices"`
	Journal        JournalInfo       `json:"journal"`
	VersionVector  map[string]uint64 `json:"version_vector"`
	IdentityEpoch  uint64            `json:"identity_epoch"`
	SnapshotEpoch  uint64            `json:"snapshot_epoch"`
	StateDigest    string            `json:"state_digest"`
	NewestSnapshot *SnapshotInfo     `json:"newest_snapshot,omitempty"`
	Fence          *FenceInfo        `json:"fence,omitempty"`
	LastGC         *GCInfo           `json:"last_gc,omitempty"`
	Evidence       int               `json:"equivocation_evidence"`
	GroupKey       *GroupKeyInfo     `json:"group_key,omitempty"`
	Disk           *DiskInfo         `json:"disk,omitempty"`
	// Sessions: what this device supports and publishes, the protocol
	// sessions run now, the devices that cannot take part and why, and the
	// last session of this device that aborted (session.go).
	Protocols        []string             `json:"supported_protocols"`
	UpgradePolicy    string               `json:"upgrade_policy"`
	RequiredProtocol string               `json:"required_protocol,omitempty"`
	Incompatible     []IncompatibleDevice `json:"incompatible_devices,omitempty"`
	SessionAborts    int                  `json:"session_aborts"`
	LastSessionAbort *SessionAbort        `json:"last_session_abort,omitempty"`
}

// PeerInfo is one connected peer.
type PeerInfo struct {
	Peer   string   `json:"peer"`
	Device bool     `json:"device"`         // a device of the account
	Name   string   `json:"name,omitempty"` // its name in the account
	Via    string   `json:"via"`            // direct when a direct connection exists, else relayed
	Addrs  []string `json:"addrs"`
	// Incompatible is why this device of the account cannot take part in
	// maintenance sessions (a protocol it lacks, readiness it lacks), with
	// its code (ErrorCode); empty when it can.
	Incompatible     string `json:"incompatible,omitempty"`
	IncompatibleCode string `json:"incompatible_code,omitempty"`
	// Paths are the connections to the peer, direct ones first.
	Paths []PathInfo `json:"paths,omitempty"`
}

// PathInfo is one connection to a peer.
type PathInfo struct {
	Via       string    `json:"via"` // direct or relayed
	Addr      string    `json:"addr"`
	Direction string    `json:"direction"` // inbound or outbound
	Opened    time.Time `json:"opened"`
	// Limited: the relay limits the connection's time and data.
	Limited bool `json:"limited,omitempty"`
}

// FactInfo is one journal fact, or (Pending) a write of this device
// buffered behind its writer fence. Value is the value as text when it is
// valid UTF-8; ValueBytes is always exact (base64 in JSON).
type FactInfo struct {
	ID         string `json:"id,omitempty"`
	Author     string `json:"author"`
	Seq        uint64 `json:"seq,omitempty"`
	Epoch      uint64 `json:"epoch,omitempty"`
	Lamport    uint64 `json:"lamport,omitempty"`
	Kind       string `json:"kind"`
	Key        string `json:"key,omitempty"`
	Value      string `json:"value,omitempty"`
	ValueBytes []byte `json:"value_base64,omitempty"`
	Pending    bool   `json:"pending,omitempty"`
}

// Status reports the node's state.
func (n *Node) Status() Status {
	s := Status{Version: Version, Device: n.device.String(), Name: n.cfg.Name, Protocols: n.SupportedProtocols(), UpgradePolicy: n.UpgradePolicy()}
	s.LastSessionAbort, s.SessionAborts = n.sessions.read()
	for _, a := range n.host.Addrs() {
		s.Addrs = append(s.Addrs, a.String()+"/p2p/"+n.host.ID().String())
	}
	s.Peers = len(n.ConnectedDevices())
	s.Disk = n.space.info()
	js := n.store.Stats()
	s.Journal = JournalInfo{js.Facts, js.Bytes, js.Pending, js.Equivocations, js.PrunedFacts, js.PrunedBytes}
	s.VersionVector = vvJSON(n.store.VersionVector())
	if ev, err := n.store.Evidence(); err == nil {
		s.Evidence = len(ev)
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	st := n.rep.State()
	if a := n.rep.Account(); !a.IsZero() {
		s.Account = a.String()
	}
	s.Admin = st.Holds(n.device, crdt.CapAdmin, st.Epoch)
	for _, d := range st.MemberList() {
		s.Devices = append(s.Devices, d.String())
	}
	s.IdentityEpoch, s.SnapshotEpoch = st.Epoch, st.SnapshotEpoch
	if !st.Account.IsZero() {
		s.RequiredProtocol = maintenance.RequiredProtocol(st)
		s.Incompatible = n.incompatibleLocked()
	}
	s.StateDigest = st.Digest().String()
	if c := st.NewestSnapshot(); c != nil {
		s.NewestSnapshot = n.snapshotInfoLocked(c.ProposalID, false)
	}
	if id, dl, open := n.rep.Fence(); open {
		s.Fence = &FenceInfo{Proposal: hex.EncodeToString(id[:]), Deadline: time.UnixMilli(dl), Buffered: n.rep.Buffered()}
	}
	if g := n.rep.LastGC(); g != nil {
		s.LastGC = gcInfo(g)
	}
	if gk := st.GroupKey(); gk != nil {
		info := &GroupKeyInfo{KeyEpoch: gk.KeyEpoch, Threshold: gk.Threshold}
		for _, d := range gk.Participants {
			info.Participants = append(info.Participants, d.String())
		}
		if sh := n.rep.Share(); sh != nil {
			info.HasShare, info.ShareIndex = true, sh.Index()+1
		}
		s.GroupKey = info
	}
	return s
}

func gcInfo(g *maintenance.GCStats) *GCInfo {
	return &GCInfo{Proposal: hex.EncodeToString(g.Proposal[:]), FactsBefore: g.FactsBefore, BytesBefore: g.BytesBefore,
		FactsAfter: g.FactsAfter, BytesAfter: g.BytesAfter, PrunedFacts: g.PrunedFacts, PrunedBytes: g.PrunedBytes, BlobsDeleted: g.BlobsDeleted}
}

func vvJSON(v crdt.VersionVector) map[string]uint64 {
	m := make(map[string]uint64, len(v))
	for a, s := range v {
		m[a.String()] = s
	}
	return m
}

// Peers lists the connected peers.
func (n *Node) Peers() []PeerInfo {
	names := n.deviceNames()
	inc := n.incompatibility()
	var out []PeerInfo
	for _, p := range n.host.Network().Peers() {
		pi := PeerInfo{Peer: p.String(), Device: n.gater.isMember(p), Name: names[p], Via: "relayed"}
		if d, ok := DeviceOf(p); ok {
			if i, ok := inc[d]; ok {
				pi.Incompatible, pi.IncompatibleCode = i.Reason, i.Code
			}
		}
		for _, c := range n.host.Network().ConnsToPeer(p) {
			if a := c.RemoteMultiaddr().String(); !slices.Contains(pi.Addrs, a) {
				pi.Addrs = append(pi.Addrs, a)
			}
			st := c.Stat()
			pi.Paths = append(pi.Paths, PathInfo{Via: pathOf(c), Addr: c.RemoteMultiaddr().String(), Direction: strings.ToLower(st.Direction.String()), Opened: st.Opened, Limited: st.Limited})
			if !isRelayed(c) {
				pi.Via = "direct"
			}
		}
		if len(pi.Paths) == 0 {
			continue // gone since Peers() was read
		}
		sort.SliceStable(pi.Paths, func(i, j int) bool { return pi.Paths[i].Via == "direct" && pi.Paths[j].Via != "direct" })
		out = append(out, pi)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Peer < out[j].Peer })
	return out
}

// deviceNames maps the account's devices to their names.
func (n *Node) deviceNames() map[peer.ID]string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return cachedLocked(n, "members", n.deviceNamesLocked)
}

func (n *Node) deviceNamesLocked() map[peer.ID]string {
	st := n.rep.State()
	m := map[peer.ID]string{}
	for d, mem := range st.Members {
		m[PeerID(d)] = mem.Name
		if dm := st.Devices[d]; dm != nil && dm.Name != "" {
			m[PeerID(d)] = dm.Name // what the device says of itself, newest
		}
	}
	return m
}

// Facts lists the journal's facts in causal order (Lamport, author, seq),
// then this device's writes buffered behind the fence (pending); tail > 0
// keeps the last tail.
func (n *Node) Facts(tail int) ([]FactInfo, error) {
	var fs []*crdt.Fact
	if err := n.store.All(func(f *crdt.Fact) error { fs = append(fs, f); return nil }); err != nil {
		return nil, err
	}
	crdt.SortCausal(fs)
	pend, err := n.pendingFacts()
	if err != nil {
		return nil, err
	}
	if tail > 0 && len(fs)+len(pend) > tail {
		if len(pend) >= tail {
			fs, pend = nil, pend[len(pend)-tail:]
		} else {
			fs = fs[len(fs)-(tail-len(pend)):]
		}
	}
	out := make([]FactInfo, 0, len(fs)+len(pend))
	for _, f := range fs {
		fi := FactInfo{ID: f.ID().String(), Author: f.Author.String(), Seq: f.Seq, Epoch: f.Epoch, Lamport: f.Lamport, Kind: f.Kind.String()}
		if b, err := f.DecodeBody(); err == nil {
			fi.setBody(b)
		}
		out = append(out, fi)
	}
	return append(out, pend...), nil
}

// ---- server ----

func (n *Node) serveAPI() error {
	path := filepath.Join(n.home, SocketFile)
	if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
		c.Close()
		return fmt.Errorf("a node is already running at %s", n.home)
	}
	_ = os.Remove(path)
	ln, err := net.Listen("unix", path)
	if err != nil {
		return fmt.Errorf("control socket %s: %w", path, err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return err
	}
	n.apiLn = ln
	n.apiSrv = &http.Server{Handler: n.apiHandler(), ReadHeaderTimeout: 10 * time.Second}
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		if err := n.apiSrv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			n.log.Warn("control API", "err", err)
		}
	}()
	return nil
}

// APIHandler is the control API's HTTP handler (tests mount it anywhere).
func (n *Node) APIHandler() http.Handler { return n.apiHandler() }

func (n *Node) apiHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/status", func(w http.ResponseWriter, r *http.Request) { reply(w, n.Status(), nil) })
	mux.HandleFunc("GET /v1/peers", func(w http.ResponseWriter, r *http.Request) { reply(w, n.Peers(), nil) })
	mux.HandleFunc("POST /v1/facts", func(w http.ResponseWriter, r *http.Request) {
		var req PutRequest
		if !decode(w, r, &req) {
			return
		}
		if err := checkKey(req.Key); err != nil {
			reply(w, nil, err)
			return
		}
		id, err := n.Put(req.Key, req.Value)
		res := PutResult{Key: req.Key, Size: len(req.Value), Buffered: id == crdt.FactID{}}
		if id != (crdt.FactID{}) {
			res.ID = id.String()
		}
		reply(w, res, tooLarge(err, req.Key, req.Value))
	})
	mux.HandleFunc("GET /v1/facts/{key...}", func(w http.ResponseWriter, r *http.Request) {
		key := r.PathValue("key")
		if n.Account().IsZero() {
			reply(w, nil, ErrNoAccount)
			return
		}
		v, ok, err := n.Read(key)
		if err == nil && !ok {
			err = errorf(ErrNotFound, "no value for key %q", key)
		}
		reply(w, GetResult{Key: key, Value: v.Bytes, Pending: v.Pending}, err)
	})
	mux.HandleFunc("GET /v1/facts", func(w http.ResponseWriter, r *http.Request) {
		tail, _ := strconv.Atoi(r.URL.Query().Get("tail"))
		fs, err := n.Facts(tail)
		reply(w, fs, err)
	})
	mux.HandleFunc("POST /v1/account/create", func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			Name      string
			Threshold uint64
		}
		if !decode(w, r, &req) {
			return
		}
		a, err := n.CreateAccount(req.Name, req.Threshold)
		reply(w, map[string]string{"account": a.String(), "device": n.device.String()}, err)
	})
	mux.HandleFunc("POST /v1/account/invite", func(w http.ResponseWriter, r *http.Request) {
		var req struct{ TTL string }
		if !decode(w, r, &req) {
			return
		}
		var ttl time.Duration
		if req.TTL != "" {
			var err error
			if ttl, err = time.ParseDuration(req.TTL); err != nil || ttl <= 0 {
				reply(w, nil, errorf(ErrBadRequest, "--expires %q is not a positive duration", req.TTL))
				return
			}
		}
		code, exp, err := n.Invite(ttl)
		reply(w, map[string]any{"code": code, "expires": exp}, err)
	})
	mux.HandleFunc("POST /v1/account/join", func(w http.ResponseWriter, r *http.Request) {
		var req struct{ Code string }
		if !decode(w, r, &req) {
			return
		}
		a, err := n.Join(r.Context(), req.Code)
		reply(w, map[string]string{"account": a.String()}, err)
	})
	mux.HandleFunc("GET /v1/cache", func(w http.ResponseWriter, r *http.Request) { reply(w, n.CacheStatus(), nil) })
	mux.HandleFunc("POST /v1/cache/invalidate", func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			Keys []string `json:"keys"`
		}
		if !decode(w, r, &req) {
			return
		}
		id, err := n.InvalidateCache(req.Keys)
		res := map[string]any{"keys": req.Keys, "buffered": id == crdt.FactID{}}
		if id != (crdt.FactID{}) {
			res["id"] = id.String()
		}
		reply(w, res, err)
	})
	mux.HandleFunc("POST /v1/peers/connect", func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			Addr string `json:"addr"`
		}
		if !decode(w, r, &req) {
			return
		}
		p, err := n.ConnectAddr(r.Context(), req.Addr)
		reply(w, p, err)
	})
	n.maintenanceRoutes(mux)
	n.deviceRoutes(mux)
	n.removalRoutes(mux)
	n.reshareRoutes(mux)
	n.blobRoutes(mux)
	n.upgradeRoutes(mux)
	n.backupRoutes(mux)
	n.adminRoutes(mux)
	if labRoutes != nil {
		labRoutes(n, mux)
	}
	return mux
}

func decode(w http.ResponseWriter, r *http.Request, v any) bool {
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 4<<20)).Decode(v); err != nil {
		reply(w, nil, errorf(ErrBadRequest, "%v", err))
		return false
	}
	return true
}

func reply(w http.ResponseWriter, v any, err error) {
	w.Header().Set("Content-Type", "application/json")
	if err != nil {
		w.WriteHeader(statusOf(err))
		e := map[string]string{"error": err.Error()}
		if code := ErrorCode(err); code != "" {
			e["code"] = code
		}
		_ = json.NewEncoder(w).Encode(e)
		return
	}
	_ = json.NewEncoder(w).Encode(v)
}

func statusOf(err error) int {
	switch {
	case errors.Is(err, ErrBadRequest), errors.Is(err, ErrTooLarge):
		return http.StatusBadRequest
	case errors.Is(err, ErrNotFound):
		return http.StatusNotFound
	case errors.Is(err, ErrNoAccount), errors.Is(err, ErrHasAccount), errors.Is(err, maintenance.ErrNoAccount),
		errors.Is(err, maintenance.ErrHasAccount), errors.Is(err, maintenance.ErrNoGroupKey), errors.Is(err, maintenance.ErrRoundOpen),
		errors.Is(err, maintenance.ErrStaleProposal), errors.Is(err, maintenance.ErrNeedsRestore),
		errors.Is(err, maintenance.ErrStaleEpoch), errors.Is(err, maintenance.ErrUnsupportedProtocol), errors.Is(err, maintenance.ErrNotReady):
		return http.StatusConflict
	case errors.Is(err, ErrNoSnapshot):
		return http.StatusNotFound
	case errors.Is(err, maintenance.ErrBadSnapshot), errors.Is(err, maintenance.ErrDigestMismatch):
		return http.StatusUnprocessableEntity
	case errors.Is(err, ErrInvite), errors.Is(err, ErrNotAdmin), errors.Is(err, maintenance.ErrNotPermitted):
		return http.StatusForbidden
	case errors.Is(err, ErrKeygen):
		return http.StatusServiceUnavailable
	case errors.Is(err, ErrDiskFull):
		return http.StatusInsufficientStorage
	case errors.Is(err, ErrUnavailable), errors.Is(err, ErrClosed), errors.Is(err, ErrNoPeers):
		return http.StatusServiceUnavailable
	}
	return http.StatusInternalServerError
}
