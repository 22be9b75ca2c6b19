package maintenance

import (
	"errors"
	"fmt"
	"sort"
	"strings"

	"aura/crdt"
)

// BaseProtocol is the account protocol every device runs before any hard
// fork names another (UpgradeMetadata.Protocol).
const BaseProtocol = "aura/1"

// Session errors (DESIGN §6, the seed's "Epoch Handling").
var (
	// ErrStaleEpoch: the identity epoch moved since the session began;
	// the caller retries under the new scope.
	ErrStaleEpoch = errors.New("the identity epoch moved: session aborted")
	// ErrUnsupportedProtocol: a participant does not advertise the
	// protocol the session must run.
	ErrUnsupportedProtocol = errors.New("participants lack the protocol version")
)

// Scope is the (identity_epoch, snapshot_epoch) pair a maintenance session
// runs under.
type Scope struct {
	Identity uint64 `json:"identity_epoch"`
	Snapshot uint64 `json:"snapshot_epoch"`
}

func (s Scope) String() string {
	return fmt.Sprintf("(identity %d, snapshot %d)", s.Identity, s.Snapshot)
}

// ScopeOf is the scope a session starting on st runs under.
func ScopeOf(st *crdt.State) Scope { return Scope{Identity: st.Epoch, Snapshot: st.SnapshotEpoch} }

// StaleEpochError says which scope a session began under and where the
// account is now; it wraps ErrStaleEpoch.
type StaleEpochError struct{ Session, Current Scope }

func (e *StaleEpochError) Error() string {
	return fmt.Sprintf("session began under identity epoch %d, the account is at %d: %v", e.Session.Identity, e.Current.Identity, ErrStaleEpoch)
}

func (e *StaleEpochError) Unwrap() error { return ErrStaleEpoch }

// ProtocolError names the devices that lack the protocol; it wraps
// ErrUnsupportedProtocol.
type ProtocolError struct {
	Protocol string
	Devices  []crdt.DeviceID
}

func (e *ProtocolError) Error() string {
	names := make([]string, len(e.Devices))
	for i, d := range e.Devices {
		names[i] = d.Short()
	}
	return fmt.Sprintf("%v %s: %s", ErrUnsupportedProtocol, e.Protocol, strings.Join(names, ", "))
}

func (e *ProtocolError) Unwrap() error { return ErrUnsupportedProtocol }

// RequiredProtocol is the protocol sessions must run on st: that of the
// activated upgrade with the highest fence that names one, else
// BaseProtocol.
func RequiredProtocol(st *crdt.State) string {
	p, fence := BaseProtocol, uint64(0)
	for _, u := range st.Upgrades {
		if u.Activated == nil || u.Meta == nil || u.Meta.Protocol == "" {
			continue
		}
		if f := u.Activated.ActivationFence; f > fence || (f == fence && u.Meta.Protocol > p) {
			p, fence = u.Meta.Protocol, f
		}
	}
	return p
}

// CheckSession is the gate of every maintenance session (snapshot round,
// key generation, admin replacement): it fails when the identity epoch
// moved past the session's scope (*StaleEpochError), when a participant
// does not advertise RequiredProtocol in its DeviceMetadata
// (*ProtocolError naming every such device), or when a participant lacks
// readiness for an activated upgrade (UpgradeGate, *NotReadyError).
func CheckSession(st *crdt.State, scope Scope, participants []crdt.DeviceID) error {
	if cur := ScopeOf(st); cur.Identity != scope.Identity {
		return &StaleEpochError{Session: scope, Current: cur}
	}
	proto := RequiredProtocol(st)
	var lacking []crdt.DeviceID
	for _, d := range participants {
		if m := st.Devices[d]; m == nil || !m.Protocols[proto] {
			lacking = append(lacking, d)
		}
	}
	if len(lacking) > 0 {
		sort.Slice(lacking, func(i, j int) bool { return string(lacking[i][:]) < string(lacking[j][:]) })
		return &ProtocolError{Protocol: proto, Devices: lacking}
	}
	return UpgradeGate(st, participants)
}
