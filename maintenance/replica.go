package maintenance

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"sort"

	"aura/crdt"
	"aura/threshold"
)

// Sentinel errors callers branch on.
var (
	ErrNoAccount      = errors.New("this device belongs to no account yet")
	ErrHasAccount     = errors.New("this device already belongs to an account")
	ErrNotPermitted   = errors.New("this device lacks the capability")
	ErrNoGroupKey     = errors.New("the account has no threshold key yet: run `aura-cli threshold keygen`")
	ErrRoundOpen      = errors.New("a snapshot round of this device is still open")
	ErrStaleProposal  = errors.New("proposal is stale")
	ErrDigestMismatch = errors.New("state digest does not match")
	ErrBadSnapshot    = errors.New("snapshot does not verify")
	ErrNeedsRestore   = errors.New("facts below a collected snapshot are gone: restore from the snapshot")
)

// Meta is small durable key-value storage for the replica's own records
// (fence, buffered writes, base snapshot). Put must be durable on return.
type Meta interface {
	Get(key string) ([]byte, error) // nil, nil when absent
	Put(key string, value []byte) error
	Delete(key string) error
	// Scan calls fn for every key with the prefix, in key order.
	Scan(prefix string, fn func(key string, value []byte) error) error
}

// Blobs is content-addressed storage for snapshot state blobs. CIDs are
// binary. Put must be deterministic: equal bytes give equal CIDs.
type Blobs interface {
	Put(data []byte) (cid []byte, err error)
	// Get returns a locally held blob, or an error wrapping ErrBlobMissing.
	Get(cid []byte) ([]byte, error)
}

// ErrBlobMissing is returned by Blobs.Get for a blob not held locally.
var ErrBlobMissing = errors.New("blob not held")

// Config parameterises a Replica. Zero values mean the defaults.
type Config struct {
	Key   ed25519.PrivateKey
	Store crdt.Store
	Meta  Meta
	Blobs Blobs
	// SnapshotTimeout is how long a round may take before its proposer
	// abandons it (ms; default 60 s).
	SnapshotTimeout int64
	// CompleteGrace is how long a non-proposer waits for the proposer's
	// completion before completing itself (ms; default SnapshotTimeout/3).
	CompleteGrace int64
	// Watermark is the journal size in bytes past which this device proposes
	// a snapshot by itself (default 100 MB; negative disables).
	Watermark int64
	// WatermarkJitter delays watermark proposals by up to this many ms
	// (a value the driver draws once), so two devices do not duel.
	WatermarkJitter int64
	// KeepSnapshots is how many snapshot blobs stay pinned (default 2).
	KeepSnapshots int
	// AdminPolicy is this device's rule for approving admin replacements;
	// AdminTimeout how long a replacement request stays open (ms;
	// default SnapshotTimeout). See admin.go.
	AdminPolicy  AdminPolicy
	AdminTimeout int64
	// CheckFold (tests and the simulator) makes every use of the live
	// state for the state at a frontier refold the journal too and
	// compare; a mismatch panics (the fold would depend on order). See
	// encodedAt and CheckFoldShortcuts.
	CheckFold bool
}

func (c *Config) defaults() {
	if c.SnapshotTimeout <= 0 {
		c.SnapshotTimeout = 60_000
	}
	if c.CompleteGrace <= 0 {
		c.CompleteGrace = c.SnapshotTimeout / 3
	}
	if c.Watermark == 0 {
		c.Watermark = 100 << 20
	}
	if c.KeepSnapshots <= 0 {
		c.KeepSnapshots = 2
	}
	if c.AdminTimeout <= 0 {
		c.AdminTimeout = c.SnapshotTimeout
	}
}

// EventKind is what an Event reports: a typed kind drivers switch on
// (String gives the name logs and traces print).
type EventKind uint8

// The kinds of Event.
const (
	EventUnknown EventKind = iota
	EventError
	EventRefused
	EventWatermark
	EventGcSkipped
	EventBadPartial
	EventWarning
	EventVoted
	EventRestored
	EventRestoreSkipped
	EventRestoreNeeded
	EventProposed
	EventMismatch
	EventGcRefused
	EventGc
	EventFenceReleased
	EventCompleted
	EventBuffered
	EventAbandoned
	// EventSessionAborted: a maintenance session of this device aborted
	// (Err says why: a *StaleEpochError, a *ProtocolError, a
	// *NotReadyError); Detail says whether it is retried.
	EventSessionAborted
	EventAdminProposed
	EventAdminVoted
	EventAdminRefused
	EventAdminReplaced
)

var eventNames = [...]string{"unknown", "error", "refused", "watermark", "gc-skipped", "bad-partial", "warning", "voted", "restored", "restore-skipped", "restore-needed", "proposed", "mismatch", "gc-refused", "gc", "fence-released", "completed", "buffered", "abandoned", "session-aborted", "admin-proposed", "admin-voted", "admin-refused", "admin-replaced"}

func (k EventKind) String() string {
	if int(k) < len(eventNames) {
		return eventNames[k]
	}
	return fmt.Sprintf("event(%d)", uint8(k))
}

// Warning reports whether a driver should log the event as a warning.
func (k EventKind) Warning() bool {
	switch k {
	case EventError, EventGcRefused, EventBadPartial, EventMismatch, EventWarning, EventSessionAborted:
		return true
	}
	return false
}

// Event is something worth logging or tracing.
type Event struct {
	Kind     EventKind
	Proposal [16]byte
	Device   crdt.DeviceID // whom it concerns, if anyone
	Detail   string
	// Err is the cause of an error event (a storage failure, a check
	// that failed), for callers that branch on it with errors.Is.
	Err error
}

func (e Event) String() string {
	s := e.Kind.String()
	if e.Proposal != ([16]byte{}) {
		s += fmt.Sprintf(" proposal=%x", e.Proposal[:4])
	}
	if e.Device != (crdt.DeviceID{}) {
		s += " device=" + e.Device.Short()
	}
	if e.Detail != "" {
		s += " " + e.Detail
	}
	if e.Err != nil {
		if e.Detail != "" {
			s += ":"
		}
		s += " " + e.Err.Error()
	}
	return s
}

// Output is what a call asks the driver to do.
type Output struct {
	Publish []*crdt.Fact // facts written locally (already durable): gossip them
	Events  []Event
	// Proposed is the id of the round Propose opened (zero otherwise).
	Proposed [16]byte
	// Restore asks for a restore: a completed snapshot this device cannot
	// reach by sync (or whose prefix differs from its journal's). The
	// driver does not restore it as named: after a sync with its peers had
	// its chance, it passes it, with what peers report on the snapshot
	// protocol, to RestoreTarget, and fetches the blob that names.
	Restore *RestoreRequest
	// Blobs, after a GC or a restore, is the plan for this device's blob
	// storage: the driver applies it with BlobPlan.Apply.
	Blobs *BlobPlan
	// Collected reports a GC: facts and bytes pruned from the journal.
	Collected *GCStats
}

func (o *Output) merge(p Output) {
	o.Publish = append(o.Publish, p.Publish...)
	o.Events = append(o.Events, p.Events...)
	if p.Proposed != ([16]byte{}) {
		o.Proposed = p.Proposed
	}
	if p.Restore != nil && (o.Restore == nil || crdt.NewerSnapshot(&p.Restore.Completion, &o.Restore.Completion)) {
		o.Restore = p.Restore
	}
	if p.Blobs != nil {
		o.Blobs = p.Blobs // a whole desired state: the newest wins
	}
	if p.Collected != nil {
		o.Collected = p.Collected
	}
}

// GCStats are the figures of one garbage collection.
type GCStats struct {
	Proposal     [16]byte
	FactsBefore  uint64
	BytesBefore  uint64
	FactsAfter   uint64
	BytesAfter   uint64
	PrunedFacts  uint64
	PrunedBytes  uint64
	BlobsDeleted int // account blobs this GC deleted: their tombstones newly under the base frontier
}

// Replica is one device's view of its account. It is not safe for
// concurrent use: the driver serialises calls.
type Replica struct {
	cfg    Config
	device crdt.DeviceID
	store  crdt.Store
	state  *crdt.State
	writer *crdt.Writer
	share  *threshold.Share

	base     *baseRecord // newest snapshot this replica collected or restored
	baseSt   *crdt.State // the state at base.Frontier (nil: the empty state)
	fence    *fenceRecord
	rounds   map[[16]byte]*round
	verifier *threshold.Verifier
	verKey   []byte
	lastGC   *GCStats
	autoAt   int64 // earliest time of the next watermark proposal
	resumed  bool  // open rounds rebuilt after Open
	cache    struct {
		frontier, pruned crdt.VersionVector
		enc              []byte
	}
	sigs sigCache // this replica's parsed group keys and checked signatures

	// uncollected is the newest completion, met before this journal held
	// its frontier: collected by Tick once sync brought the facts.
	uncollected *crdt.SnapshotCompleted

	// Admin replacement (admin.go): when the driver last reached the
	// admin, this operator's approvals (by new admin), per-request memory,
	// and the overrides last saved under MetaAdminOverride.
	adminSeen     int64
	adminApproved map[crdt.DeviceID]bool
	adminRounds   map[[16]byte]*adminRound
	adminSaved    []byte
}

// Open builds a replica over its storage, rebuilding the state from the
// base snapshot and the journal.
func Open(cfg Config) (*Replica, error) {
	cfg.defaults()
	if cfg.Key == nil || cfg.Store == nil || cfg.Meta == nil || cfg.Blobs == nil {
		return nil, errors.New("maintenance: Config needs Key, Store, Meta and Blobs")
	}
	r := &Replica{cfg: cfg, store: cfg.Store, rounds: map[[16]byte]*round{},
		adminApproved: map[crdt.DeviceID]bool{}, adminRounds: map[[16]byte]*adminRound{}}
	r.device = crdt.DeviceIDFromKey(cfg.Key.Public().(ed25519.PublicKey))
	account := cfg.Store.Account()
	if err := r.loadBase(); err != nil {
		return nil, err
	}
	if r.baseSt != nil {
		account = r.baseSt.Account
		r.state = r.baseSt.Clone()
	} else {
		r.state = crdt.NewState(account, r.verifyGroup)
	}
	r.state.SetVerifier(r.verifyGroup)
	if r.base != nil && !r.store.PrunedTo().Covers(r.base.Snapshot.Frontier) {
		// A crash between saving the base and resting the journal on it
		// (restore): finish the job, it is idempotent.
		if err := r.store.Rebase(r.base.Snapshot.Frontier, r.base.Snapshot.Heads); err != nil {
			return nil, fmt.Errorf("open replica: rest journal on its base: %w", err)
		}
	}
	lamport, err := r.foldChain(r.state)
	if err != nil {
		return nil, fmt.Errorf("open replica: fold journal: %w", err)
	}
	lamport = max(lamport, r.state.MaxLamport())
	r.writer = crdt.NewWriter(cfg.Key, account, r.store.VersionVector()[r.device], lamport)
	if err := r.loadFence(); err != nil {
		return nil, err
	}
	if err := r.settleBuffer(); err != nil {
		return nil, err
	}
	if c := r.state.NewestSnapshot(); c != nil && (r.base == nil || r.base.Proposal != c.ProposalID) {
		r.uncollected = c // checked by the next Tick
	}
	return r, nil
}

// foldChain folds every chain fact above the base into st and returns the
// highest Lamport time seen. The state is the fold of exactly the chain
// facts: facts pending behind a gap and equivocation evidence never change
// it, so replicas holding the same prefix hold the same state.
func (r *Replica) foldChain(st *crdt.State) (uint64, error) {
	var lamport uint64
	pruned := r.store.PrunedTo()
	vv := r.store.VersionVector()
	err := crdt.RangeCausal(r.store, pruned, vv, func(f *crdt.Fact) error {
		_ = st.Apply(f)
		lamport = max(lamport, f.Lamport)
		return nil
	})
	if err != nil {
		return 0, err
	}
	return lamport, nil
}

// rebuild recomputes the live state from the base and the chain (after an
// equivocation moved a chain slot).
func (r *Replica) rebuild() error {
	r.cache.enc = nil // a frontier may name other facts now
	var st *crdt.State
	if r.baseSt != nil {
		st = r.baseSt.Clone()
	} else {
		st = crdt.NewState(r.state.Account, r.verifyGroup)
	}
	st.SetVerifier(r.verifyGroup)
	lamport, err := r.foldChain(st)
	if err != nil {
		return err
	}
	r.state = st
	r.writer.Observe(lamport)
	return nil
}

// Device is this replica's device id.
func (r *Replica) Device() crdt.DeviceID { return r.device }

// Account is the account, zero before genesis or join.
func (r *Replica) Account() crdt.AccountID { return r.state.Account }

// State is the live account state. Callers must not modify it.
func (r *Replica) State() *crdt.State { return r.state }

// Store is the journal.
func (r *Replica) Store() crdt.Store { return r.store }

// SetShare gives the replica its threshold key share (nil: none).
func (r *Replica) SetShare(s *threshold.Share) { r.share = s }

// Share returns the replica's threshold share, if any.
func (r *Replica) Share() *threshold.Share { return r.share }

// LastGC returns the figures of the last GC this replica ran, if any.
func (r *Replica) LastGC() *GCStats { return r.lastGC }

// verifyGroup is the crdt.ThresholdVerifier of this replica.
func (r *Replica) verifyGroup(groupKey, msg, sig []byte) error {
	return r.sigs.verify(groupKey, msg, sig)
}

// Check applies the capability guard to a fact from a peer.
func (r *Replica) Check(f *crdt.Fact) error { return r.state.Check(f) }

// admit is the Store's Admit callback: the guard, and the clocks. The fold
// happens once the store says the fact entered the chain (ingest).
func (r *Replica) admit(f *crdt.Fact) error {
	if err := r.state.Check(f); err != nil {
		return err
	}
	if f.Author == r.device {
		r.writer.ObserveOwn(f.Seq, f.Lamport)
	} else {
		r.writer.Observe(f.Lamport)
	}
	return nil
}

// ingest stores facts and folds those that entered the chain. Facts that
// change guards (membership, group keys) are stored in their own step so
// that facts depending on them in the same delivery pass their guards.
func (r *Replica) ingest(facts []*crdt.Fact) (crdt.IngestResult, error) {
	sorted := append([]*crdt.Fact(nil), facts...)
	crdt.SortCausal(sorted)
	var total crdt.IngestResult
	start := 0
	for i, f := range sorted {
		if i+1 < len(sorted) && !crdt.ChangesGuards(f.Kind) {
			continue
		}
		// The chain the live state folds, tracked while a proposal may be
		// chained: captureProposed keeps the state at its frontier.
		var folded crdt.VersionVector
		for _, f := range sorted[start : i+1] {
			if f.Kind == crdt.KindSnapshotProposed {
				folded = r.store.VersionVector()
				break
			}
		}
		res, err := r.store.Ingest(sorted[start:i+1], r.admit)
		if err != nil {
			return total, err
		}
		start = i + 1
		if len(res.Rechained) > 0 {
			folded = nil // an equivocation moved a slot: the live state is rebuilt below
		}
		for _, c := range res.Chained {
			if folded != nil {
				if c.Kind == crdt.KindSnapshotProposed {
					r.captureProposed(c, folded)
				}
				folded[c.Author] = c.Seq
			}
			_ = r.state.Apply(c)
		}
		if len(res.Rechained) > 0 {
			if err := r.rebuild(); err != nil {
				return total, fmt.Errorf("rebuild state after an equivocation: %w", err)
			}
		}
		total.Added = append(total.Added, res.Added...)
		total.Chained = append(total.Chained, res.Chained...)
		total.Rechained = append(total.Rechained, res.Rechained...)
		total.Rejected = append(total.Rejected, res.Rejected...)
		total.Duplicates += res.Duplicates
		total.Pending += res.Pending
		total.Evidence += res.Evidence
	}
	return total, nil
}

// CreateAccount writes the genesis fact: this device founds an account and
// is its admin. nonce comes from the driver's randomness.
func (r *Replica) CreateAccount(name string, threshold uint64, nonce [16]byte) (Output, error) {
	if !r.state.Account.IsZero() || r.state.Genesis != nil {
		return Output{}, ErrHasAccount
	}
	if threshold == 0 {
		threshold = 1
	}
	f, err := r.writer.Genesis(name, threshold, nonce)
	if err != nil {
		return Output{}, err
	}
	r.state = crdt.NewState(r.writer.Account(), r.verifyGroup)
	return r.commit(f)
}

// Join binds a fresh replica to an account it was admitted to, before the
// facts arrive by sync.
func (r *Replica) Join(account crdt.AccountID) error {
	if !r.state.Account.IsZero() && r.state.Account != account {
		return ErrHasAccount
	}
	r.state = crdt.NewState(account, r.verifyGroup)
	r.writer.SetAccount(account)
	return nil
}

// commit stores and folds a locally written fact.
func (r *Replica) commit(f *crdt.Fact) (Output, error) {
	res, err := r.ingest([]*crdt.Fact{f})
	if err != nil {
		r.writer.Unwrite()
		return Output{}, fmt.Errorf("store %s: %w", f.Kind, err)
	}
	if len(res.Rejected) > 0 {
		r.writer.Unwrite()
		return Output{}, fmt.Errorf("write %s: %w", f.Kind, res.Rejected[0].Err)
	}
	return Output{Publish: []*crdt.Fact{f}}, nil
}

// write signs body at the current epoch (next epoch for membership facts)
// and commits it, without the fence.
func (r *Replica) write(body crdt.Body) (Output, error) {
	if r.state.Account.IsZero() {
		return Output{}, ErrNoAccount
	}
	epoch := r.state.Epoch
	switch b := body.(type) {
	case *crdt.DeviceAdded, *crdt.DeviceRemoved, *crdt.CapabilityGrant:
		epoch++
	case *crdt.AdminReplaced:
		epoch = b.ActivationEpoch // it opens its activation epoch
	}
	f, err := r.writer.Write(epoch, body)
	if err != nil {
		return Output{}, err
	}
	return r.commit(f)
}

// fenced reports whether a kind of write waits behind the writer fence:
// application writes do; maintenance and membership facts do not.
func fenced(k crdt.Kind) bool {
	switch k {
	case crdt.KindPut, crdt.KindDelete, crdt.KindBlobStored, crdt.KindBlobTombstoned, crdt.KindEnvelope, crdt.KindCacheInvalidated:
		return true
	}
	return false
}

// Write is the local write path. While this device's snapshot round is open
// (the writer fence is up) application writes are buffered durably and
// committed when the fence drops; Output then carries no fact and
// Buffered() grows.
func (r *Replica) Write(now int64, body crdt.Body) (Output, error) {
	if r.state.Account.IsZero() {
		return Output{}, ErrNoAccount
	}
	// Checked before buffering too: a buffered write that could not be
	// signed at release would be an acknowledged write lost.
	if enc, err := crdt.Marshal(body); err != nil {
		return Output{}, fmt.Errorf("encode %s: %w", body.Kind(), err)
	} else if err := crdt.CheckBodySize(body.Kind(), len(enc)); err != nil {
		return Output{}, err
	}
	if fenced(body.Kind()) {
		if r.fence != nil {
			return Output{Events: []Event{{Kind: EventBuffered, Proposal: r.fence.Proposal, Detail: body.Kind().String()}}}, r.buffer(body)
		}
		if need := crdt.CapWrite; !r.state.Holds(r.device, need, r.state.Epoch) {
			return Output{}, fmt.Errorf("%s: %w %q", body.Kind(), ErrNotPermitted, need)
		}
	}
	out, err := r.write(body)
	if err != nil {
		return out, err
	}
	out.merge(r.Tick(now))
	return out, nil
}

// Receive ingests facts from peers (gossip or sync): guard, store in one
// durable batch, fold, then run the snapshot protocol on what arrived.
func (r *Replica) Receive(now int64, facts []*crdt.Fact) (crdt.IngestResult, Output, error) {
	if r.state.Account.IsZero() {
		return crdt.IngestResult{}, Output{}, ErrNoAccount
	}
	if !r.resumed {
		r.resume(now) // before observe can vote: the locks of votes cast before a restart hold
	}
	res, err := r.ingest(facts)
	if err != nil {
		return res, Output{}, err
	}
	var out Output
	for _, f := range res.Chained {
		out.merge(r.observe(now, f))
	}
	out.merge(r.Tick(now))
	return res, out, nil
}

// Tick advances timers: abandons this device's round at its deadline,
// completes rounds whose proposer went quiet, retries votes that waited
// for sync, and proposes by itself past the watermark.
func (r *Replica) Tick(now int64) Output {
	var out Output
	if !r.resumed {
		r.resume(now)
	}
	if r.fence != nil && now >= r.fence.Deadline {
		out.merge(r.abandon(now, "deadline passed"))
	}
	out.merge(r.collectCaughtUp())
	ids := make([][16]byte, 0, len(r.rounds))
	for id := range r.rounds {
		ids = append(ids, id)
	}
	sort.Slice(ids, func(i, j int) bool { return bytes.Compare(ids[i][:], ids[j][:]) < 0 })
	for _, id := range ids {
		out.merge(r.progress(now, id))
	}
	out.merge(r.watermark(now))
	out.merge(r.adminTick(now))
	return out
}

// proposalID derives a round id from the device, its seq and the time.
func (r *Replica) proposalID(now int64) [16]byte {
	h := sha256.New()
	h.Write([]byte("aura/proposal/v1\x00"))
	h.Write(r.device[:])
	var n [16]byte
	binary.BigEndian.PutUint64(n[:8], r.writer.Seq())
	binary.BigEndian.PutUint64(n[8:], uint64(now))
	h.Write(n[:])
	var id [16]byte
	copy(id[:], h.Sum(nil))
	return id
}

// groupVerifier returns a verifier for the account's newest group key.
func (r *Replica) groupVerifier() (*threshold.Verifier, *crdt.GroupKey, error) {
	gk := r.state.GroupKey()
	if gk == nil {
		return nil, nil, ErrNoGroupKey
	}
	if r.verifier == nil || !bytes.Equal(r.verKey, gk.PublicKey) {
		key, err := threshold.ParseGroupKey(gk.PublicKey)
		if err != nil {
			return nil, nil, fmt.Errorf("group key of epoch %d: %w", gk.KeyEpoch, err)
		}
		r.verifier, r.verKey = threshold.NewVerifier(key), gk.PublicKey
	}
	return r.verifier, gk, nil
}

// PublishGroupKey writes the group-key fact after key generation.
func (r *Replica) PublishGroupKey(key *threshold.GroupKey, participants []crdt.DeviceID) (Output, error) {
	gk := &crdt.GroupKey{Threshold: uint64(key.Threshold()), Participants: participants, PublicKey: key.Bytes()}
	if cur := r.state.GroupKey(); cur != nil {
		gk.KeyEpoch = cur.KeyEpoch + 1
	} else {
		gk.KeyEpoch = 1
	}
	return r.write(gk)
}

// AddDevice admits a device (admin only).
func (r *Replica) AddDevice(d crdt.DeviceID, name string, caps []string) (Output, error) {
	if !r.state.Holds(r.device, crdt.CapAdmin, r.state.Epoch) {
		return Output{}, fmt.Errorf("add device: %w %q", ErrNotPermitted, crdt.CapAdmin)
	}
	if caps == nil {
		caps = crdt.DefaultDeviceCapabilities
	}
	return r.write(&crdt.DeviceAdded{Device: d, Capabilities: caps, Name: name})
}

// WriteMeta publishes this device's metadata (not fenced).
func (r *Replica) WriteMeta(m *crdt.DeviceMetadata) (Output, error) { return r.write(m) }
