// Package crdt owns the account's journal: the signed, content-addressed fact
// envelope, its canonical CBOR encoding, the journal lattice (a grow-only set
// of facts with per-author sequence numbers, version vectors and hash chains),
// the Store interface with an in-memory implementation, the reducer that folds
// facts into the account state (a join-semilattice) and the capability guards.
//
// Invariants:
//   - One fact has exactly one encoding and therefore one CID: DecodeFact
//     rejects any input that does not re-encode to the same bytes.
//   - A state has one encoding too: DecodeState and the streaming
//     ReadState (one pass over an io.Reader, canonical form checked entry
//     by entry, digest computed as it reads, optionally keeping no
//     key/values) accept exactly the same bytes (FuzzReadState).
//   - A fact is decoded once per receiver: DecodeFact parses the envelope
//     in one canonical pass and keeps the decoded body with the Fact, so
//     the guard check and the fold read it instead of decoding again (the
//     kept body is shared and never modified; DecodeBody returns a fresh
//     decoding, the caller's own).
//   - A fact's ID is the CIDv1 (dag-cbor, sha2-256) of its canonical bytes,
//     signature included.
//   - Signatures are checked under one rule, ed25519 with ZIP-215
//     validation, whether alone (VerifyOnce) or in batches (VerifyFacts,
//     which Ingest uses): a fact's verdict never depends on its batch, and
//     batch coefficients are derived from the fact ids, not drawn.
//   - The reducer is order-insensitive: the same set of facts folded in any
//     order, batching, or with duplicates gives the same state and digest.
//   - A fact whose author lacked the needed capability at its epoch never
//     changes state.
//   - Upgrade metadata is refused by the guard unless UpgradeMetadata.Validate
//     accepts it (a function of the fact alone: id = UpgradeIDOf(content),
//     semver, kind, fence and min-ready of hard forks, every artifact with
//     platform, sha2-256, size and CID). Whether an upgrade may be acted on
//     (expiry, rollback, cancellation) is maintenance's call at read time;
//     the fold keeps every valid upgrade fact.
//
// # Admin replacement (admin.go)
//
// AdminReplaced{previous, new, activation_epoch} carries the account's
// threshold signature over AdminReplaceMessage ("aura/admin-replace/v1",
// account, previous, new, activation_epoch); the guard verifies it against
// the published group keys (none verifying: ErrBadThresholdSignature, with
// ErrNotYet, as a later key might), and requires new to be a member at the
// epoch before activation (ErrNewAdminNotMember) and the fact's epoch to be
// its activation epoch (ErrBadReplacement). The fact opens that epoch, like
// a membership fact. The replacement round's request and votes are facts
// too (AdminReplaceProposed, AdminReplaceVote: membership is enough; the
// maintenance core checks the partials).
//
// One rule decides between competing replacements of one previous admin,
// the same on every device whatever the arrival order (AdminOverride.Wins):
// the lower activation epoch wins; at equal epochs, the new admin with the
// bytewise lower device id. State.AdminReplacements keeps the winner per
// previous admin; AdminOverrides and NewAdmins derive from it, so a losing
// new admin never holds the admin capability. From the activation epoch on,
// the previous admin's admin facts (CapAdmin kinds: device add/remove,
// capability grants, group keys) are refused; its earlier ones stay valid.
// An admin act is decided only once every epoch up to the one its author
// acts at is opened (MembershipKnownTo), and the replacement opens its
// activation epoch, so no replica accepts a replaced admin's later act
// before it holds the replacement. Known limit: an epoch opened by two
// facts (the old admin still admitting a device while being replaced, or a
// losing new admin acting before it learns of the winner) lets replicas
// decide that epoch's admin acts before the second opener arrives. The
// maintenance core narrows it: a device signs at most one replacement per
// admin, so with 2M > N two replacements cannot both complete.
//
// The package is pure (DESIGN §2): it never imports libp2p or Pebble, never
// reads the clock and never draws randomness. Time, keys and bytes come in as
// arguments.
package crdt
