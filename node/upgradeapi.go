package node

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sort"
	"time"

	"github.com/ipfs/go-cid"

	"aura/crdt"
	"aura/maintenance"
)

// The OTA upgrade API (`aura-cli upgrade publish|approve|cancel|status`).

// ArtifactInfo is one platform's artifact of an upgrade.
type ArtifactInfo struct {
	Platform string `json:"platform"`
	SHA256   string `json:"sha256"`
	Size     uint64 `json:"size"`
	CID      string `json:"cid"`
}

// PublishRequest is `upgrade publish`: the artifacts were stored first
// (POST /v1/upgrades/artifacts), here they are named by platform and CID.
type PublishRequest struct {
	Package   string         `json:"package"`
	Version   string         `json:"version"`
	Kind      string         `json:"kind"`                // soft or hard
	Fence     uint64         `json:"fence,omitempty"`     // hard: identity epoch (default: the current one)
	MinReady  uint64         `json:"min_ready,omitempty"` // hard: default every current device
	Expires   string         `json:"expires,omitempty"`   // duration from now (default 720h)
	Protocol  string         `json:"protocol,omitempty"`
	Artifacts []ArtifactInfo `json:"artifacts"`
}

// UpgradeDeviceInfo is one device's view of an upgrade.
type UpgradeDeviceInfo struct {
	Device    string   `json:"device"`
	Name      string   `json:"name,omitempty"`
	Policy    string   `json:"policy"`
	Supported []string `json:"supported_protocols"`
	Ready     bool     `json:"ready"`
	// This device only: the artifact fetched and verified.
	Self     bool `json:"self,omitempty"`
	Fetched  bool `json:"fetched,omitempty"`
	Verified bool `json:"verified,omitempty"`
}

// LocalUpgradeInfo is what this device did with an upgrade. State is one
// of: waiting (not fetched yet), fetching, verified (awaiting approval
// under manual), ready, failed (Error and ErrorKind say why), no-artifact
// (none for this platform), not-actionable (Phase says why).
type LocalUpgradeInfo struct {
	State     string `json:"state"`
	Platform  string `json:"platform"`
	Path      string `json:"path,omitempty"`
	Done      int64  `json:"done,omitempty"`
	Total     int64  `json:"total,omitempty"`
	Approved  bool   `json:"approved"`
	Error     string `json:"error,omitempty"`
	ErrorKind string `json:"error_kind,omitempty"` // hash_mismatch, size_overrun, size_short, hook, fetch
}

// UpgradeInfo is one upgrade as `upgrade status` shows it.
type UpgradeInfo struct {
	ID        string              `json:"id"`
	Package   string              `json:"package,omitempty"`
	Version   string              `json:"version,omitempty"`
	Kind      string              `json:"kind,omitempty"`
	Phase     string              `json:"phase"` // maintenance.UpgradePhase
	Fence     uint64              `json:"fence,omitempty"`
	MinReady  uint64              `json:"min_ready,omitempty"`
	Ready     int                 `json:"ready"`
	Expires   *time.Time          `json:"expires,omitempty"`
	Publisher string              `json:"publisher,omitempty"`
	Protocol  string              `json:"protocol,omitempty"`
	Activated bool                `json:"activated"`
	Cancelled bool                `json:"cancelled"`
	Waiting   string              `json:"waiting,omitempty"` // why a hard fork is not activated yet
	Artifacts []ArtifactInfo      `json:"artifacts,omitempty"`
	Local     LocalUpgradeInfo    `json:"local"`
	Devices   []UpgradeDeviceInfo `json:"devices"`
}

// UpgradeStatus is `aura-cli upgrade status`.
type UpgradeStatus struct {
	Device        string        `json:"device"`
	Platform      string        `json:"platform"`
	Policy        string        `json:"policy"`
	Supported     []string      `json:"supported_protocols"`
	IdentityEpoch uint64        `json:"identity_epoch"`
	InForce       []string      `json:"in_force"`
	Upgrades      []UpgradeInfo `json:"upgrades"`
}

// errorKind names a failure for JSON.
func errorKind(err error) string {
	switch {
	case err == nil:
		return ""
	case errors.Is(err, maintenance.ErrHashMismatch):
		return "hash_mismatch"
	case errors.Is(err, maintenance.ErrSizeOverrun):
		return "size_overrun"
	case errors.Is(err, maintenance.ErrSizeShort):
		return "size_short"
	case errors.Is(err, ErrHook):
		return "hook"
	}
	return "fetch"
}

// upgradeError gives a core error the API kind it maps to.
func upgradeError(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, maintenance.ErrUnknownUpgrade):
		return errorf(ErrNotFound, "%w", err)
	case errors.Is(err, maintenance.ErrNotPermitted):
		return err
	case errors.Is(err, maintenance.ErrRollback), errors.Is(err, maintenance.ErrUpgradeExpired),
		errors.Is(err, maintenance.ErrUpgradeCancelled), errors.Is(err, maintenance.ErrPastFence),
		errors.Is(err, maintenance.ErrActivated), errors.Is(err, crdt.ErrBadUpgrade),
		errors.Is(err, crdt.ErrArtifactIncomplete), errors.Is(err, maintenance.ErrNoArtifact),
		errors.Is(err, maintenance.ErrHashMismatch), errors.Is(err, maintenance.ErrSizeOverrun):
		return errorf(ErrBadRequest, "%w", err)
	}
	return err
}

// StoreArtifact stores an artifact's bytes as a pinned blob and returns
// its platform entry (sha2-256, size, CID) for PublishUpgrade.
func (n *Node) StoreArtifact(ctx context.Context, r io.Reader, platform string) (*ArtifactInfo, error) {
	if n.Account().IsZero() {
		return nil, ErrNoAccount
	}
	if err := n.space.writable(); err != nil {
		return nil, err
	}
	h := sha256.New()
	c, size, err := n.blobs.PutPinned(ctx, io.TeeReader(r, h))
	if err != nil {
		return nil, fmt.Errorf("store artifact: %w", err)
	}
	return &ArtifactInfo{Platform: platform, SHA256: hex.EncodeToString(h.Sum(nil)), Size: uint64(size), CID: c.String()}, nil
}

// artifactOf checks one artifact of a publish request against the blob
// held here: the hash and size published are those of the stored bytes.
func (n *Node) artifactOf(ctx context.Context, a ArtifactInfo) (crdt.UpgradeArtifact, error) {
	out := crdt.UpgradeArtifact{Platform: a.Platform, Size: a.Size}
	c, err := ParseBlobCID(a.CID)
	if err != nil {
		return out, err
	}
	out.CID = c.Bytes()
	if a.SHA256 == "" || a.Size == 0 {
		return out, errorf(ErrBadRequest, "artifact for %s: %w", a.Platform, crdt.ErrArtifactIncomplete)
	}
	if b, err := hex.DecodeString(a.SHA256); err != nil || len(b) != len(out.SHA256) {
		return out, errorf(ErrBadRequest, "artifact for %s: sha256 %q is not 64 hex digits", a.Platform, a.SHA256)
	} else {
		copy(out.SHA256[:], b)
	}
	rd, err := n.blobs.Open(ctx, c)
	if err != nil {
		return out, errorf(ErrBadRequest, "artifact %s is not stored on this device: store it first (POST /v1/upgrades/artifacts): %v", c, err)
	}
	defer rd.Close()
	h := sha256.New()
	k, err := io.Copy(h, io.LimitReader(rd, int64(a.Size)+1))
	if err != nil {
		return out, err
	}
	var sum crdt.Hash
	h.Sum(sum[:0])
	if err := maintenance.VerifyArtifact(&out, uint64(k), sum); err != nil {
		return out, errorf(ErrBadRequest, "publish: %w", err)
	}
	return out, nil
}

// PublishUpgrade appends UpgradeMetadata (capability upgrade_publish): it
// fills the defaults, checks every artifact against the stored blob, and
// refuses what the core refuses (maintenance.CheckPublish: malformed,
// without hash and size, expired, a rollback).
func (n *Node) PublishUpgrade(ctx context.Context, req PublishRequest) (*UpgradeInfo, error) {
	if n.Account().IsZero() {
		return nil, ErrNoAccount
	}
	m := &crdt.UpgradeMetadata{Package: req.Package, Version: req.Version, UpgradeKind: req.Kind, Protocol: req.Protocol}
	for _, a := range req.Artifacts {
		art, err := n.artifactOf(ctx, a)
		if err != nil {
			return nil, err
		}
		m.Artifacts = append(m.Artifacts, art)
	}
	sort.Slice(m.Artifacts, func(i, j int) bool { return m.Artifacts[i].Platform < m.Artifacts[j].Platform })
	ttl := 720 * time.Hour
	if req.Expires != "" {
		d, err := time.ParseDuration(req.Expires)
		if err != nil || d <= 0 {
			return nil, errorf(ErrBadRequest, "--expires %q is not a positive duration", req.Expires)
		}
		ttl = d
	}
	var out maintenance.Output
	err := n.withLock(func() error {
		st := n.rep.State()
		if !st.Holds(n.device, crdt.CapUpgradePublish, st.Epoch) {
			return fmt.Errorf("publish an upgrade: %w %q", maintenance.ErrNotPermitted, crdt.CapUpgradePublish)
		}
		t := now()
		m.Expires = uint64(t + ttl.Milliseconds())
		if m.UpgradeKind == crdt.UpgradeHard {
			m.ActivationFence, m.MinReady = req.Fence, req.MinReady
			if m.ActivationFence == 0 {
				m.ActivationFence = st.Epoch
			}
			if m.MinReady == 0 {
				m.MinReady = uint64(len(st.MemberList()))
			}
		} else if req.Fence != 0 || req.MinReady != 0 {
			return errorf(ErrBadRequest, "--fence and --min-ready are for hard forks (--kind hard)")
		}
		m.ID = crdt.UpgradeIDOf(m)
		if err := maintenance.CheckPublish(st, m, t); err != nil {
			return err
		}
		var err error
		out, err = n.rep.Write(t, m)
		return err
	})
	if err != nil {
		return nil, upgradeError(err)
	}
	n.handle(out)
	n.log.Info("upgrade published", "upgrade", crdt.UpgradeName(m.ID), "package", m.Package, "version", m.Version, "kind", m.UpgradeKind, "fence", m.ActivationFence)
	n.kickUpgrades()
	return n.upgradeInfo(m.ID)
}

// ApproveUpgrade records the operator's consent (durably) for a device
// under manual policy; readiness follows as soon as the artifact is
// verified.
func (n *Node) ApproveUpgrade(id [16]byte) (*UpgradeInfo, error) {
	n.mu.Lock()
	err := maintenance.Actionable(n.rep.State(), id, now())
	n.mu.Unlock()
	if err != nil {
		return nil, upgradeError(err)
	}
	if err := n.nmeta.Put("upgrade/approved/"+crdt.UpgradeName(id), []byte{1}); err != nil {
		return nil, err
	}
	n.upg.mu.Lock()
	n.upg.approved[id] = true
	n.upg.mu.Unlock()
	n.declareReady(n.upgradeCfg().Platform)
	n.kickUpgrades()
	return n.upgradeInfo(id)
}

// CancelUpgrade appends UpgradeCancelled before the fence
// (maintenance.CheckCancel).
func (n *Node) CancelUpgrade(id [16]byte, reason string) (*UpgradeInfo, error) {
	var out maintenance.Output
	err := n.withLock(func() error {
		if err := maintenance.CheckCancel(n.rep.State(), id); err != nil {
			return err
		}
		var err error
		out, err = n.rep.Write(now(), &crdt.UpgradeCancelled{Upgrade: id, Reason: reason})
		return err
	})
	if err != nil {
		return nil, upgradeError(err)
	}
	n.handle(out)
	return n.upgradeInfo(id)
}

func (n *Node) upgradeInfo(id [16]byte) (*UpgradeInfo, error) {
	s := n.Upgrades()
	for i := range s.Upgrades {
		if s.Upgrades[i].ID == crdt.UpgradeName(id) {
			return &s.Upgrades[i], nil
		}
	}
	return nil, errorf(ErrNotFound, "no upgrade %s", crdt.UpgradeName(id))
}

func sortedProtocols(m map[string]bool) []string {
	out := []string{}
	for p := range m {
		out = append(out, p)
	}
	sort.Strings(out)
	return out
}

// Upgrades is `upgrade status`: every upgrade, its phase, and per device
// its policy, supported protocols and readiness (this device's fetch and
// verification too).
func (n *Node) Upgrades() UpgradeStatus {
	platform := n.upgradeCfg().Platform
	n.mu.Lock()
	defer n.mu.Unlock()
	st := n.rep.State()
	t := now()
	s := UpgradeStatus{Device: n.device.String(), Platform: platform, Policy: maintenance.Policy(st, n.device),
		Supported: AccountProtocols, IdentityEpoch: st.Epoch, InForce: []string{}, Upgrades: []UpgradeInfo{}}
	for _, id := range maintenance.InForceIDs(st) {
		s.InForce = append(s.InForce, crdt.UpgradeName(id))
	}
	n.upg.mu.Lock()
	defer n.upg.mu.Unlock()
	for id, u := range st.Upgrades {
		ph := maintenance.Phase(st, id, t)
		ui := UpgradeInfo{ID: crdt.UpgradeName(id), Phase: ph.String(), Ready: len(maintenance.ReadyDevices(st, id)),
			Activated: u.Activated != nil, Cancelled: u.CancelEffective()}
		var art *crdt.UpgradeArtifact
		if m := u.Meta; m != nil {
			ui.Package, ui.Version, ui.Kind, ui.Fence, ui.MinReady, ui.Protocol = m.Package, m.Version, m.UpgradeKind, m.ActivationFence, m.MinReady, m.Protocol
			ui.Publisher = u.Publisher().String()
			if m.Expires != 0 {
				e := time.UnixMilli(int64(m.Expires)).UTC()
				ui.Expires = &e
			}
			for _, a := range m.Artifacts {
				c, _ := cid.Cast(a.CID)
				ui.Artifacts = append(ui.Artifacts, ArtifactInfo{Platform: a.Platform, SHA256: hex.EncodeToString(a.SHA256[:]), Size: a.Size, CID: c.String()})
			}
			if m.UpgradeKind == crdt.UpgradeHard && u.Activated == nil {
				if err := maintenance.ActivationDue(st, id, t); err != nil {
					ui.Waiting = err.Error()
				}
			}
			art = m.Artifact(platform)
		}
		l := n.upg.local[id]
		loc := LocalUpgradeInfo{Platform: platform, Approved: n.upg.approved[id]}
		switch {
		case u.Ready[n.device]:
			loc.State = "ready"
		case u.Meta != nil && art == nil:
			loc.State = "no-artifact"
		case l != nil && l.err != nil && l.final:
			loc.State = "failed"
		case ph != maintenance.PhasePublished && ph != maintenance.PhaseActivated:
			loc.State = "not-actionable"
		case l != nil && l.verified != (crdt.Hash{}):
			loc.State = "verified"
		case l != nil && l.fetching:
			loc.State = "fetching"
		default:
			loc.State = "waiting"
		}
		if l != nil {
			loc.Path, loc.Done, loc.Total = l.path, l.done, l.total
			if l.err != nil {
				loc.Error, loc.ErrorKind = l.err.Error(), errorKind(l.err)
			}
		}
		ui.Local = loc
		for _, d := range st.MemberList() {
			di := UpgradeDeviceInfo{Device: d.String(), Policy: maintenance.Policy(st, d), Supported: []string{}, Ready: u.Ready[d]}
			if dm := st.Devices[d]; dm != nil {
				di.Name, di.Supported = dm.Name, sortedProtocols(dm.Protocols)
			}
			if d == n.device {
				di.Self = true
				di.Verified = (l != nil && l.verified != (crdt.Hash{})) || u.Ready[d]
				di.Fetched = di.Verified || (l != nil && l.err != nil && l.final)
			}
			ui.Devices = append(ui.Devices, di)
		}
		s.Upgrades = append(s.Upgrades, ui)
	}
	sort.Slice(s.Upgrades, func(i, j int) bool {
		a, b := s.Upgrades[i], s.Upgrades[j]
		if a.Package != b.Package {
			return a.Package < b.Package
		}
		if c := crdt.CompareVersions(a.Version, b.Version); c != 0 {
			return c < 0
		}
		return a.ID < b.ID
	})
	return s
}

// upgradeRoutes mounts the upgrade API:
//
//	POST /v1/upgrades/artifacts?platform=P  body: the bytes → ArtifactInfo
//	POST /v1/upgrades                       PublishRequest → UpgradeInfo
//	GET  /v1/upgrades                       → UpgradeStatus
//	POST /v1/upgrades/{id}/approve          → UpgradeInfo
//	POST /v1/upgrades/{id}/cancel           {"reason"} → UpgradeInfo
func (n *Node) upgradeRoutes(mux *http.ServeMux) {
	mux.HandleFunc("POST /v1/upgrades/artifacts", func(w http.ResponseWriter, r *http.Request) {
		p := r.URL.Query().Get("platform")
		if p == "" {
			reply(w, nil, errorf(ErrBadRequest, "no platform (GOOS/GOARCH) for the artifact"))
			return
		}
		a, err := n.StoreArtifact(r.Context(), r.Body, p)
		reply(w, a, err)
	})
	mux.HandleFunc("POST /v1/upgrades", func(w http.ResponseWriter, r *http.Request) {
		var req PublishRequest
		if !decode(w, r, &req) {
			return
		}
		u, err := n.PublishUpgrade(r.Context(), req)
		reply(w, u, err)
	})
	mux.HandleFunc("GET /v1/upgrades", func(w http.ResponseWriter, r *http.Request) { reply(w, n.Upgrades(), nil) })
	mux.HandleFunc("POST /v1/upgrades/{id}/approve", func(w http.ResponseWriter, r *http.Request) {
		id, err := crdt.ParseUpgradeName(r.PathValue("id"))
		if err != nil {
			reply(w, nil, errorf(ErrBadRequest, "%v", err))
			return
		}
		u, err := n.ApproveUpgrade(id)
		reply(w, u, err)
	})
	mux.HandleFunc("POST /v1/upgrades/{id}/cancel", func(w http.ResponseWriter, r *http.Request) {
		id, err := crdt.ParseUpgradeName(r.PathValue("id"))
		if err != nil {
			reply(w, nil, errorf(ErrBadRequest, "%v", err))
			return
		}
		var req struct {
			Reason string `json:"reason"`
		}
		if !decode(w, r, &req) {
			return
		}
		u, err := n.CancelUpgrade(id, req.Reason)
		reply(w, u, err)
	})
}
