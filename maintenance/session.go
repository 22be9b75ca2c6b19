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
// upgrade in force (InForceIDs: activated, not cancelled, not
// superseded by a newer version of its package) with the highest fence
// that names one, else
// BaseProtocol.
func RequiredProtocol(st *crdt.State) string {
	p, fence := BaseProtocol, uint64(0)
	for _, id := range InForceIDs(st) {
		u := st.Upgrades[id]
		if u.Meta.Protocol == "" {
			continue
		}
		if f := u.Activated.ActivationFence; f > fence || (f == fence && u.Meta.Protocol > p) {
			p, fence = u.Meta.Protocol, f
		}
	}
	return p
}

// Supports reports whether device d can run protocol proto by what the
// state holds of it: its DeviceMetadata lists proto. A device that has
// published no DeviceMetadata yet (its metadata is still on its way, or
// it predates metadata) is taken to run BaseProtocol and nothing else:
// every binary runs the base protocol, and a session must not fail only
// because gossip delivered a device's metadata after its membership.
func Supports(st *crdt.State, d crdt.DeviceID, proto string) bool {
	m := st.Devices[d]
	if m == nil || len(m.Protocols) == 0 {
		return proto == BaseProtocol
	}
	return m.Protocols[proto]
}

// Incompatible names why device d cannot take part in a session on st now:
// a *ProtocolError when it does not advertise RequiredProtocol, a
// *NotReadyError when it lacks readiness for an activated upgrade, nil
// when it can. Drivers show it in their peer and status listings.
func Incompatible(st *crdt.State, d crdt.DeviceID) error {
	if proto := RequiredProtocol(st); !Supports(st, d, proto) {
		return &ProtocolError{Protocol: proto, Devices: []crdt.DeviceID{d}}
	}
	return UpgradeGate(st, []crdt.DeviceID{d})
}

// CheckSession is the gate of every maintenance session (snapshot round,
// key generation, admin replacement): it fails when the identity epoch
// moved past the session's scope (*StaleEpochError), when a participant
// does not advertise RequiredProtocol in its DeviceMetadata
// (*ProtocolError naming every such device; see Supports for a device
// without metadata), or when a participant lacks readiness for an
// activated upgrade (UpgradeGate, *NotReadyError). A driver calls it
// before a session starts and again while it runs (every tick, every
// message): a session it fails for aborts.
func CheckSession(st *crdt.State, scope Scope, participants []crdt.DeviceID) error {
	if cur := ScopeOf(st); cur.Identity != scope.Identity {
		return &StaleEpochError{Session: scope, Current: cur}
	}
	proto := RequiredProtocol(st)
	var lacking []crdt.DeviceID
	for _, d := range participants {
		if !Supports(st, d, proto) {
			lacking = append(lacking, d)
		}
	}
	if len(lacking) > 0 {
		sort.Slice(lacking, func(i, j int) bool { return string(lacking[i][:]) < string(lacking[j][:]) })
		return &ProtocolError{Protocol: proto, Devices: lacking}
	}
	return UpgradeGate(st, participants)
}

// SessionRetries is how many times the caller of a session that aborted
// because the identity epoch moved (ErrStaleEpoch) retries it under the
// new scope before it gives up and reports the abort.
const SessionRetries = 3

// RetrySession reports whether a session that failed with err after
// attempt attempts (the first is 1) is tried again under the new scope:
// only for a stale epoch, and at most SessionRetries times. Every other
// failure (a device lacking the protocol or readiness) stays until an
// operator acts, so retrying it would only repeat it.
func RetrySession(err error, attempt int) bool {
	return errors.Is(err, ErrStaleEpoch) && attempt <= SessionRetries
}

// SnapshotParticipants are the participants of a snapshot round under
// scope, sorted by id: its proposer and the holders of the account's newest
// group key that are members at scope's identity epoch and pass the
// readiness rule of activated upgrades (UpgradeGate). A holder lacking
// readiness is not a participant: its votes are refused (the round runs
// without it when the ready holders reach the threshold), so after a hard
// fork an unready device never takes part in a round, and the account can
// still take snapshots while an operator approves or removes it.
func SnapshotParticipants(st *crdt.State, scope Scope, proposer crdt.DeviceID) []crdt.DeviceID {
	out := []crdt.DeviceID{proposer}
	if gk := st.GroupKey(); gk != nil {
		for _, d := range gk.Participants {
			if d != proposer && st.Holds(d, "", scope.Identity) && UpgradeGate(st, []crdt.DeviceID{d}) == nil {
				out = append(out, d)
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return string(out[i][:]) < string(out[j][:]) })
	return out
}

// CheckSnapshotRound is CheckSession for a snapshot round of proposer under
// scope: the participants (SnapshotParticipants) must run the required
// protocol and the proposer must be ready; and when the holders lacking
// readiness leave fewer ready holders than the threshold, the round could
// never complete: it fails with the *NotReadyError of the first of them.
func CheckSnapshotRound(st *crdt.State, scope Scope, proposer crdt.DeviceID) error {
	parts := SnapshotParticipants(st, scope, proposer)
	if err := CheckSession(st, scope, parts); err != nil {
		return err
	}
	gk := st.GroupKey()
	if gk == nil {
		return nil
	}
	ready := 0
	var first error
	for _, d := range gk.Participants {
		if !st.Holds(d, "", scope.Identity) {
			continue
		}
		if err := UpgradeGate(st, []crdt.DeviceID{d}); err != nil {
			if first == nil {
				first = err
			}
			continue
		}
		ready++
	}
	if ready < int(gk.Threshold) && first != nil {
		return fmt.Errorf("%d of %d share holders ready, %d needed: %w", ready, len(gk.Participants), gk.Threshold, first)
	}
	return nil
}
