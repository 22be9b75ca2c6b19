// Package node is the driver of DESIGN §2: it wires the pure cores
// (crdt, maintenance, threshold) to the real world — the libp2p host, the
// Pebble store, the blob store, gossip, real time and randomness, files —
// and serves the control API that aura-cli talks to.
//
// What it owns:
//   - HOME (default $AURA_HOME, else ~/.aura): config.toml (Config mirrors
//     it; DefaultConfig, Validate naming every bad key), device.key (ed25519
//     seed, PEM, 0600; the libp2p identity), data/ (one Pebble database),
//     aura.sock (control API, 0600), threshold.share (the DKG share sealed
//     with threshold.SealShare under the random passphrase in share.seal,
//     0600; loaded at start with Replica.SetShare), aura.lock (flock held by
//     the running node, naming its pid: a second node on the home is
//     refused), account and peers (the account id and the devices'
//     addresses, kept outside the store for `aura-node repair`), ballast
//     (the free-space guard's reserve).
//   - Key prefixes of the Pebble database besides the journal's 'j': 'm'
//     for the replica's maintenance.Meta records, 'n' for the node's own
//     records (invites, the joined account, the inviter, peer addresses),
//     'b' for the blob store.
//
// Invariants:
//   - One write and ingest path: every local write goes through
//     Replica.Write, every fact from a peer through Replica.Receive, both
//     under one mutex; the node never re-implements guards, ingest or
//     snapshot logic. Facts are durable before they are gossiped.
//   - The mesh is private: the connection gater admits members of the
//     replica's state and peers trusted for a join in progress. While an
//     invite is open (and for 10 minutes after it expired or was used, so a
//     late joiner gets a clear "invite expired"/"invite already used" rather
//     than a refused connection) unknown peers are admitted as guests: every
//     stream handler but /aura/join/1 refuses them (guardedHost wraps the
//     handlers gossip and the blob store register), and they are
//     disconnected after 30 s unless the join made them members.
//   - Removed devices are out for good (remove.go): `account remove`
//     writes DeviceRemoved; whenever the member set changes, every device
//     closes its connections to devices the state records as removed and
//     blocks them in the gater (not even as guests). Their facts from the
//     removal epoch on are refused by the crdt guard.
//
// Protocols of this package (besides gossip's /aura/sync/1 and gossipsub,
// and the blob store's /aura/blocks/1):
//   - /aura/join/1: the joiner sends the invite id (a hash of the secret)
//     and HMAC-SHA256 keyed by another hash of the secret over (account,
//     inviter peer id, joiner peer id); the secret never crosses the wire
//     and the proof binds the joiner's Noise-authenticated id. The inviter
//     keeps only the hashes, an expiry and a used flag, durably; it marks
//     the invite used, writes DeviceAdded (raising the identity epoch) and
//     answers with the account.
//   - /aura/dkg/1: `threshold keygen` makes the calling device the hub of a
//     key generation among all current members (all must be connected). The
//     protocol is threshold.KeygenHub and threshold.KeygenParticipant;
//     keygen.go is only their transport: one stream per participant,
//     frames as uvarint length ‖ threshold.KeygenFrame bytes (at most
//     threshold.MaxKeygenFrame), a tick every 200 ms carrying the wall
//     clock, a failed read or write reported as a broken channel, and the
//     session's output carried out in its order (send, seal the share on
//     Keep and then Kept, finish on Done or Err). The DKG messages the hub
//     relays are encrypted end to end by the threshold package. Every
//     participant reports the group key it computed; only when all agree
//     does the hub say so, each participant seal its share, and the hub
//     seal its own and publish the key with Replica.PublishGroupKey. A
//     failure names the device to blame (threshold.KeygenError) and asks
//     the operator to retry. The frame bytes are those of the earlier
//     node-side implementation (keygen_wire_test.go checks both ways).
//     The session is epoch-scoped (maintenance/session.go): the hub runs
//     maintenance.CheckSession over the members under the current scope
//     before it deals (a member lacking the protocol or readiness: refused,
//     naming it) and before every step until its final is out (then
//     participants keep shares, so the key is published as generated); a
//     participant checks the hub's participant list for the protocol and
//     readiness until it keeps its share (the epoch is the hub's to watch).
//     A session aborted because the identity epoch moved is run again
//     under the new scope, maintenance.RetrySession times.
//   - /aura/reshare/1: `threshold reshare`, and the admin's node by itself
//     after a removal as soon as the key's M share holders are connected
//     (reshare_auto.go), runs threshold.ReshareHub over one stream per
//     current member (reshare.go, the same transport as /aura/dkg/1), with
//     whom and which shares maintenance.PlanReshare decides; unreachable
//     devices are reported broken and left out. A participant seals its
//     new share as HOME/threshold.share.next and votes with it only once a
//     group key fact names its key (maintenance.ShareFor picks the share
//     on every state change); a device left out holds no share of the new
//     key. The hub seals its share and publishes the key at the next key
//     epoch (same group public key, new commitments and participants).
//     It runs under the same session gate and retries as key generation.
//   - /aura/snapshot/1: answers with the fact of the newest completed
//     snapshot. Restore asks every connected device at once and hands the
//     answers to Replica.RestoreTarget, which picks (the node never
//     chooses); a new device cannot take the completion from sync (its
//     guards need the genesis, which peers collected), and the replica
//     verifies the threshold signature and digest before it hydrates.
//   - /aura/peers/1: answers a device of the account with the addresses
//     this node knows for the account's other devices (CBOR list of peer id
//     and multiaddrs, bounded). The reconnect loop asks each connected
//     device when it connects, when membership changes, and every minute,
//     and dials the devices it learned of: a device that joined through the
//     admin finds the others without mDNS, and keeps them when the admin
//     goes.
//
// Sessions and device metadata (metadata.go, session.go, propose.go): the
// node publishes DeviceMetadata (name, SupportedProtocols, the upgrade
// policy from upgrade.policy or `aura-cli device policy`, POST
// /v1/device/policy) whenever the state does not say exactly that. The
// snapshot round's session gate is the core's (Replica.Propose refuses,
// naming devices; a round whose epoch moved is abandoned and proposed again
// by the core); the node only reports: EventSessionAborted and keygen
// aborts land in Status.LastSessionAbort, maintenance.Incompatible gives
// Status.Incompatible and PeerInfo.Incompatible, and the API's error
// answers carry a code (ErrorCode: stale_epoch, unsupported_protocol,
// not_ready) that `aura-cli --json` prints. upgrade.test_protocols replaces
// the advertised protocols, for tests only.
//
// Failure behaviour (fail-stop, never wedge):
//   - Startup checks before anything starts (startup.go): the home lock,
//     listen ports held by another process (go-libp2p's SO_REUSEPORT would
//     share them), the metrics address, the key file's mode, the config
//     (file, line and key named). Every failure is one error saying what to
//     do; nothing is left running or bound.
//   - A fatal storage error (Pebble's Logger.Fatalf) parks the failing call
//     so nothing it did is acknowledged, and delivers the reason on Fatal();
//     aura-node run exits non-zero at once. Calls into the replica hold n.mu
//     with defer. Shutdown is bounded.
//   - The free-space guard (space.go) refuses local writes before the disk
//     fills; reads, sync, snapshots and GC go on (a ballast file is released
//     for them), and writes resume by themselves.
//   - A damaged store (repair.go) is refused with its directory, file and
//     the way out; Repair moves it aside (never deletes it) and rebuilds
//     the device from its peers, replaying its own writes still readable.
//
// Blobs (blobs.go, blobapi.go): the node applies the core's
// maintenance.BlobPlan with BlobPlan.Apply over the blobstore (KeepNewest
// in one durable write, unpin the tombstoned blobs, then one coalesced
// background blob GC that compacts, so the disk space comes back), after
// every GC or restore and once at start. Account blobs are pinned where
// they are put (blobstore.Store.PutPinned: no GC can slip between the put
// and the pin) or fetched (pinned before the fetch, so a partial fetch
// resumes); `blob rm` only appends BlobTombstoned, and every device frees
// the space after the next completed snapshot covers the tombstone. A
// removed blob cannot be stored again (its tombstone is for good).
//
// Choices where DESIGN is silent: the control API is JSON over HTTP on the
// socket (/v1/status, /v1/peers, /v1/facts, /v1/account/{create,invite,
// join,devices,remove}, /v1/threshold, /v1/threshold/{keygen,reshare}, /v1/snapshots, /v1/restore
// streaming NDJSON progress, /v1/blobs: POST raw bytes, GET the list,
// POST {cid}/fetch streaming NDJSON progress, GET {cid}/data the bytes,
// DELETE {cid}; /v1/backup streaming a TAR); Prometheus metrics use one
// registry per node
// so several nodes can run in one process (demo, tests); addresses of
// connected devices are remembered so a restarted node finds its peers
// without discovery.
//
// Admin replacement (admin.go, demo_admin.go; DESIGN §6): POST
// /v1/admin/replace {new, approve} and GET /v1/admin. The node carries out
// what maintenance decides: it proposes or approves through the replica,
// waits for Replica.AdminOutcome (until the request's deadline), and feeds
// the core the last time it reached the admin (connected, every tick); the
// [admin] section sets auto_approve_after (0: never) and timeout (0: the
// snapshot timeout). Failures answer {"error", "code"} with one code per
// sentinel (AdminError; aura-cli exits 20–30).
//
// Backups (backup*.go; DESIGN §6, issue 12): GET /v1/backup streams a
// plaintext TAR — snapshot.blob (the newest completed snapshot's blob, read
// from the blob store in chunks, never whole in memory), completed.fact
// (its SnapshotCompleted, signed bytes), facts/NNNNNN.fact (the last 1000
// journal facts in causal order, signed bytes), manifest.json last (sha256
// and size of every entry, counts, account, exporting device, software,
// commit and protocol versions). The CLI, not the node, encrypts it with
// age and writes FILE: the passphrase never reaches the daemon, the file
// belongs to the invoking user and a relative path means what it means in
// their shell, and a node running as another user or sandboxed need not be
// able to write there; the plaintext crosses only the 0600 socket. The
// file is written to a temporary file beside FILE, checked against the
// manifest, padded with zeros to a multiple of age's 64 KiB chunk (TAR
// readers ignore them), fsynced, renamed, and the directory fsynced: a
// crash leaves no partial FILE (at most a .FILE.tmp-* beside it); it is
// written past the page cache (aura/directio: written once, read back only
// by a restore). The
// padding makes every chunk of a good backup full-size, so restore can
// tell a truncated file (short last chunk, missing final chunk) from a
// corrupted one (a full chunk that fails authentication).
//
// Restore (RestoreBackup) is offline: the home must be initialised, hold
// no journal (no data/; restoring never merges into an existing store),
// and no node may run there (it takes HOME/aura.lock). It builds a new
// store in a staging directory in the home while it decrypts, in
// stages that hand buffers over without lockstep (a read-ahead goroutine
// decrypts; the reader parses the TAR and hands the snapshot blob's bytes
// to maintenance.Stage, which checks the canonical form entry by entry and
// computes the state digest as it reads; blobAdapter.Create feeds them
// through a buffered pipe (bufPipe) to blobstore.Put in its own goroutine,
// which chunks, hashes and stages the blocks; Pebble writes the staged
// sstables on its own). The blob entry is checked against the manifest
// through that digest (the manifest's snapshot.state_digest, a
// domain-separated SHA-256 of the same bytes), every other entry through
// its sha256. The restore reads to the end and checks every entry against
// the manifest and every fact's signature; only then does
// maintenance.Hydrate verify
// the threshold signature, digest, prefix hash and blob CID, rest the
// journal on the snapshot and ingest the tail through the replica's
// guards, and the staged store is renamed to HOME/data. Failures are of
// distinct kinds (ErrBackupKey, …Truncated, …Corrupted, …Tampered,
// …Unverified, ErrRunning, ErrHomeNotFresh; aura-cli exits 10–16) and
// leave the home's files byte for byte as they were (a blob whose digest
// differs from the manifest's, or that is no state encoding, is Tampered;
// Unverified is a blob the manifest vouches for whose threshold signature
// or digest the snapshot's completion does not bear out). The
// restored device keeps its own key: if that key is a device of the
// account it syncs at start; otherwise it joins with an invite (Join
// accepts a device holding the account's restored state and keeps that
// state) and then syncs what the backup lacks.
//
// Memory: export streams end to end (the CLI stays near 40 MB and the node
// grows by about 10 MB whatever the blob's size; age's scrypt passphrase
// mode alone takes 256 MB while it derives the key). The offline restore
// never materialises the snapshot state: Hydrate keeps every field of it
// but the application key/values (crdt.ReadOptions.Lean; the guards read
// no key/value), and computes the digest after the tail with
// crdt.JoinedDigest (from a saved hash state when the tail changed no
// key/value, else by reading the staged blob twice more, streaming). What
// it holds is fixed buffers (a megabyte or two), the state without its
// key/values, and the tail's facts (up to 1000, read whole before they
// are checked); with a 24 MiB Go memory limit (RestoreMemoryLimit, set by
// aura-cli) its peak RSS was 58–62 MB for a 100 MB blob (restore_rss_MB
// of BenchmarkBackup100MB), of which 38 MB is the aura-cli binary itself
// (`aura-cli version` peaks there), and does not grow with the blob. The
// tail is not streamed: 1000 facts of up to 64 KiB would add their size.
// The node
// builds the whole state when it starts (maintenance.Open, from the blob
// and the journal): a running node holds its state, in proportion to it.
// The network restore (restore.go) reads the blob as a stream too
// (Replica.RestoreFrom over blobstore.Open): the replica holds the decoded
// state, never the blob's bytes beside it nor a re-encoding to check it.
//
// OTA upgrades (upgrade.go, upgradeapi.go; rules in maintenance): the
// publisher's CLI uploads each artifact (stored as a pinned blob; its
// sha2-256 and size computed by the node), then publishes the metadata;
// every device fetches only its own platform's artifact (upgrade.platform,
// default GOOS/GOARCH) by CID from its peers, pinned, into
// HOME/upgrades/<package>/<version>.unverified, reading at most the signed
// size plus one byte (and stopping the fetch as soon as the blob's root
// says it is larger), checks size and hash, fsyncs and renames it to
// HOME/upgrades/<package>/<version>, runs the optional upgrade.hook with
// that path (bounded by upgrade.hook_timeout; a failure withholds
// readiness), and appends UpgradeReady when maintenance.ReadyFact says so
// (auto, or after `upgrade approve`, kept durably in 'n' records). A
// refused artifact is deleted, logged as an error and shown in `upgrade
// status` (local.state failed, error_kind hash_mismatch, size_overrun,
// size_short or hook); it is not fetched again until restart. The upgrade
// loop (upgrade.check) also writes the activations
// maintenance.UpgradeCoordinator asks of this device; it runs once in
// start() before gossip joins and the control API serves (startup
// reconciliation).
//
// node imports every package of the module except sim; nothing imports
// node but cmd/.
package node
