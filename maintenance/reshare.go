package maintenance

import (
	"errors"
	"fmt"

	"aura/crdt"
	"aura/threshold"
)

// ReshareRequest is what a resharing session starts from, decided from the
// account state alone so that the node and the simulator invite the same
// devices with the same holders and threshold (threshold/reshare.go runs
// the session itself).
type ReshareRequest struct {
	// Key is the current group key fact and OldKey its parsed key.
	Key    *crdt.GroupKey
	OldKey *threshold.GroupKey
	// Devices are the current members, sorted: the devices invited.
	Devices []crdt.DeviceID
	// Holders gives, for each device, its share index under Key
	// (threshold.NoShare for a device that joined after it).
	Holders []int
	// Threshold is the new M.
	Threshold int
	// Removed lists the share holders of Key that are no longer members.
	Removed []crdt.DeviceID
}

// ErrReshareThreshold: the requested (or kept) threshold does not fit the
// remaining devices.
var ErrReshareThreshold = errors.New("resharing threshold out of range")

// PlanReshare decides a resharing from st: every current member is
// invited, each with the share the current group key gives it, and the
// new threshold is m, or with m == 0 the current key's threshold. The
// threshold must satisfy 2 <= M <= the number of members; the session
// still needs the old M share holders online.
func PlanReshare(st *crdt.State, m int) (*ReshareRequest, error) {
	gk := st.GroupKey()
	if gk == nil {
		return nil, ErrNoGroupKey
	}
	old, err := threshold.ParseGroupKey(gk.PublicKey)
	if err != nil {
		return nil, fmt.Errorf("group key of epoch %d: %w", gk.KeyEpoch, err)
	}
	req := &ReshareRequest{Key: gk, OldKey: old, Devices: st.MemberList()}
	at := make(map[crdt.DeviceID]int, len(gk.Participants))
	for i, d := range gk.Participants {
		at[d] = i
		if !st.IsMember(d) {
			req.Removed = append(req.Removed, d)
		}
	}
	for _, d := range req.Devices {
		if i, ok := at[d]; ok && i < old.Signers() {
			req.Holders = append(req.Holders, i)
		} else {
			req.Holders = append(req.Holders, threshold.NoShare)
		}
	}
	n := len(req.Devices)
	if m == 0 {
		m = int(gk.Threshold)
		if m > n {
			return nil, fmt.Errorf("%w: the key's threshold is %d but only %d devices remain; choose --threshold from 2 to %d", ErrReshareThreshold, m, n, n)
		}
	}
	if m < 2 || m > n {
		if n < 2 {
			return nil, fmt.Errorf("%w: resharing needs at least 2 devices, the account has %d", ErrReshareThreshold, n)
		}
		return nil, fmt.Errorf("%w: --threshold %d with %d devices: M must be from 2 to %d", ErrReshareThreshold, m, n, n)
	}
	req.Threshold = m
	return req, nil
}

// NeedsReshare reports whether a share holder of the current group key is
// no longer a member: its share still counts toward the threshold until
// the key is reshared, so a removal asks for one.
func NeedsReshare(st *crdt.State) bool {
	gk := st.GroupKey()
	if gk == nil {
		return false
	}
	for _, d := range gk.Participants {
		if !st.IsMember(d) {
			return true
		}
	}
	return false
}

// ShareFor picks, among the shares a device holds (its sealed share, one
// received by a resharing not yet published...), the one to vote with:
// the share of the current group key that the key's fact gives this
// device (its index names self). nil when none: a share of an earlier key
// makes only bad partials once the key was reshared.
func ShareFor(st *crdt.State, self crdt.DeviceID, held []*threshold.Share) *threshold.Share {
	gk := st.GroupKey()
	if gk == nil {
		return nil
	}
	key, err := threshold.ParseGroupKey(gk.PublicKey)
	if err != nil {
		return nil
	}
	for _, sh := range held {
		if sh != nil && sh.Matches(key) && sh.Index() < len(gk.Participants) && gk.Participants[sh.Index()] == self {
			return sh
		}
	}
	return nil
}
