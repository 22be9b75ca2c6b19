package maintenance

import (
	"bytes"
	"errors"
	"fmt"
	"sort"

	"aura/crdt"
)

// The OTA upgrade rules (DESIGN §6, the seed's "OTA Upgrades"): whether an
// upgrade may be acted on, which upgrades are in force, when a hard fork
// activates and who writes the activation, what a fetched artifact must
// be, and when a device appends its readiness. Every function here is a
// function of the account state and the driver's `now` (unix ms): the node
// and the simulator call the same ones. See doc.go, "OTA upgrades".

// Errors of the upgrade flow; callers branch on them with errors.Is.
var (
	ErrUnknownUpgrade   = errors.New("no such upgrade")
	ErrRollback         = errors.New("rollback refused: this package is already activated at this version or a later one")
	ErrUpgradeExpired   = errors.New("upgrade metadata expired: not acted on")
	ErrUpgradeCancelled = errors.New("upgrade cancelled")
	ErrNoArtifact       = errors.New("the upgrade has no artifact for this platform")
	ErrHashMismatch     = errors.New("artifact hash mismatch: not marked ready")
	ErrSizeOverrun      = errors.New("artifact larger than its signed size: not marked ready")
	ErrSizeShort        = errors.New("artifact shorter than its signed size: not marked ready")
	ErrPastFence        = errors.New("the upgrade's fence is reached: it can no longer be cancelled")
	ErrActivated        = errors.New("the upgrade is already activated")
	ErrNotDue           = errors.New("the hard fork is not due for activation")
	ErrSoftUpgrade      = errors.New("a soft upgrade has no activation")
)

// UpgradePhase is where an upgrade stands, as every replica with the same
// state (and the same now) sees it.
type UpgradePhase uint8

// The phases of an upgrade.
const (
	PhaseUnknown    UpgradePhase = iota // readiness or activation seen, metadata not yet
	PhasePublished                      // may be fetched and made ready; a hard fork waits for its fence
	PhaseActivated                      // a hard fork in force
	PhaseSuperseded                     // activated, but a later version of the package is in force
	PhaseCancelled
	PhaseExpired
	PhaseRollback // a version at or below an activated one: never acted on
)

var phaseNames = [...]string{"unknown", "published", "activated", "superseded", "cancelled", "expired", "rollback"}

func (p UpgradePhase) String() string {
	if int(p) < len(phaseNames) {
		return phaseNames[p]
	}
	return fmt.Sprintf("phase(%d)", uint8(p))
}

// activatedLive reports whether u is activated and not cancelled.
func activatedLive(u *crdt.UpgradeRef) bool {
	return u.Activated != nil && u.Meta != nil && u.Meta.UpgradeKind == crdt.UpgradeHard && !u.CancelEffective()
}

// beats reports whether upgrade (a, ida) ranks above (b, idb) among the
// activated versions of one package: the higher version, then the lower id.
func beats(a *crdt.UpgradeMetadata, ida [16]byte, b *crdt.UpgradeMetadata, idb [16]byte) bool {
	if c := crdt.CompareVersions(a.Version, b.Version); c != 0 {
		return c > 0
	}
	return bytes.Compare(ida[:], idb[:]) < 0
}

// InForce reports whether upgrade id is a hard fork in force on st:
// activated, its metadata known, not cancelled, and the highest activated
// version of its package (an older activation is superseded; an
// activation of a lower version, a rollback, never takes force).
func InForce(st *crdt.State, id [16]byte) bool {
	u := st.Upgrades[id]
	if u == nil || !activatedLive(u) {
		return false
	}
	for oid, o := range st.Upgrades {
		if oid != id && activatedLive(o) && o.Meta.Package == u.Meta.Package && beats(o.Meta, oid, u.Meta, id) {
			return false
		}
	}
	return true
}

// InForceIDs lists the upgrades in force, by version then id.
func InForceIDs(st *crdt.State) [][16]byte {
	var ids [][16]byte
	for id := range st.Upgrades {
		if InForce(st, id) {
			ids = append(ids, id)
		}
	}
	sort.Slice(ids, func(i, j int) bool {
		a, b := st.Upgrades[ids[i]].Meta, st.Upgrades[ids[j]].Meta
		if c := crdt.CompareVersions(a.Version, b.Version); c != 0 {
			return c < 0
		}
		return bytes.Compare(ids[i][:], ids[j][:]) < 0
	})
	return ids
}

// rollbackOf returns the activated upgrade that makes m a rollback (same
// package, a version at or above m's, not m itself), if any.
func rollbackOf(st *crdt.State, id [16]byte, m *crdt.UpgradeMetadata) *crdt.UpgradeRef {
	for oid, o := range st.Upgrades {
		if oid == id || !activatedLive(o) || o.Meta.Package != m.Package {
			continue
		}
		if crdt.CompareVersions(o.Meta.Version, m.Version) >= 0 {
			return o
		}
	}
	return nil
}

// CheckRollback refuses metadata whose version is lower than or equal to
// a version of the same package already activated (*ErrRollback).
func CheckRollback(st *crdt.State, id [16]byte, m *crdt.UpgradeMetadata) error {
	if o := rollbackOf(st, id, m); o != nil {
		return fmt.Errorf("%s %s: %w (%s is activated)", m.Package, m.Version, ErrRollback, o.Meta.Version)
	}
	return nil
}

// Phase is where upgrade id stands on st at now. Expiry counts only
// before activation: an activated fork stays in force, and a device that
// was late may still fetch it and become ready.
func Phase(st *crdt.State, id [16]byte, now int64) UpgradePhase {
	u := st.Upgrades[id]
	switch {
	case u == nil || u.Meta == nil:
		return PhaseUnknown
	case u.CancelEffective():
		return PhaseCancelled
	case activatedLive(u) && InForce(st, id):
		return PhaseActivated
	case activatedLive(u):
		return PhaseSuperseded
	case rollbackOf(st, id, u.Meta) != nil:
		return PhaseRollback
	case u.Meta.Expires != 0 && uint64(now) >= u.Meta.Expires:
		return PhaseExpired
	}
	return PhasePublished
}

// Actionable says whether a device may act on upgrade id at now (fetch
// its artifact, append readiness, activate it): nil for a published or
// activated upgrade, else the error of its phase. Metadata that is not
// actionable stays in the state (the fold is a join and never refuses a
// valid fact for what other facts say); it is only never acted on.
func Actionable(st *crdt.State, id [16]byte, now int64) error {
	u := st.Upgrades[id]
	switch Phase(st, id, now) {
	case PhasePublished, PhaseActivated:
		return nil
	case PhaseCancelled:
		return fmt.Errorf("upgrade %s: %w", crdt.UpgradeName(id), ErrUpgradeCancelled)
	case PhaseExpired:
		return fmt.Errorf("upgrade %s %s: %w", u.Meta.Package, u.Meta.Version, ErrUpgradeExpired)
	case PhaseRollback:
		return CheckRollback(st, id, u.Meta)
	case PhaseSuperseded:
		return fmt.Errorf("upgrade %s %s: %w (superseded by a later version)", u.Meta.Package, u.Meta.Version, ErrRollback)
	}
	return fmt.Errorf("upgrade %s: %w", crdt.UpgradeName(id), ErrUnknownUpgrade)
}

// CheckPublish is what a device checks before it appends metadata: the
// guard's Validate, not already expired at now, and not a rollback.
func CheckPublish(st *crdt.State, m *crdt.UpgradeMetadata, now int64) error {
	if err := m.Validate(); err != nil {
		return err
	}
	if m.Expires != 0 && uint64(now) >= m.Expires {
		return fmt.Errorf("%s %s: %w (expiry is in the past)", m.Package, m.Version, ErrUpgradeExpired)
	}
	return CheckRollback(st, m.ID, m)
}

// CheckCancel is what the publisher checks before it cancels: the upgrade
// is known, not activated, and for a hard fork the fence is not reached.
func CheckCancel(st *crdt.State, id [16]byte) error {
	u := st.Upgrades[id]
	if u == nil || u.Meta == nil {
		return fmt.Errorf("upgrade %s: %w", crdt.UpgradeName(id), ErrUnknownUpgrade)
	}
	if u.Activated != nil {
		return fmt.Errorf("upgrade %s %s: %w", u.Meta.Package, u.Meta.Version, ErrActivated)
	}
	if u.Meta.UpgradeKind == crdt.UpgradeHard && st.Epoch >= u.Meta.ActivationFence {
		return fmt.Errorf("upgrade %s %s at identity epoch %d, fence %d: %w", u.Meta.Package, u.Meta.Version, st.Epoch, u.Meta.ActivationFence, ErrPastFence)
	}
	return nil
}

// ReadyDevices lists the current members ready for upgrade id, sorted.
func ReadyDevices(st *crdt.State, id [16]byte) []crdt.DeviceID {
	u := st.Upgrades[id]
	if u == nil {
		return nil
	}
	var out []crdt.DeviceID
	for d := range u.Ready {
		if st.IsMember(d) {
			out = append(out, d)
		}
	}
	sort.Slice(out, func(i, j int) bool { return bytes.Compare(out[i][:], out[j][:]) < 0 })
	return out
}

// ActivationDue is the activation rule of a hard fork: nil when upgrade id
// should be activated now — its metadata is actionable (not cancelled, not
// expired at now, not a rollback), it is not activated yet, at least
// MinReady current members are ready, and the identity epoch has reached
// the fence. Otherwise the reason (ErrNotDue and the others of Actionable).
func ActivationDue(st *crdt.State, id [16]byte, now int64) error {
	if err := Actionable(st, id, now); err != nil {
		return err
	}
	u := st.Upgrades[id]
	m := u.Meta
	switch {
	case m.UpgradeKind != crdt.UpgradeHard:
		return fmt.Errorf("%s %s: %w", m.Package, m.Version, ErrSoftUpgrade)
	case u.Activated != nil:
		return fmt.Errorf("%s %s: %w", m.Package, m.Version, ErrActivated)
	}
	if n := uint64(len(ReadyDevices(st, id))); n < m.MinReady {
		return fmt.Errorf("%s %s: %w: %d of %d devices ready", m.Package, m.Version, ErrNotDue, n, m.MinReady)
	}
	if st.Epoch < m.ActivationFence {
		return fmt.Errorf("%s %s: %w: identity epoch %d, fence %d", m.Package, m.Version, ErrNotDue, st.Epoch, m.ActivationFence)
	}
	return nil
}

// Activators is who writes the activation of upgrade id, in order: the
// publisher first while it is a member holding upgrade_publish, then every
// other current holder of upgrade_publish by device id. The first is
// expected to act at once, the k-th after k grace periods (see
// UpgradeCoordinator); two activations are harmless, the fold joins them.
func Activators(st *crdt.State, id [16]byte) []crdt.DeviceID {
	u := st.Upgrades[id]
	if u == nil || u.Meta == nil {
		return nil
	}
	pub := u.Publisher()
	var out, rest []crdt.DeviceID
	if st.Holds(pub, crdt.CapUpgradePublish, st.Epoch) {
		out = append(out, pub)
	}
	for _, d := range st.MemberList() {
		if d != pub && st.Holds(d, crdt.CapUpgradePublish, st.Epoch) {
			rest = append(rest, d)
		}
	}
	return append(out, rest...)
}

// DefaultActivationGrace is how long the next activator waits for the one
// before it (ms).
const DefaultActivationGrace = 30_000

// UpgradeCoordinator decides when this device writes UpgradeActivated. It
// remembers, in memory only, since when each hard fork has been due here:
// the first activator acts at once (so also at startup, before the node
// serves: startup reconciliation), the k-th once the fork has been due for
// k × Grace without an activation reaching it.
type UpgradeCoordinator struct {
	Grace int64 // ms; 0 means DefaultActivationGrace
	due   map[[16]byte]int64
}

// Activations returns the activation facts device self should write at
// now on st (none most of the time), sorted by upgrade id.
func (c *UpgradeCoordinator) Activations(st *crdt.State, self crdt.DeviceID, now int64) []*crdt.UpgradeActivated {
	grace := c.Grace
	if grace <= 0 {
		grace = DefaultActivationGrace
	}
	if c.due == nil {
		c.due = map[[16]byte]int64{}
	}
	var ids [][16]byte
	for id := range st.Upgrades {
		ids = append(ids, id)
	}
	sort.Slice(ids, func(i, j int) bool { return bytes.Compare(ids[i][:], ids[j][:]) < 0 })
	var out []*crdt.UpgradeActivated
	for _, id := range ids {
		if ActivationDue(st, id, now) != nil {
			delete(c.due, id)
			continue
		}
		since, ok := c.due[id]
		if !ok {
			since = now
			c.due[id] = now
		}
		for k, d := range Activators(st, id) {
			if d == self && now-since >= int64(k)*grace {
				m := st.Upgrades[id].Meta
				out = append(out, &crdt.UpgradeActivated{Upgrade: id, ToVersion: m.Version, ActivationFence: m.ActivationFence})
			}
		}
	}
	return out
}

// Fetch is an artifact this device should fetch and verify.
type Fetch struct {
	Upgrade  [16]byte
	Package  string
	Version  string
	Artifact crdt.UpgradeArtifact
}

// FetchPlan lists the upgrades device self should fetch at now: actionable,
// self not ready yet, with an artifact for its platform; by upgrade id. An
// upgrade without this platform's artifact is skipped (a bad or missing
// artifact for another platform blocks no one).
func FetchPlan(st *crdt.State, self crdt.DeviceID, platform string, now int64) []Fetch {
	var out []Fetch
	for id, u := range st.Upgrades {
		if u.Meta == nil || u.Ready[self] || Actionable(st, id, now) != nil {
			continue
		}
		if a := u.Meta.Artifact(platform); a != nil {
			out = append(out, Fetch{Upgrade: id, Package: u.Meta.Package, Version: u.Meta.Version, Artifact: *a})
		}
	}
	sort.Slice(out, func(i, j int) bool { return bytes.Compare(out[i].Upgrade[:], out[j].Upgrade[:]) < 0 })
	return out
}

// VerifyArtifact checks what a fetch produced against the signed artifact:
// the size read (the driver reads at most Size+1 bytes, so an overrun
// shows) and the sha2-256 of the bytes.
func VerifyArtifact(a *crdt.UpgradeArtifact, size uint64, sum crdt.Hash) error {
	switch {
	case size > a.Size:
		return fmt.Errorf("%s artifact: more than the signed %d bytes: %w", a.Platform, a.Size, ErrSizeOverrun)
	case size < a.Size:
		return fmt.Errorf("%s artifact: %d bytes, signed %d: %w", a.Platform, size, a.Size, ErrSizeShort)
	case sum != a.SHA256:
		return fmt.Errorf("%s artifact: sha256 %x, signed %x: %w", a.Platform, sum[:], a.SHA256[:], ErrHashMismatch)
	}
	return nil
}

// Policy is device d's upgrade policy as it declared it (DeviceMetadata);
// manual when it declared none.
func Policy(st *crdt.State, d crdt.DeviceID) string {
	if m := st.Devices[d]; m != nil && m.Policy == crdt.PolicyAuto {
		return crdt.PolicyAuto
	}
	return crdt.PolicyManual
}

// ReadyFact is the readiness rule: the UpgradeReady device self appends
// for upgrade id at now, or nil. It needs the upgrade actionable, self not
// ready yet, the artifact of self's platform verified (verified is the
// sha2-256 the driver checked with VerifyArtifact; zero: not verified),
// and consent: policy auto, or the operator's approval under manual.
func ReadyFact(st *crdt.State, id [16]byte, self crdt.DeviceID, platform string, now int64, verified crdt.Hash, approved bool) (*crdt.UpgradeReady, error) {
	if err := Actionable(st, id, now); err != nil {
		return nil, err
	}
	u := st.Upgrades[id]
	if u.Ready[self] {
		return nil, nil
	}
	a := u.Meta.Artifact(platform)
	if a == nil {
		return nil, fmt.Errorf("%s %s for %s: %w", u.Meta.Package, u.Meta.Version, platform, ErrNoArtifact)
	}
	if verified == (crdt.Hash{}) || verified != a.SHA256 {
		return nil, nil
	}
	if Policy(st, self) != crdt.PolicyAuto && !approved {
		return nil, nil
	}
	return &crdt.UpgradeReady{Upgrade: id, SHA256: verified}, nil
}
