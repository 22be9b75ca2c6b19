package maintenance

import (
	"errors"
	"fmt"
	"sort"

	"aura/crdt"
)

// ErrNotReady: a device takes part in a maintenance session after a hard
// fork activated without having declared readiness for it (DESIGN §6).
var ErrNotReady = errors.New("not ready for the activated upgrade")

// NotReadyError names the device and the version it is not ready for; it
// wraps ErrNotReady.
type NotReadyError struct {
	Device  crdt.DeviceID
	Version string
}

func (e *NotReadyError) Error() string {
	return fmt.Sprintf("device %s not ready for %s", e.Device.Short(), e.Version)
}

func (e *NotReadyError) Unwrap() error { return ErrNotReady }

// UpgradeGate is the readiness rule of activated hard forks: once an
// upgrade is in force (InForce: activated, not cancelled, the newest
// activated version of its package), every participant of a session must
// have declared readiness for it. It returns nil when no upgrade in force
// excludes any of the participants, else a *NotReadyError for the first
// device (by id) and the lowest version (semver) it lacks. Soft upgrades
// never gate.
func UpgradeGate(st *crdt.State, participants []crdt.DeviceID) error {
	ids := InForceIDs(st)
	ps := append([]crdt.DeviceID(nil), participants...)
	sort.Slice(ps, func(i, j int) bool { return string(ps[i][:]) < string(ps[j][:]) })
	for _, d := range ps {
		for _, id := range ids {
			u := st.Upgrades[id]
			if !u.Ready[d] {
				return &NotReadyError{Device: d, Version: u.Activated.ToVersion}
			}
		}
	}
	return nil
}
