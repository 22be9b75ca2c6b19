package node

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"

	"github.com/libp2p/go-libp2p/core/network"

	"aura/crdt"
	"aura/maintenance"
)

// Admin replacement (DESIGN §6, issue 11 item 6): the node only carries
// out what maintenance decides. ReplaceAdmin proposes through
// Replica.ProposeAdminReplace (or approves through ApproveAdminReplace)
// and waits for Replica.AdminOutcome; the votes and the completion happen
// in the replica's Tick on every device, by maintenance.DecideAdminApproval
// over this device's AdminConfig and the last time it reached the admin
// (noteAdminSeenLocked, every tick).

// AdminConfig is the [admin] section of config.toml.
type AdminConfig struct {
	// AutoApproveAfter: approve a replacement without the operator once
	// the admin has been unreachable this long; 0 (the default) never does.
	AutoApproveAfter Duration `toml:"auto_approve_after"`
	// Timeout: how long a replacement request stays open (default: the
	// snapshot timeout).
	Timeout Duration `toml:"timeout"`
}

// policy is the core's view of the section.
func (c AdminConfig) policy() maintenance.AdminPolicy {
	return maintenance.AdminPolicy{AutoApproveAfter: time.Duration(c.AutoApproveAfter).Milliseconds()}
}

// AdminReplaceRequest is the body of POST /v1/admin/replace.
type AdminReplaceRequest struct {
	New     string `json:"new"`
	Approve bool   `json:"approve"`
}

// AdminReplaceInfo is the answer of `aura-cli admin replace`.
type AdminReplaceInfo struct {
	Status          string `json:"status"` // replaced, approved, approval-recorded
	Request         string `json:"request,omitempty"`
	Previous        string `json:"previous,omitempty"`
	New             string `json:"new"`
	ActivationEpoch uint64 `json:"activation_epoch,omitempty"`
	Votes           int    `json:"votes,omitempty"`
	Threshold       int    `json:"threshold,omitempty"`
	Detail          string `json:"detail,omitempty"`
}

// AdminRoundInfo is one replacement request in `aura-cli admin status`.
type AdminRoundInfo struct {
	ID              string    `json:"id"`
	Previous        string    `json:"previous"`
	New             string    `json:"new"`
	ActivationEpoch uint64    `json:"activation_epoch"`
	Deadline        time.Time `json:"deadline"`
	Votes           int       `json:"votes"`
	Threshold       int       `json:"threshold"`
	Voted           bool      `json:"voted"`
	Verdict         string    `json:"verdict,omitempty"` // this device's: operator, auto, refused
	Reason          string    `json:"reason,omitempty"`
	Status          string    `json:"status"` // open, replaced, lost, expired
}

// AdminStatus is GET /v1/admin.
type AdminStatus struct {
	Admin string `json:"admin"`
	// Overrides is what this device keeps under maintenance:admin_override:
	// previous admin → the winning new admin and its activation epoch.
	Overrides []AdminOverrideInfo `json:"overrides"`
	Rounds    []AdminRoundInfo    `json:"rounds"`
}

// AdminOverrideInfo is one winning override.
type AdminOverrideInfo struct {
	Previous        string `json:"previous"`
	New             string `json:"new"`
	ActivationEpoch uint64 `json:"activation_epoch"`
}

// Admin error codes (AdminError.Code): one per failure, for scripts and
// the CLI's exit status.
const (
	AdminCodeNotMember        = "not_member"
	AdminCodeAlreadyAdmin     = "already_admin"
	AdminCodeNotEnough        = "not_enough_approvals"
	AdminCodeApprovedOther    = "approved_other"
	AdminCodeLost             = "lost_to_competing"
	AdminCodeExpired          = "expired"
	AdminCodeStaleEpoch       = "stale_epoch"
	AdminCodeNotAdmin         = "not_current_admin"
	AdminCodeNoGroupKey       = "no_group_key"
	AdminCodeAwaitingOperator = "awaiting_operator"
	AdminCodeProtocol         = "unsupported_protocol"
)

var adminCodes = []struct {
	err    error
	code   string
	status int
}{
	{maintenance.ErrNotMember, AdminCodeNotMember, http.StatusBadRequest},
	{maintenance.ErrAlreadyAdmin, AdminCodeAlreadyAdmin, http.StatusBadRequest},
	{maintenance.ErrNotEnoughApprovals, AdminCodeNotEnough, http.StatusConflict},
	{maintenance.ErrApprovedOther, AdminCodeApprovedOther, http.StatusConflict},
	{maintenance.ErrLostToCompeting, AdminCodeLost, http.StatusConflict},
	{maintenance.ErrRequestExpired, AdminCodeExpired, http.StatusConflict},
	{maintenance.ErrStaleEpoch, AdminCodeStaleEpoch, http.StatusConflict},
	{maintenance.ErrNotCurrentAdmin, AdminCodeNotAdmin, http.StatusConflict},
	{maintenance.ErrNoGroupKey, AdminCodeNoGroupKey, http.StatusConflict},
	{maintenance.ErrAwaitingOperator, AdminCodeAwaitingOperator, http.StatusConflict},
	{maintenance.ErrUnsupportedProtocol, AdminCodeProtocol, http.StatusConflict},
}

// AdminError is a failed admin command as the client sees it.
type AdminError struct {
	Code    string // one of the AdminCode constants, "" for others
	Message string
}

func (e *AdminError) Error() string { return e.Message }

func adminCodeOf(err error) (string, int) {
	for _, c := range adminCodes {
		if errors.Is(err, c.err) {
			return c.code, c.status
		}
	}
	return "", statusOf(err)
}

// noteAdminSeenLocked tells the replica whether the admin is reachable
// now (connected, or this device): the auto-approval clock. n.mu is held.
func (n *Node) noteAdminSeenLocked(at int64) {
	if n.rep.AdminSeen() == 0 {
		n.rep.SetAdminSeen(at) // never seen since start: count from now
	}
	a := n.rep.State().Admin()
	if a == (crdt.DeviceID{}) {
		return
	}
	if a == n.device || n.host.Network().Connectedness(PeerID(a)) == network.Connected {
		n.rep.SetAdminSeen(at)
	}
}

// ReplaceAdmin is `aura-cli admin replace --new DEVICE [--approve]`:
// without approve it asks the account to replace the admin by the device
// and waits until the replacement is appended or fails; with approve it
// gives this device's approval (now, or for a request still to come).
func (n *Node) ReplaceAdmin(ctx context.Context, req AdminReplaceRequest) (*AdminReplaceInfo, error) {
	d, err := crdt.ParseDeviceID(req.New)
	if err != nil {
		return nil, errorf(ErrBadRequest, "--new %q is not a device id: %v", req.New, err)
	}
	n.mu.Lock()
	if n.rep.Account().IsZero() {
		n.mu.Unlock()
		return nil, ErrNoAccount
	}
	if req.Approve {
		out, err := n.rep.ApproveAdminReplace(now(), d)
		n.invalidateLocked(out, nil)
		n.mu.Unlock()
		n.handle(out)
		switch {
		case errors.Is(err, maintenance.ErrNoRequest):
			return &AdminReplaceInfo{Status: "approval-recorded", New: d.String(),
				Detail: "no request to replace the admin by this device is open (" + err.Error() + "): this device signs the next one when it comes"}, nil
		case err != nil:
			return nil, err
		}
		return &AdminReplaceInfo{Status: "approved", New: d.String()}, nil
	}
	out, id, err := n.rep.ProposeAdminReplace(now(), d)
	n.invalidateLocked(out, nil)
	n.mu.Unlock()
	if err != nil {
		return nil, err
	}
	n.handle(out)
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for {
		n.mu.Lock()
		done, err := n.rep.AdminOutcome(now(), id)
		info := n.adminReplaceInfoLocked(id)
		n.mu.Unlock()
		if done {
			if err != nil {
				return nil, err
			}
			info.Status = "replaced"
			return info, nil
		}
		select {
		case <-ctx.Done():
			return nil, errorf(ErrUnavailable, "gave up waiting for approvals (%d of %d): %w", info.Votes, info.Threshold, ctx.Err())
		case <-n.ctx.Done():
			return nil, ErrClosed
		case <-t.C:
		}
	}
}

func (n *Node) adminReplaceInfoLocked(id [16]byte) *AdminReplaceInfo {
	for _, rd := range n.rep.AdminRounds() {
		if rd.ID == id {
			return &AdminReplaceInfo{Request: hex.EncodeToString(id[:]), Previous: rd.Previous.String(), New: rd.New.String(),
				ActivationEpoch: rd.ActivationEpoch, Votes: rd.Votes, Threshold: rd.Threshold}
		}
	}
	return &AdminReplaceInfo{Request: hex.EncodeToString(id[:])}
}

// AdminStatus is `aura-cli admin status`.
func (n *Node) AdminStatus() (AdminStatus, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	var s AdminStatus
	if n.rep.Account().IsZero() {
		return s, ErrNoAccount
	}
	s.Admin = n.rep.State().Admin().String()
	saved, err := n.rep.AdminOverrides()
	if err != nil {
		return s, err
	}
	s.Overrides = []AdminOverrideInfo{}
	for prev, o := range saved {
		s.Overrides = append(s.Overrides, AdminOverrideInfo{Previous: prev.String(), New: o.New.String(), ActivationEpoch: o.ActivationEpoch})
	}
	s.Rounds = []AdminRoundInfo{}
	t := now()
	for _, rd := range n.rep.AdminRounds() {
		ri := AdminRoundInfo{ID: hex.EncodeToString(rd.ID[:]), Previous: rd.Previous.String(), New: rd.New.String(),
			ActivationEpoch: rd.ActivationEpoch, Deadline: time.UnixMilli(rd.Deadline), Votes: rd.Votes, Threshold: rd.Threshold,
			Voted: rd.Voted, Verdict: rd.Verdict.Kind.String(), Status: "open"}
		if rd.Verdict.Reason != nil {
			ri.Reason = rd.Verdict.Reason.Error()
		}
		switch done, err := n.rep.AdminOutcome(t, rd.ID); {
		case done && err == nil:
			ri.Status = "replaced"
		case errors.Is(err, maintenance.ErrLostToCompeting):
			ri.Status = "lost"
		case errors.Is(err, maintenance.ErrNotEnoughApprovals):
			ri.Status = "expired"
		}
		s.Rounds = append(s.Rounds, ri)
	}
	return s, nil
}

func (n *Node) adminRoutes(mux *http.ServeMux) {
	mux.HandleFunc("POST /v1/admin/replace", func(w http.ResponseWriter, r *http.Request) {
		var req AdminReplaceRequest
		if !decode(w, r, &req) {
			return
		}
		info, err := n.ReplaceAdmin(r.Context(), req)
		adminReply(w, info, err)
	})
	mux.HandleFunc("GET /v1/admin", func(w http.ResponseWriter, r *http.Request) {
		s, err := n.AdminStatus()
		adminReply(w, s, err)
	})
}

// adminReply is reply with the failure's code beside its message.
func adminReply(w http.ResponseWriter, v any, err error) {
	if err == nil {
		reply(w, v, nil)
		return
	}
	code, status := adminCodeOf(err)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]string{"error": err.Error(), "code": code})
}

// ReplaceAdmin asks the node to replace the admin (or approve it).
func (c *Client) ReplaceAdmin(ctx context.Context, req AdminReplaceRequest) (*AdminReplaceInfo, error) {
	var info AdminReplaceInfo
	return &info, c.adminDo(ctx, "POST", "/v1/admin/replace", req, &info)
}

// AdminStatus fetches the admin replacement status.
func (c *Client) AdminStatus(ctx context.Context) (AdminStatus, error) {
	var s AdminStatus
	return s, c.adminDo(ctx, "GET", "/v1/admin", nil, &s)
}

// adminDo is do, keeping the failure's code (*AdminError).
func (c *Client) adminDo(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://aura"+path, body)
	if err != nil {
		return err
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		var ne *net.OpError
		if errors.As(err, &ne) && ne.Op == "dial" {
			return fmt.Errorf("no node is running at %s: start it with `aura-node run --home %s`", c.home, c.home)
		}
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 300 {
		var e struct{ Error, Code string }
		if json.NewDecoder(resp.Body).Decode(&e) != nil || e.Error == "" {
			e.Error = resp.Status
		}
		return &AdminError{Code: e.Code, Message: e.Error}
	}
	return json.NewDecoder(resp.Body).Decode(out)
}
