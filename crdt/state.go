package crdt

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"sort"
)

// ThresholdVerifier checks a threshold signature over msg under a group
// public key (as published in a GroupKey fact). The reducer is pure and
// imports no curve code: the node and the simulator pass
// threshold.VerifyGroup. Without one, snapshot completions and admin
// replacements are never treated as verified.
type ThresholdVerifier func(groupKey, msg, sig []byte) error

// ErrNotYet is returned by Check for a fact that may become valid once more
// facts arrive (its epoch, genesis or group key is not known yet). The pure
// reducer parks such facts and retries them; ingest rejects them and relies
// on sync to deliver them again later.
var ErrNotYet = errors.New("fact depends on facts not held yet")

// Member is a device's membership record. All fields join by min, so the
// record is a semilattice.
type Member struct {
	Added   uint64            `cbor:"1,keyasint"`           // identity epoch it joined
	Removed uint64            `cbor:"2,keyasint,omitempty"` // epoch removed (0: never)
	Caps    map[string]uint64 `cbor:"3,keyasint"`           // capability → epoch granted
	Name    string            `cbor:"4,keyasint,omitempty"`
}

// Stamp orders concurrent writes for last-writer-wins: Lamport, then author,
// then fact id.
type Stamp struct {
	_       struct{} `cbor:",toarray"`
	Lamport uint64
	Author  DeviceID
	ID      FactID
}

// Less reports whether s is older than o.
func (s Stamp) Less(o Stamp) bool {
	if s.Lamport != o.Lamport {
		return s.Lamport < o.Lamport
	}
	if c := bytes.Compare(s.Author[:], o.Author[:]); c != 0 {
		return c < 0
	}
	return bytes.Compare(s.ID[:], o.ID[:]) < 0
}

func stampOf(f *Fact) Stamp { return Stamp{Lamport: f.Lamport, Author: f.Author, ID: f.ID()} }

// Entry is an application key's value (last writer wins; deletes are kept
// as tombstones so that they win against older puts).
type Entry struct {
	Value   []byte `cbor:"1,keyasint,omitempty"`
	Deleted bool   `cbor:"2,keyasint,omitempty"`
	Stamp   Stamp  `cbor:"3,keyasint"`
}

// BlobRef is a blob known to the account.
type BlobRef struct {
	Size      uint64 `cbor:"1,keyasint,omitempty"`
	Name      string `cbor:"2,keyasint,omitempty"`
	Stamp     Stamp  `cbor:"3,keyasint"`
	Tombstone uint64 `cbor:"4,keyasint,omitempty"` // epoch of the earliest tombstone (0: live)
}

// EnvelopeRef is a sealed payload kept in state.
type EnvelopeRef struct {
	KeyEpoch   uint64 `cbor:"1,keyasint"`
	Recipient  []byte `cbor:"2,keyasint,omitempty"`
	Ciphertext []byte `cbor:"3,keyasint"`
}

// DeviceMeta is what devices say about themselves.
type DeviceMeta struct {
	Name      string          `cbor:"1,keyasint,omitempty"`
	Protocols map[string]bool `cbor:"2,keyasint"` // grow-only
	Policy    string          `cbor:"3,keyasint"`
	Stamp     Stamp           `cbor:"4,keyasint"`
}

// ProposalRef is a snapshot proposal and its votes.
type ProposalRef struct {
	Proposal  SnapshotProposed          `cbor:"1,keyasint"`
	Stamp     Stamp                     `cbor:"2,keyasint"` // lowest-stamped proposal fact wins if repeated
	Votes     map[DeviceID]SnapshotVote `cbor:"3,keyasint"`
	Abandoned bool                      `cbor:"4,keyasint,omitempty"`
}

// CompletedRef is a verified snapshot completion.
type CompletedRef struct {
	Completed SnapshotCompleted `cbor:"1,keyasint"`
	Stamp     Stamp             `cbor:"2,keyasint"`
}

// UpgradeRef is an upgrade (one version of a package), who is ready for
// it, its activation and its cancellation. Every field joins: Meta and
// Stamp by lowest stamp (one id names one content, so repeats are equal
// bodies), Ready by union, Activated by lowest fence then version,
// Cancelled by min. Whether it may be acted on (expiry, rollback,
// cancellation) is not decided here but by maintenance at read time.
type UpgradeRef struct {
	Meta      *UpgradeMetadata  `cbor:"1,keyasint,omitempty"`
	Stamp     Stamp             `cbor:"2,keyasint"` // of the metadata fact: Author is the publisher
	Ready     map[DeviceID]bool `cbor:"3,keyasint"`
	Activated *UpgradeActivated `cbor:"4,keyasint,omitempty"`
	// Cancelled is the lowest identity epoch a cancellation was written
	// at (0: none); see CancelEffective.
	Cancelled uint64 `cbor:"5,keyasint,omitempty"`
}

// GenesisRef is the account's founding fact.
type GenesisRef struct {
	Admin     DeviceID `cbor:"1,keyasint"`
	Threshold uint64   `cbor:"2,keyasint"`
	Name      string   `cbor:"3,keyasint,omitempty"`
	ID        FactID   `cbor:"4,keyasint"`
	Nonce     [16]byte `cbor:"5,keyasint"`
}

// GroupKeyRef is a published threshold group key.
type GroupKeyRef struct {
	Key   GroupKey `cbor:"1,keyasint"`
	Stamp Stamp    `cbor:"2,keyasint"`
}

// State is the account state: every field is a join-semilattice, so
// folding a set of facts in any order, batching, or with duplicates gives
// the same State and the same Digest (DESIGN §3).
type State struct {
	Account     AccountID                  `cbor:"1,keyasint"`
	Genesis     *GenesisRef                `cbor:"2,keyasint,omitempty"`
	Epoch       uint64                     `cbor:"3,keyasint"` // identity epoch: max epoch opened by a membership fact
	Members     map[DeviceID]*Member       `cbor:"4,keyasint"`
	KV          map[string]*Entry          `cbor:"5,keyasint"`
	Blobs       map[string]*BlobRef        `cbor:"6,keyasint"` // key: BlobKey(binary CID)
	Envelopes   map[FactID]*EnvelopeRef    `cbor:"7,keyasint"`
	Devices     map[DeviceID]*DeviceMeta   `cbor:"8,keyasint"`
	Proposals   map[[16]byte]*ProposalRef  `cbor:"9,keyasint"`
	Completed   map[[16]byte]*CompletedRef `cbor:"10,keyasint"`
	CacheFloors map[string]uint64          `cbor:"11,keyasint"`
	Upgrades    map[[16]byte]*UpgradeRef   `cbor:"12,keyasint"`
	GroupKeys   map[uint64]*GroupKeyRef    `cbor:"13,keyasint"`
	// AdminOverrides: previous admin → the activation epoch from which its
	// admin facts are refused; NewAdmins: device → epoch it became admin by
	// replacement. Both derive from AdminReplacements (crdt/admin.go).
	AdminOverrides map[DeviceID]uint64 `cbor:"14,keyasint"`
	NewAdmins      map[DeviceID]uint64 `cbor:"15,keyasint"`
	SnapshotEpoch  uint64              `cbor:"16,keyasint"` // max epoch of a verified completed snapshot
	// Opened holds every identity epoch some membership fact opened. Membership
	// at epoch e is fully known once 1..e are all opened (completeTo).
	Opened map[uint64]bool `cbor:"17,keyasint"`
	// AdminReplacements: previous admin → its winning replacement
	// (AdminOverride.Wins). Omitted while empty, so states of accounts
	// that never replaced an admin keep their encoding and digest.
	AdminReplacements map[DeviceID]AdminOverride `cbor:"18,keyasint,omitempty"`
	// AdminProposals: open and past admin replacement requests and votes.
	AdminProposals map[[16]byte]*AdminProposalRef `cbor:"19,keyasint,omitempty"`

	completeTo uint64

	verify ThresholdVerifier
	parked map[FactID]*Fact
}

// NewState returns the empty state of an account. verify may be nil.
func NewState(account AccountID, verify ThresholdVerifier) *State {
	s := &State{Account: account, verify: verify}
	s.init()
	return s
}

func (s *State) init() {
	if s.Members == nil {
		s.Members = map[DeviceID]*Member{}
	}
	if s.KV == nil {
		s.KV = map[string]*Entry{}
	}
	if s.Blobs == nil {
		s.Blobs = map[string]*BlobRef{}
	}
	if s.Envelopes == nil {
		s.Envelopes = map[FactID]*EnvelopeRef{}
	}
	if s.Devices == nil {
		s.Devices = map[DeviceID]*DeviceMeta{}
	}
	if s.Proposals == nil {
		s.Proposals = map[[16]byte]*ProposalRef{}
	}
	if s.Completed == nil {
		s.Completed = map[[16]byte]*CompletedRef{}
	}
	if s.CacheFloors == nil {
		s.CacheFloors = map[string]uint64{}
	}
	if s.Upgrades == nil {
		s.Upgrades = map[[16]byte]*UpgradeRef{}
	}
	if s.GroupKeys == nil {
		s.GroupKeys = map[uint64]*GroupKeyRef{}
	}
	if s.AdminOverrides == nil {
		s.AdminOverrides = map[DeviceID]uint64{}
	}
	if s.NewAdmins == nil {
		s.NewAdmins = map[DeviceID]uint64{}
	}
	if s.Opened == nil {
		s.Opened = map[uint64]bool{}
	}
	if s.AdminReplacements == nil {
		s.AdminReplacements = map[DeviceID]AdminOverride{}
	}
	if s.AdminProposals == nil {
		s.AdminProposals = map[[16]byte]*AdminProposalRef{}
	}
	if s.parked == nil {
		s.parked = map[FactID]*Fact{}
	}
	s.advanceComplete()
}

func (s *State) open(e uint64) {
	if !s.Opened[e] {
		s.Opened[e] = true
		s.advanceComplete()
	}
}

func (s *State) advanceComplete() {
	for s.Opened[s.completeTo+1] {
		s.completeTo++
	}
}

// MembershipKnownTo is the highest epoch e such that the membership facts of
// every epoch 1..e are held: guards at epochs up to it are definitive.
func (s *State) MembershipKnownTo() uint64 { return s.completeTo }

// SetVerifier sets the threshold verifier (after DecodeState, say).
func (s *State) SetVerifier(v ThresholdVerifier) { s.verify = v }

// Parked is the number of facts waiting for facts they depend on.
func (s *State) Parked() int { return len(s.parked) }

// Clone returns a deep copy (through the canonical encoding).
func (s *State) Clone() *State {
	b := s.Encode()
	c, err := DecodeState(b)
	if err != nil {
		panic(fmt.Sprintf("clone state: %v", err))
	}
	c.verify = s.verify
	for id, f := range s.parked {
		c.parked[id] = f
	}
	return c
}

// Encode returns the canonical encoding of the state.
func (s *State) Encode() []byte {
	var buf bytes.Buffer
	buf.Grow(s.encodedSizeHint())
	if err := s.EncodeTo(&buf); err != nil {
		panic(fmt.Sprintf("encode state: %v", err)) // plain types, memory writer
	}
	return buf.Bytes()
}

// encodedSizeHint is a little over the size of the state's encoding, the
// key-value map being its bulk (the other maps get a rough allowance), so
// that Encode fills one buffer: growing a large buffer copies what it
// holds and zeroes fresh memory, which cost more than the encoding itself.
func (s *State) encodedSizeHint() int {
	n := 4096 + 128*(len(s.Members)+len(s.Blobs)+len(s.Envelopes)+len(s.Devices)+len(s.Proposals)+len(s.Completed)+len(s.Upgrades)+len(s.GroupKeys))
	for k, e := range s.KV {
		// The key, the entry's map and stamp (lamport, author, fact id)
		// with their heads.
		n += len(k) + 96
		if e != nil {
			n += len(e.Value)
		}
	}
	return n
}

// MaxStateSize bounds DecodeState input (1 GiB).
const MaxStateSize = 1 << 30

// DecodeState parses a canonical state encoding (a snapshot blob).
func DecodeState(b []byte) (*State, error) {
	if len(b) > MaxStateSize {
		return nil, fmt.Errorf("decode state of %d bytes: %w", len(b), ErrTooLarge)
	}
	s := &State{}
	if err := Unmarshal(b, s); err != nil {
		return nil, fmt.Errorf("decode state: %w", err)
	}
	if err := s.validate(); err != nil {
		return nil, fmt.Errorf("decode state: %w: %v", ErrMalformed, err)
	}
	s.init()
	return s, nil
}

// validate rejects decoded states with holes the fold does not expect
// (null records or null inner sets).
func (s *State) validate() error {
	// A state made by this package never has a null top-level set (init
	// makes them all); one that does would not re-encode to its bytes.
	if s.Members == nil || s.KV == nil || s.Blobs == nil || s.Envelopes == nil || s.Devices == nil ||
		s.Proposals == nil || s.Completed == nil || s.CacheFloors == nil || s.Upgrades == nil ||
		s.GroupKeys == nil || s.AdminOverrides == nil || s.NewAdmins == nil || s.Opened == nil {
		return errors.New("null set")
	}
	for _, m := range s.Members {
		if m == nil || m.Caps == nil {
			return errors.New("null member")
		}
	}
	for _, e := range s.KV {
		if e == nil {
			return errors.New("null entry")
		}
	}
	for _, b := range s.Blobs {
		if b == nil {
			return errors.New("null blob")
		}
	}
	for _, e := range s.Envelopes {
		if e == nil {
			return errors.New("null envelope")
		}
	}
	for _, d := range s.Devices {
		if d == nil || d.Protocols == nil {
			return errors.New("null device metadata")
		}
	}
	for _, p := range s.Proposals {
		if p == nil || p.Votes == nil {
			return errors.New("null proposal")
		}
	}
	for _, c := range s.Completed {
		if c == nil {
			return errors.New("null completion")
		}
	}
	for _, u := range s.Upgrades {
		if u == nil || u.Ready == nil {
			return errors.New("null upgrade")
		}
	}
	for _, g := range s.GroupKeys {
		if g == nil {
			return errors.New("null group key")
		}
	}
	for _, p := range s.AdminProposals {
		if p == nil || p.Votes == nil {
			return errors.New("null admin proposal")
		}
	}
	return nil
}

// Digest is the state digest: sha2-256 over a domain tag and the canonical
// encoding. It streams the encoding into the hash (no state-sized buffer).
func (s *State) Digest() Hash {
	h := sha256.New()
	h.Write([]byte("aura/state/v1\x00"))
	if err := s.EncodeTo(h); err != nil {
		panic(fmt.Sprintf("digest state: %v", err))
	}
	var out Hash
	h.Sum(out[:0])
	return out
}

// DigestOf is the digest of an encoded state.
func DigestOf(encoded []byte) Hash {
	h := sha256.New()
	h.Write([]byte("aura/state/v1\x00"))
	h.Write(encoded)
	var out Hash
	h.Sum(out[:0])
	return out
}

// Join merges o into s (the lattice join of two states).
func (s *State) Join(o *State) {
	if o.Genesis != nil && (s.Genesis == nil || bytes.Compare(o.Genesis.ID[:], s.Genesis.ID[:]) < 0) {
		g := *o.Genesis
		s.Genesis = &g
		s.Account = o.Account
	}
	s.Epoch = max(s.Epoch, o.Epoch)
	s.SnapshotEpoch = max(s.SnapshotEpoch, o.SnapshotEpoch)
	for d, m := range o.Members {
		for c, e := range m.Caps {
			s.grant(d, c, e)
		}
		s.addMember(d, m.Added, m.Name)
		if m.Removed != 0 {
			s.removeMember(d, m.Removed)
		}
	}
	for k, e := range o.KV {
		if cur := s.KV[k]; cur == nil || cur.Stamp.Less(e.Stamp) {
			c := *e
			s.KV[k] = &c
		}
	}
	for k, b := range o.Blobs {
		s.joinBlob(k, b)
	}
	for id, e := range o.Envelopes {
		if e.KeyEpoch >= s.SnapshotEpoch {
			c := *e
			s.Envelopes[id] = &c
		}
	}
	for d, m := range o.Devices {
		s.joinDevice(d, m)
	}
	for id, p := range o.Proposals {
		s.joinProposal(id, p)
	}
	for id, c := range o.Completed {
		if cur := s.Completed[id]; cur == nil || c.Stamp.Less(cur.Stamp) {
			cc := *c
			s.Completed[id] = &cc
		}
	}
	for k, f := range o.CacheFloors {
		s.CacheFloors[k] = max(s.CacheFloors[k], f)
	}
	for id, u := range o.Upgrades {
		s.joinUpgrade(id, u)
	}
	for e, g := range o.GroupKeys {
		if cur := s.GroupKeys[e]; cur == nil || g.Stamp.Less(cur.Stamp) {
			gg := *g
			s.GroupKeys[e] = &gg
		}
	}
	s.joinAdmin(o)
	for e := range o.Opened {
		s.open(e)
	}
	s.dropCollected()
	for id, f := range o.parked {
		s.parked[id] = f
	}
	s.retryParked()
}

// --- guards -----------------------------------------------------------------

// requiredCap is the capability each kind needs ("" means membership).
func requiredCap(k Kind) string {
	switch k {
	case KindDeviceAdded, KindDeviceRemoved, KindCapabilityGrant, KindGroupKey:
		// A group key re-keys the account: an admin act.
		return CapAdmin
	case KindPut, KindDelete, KindBlobStored, KindBlobTombstoned, KindEnvelope, KindCacheInvalidated:
		return CapWrite
	case KindSnapshotProposed, KindSnapshotAbandoned:
		return CapSnapshotPropose
	case KindSnapshotVote:
		return CapSnapshotVote
	case KindUpgradeMetadata, KindUpgradeActivated, KindUpgradeCancelled:
		return CapUpgradePublish
	}
	return ""
}

func isMembership(k Kind) bool {
	return k == KindDeviceAdded || k == KindDeviceRemoved || k == KindCapabilityGrant
}

// opensEpoch reports whether a fact of kind k opens its own epoch (its
// author acts at the epoch before): membership facts and admin
// replacements.
func opensEpoch(k Kind) bool { return isMembership(k) || k == KindAdminReplaced }

// Holds reports whether device d held capability c (or, with c == "", was a
// member) at identity epoch e.
func (s *State) Holds(d DeviceID, c string, e uint64) bool {
	m := s.Members[d]
	if m == nil || m.Added > e || (m.Removed != 0 && e >= m.Removed) {
		return false
	}
	if c == CapAdmin {
		if r, ok := s.AdminOverrides[d]; ok && e >= r {
			return false
		}
		if a, ok := s.NewAdmins[d]; ok && e >= a {
			return true
		}
	}
	if c == "" {
		return true
	}
	g, ok := m.Caps[c]
	return ok && g <= e
}

// IsMember reports whether d is a member at the current epoch.
func (s *State) IsMember(d DeviceID) bool { return s.Holds(d, "", s.Epoch) }

// Check applies the capability guard to f against the state: nil when the
// author held what f's kind needs at f's epoch, ErrUnauthorized when it did
// not, ErrNotYet when the facts it depends on are not held yet.
func (s *State) Check(f *Fact) error {
	_, err := s.check(f)
	return err
}

// check is Check returning the decoded body of an accepted fact.
func (s *State) check(f *Fact) (any, error) {
	if f.Account != s.Account {
		return nil, fmt.Errorf("%s fact: %w", f.Kind, ErrWrongAccount)
	}
	if f.Kind == KindGenesis {
		body, err := f.decodedBody()
		if err != nil {
			return nil, fmt.Errorf("%s fact: %w", f.Kind, err)
		}
		g := body.(*Genesis)
		if f.Seq != 1 || f.Epoch != 1 || AccountIDFor(f.Author, g.Nonce) != f.Account || g.Threshold == 0 {
			return nil, fmt.Errorf("genesis by %s: %w: not the account's founding fact", f.Author, ErrUnauthorized)
		}
		return body, nil
	}
	if s.Genesis == nil {
		return nil, &notYetError{f: f, why: "no genesis"}
	}
	if f.Epoch == 0 {
		return nil, fmt.Errorf("%s fact by %s: %w: epoch 0", f.Kind, f.Author.Short(), ErrUnauthorized)
	}
	at := f.Epoch
	if opensEpoch(f.Kind) {
		at = f.Epoch - 1 // a membership fact opens f.Epoch; its author acts at the epoch before
		if at == 0 {
			return nil, fmt.Errorf("%s fact by %s: %w: epoch 1 is genesis's", f.Kind, f.Author.Short(), ErrUnauthorized)
		}
	}
	need := requiredCap(f.Kind)
	if at > s.completeTo {
		// Membership up to that epoch is not all known: a grant may still
		// arrive, and so may a removal that revokes what the author holds
		// now. Either verdict would depend on arrival order.
		return nil, &notYetError{f: f, at: at, known: s.completeTo}
	}
	if !s.Holds(f.Author, need, at) {
		if need == "" {
			need = "membership"
		}
		return nil, fmt.Errorf("%s fact by %s at epoch %d: %w %q", f.Kind, f.Author, at, ErrUnauthorized, need)
	}
	if need == CapAdmin && at > s.completeTo {
		// An admin act is decided only once every fact opening its epoch
		// could be known: an admin replacement opens its activation epoch,
		// so the replaced admin's later acts wait for it on every replica.
		return nil, &notYetError{f: f, at: at, known: s.completeTo}
	}
	// The body is decoded only now: parked facts are checked again and
	// again, and most wait on the membership test above.
	body, err := f.decodedBody()
	if err != nil {
		return nil, fmt.Errorf("%s fact: %w", f.Kind, err)
	}
	switch b := body.(type) {
	case *SnapshotProposed:
		if b.Proposer != f.Author {
			return nil, fmt.Errorf("snapshot proposal by %s names proposer %s: %w", f.Author.Short(), b.Proposer.Short(), ErrUnauthorized)
		}
	case *DeviceMetadata, *UpgradeReady:
		// about the author itself: membership is enough
	case *UpgradeMetadata:
		// A function of the fact alone: every replica refuses the same.
		if err := b.Validate(); err != nil {
			return nil, fmt.Errorf("upgrade metadata by %s: %w", f.Author.Short(), err)
		}
	case *AdminReplaced:
		if err := s.checkAdminReplaced(f, b, at); err != nil {
			return nil, err
		}
	case *SnapshotCompleted:
		if !s.verifyThreshold(SnapshotMessage(s.Account, b.ProposalID, b.Snapshot.Epoch, b.Snapshot.Frontier, b.Snapshot.PrefixHash, b.Snapshot.StateDigest), b.ThresholdSignature) {
			return nil, fmt.Errorf("snapshot completion by %s: %w (no group key verifies its threshold signature)", f.Author.Short(), ErrNotYet)
		}
	}
	return body, nil
}

// notYetError is the ErrNotYet of a fact whose author's membership or
// capability is not known yet. Its text is formatted only when read:
// parked facts are checked again at every guard change, and those errors
// are rarely printed.
type notYetError struct {
	f         *Fact
	at, known uint64 // the epoch the author acts at; membership known to
	why       string // instead of at/known
}

func (e *notYetError) Error() string {
	if e.why != "" {
		return fmt.Sprintf("%s fact by %s: %v (%s)", e.f.Kind, e.f.Author.Short(), ErrNotYet, e.why)
	}
	return fmt.Sprintf("%s fact by %s at epoch %d (membership known to %d): %v", e.f.Kind, e.f.Author.Short(), e.at, e.known, ErrNotYet)
}

func (e *notYetError) Unwrap() error { return ErrNotYet }

func (s *State) verifyThreshold(msg, sig []byte) bool {
	if s.verify == nil {
		return false
	}
	for _, g := range s.GroupKeys {
		if s.verify(g.Key.PublicKey, msg, sig) == nil {
			return true
		}
	}
	return false
}

// SnapshotMessage is what snapshot votes sign with their partial threshold
// signatures (DESIGN §5).
func SnapshotMessage(account AccountID, proposal [16]byte, targetEpoch uint64, frontier VersionVector, prefix, digest Hash) []byte {
	var b bytes.Buffer
	b.WriteString("aura/snapshot/v1\x00")
	b.Write(account[:])
	b.Write(proposal[:])
	var n [8]byte
	binary.BigEndian.PutUint64(n[:], targetEpoch)
	b.Write(n[:])
	fv, _ := Marshal(frontier)
	b.Write(fv)
	b.Write(prefix[:])
	b.Write(digest[:])
	return b.Bytes()
}

// AdminReplaceMessage is what the account's threshold signature of an admin
// replacement signs.
func AdminReplaceMessage(account AccountID, r *AdminReplaced) []byte {
	var b bytes.Buffer
	b.WriteString("aura/admin-replace/v1\x00")
	b.Write(account[:])
	b.Write(r.Previous[:])
	b.Write(r.New[:])
	var n [8]byte
	binary.BigEndian.PutUint64(n[:], r.ActivationEpoch)
	b.Write(n[:])
	return b.Bytes()
}

// --- the fold ---------------------------------------------------------------

// Apply folds one fact into the state. A fact whose guard fails with
// ErrUnauthorized never changes state; one that fails with ErrNotYet is
// parked and retried when the state changes, so that the fold does not
// depend on the order facts arrive in. Apply returns the guard's error.
func (s *State) Apply(f *Fact) error {
	body, err := s.check(f)
	if err != nil {
		if errors.Is(err, ErrNotYet) {
			s.parked[f.ID()] = f
		}
		return err
	}
	s.apply(f, body)
	if len(s.parked) > 0 && ChangesGuards(f.Kind) {
		s.retryParked()
	}
	return nil
}

// ApplyChecked folds a fact that Check just accepted (the node's ingest path
// checks, then stores, then folds).
func (s *State) ApplyChecked(f *Fact) {
	body, _ := f.decodedBody() // Check decoded it already
	s.apply(f, body)
	if len(s.parked) > 0 && ChangesGuards(f.Kind) {
		s.retryParked()
	}
}

// Fold applies many facts; it returns how many were applied.
func (s *State) Fold(facts []*Fact) int {
	n := 0
	for _, f := range facts {
		if s.Apply(f) == nil {
			n++
		}
	}
	return n
}

func (s *State) retryParked() {
	for progress := true; progress && len(s.parked) > 0; {
		progress = false
		ids := make([]FactID, 0, len(s.parked))
		for id := range s.parked {
			ids = append(ids, id)
		}
		sort.Slice(ids, func(i, j int) bool { return bytes.Compare(ids[i][:], ids[j][:]) < 0 })
		for _, id := range ids {
			f := s.parked[id]
			body, err := s.check(f)
			if errors.Is(err, ErrNotYet) {
				continue
			}
			delete(s.parked, id)
			if err == nil {
				s.apply(f, body)
				// Only a guard change can admit more parked facts.
				progress = progress || ChangesGuards(f.Kind)
			}
		}
	}
}

func (s *State) apply(f *Fact, body any) {
	st := stampOf(f)
	switch b := body.(type) {
	case *Genesis:
		if s.Genesis == nil || bytes.Compare(st.ID[:], s.Genesis.ID[:]) < 0 {
			s.Genesis = &GenesisRef{Admin: f.Author, Threshold: b.Threshold, Name: b.Name, ID: st.ID, Nonce: b.Nonce}
		}
		s.Epoch = max(s.Epoch, 1)
		s.open(1)
		for _, c := range AllCapabilities {
			s.grant(f.Author, c, 1)
		}
		s.addMember(f.Author, 1, "")
	case *DeviceAdded:
		s.Epoch = max(s.Epoch, f.Epoch)
		s.open(f.Epoch)
		s.addMember(b.Device, f.Epoch, b.Name)
		for _, c := range b.Capabilities {
			s.grant(b.Device, c, f.Epoch)
		}
	case *DeviceRemoved:
		s.Epoch = max(s.Epoch, f.Epoch)
		s.open(f.Epoch)
		s.removeMember(b.Device, f.Epoch)
	case *CapabilityGrant:
		s.Epoch = max(s.Epoch, f.Epoch)
		s.open(f.Epoch)
		for _, c := range b.Capabilities {
			s.grant(b.Device, c, f.Epoch)
		}
	case *Put:
		if cur := s.KV[b.Key]; cur == nil || cur.Stamp.Less(st) {
			s.KV[b.Key] = &Entry{Value: b.Value, Stamp: st}
		}
	case *Delete:
		if cur := s.KV[b.Key]; cur == nil || cur.Stamp.Less(st) {
			s.KV[b.Key] = &Entry{Deleted: true, Stamp: st}
		}
	case *BlobStored:
		s.joinBlob(BlobKey(b.CID), &BlobRef{Size: b.Size, Name: b.Name, Stamp: st})
	case *BlobTombstoned:
		s.joinBlob(BlobKey(b.CID), &BlobRef{Tombstone: f.Epoch})
	case *Envelope:
		if b.KeyEpoch >= s.SnapshotEpoch {
			s.Envelopes[st.ID] = &EnvelopeRef{KeyEpoch: b.KeyEpoch, Recipient: b.Recipient, Ciphertext: b.Ciphertext}
		}
	case *DeviceMetadata:
		protos := map[string]bool{}
		for _, p := range b.SupportedProtocols {
			protos[p] = true
		}
		s.joinDevice(f.Author, &DeviceMeta{Name: b.Name, Protocols: protos, Policy: b.UpgradePolicy, Stamp: st})
	case *SnapshotProposed:
		s.joinProposal(b.ProposalID, &ProposalRef{Proposal: *b, Stamp: st})
	case *SnapshotVote:
		s.joinProposal(b.ProposalID, &ProposalRef{Votes: map[DeviceID]SnapshotVote{f.Author: *b}})
	case *SnapshotAbandoned:
		s.joinProposal(b.ProposalID, &ProposalRef{Abandoned: true})
	case *SnapshotCompleted:
		if cur := s.Completed[b.ProposalID]; cur == nil || st.Less(cur.Stamp) {
			s.Completed[b.ProposalID] = &CompletedRef{Completed: *b, Stamp: st}
		}
		if b.Snapshot.Epoch > s.SnapshotEpoch {
			s.SnapshotEpoch = b.Snapshot.Epoch
			s.dropCollected()
		}
	case *CacheInvalidated:
		for _, k := range b.Keys {
			s.CacheFloors[k] = max(s.CacheFloors[k], b.EpochFloor)
		}
	case *UpgradeMetadata:
		s.joinUpgrade(b.ID, &UpgradeRef{Meta: b, Stamp: st})
	case *UpgradeReady:
		s.joinUpgrade(b.Upgrade, &UpgradeRef{Ready: map[DeviceID]bool{f.Author: true}})
	case *UpgradeActivated:
		s.joinUpgrade(b.Upgrade, &UpgradeRef{Activated: b})
	case *UpgradeCancelled:
		s.joinUpgrade(b.Upgrade, &UpgradeRef{Cancelled: f.Epoch})
	case *AdminReplaced:
		s.applyAdminReplaced(f, b)
	case *AdminReplaceProposed:
		s.joinAdminProposal(b.ProposalID, &AdminProposalRef{Proposal: *b, Stamp: st})
	case *AdminReplaceVote:
		s.joinAdminProposal(b.ProposalID, &AdminProposalRef{Votes: map[DeviceID][]byte{f.Author: b.Partial}})
	case *GroupKey:
		if cur := s.GroupKeys[b.KeyEpoch]; cur == nil || st.Less(cur.Stamp) {
			s.GroupKeys[b.KeyEpoch] = &GroupKeyRef{Key: *b, Stamp: st}
		}
	}
}

func (s *State) addMember(d DeviceID, epoch uint64, name string) {
	m := s.member(d)
	if m.Added == 0 || epoch < m.Added {
		m.Added, m.Name = epoch, name
	} else if epoch == m.Added && name < m.Name {
		m.Name = name
	}
}

func (s *State) removeMember(d DeviceID, epoch uint64) {
	m := s.member(d)
	if m.Removed == 0 || epoch < m.Removed {
		m.Removed = epoch
	}
}

func (s *State) grant(d DeviceID, c string, epoch uint64) {
	m := s.member(d)
	if cur, ok := m.Caps[c]; !ok || epoch < cur {
		m.Caps[c] = epoch
	}
}

func (s *State) member(d DeviceID) *Member {
	m := s.Members[d]
	if m == nil {
		m = &Member{Caps: map[string]uint64{}}
		s.Members[d] = m
	}
	return m
}

// BlobKey is a blob's key in State.Blobs: its binary CID in lower-case
// hex. (The raw bytes cannot be the key: the state's CBOR encoding writes
// map keys as text strings, which must be valid UTF-8, and a decoder
// rejects a binary CID there, so no device could decode a snapshot of an
// account holding blobs.)
func BlobKey(cid []byte) string { return hex.EncodeToString(cid) }

// BlobKeyCID is the binary CID of a State.Blobs key.
func BlobKeyCID(key string) ([]byte, error) { return hex.DecodeString(key) }

func (s *State) joinBlob(k string, b *BlobRef) {
	cur := s.Blobs[k]
	if cur == nil {
		c := *b
		s.Blobs[k] = &c
		return
	}
	if b.Stamp != (Stamp{}) && (cur.Stamp == (Stamp{}) || cur.Stamp.Less(b.Stamp)) {
		cur.Size, cur.Name, cur.Stamp = b.Size, b.Name, b.Stamp
	}
	if b.Tombstone != 0 && (cur.Tombstone == 0 || b.Tombstone < cur.Tombstone) {
		cur.Tombstone = b.Tombstone
	}
}

func (s *State) joinDevice(d DeviceID, m *DeviceMeta) {
	cur := s.Devices[d]
	if cur == nil {
		cur = &DeviceMeta{Protocols: map[string]bool{}}
		s.Devices[d] = cur
	}
	for p := range m.Protocols {
		cur.Protocols[p] = true
	}
	if cur.Stamp.Less(m.Stamp) || cur.Stamp == (Stamp{}) {
		cur.Name, cur.Policy, cur.Stamp = m.Name, m.Policy, m.Stamp
	}
}

func (s *State) joinProposal(id [16]byte, p *ProposalRef) {
	cur := s.Proposals[id]
	if cur == nil {
		cur = &ProposalRef{Votes: map[DeviceID]SnapshotVote{}}
		s.Proposals[id] = cur
	}
	if p.Stamp != (Stamp{}) && (cur.Stamp == (Stamp{}) || p.Stamp.Less(cur.Stamp)) {
		cur.Proposal, cur.Stamp = p.Proposal, p.Stamp
	}
	for d, v := range p.Votes {
		if old, ok := cur.Votes[d]; !ok || bytes.Compare(v.Partial, old.Partial) < 0 {
			cur.Votes[d] = v
		}
	}
	cur.Abandoned = cur.Abandoned || p.Abandoned
}

func (s *State) joinUpgrade(id [16]byte, u *UpgradeRef) {
	cur := s.Upgrades[id]
	if cur == nil {
		cur = &UpgradeRef{Ready: map[DeviceID]bool{}}
		s.Upgrades[id] = cur
	}
	if u.Meta != nil && (cur.Meta == nil || u.Stamp.Less(cur.Stamp)) {
		m := *u.Meta
		cur.Meta, cur.Stamp = &m, u.Stamp
	}
	for d := range u.Ready {
		cur.Ready[d] = true
	}
	if u.Activated != nil && (cur.Activated == nil || u.Activated.ActivationFence < cur.Activated.ActivationFence ||
		(u.Activated.ActivationFence == cur.Activated.ActivationFence && u.Activated.ToVersion < cur.Activated.ToVersion)) {
		a := *u.Activated
		cur.Activated = &a
	}
	if u.Cancelled != 0 && (cur.Cancelled == 0 || u.Cancelled < cur.Cancelled) {
		cur.Cancelled = u.Cancelled
	}
}

// dropCollected removes envelopes sealed under key-rotation epochs before
// the snapshot epoch (DESIGN §5 GC); it is part of the fold, so every
// replica drops the same ones.
func (s *State) dropCollected() {
	for id, e := range s.Envelopes {
		if e.KeyEpoch < s.SnapshotEpoch {
			delete(s.Envelopes, id)
		}
	}
}

// NewestSnapshot returns the verified completed snapshot that is newest by
// NewerSnapshot; nil if none.
func (s *State) NewestSnapshot() *SnapshotCompleted {
	var best *SnapshotCompleted
	for _, c := range s.Completed {
		cc := c.Completed
		if best == nil || NewerSnapshot(&cc, best) {
			best = &cc
		}
	}
	return best
}

// NewerSnapshot is the one order of completed snapshots, newest first,
// that every package uses: the higher identity epoch, then the larger
// frontier (its total), then the lower proposal id. It is total: of two
// completions of different rounds exactly one is newer, whatever order
// they are met in, so every device names the same newest snapshot.
func NewerSnapshot(a, b *SnapshotCompleted) bool {
	if a.Snapshot.Epoch != b.Snapshot.Epoch {
		return a.Snapshot.Epoch > b.Snapshot.Epoch
	}
	if ta, tb := a.Snapshot.Frontier.Total(), b.Snapshot.Frontier.Total(); ta != tb {
		return ta > tb
	}
	return bytes.Compare(a.ProposalID[:], b.ProposalID[:]) < 0
}

// GroupKey returns the group key with the highest key epoch, or nil.
func (s *State) GroupKey() *GroupKey {
	var best *GroupKeyRef
	for _, g := range s.GroupKeys {
		if best == nil || g.Key.KeyEpoch > best.Key.KeyEpoch {
			best = g
		}
	}
	if best == nil {
		return nil
	}
	k := best.Key
	return &k
}

// Value returns an application value and whether it is set.
func (s *State) Value(key string) ([]byte, bool) {
	e := s.KV[key]
	if e == nil || e.Deleted {
		return nil, false
	}
	return e.Value, true
}

// MemberList lists the members at the current epoch, sorted.
func (s *State) MemberList() []DeviceID {
	var out []DeviceID
	for d := range s.Members {
		if s.IsMember(d) {
			out = append(out, d)
		}
	}
	sort.Slice(out, func(i, j int) bool { return bytes.Compare(out[i][:], out[j][:]) < 0 })
	return out
}

// MaxLamport is the highest Lamport time any record of the state carries
// (a device resuming from a snapshot keeps its clock ahead of it).
func (s *State) MaxLamport() uint64 {
	var m uint64
	see := func(st Stamp) { m = max(m, st.Lamport) }
	for _, e := range s.KV {
		see(e.Stamp)
	}
	for _, b := range s.Blobs {
		see(b.Stamp)
	}
	for _, d := range s.Devices {
		see(d.Stamp)
	}
	for _, p := range s.Proposals {
		see(p.Stamp)
	}
	for _, c := range s.Completed {
		see(c.Stamp)
	}
	for _, u := range s.Upgrades {
		see(u.Stamp)
	}
	for _, g := range s.GroupKeys {
		see(g.Stamp)
	}
	for _, p := range s.AdminProposals {
		see(p.Stamp)
	}
	return m
}
