package node

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"

	"aura/crdt"
)

// Device removal (`aura-cli account remove DEVICE`) and the device list
// (`aura-cli account devices`).
//
// Removing a device appends DeviceRemoved, which opens a new identity
// epoch; from that epoch on the crdt guard refuses every fact the device
// signs, on every device (its earlier facts stay valid). Every device that
// learns of the removal drops its connections to the removed device at
// once and its gater refuses it from then on (dropExMembersLocked, called
// whenever the member set changes). The removed device's threshold share
// still counts until the key is reshared: the admin's node starts a
// resharing by itself (reshare_auto.go) as soon as enough share holders
// are online.

// AccountDevice is one device of the account, as `account devices` lists it.
type AccountDevice struct {
	ID           string     `json:"id"`
	Name         string     `json:"name,omitempty"`
	Capabilities []string   `json:"capabilities"`
	AddedEpoch   uint64     `json:"added_epoch"`
	RemovedEpoch uint64     `json:"removed_epoch,omitempty"`
	LastSeen     *time.Time `json:"last_seen,omitempty"`
	Connected    bool       `json:"connected"`
	Self         bool       `json:"self,omitempty"`
	// HoldsShare: the current group key names this device (ShareIndex is
	// its 1-based share number).
	HoldsShare bool `json:"holds_share"`
	ShareIndex int  `json:"share_index,omitempty"`
}

// RemoveResult is what `account remove` did.
type RemoveResult struct {
	Device  string `json:"device"`
	Name    string `json:"name,omitempty"`
	Fact    string `json:"fact"`
	Epoch   uint64 `json:"identity_epoch"`
	Reshare string `json:"reshare"` // what happens to the key: "started", "not needed", ...
}

// Devices lists every device the account ever admitted, members first,
// each sorted by id.
func (n *Node) Devices() []AccountDevice {
	n.mu.Lock()
	st := n.rep.State()
	share := map[crdt.DeviceID]int{}
	if gk := st.GroupKey(); gk != nil {
		for i, d := range gk.Participants {
			share[d] = i + 1
		}
	}
	var out []AccountDevice
	for d, m := range st.Members {
		info := AccountDevice{ID: d.String(), Name: m.Name, AddedEpoch: m.Added, RemovedEpoch: m.Removed, Self: d == n.device}
		if dm := st.Devices[d]; dm != nil && dm.Name != "" && info.Name == "" {
			info.Name = dm.Name
		}
		for c, e := range m.Caps {
			if st.Holds(d, c, st.Epoch) || (m.Removed != 0 && e < m.Removed) {
				info.Capabilities = append(info.Capabilities, c)
			}
		}
		slices.Sort(info.Capabilities)
		if i, ok := share[d]; ok && m.Removed == 0 {
			info.HoldsShare, info.ShareIndex = true, i
		}
		out = append(out, info)
	}
	n.mu.Unlock()
	n.last.mu.Lock()
	for i := range out {
		d, _ := crdt.ParseDeviceID(out[i].ID)
		if t, ok := n.last.at[PeerID(d)]; ok {
			t := t
			out[i].LastSeen = &t
		}
	}
	n.last.mu.Unlock()
	for i := range out {
		d, _ := crdt.ParseDeviceID(out[i].ID)
		out[i].Connected = !out[i].Self && len(n.host.Network().ConnsToPeer(PeerID(d))) > 0
		if out[i].Self {
			now := time.Now()
			out[i].LastSeen = &now
		}
	}
	slices.SortFunc(out, func(a, b AccountDevice) int {
		if (a.RemovedEpoch == 0) != (b.RemovedEpoch == 0) {
			if a.RemovedEpoch == 0 {
				return -1
			}
			return 1
		}
		return strings.Compare(a.ID, b.ID)
	})
	return out
}

// resolveDevice finds a member by full id, unique id suffix or prefix, or
// unique name.
func (n *Node) resolveDevice(who string) (crdt.DeviceID, error) {
	who = strings.TrimSpace(who)
	if who == "" {
		return crdt.DeviceID{}, errorf(ErrBadRequest, "name the device to remove (its id or name, see `aura-cli account devices`)")
	}
	if d, err := crdt.ParseDeviceID(who); err == nil {
		return d, nil
	}
	var found []crdt.DeviceID
	for _, info := range n.Devices() {
		if info.RemovedEpoch != 0 {
			continue
		}
		if info.Name == who || strings.HasPrefix(info.ID, who) || strings.HasSuffix(info.ID, who) {
			d, _ := crdt.ParseDeviceID(info.ID)
			found = append(found, d)
		}
	}
	switch len(found) {
	case 0:
		return crdt.DeviceID{}, errorf(ErrNotFound, "no device of the account matches %q (see `aura-cli account devices`)", who)
	case 1:
		return found[0], nil
	}
	return crdt.DeviceID{}, errorf(ErrBadRequest, "%q matches %d devices: give more of its id", who, len(found))
}

// RemoveDevice removes a device from the account (admin only): it appends
// DeviceRemoved, cuts the device off at once, and starts resharing the
// threshold key without it (threshold m, 0 = keep the key's M) as soon as
// enough share holders are online.
func (n *Node) RemoveDevice(ctx context.Context, who string, m int) (*RemoveResult, error) {
	if n.Account().IsZero() {
		return nil, ErrNoAccount
	}
	if err := n.requireAdmin("remove a device"); err != nil {
		return nil, err
	}
	d, err := n.resolveDevice(who)
	if err != nil {
		return nil, err
	}
	if d == n.device {
		return nil, errorf(ErrBadRequest, "this device is the admin: it cannot remove itself (replace the admin first)")
	}
	n.mu.Lock()
	st := n.rep.State()
	mem := st.Members[d]
	member := st.IsMember(d)
	n.mu.Unlock()
	if mem == nil {
		return nil, errorf(ErrNotFound, "device %s is not a device of this account", d.Short())
	}
	if !member {
		return nil, errorf(ErrBadRequest, "device %s was already removed (at identity epoch %d)", d.Short(), mem.Removed)
	}
	id, err := n.write(&crdt.DeviceRemoved{Device: d})
	if err != nil {
		return nil, err
	}
	n.mu.Lock()
	n.refreshMembersLocked()
	epoch := n.rep.State().Epoch
	n.mu.Unlock()
	n.log.Info("device removed", "device", d.Short(), "identity_epoch", epoch)
	res := &RemoveResult{Device: d.String(), Name: mem.Name, Fact: id.String(), Epoch: epoch}
	res.Reshare = n.startAutoReshare(m)
	return res, nil
}

// dropExMembersLocked closes the connections to every device the state
// records as removed and blocks it in the gater for good, so it is refused
// even as a guest while an invite is open (a removal is permanent: the
// crdt keeps the earliest removal epoch). It runs whenever the member set
// changes, and at start. n.mu is held; closing runs aside.
func (n *Node) dropExMembersLocked(now map[peer.ID]bool) {
	var gone []peer.ID
	for d, m := range n.rep.State().Members {
		if p := PeerID(d); m.Removed != 0 && d != n.device && !now[p] {
			gone = append(gone, p)
		}
	}
	var drop []peer.ID
	for _, p := range gone {
		n.gater.trust(p, false)
		if !n.gater.isBlocked(p) {
			n.gater.block(p, true)
		}
		if n.host.Network().Connectedness(p) == network.Connected {
			drop = append(drop, p)
		}
	}
	if len(drop) == 0 {
		return
	}
	go func() {
		for _, p := range drop {
			if n.closed.Load() {
				return
			}
			n.log.Info("dropping a removed device", "peer", p)
			_ = n.host.Network().ClosePeer(p)
		}
	}()
}

// removalRoutes serves /v1/account/devices and /v1/account/remove.
func (n *Node) removalRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET /v1/account/devices", func(w http.ResponseWriter, r *http.Request) {
		if n.Account().IsZero() {
			reply(w, nil, ErrNoAccount)
			return
		}
		reply(w, n.Devices(), nil)
	})
	mux.HandleFunc("POST /v1/account/remove", func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			Device    string `json:"device"`
			Threshold int    `json:"threshold"`
		}
		if !decode(w, r, &req) {
			return
		}
		res, err := n.RemoveDevice(r.Context(), req.Device, req.Threshold)
		reply(w, res, err)
	})
}

// Devices lists the account's devices.
func (c *Client) Devices(ctx context.Context) ([]AccountDevice, error) {
	var out []AccountDevice
	return out, c.do(ctx, "GET", "/v1/account/devices", nil, &out)
}

// RemoveDevice removes a device (admin only); threshold 0 keeps the key's M.
func (c *Client) RemoveDevice(ctx context.Context, device string, threshold int) (RemoveResult, error) {
	var out RemoveResult
	err := c.do(ctx, "POST", "/v1/account/remove", map[string]any{"device": device, "threshold": threshold}, &out)
	if err != nil {
		return out, fmt.Errorf("remove %s: %w", device, err)
	}
	return out, nil
}
