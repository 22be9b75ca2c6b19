// Package maintenance holds the pure protocol cores of the seed's
// maintenance flows, driven identically by the node (libp2p, Pebble, real
// time) and the simulator (virtual network, memory, virtual clock):
//
//   - Replica: one device's view of the account. It owns the write path
//     (sign, guard, store, fold), the ingest path for facts from peers, the
//     writer fence, and the snapshot round (propose, vote, complete, abandon),
//     GC and restore.
//   - the snapshot round of DESIGN §5: the proposer raises its writer fence,
//     picks its version vector as frontier, reduces exactly that prefix and
//     publishes SnapshotProposed; a peer that holds the whole frontier
//     recomputes the digest and votes with a partial BLS signature only when
//     it matches; any device holding M valid partials recovers the group
//     signature (bad partials are named and skipped) and publishes
//     SnapshotCompleted; the fence drops on completion or at the deadline,
//     and buffered writes then commit, none lost (they are kept in Meta, so
//     also across a restart) and none twice (a release that a crash
//     interrupted is settled when the replica opens, by the seq it recorded
//     for the write it was committing).
//     "Reduces exactly that prefix" costs a refold of the journal
//     (crdt.RangeCausal, in causal order) only when nothing cheaper is
//     exact: the live state is the fold of exactly the chain, so at the
//     journal's own version vector it is the state at that frontier (the
//     proposer), and a voter keeps the live state's encoding from just
//     before it folds a chained proposal whose frontier its journal held
//     then (captureProposed; not across an equivocation's rebuild).
//     Config.CheckFold (tests, the simulator's honest cores) refolds at
//     every such shortcut and panics on a difference.
//   - resharing after a removal (reshare.go): PlanReshare decides from
//     the state who is invited (every current member), with which share of
//     the current key, and the new threshold (the key's M by default, 2 to
//     the members otherwise: ErrReshareThreshold); NeedsReshare says a
//     removed device still holds a share; ShareFor picks which of the
//     shares a device holds it votes with (the current key's, at its own
//     index, or none). The session itself is threshold.ReshareHub.
//
// # Epoch-scoped sessions (session.go)
//
// Every maintenance session (snapshot round, key generation, admin
// replacement) runs under a Scope, (identity_epoch, snapshot_epoch), and
// passes CheckSession before it starts and while it runs: the identity
// epoch is still the scope's (else *StaleEpochError, ErrStaleEpoch), every
// participant advertises RequiredProtocol in its DeviceMetadata (else a
// *ProtocolError naming each device lacking it, ErrUnsupportedProtocol; a
// device with no metadata yet counts as running BaseProtocol only), and
// every participant is ready for each activated hard fork (UpgradeGate,
// else a *NotReadyError "device X not ready for V", ErrNotReady). A session
// aborted by a stale epoch is retried under the new scope by its caller,
// at most SessionRetries times (RetrySession); other failures wait for an
// operator. The snapshot round applies it so (CheckSnapshotRound):
//   - its scope's identity epoch is the proposal's TargetEpoch; its
//     participants (SnapshotParticipants) are the proposer and the holders
//     of the newest group key that are members at that epoch and ready;
//     holders lacking readiness are left out, and a round starts only when
//     the ready ones reach the threshold;
//   - Propose checks it before the fence goes up; a voter checks it before
//     voting and refuses (EventRefused with the error) while it fails; a
//     voter lacking readiness itself does not vote; a completer does not
//     count the partial of a device lacking readiness (EventRefused);
//   - when the identity epoch moves past the round's, the proposer abandons
//     it (SnapshotAbandoned with the reason, EventSessionAborted) and
//     proposes again under the new epoch (Propose's retries, the attempt is
//     kept in the fence record); other devices stop voting for and
//     completing it.
//
// # The cover rule: no two completed snapshots with incomparable frontiers
//
// Every device rests its journal on one snapshot and prunes below it; sync
// stops at pruned floors and Restore refuses a snapshot that does not cover
// the base. Two completed snapshots whose frontiers are incomparable would
// therefore split the account for good (each side pruned facts the other
// lacks). The rule that makes that impossible:
//
//	A device votes for a proposal only if its frontier covers the
//	frontier of every other proposal this device ever voted for.
//
// Two completed rounds each hold M valid partials; with 2M > N (the default
// threshold N/2+1) some device signed both, and it signed the later one
// only because its frontier covers the earlier one's: the two frontiers
// are comparable. The record is the device's own vote facts in its state
// (Proposals[id].Votes[device]), which are durable and survive restarts and
// restores; the check runs at the moment of voting, and Propose applies it
// to its own frontier too. Neither time nor an abandonment frees a voter:
// a round may complete where the voter cannot see it (partitioned, crashed,
// its lock timer expired, or a completer whose clock runs late finishing
// after the proposer gave up). Liveness holds because a voter held the
// whole frontier it voted for, and what of it a later snapshot does not
// cover lies above that snapshot's floor, where nobody prunes it: sync
// brings it to every later proposer, whose frontier then covers the vote.
// Until then that voter refuses ("refused … this device voted for") and
// the others may complete without it. The
// one-open-round vote lock (lockedElsewhere) and the completion windows
// only keep rounds from duelling; safety does not rest on clocks.
// (Seed 149 of the simulator, 5 devices under chaos, completed two
// incomparable snapshots before this rule: a voter of the first restarted,
// lost its in-memory lock, and voted for the second.) The argument needs
// the devices that sign both to be honest: with f share holders signing
// arbitrarily, choose 2M > N + f.
// Restore (DESIGN §5) is decided here as well, never by a driver
// (restore.go):
//   - Output.Restore is a RestoreRequest: a completed snapshot this device
//     cannot reach by sync (or whose prefix its journal contradicts), its
//     blob CID and size, and From, the device that reported it (zero when
//     the completion came from this replica's own journal). Should sync
//     bring the facts under it after all, Tick collects it and nothing is
//     left to restore.
//   - RestoreTarget(offers) is the one function that picks what to
//     restore: among the offers (peers' newest completions, the request)
//     and the completions in the replica's state, it drops what does not
//     verify, keeps what NeedsRestore says is needed, and names the newest
//     by crdt.NewerSnapshot, or nil when nothing is needed.
//   - Restore(now, completion, blob) verifies the blob against the signed
//     digest and the threshold signature, hydrates, rests the journal on
//     the snapshot and keeps every fact above it (the device's own offline
//     writes among them). A snapshot no longer needed changes nothing (a
//     "restore-skipped" event); one older than the base is refused.
//     RestoreFrom(now, completion, reader) is the same reading the blob
//     once as a stream (crdt.ReadState: canonical form checked entry by
//     entry, digest computed on the way); Blobs implementing BlobStreamer
//     store it as it is read and commit it only once it verified.
//   - Stage and Hydrate (restore_stream.go) restore a fresh device offline
//     (a backup) without holding the snapshot's key/values: Stage reads
//     and stores the blob keeping its state without them; Hydrate
//     verifies it as Restore does (and that it is stored under the CID the
//     completion names), rests the journal on it, ingests a tail through
//     the same guards and ingest path, and returns the state digest after
//     the tail (crdt.JoinedDigest). The state is built by the next Open.
//
// A driver carries out an Output in this order: Publish (the facts are
// already durable: gossip them), Events, Collected, Blobs (the plan),
// then Restore last, which is slow and may be overtaken:
//  1. sync with the devices it can reach: the facts may still be there, and
//     the completions then enter the replica's state;
//  2. ask each of them for its newest completion (node: /aura/snapshot/1;
//     simulator: the sync reply carries it) and pass those offers, with the
//     request, to RestoreTarget; nil means nothing to restore;
//  3. fetch the blob it names (held locally, else From first, then any
//     device), hand it to Restore, carry out that Output, sync the tail;
//  4. again from 2 while RestoreTarget names a target: a restore is
//     reported done only when none remains, so a device never settles for
//     an older snapshot than one a peer offered.
//
// Inputs come in as method calls carrying the current time (unix ms) and
// any randomness the driver drew; outputs come back as Output values (facts
// to publish, a completion to restore from, the blob plan, events).
//
// What the core writes itself, and what the driver then does with the blob
// plan: during a GC or a restore the core stores the snapshot state blob
// (Blobs.Put, unpinned), saves its base record in Meta, rests and prunes the
// journal, and returns Output.Blobs, a BlobPlan. The driver applies it with
// BlobPlan.Apply on its BlobApplier, which runs, in this order: KeepNewest
// (the plan's Keep roots then its Release roots, newest first, the first
// len(Keep) pinned, in one durable write), Delete (unpin the account blobs
// whose tombstones the base snapshot covers) and Collect (free every block
// no pinned root reaches; the node runs it in the background). The plan is
// a whole desired state, so a driver also applies Replica.BlobPlan once
// after Open: a crash between the GC and the plan loses nothing. Account
// blobs a user stores or fetches are pinned by the driver itself when it
// stores or fetches them (blobstore.Store.PutPinned; pin before fetch). The package never
// reads the clock, never draws randomness and never touches the network. It
// reaches storage only through interfaces the driver passes in (crdt.Store,
// Meta, Blobs), so the simulator can model crashes by what those kept.
//
// Choices where DESIGN is silent (written down here, as it asks):
//   - "Deletes stored blobs whose tombstones predate the snapshot epoch":
//     a tombstone predates a snapshot when the snapshot's frontier covers
//     the tombstone fact, i.e. the threshold-signed state of the snapshot
//     holds it. Every device that rests on or restores from that snapshot
//     then sees the blob deleted, whatever it held before. The identity
//     epoch in crdt.BlobRef.Tombstone is not compared with the snapshot's
//     (target identity) epoch: identity epochs move only with membership,
//     so in a stable account no snapshot would ever free a blob.
//   - Snapshot blobs kept: the one the journal rests on, then the newest
//     other completions, KeepSnapshots in all, held or not (a pin on a root
//     not held costs nothing and protects a later fetch); the older ones
//     are released. A tombstone never deletes a snapshot blob, and an older
//     snapshot's blob that is also a live account blob keeps its pin.
//   - A proposal's id is derived, not drawn: sha2-256(device ‖ seq ‖ now).
//   - Non-proposers complete a round too when they hold M valid votes and no
//     completion appeared within CompleteGrace of first seeing the proposal.
//   - A device completes a round only if its own chain heads and state at
//     the frontier are still the signed ones (an equivocator's slot may
//     have re-chained since it voted); otherwise it leaves the completion
//     to a device on the signed branch (sim regression seed 211003).
//   - A fresh device restoring with no state of its own trusts the group key
//     inside the snapshot state, whose genesis must self-certify the account
//     id (crdt.AccountIDFor). A device with state verifies against its own.
//     RestoreTarget on a fresh device therefore cannot check an offer's
//     signature before the fetch; Restore checks it after, and a driver
//     drops an offer Restore refused with ErrBadSnapshot and asks
//     RestoreTarget again.
//   - Offers are checked against the group keys this replica knows: a
//     snapshot signed under a key generated while this device was away
//     does not verify and is not picked (its older snapshots still are).
//
// # Admin replacement (admin.go; DESIGN §6)
//
// A device asks (ProposeAdminReplace: `aura-cli admin replace --new D`):
// after CheckSession (its own and the new admin's protocols, the identity
// epoch) it appends AdminReplaceProposed{previous: State.Admin(), new,
// activation_epoch: the next identity epoch, deadline} and approves it
// itself. Every device decides by DecideAdminApproval, a pure function of
// (state, request, AdminPolicy, operator approval, now, the last time the
// driver reached the admin): the request must replace the current admin by
// another member, under the epoch it was made for, before its deadline, and
// the device must not have signed another replacement of that admin (its
// vote facts are the record, for good: an expired request's partials could
// still complete it); it then approves when its operator said so
// (ApproveAdminReplace, also in advance) or by itself once the admin has
// been unreachable for AdminPolicy.AutoApproveAfter (never the replaced
// admin itself). An approval is an AdminReplaceVote with a partial
// signature over crdt.AdminReplaceMessage. Any device that signed and
// holds M valid partials (each checked against its signer's index; bad
// ones named) recovers the group signature and appends AdminReplaced
// (Tick), before the deadline only; a device without a share writes
// nothing. AdminOutcome tells the driver how a request ended:
// its replacement won, another won (ErrLostToCompeting), or the deadline
// passed first (*NotEnoughApprovalsError: nothing appended). Each failure
// has its sentinel: ErrNotMember, ErrAlreadyAdmin, ErrAwaitingOperator,
// ErrNotCurrentAdmin, ErrApprovedOther, ErrRequestExpired,
// ErrNotEnoughApprovals, ErrLostToCompeting, ErrNoRequest, ErrStaleEpoch.
// The winning overrides (crdt.AdminOverride.Wins) are kept in Meta under
// MetaAdminOverride ("maintenance:admin_override") whenever they change.
// Operator approvals and the admin's last-seen time are in memory: a
// restart forgets an approval not yet signed, and counts the admin as seen
// at start.
//
// # OTA upgrades (upgrade.go, upgradegate.go)
//
// The seed's "OTA Upgrades" and DESIGN §6, decided here and carried out
// by node/upgrade.go and the simulator alike:
//   - Ingest (crdt's guard, a function of the fact alone):
//     UpgradeMetadata needs upgrade_publish, an id that is the hash of its
//     content (crdt.UpgradeIDOf), a semver version, a package name, soft
//     (no fence, no min-ready) or hard (fence and min-ready ≥ 1), and at
//     least one artifact, each with platform, sha2-256, size and CID:
//     metadata without hash and size is refused at publish and at ingest
//     (crdt.ErrArtifactIncomplete, crdt.ErrBadUpgrade).
//   - Actionable, not refused: rollback and expiry depend on other facts
//     and on time, so the fold keeps such metadata (refusing it at ingest
//     relative to activations that may arrive later would let replicas
//     diverge); Phase names it rollback (a version ≤ an activated version
//     of the same package, ErrRollback), expired (Expires ≤ the driver's
//     now, before activation only: an activated fork stays in force and a
//     late device may still become ready; ErrUpgradeExpired) or cancelled,
//     and nothing acts on it: no fetch, no readiness, no activation.
//     CheckPublish applies the same rules before a device publishes.
//   - Cancellation (UpgradeCancelled, upgrade_publish) takes effect only
//     when written at an identity epoch below the fence (CheckCancel
//     refuses after it, ErrPastFence, and once activated, ErrActivated); an
//     effective cancellation wins over a concurrent activation, on every
//     replica alike.
//   - Fetch, verify, ready: FetchPlan lists what a device fetches (only
//     its own platform's artifact; an upgrade lacking one is skipped, so a
//     bad artifact for another platform blocks no one). VerifyArtifact
//     checks the bytes the driver read (at most Size+1) against the signed
//     size (ErrSizeOverrun, ErrSizeShort) and sha2-256 (ErrHashMismatch).
//     ReadyFact returns UpgradeReady only for a verified hash equal to the
//     signed one, at once under policy auto, after approval under manual
//     (Policy: what the device declared in DeviceMetadata; manual when
//     unsaid).
//   - Activation (ActivationDue, a pure function): a hard fork activates
//     when it is actionable at now, not activated yet, at least MinReady
//     current members are ready, and the identity epoch has reached the
//     fence. Who (Activators): the publisher while it is a member holding
//     upgrade_publish, then the other holders by device id;
//     UpgradeCoordinator lets the first act at once and the k-th after k
//     grace periods of the fork being due, so exactly one is expected and
//     a duplicate is harmless (activations join: lowest fence, then
//     version).
//   - In force (InForce, UpgradeGate): activated, metadata known, not
//     cancelled, and the highest activated version of its package (an
//     older one is superseded, a rogue activation of a lower version never
//     takes force). From then on UpgradeGate, which CheckSession runs for
//     every session, refuses a participant without readiness with
//     *NotReadyError ("device X not ready for V", ErrNotReady). A session
//     under an older identity epoch than the current one already fails
//     CheckSession (ErrStaleEpoch), and activation needs the epoch at the
//     fence, so no session passes under an epoch below an active fence.
//   - Durability: activation is a fact, durable before it is published;
//     a driver runs UpgradeCoordinator once at start, before it serves or
//     joins sessions, so a device restarted at the fence activates (if it
//     is the activator) and every device folds its journal's activations
//     before it acts.
//
// It imports crdt and threshold only; never libp2p, Pebble, or time.Now.
package maintenance
