package node

import (
	"archive/tar"
	"bufio"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"filippo.io/age"
	"github.com/cockroachdb/pebble"
	"github.com/ipfs/go-cid"

	"aura/blobstore"
	"aura/crdt"
	"aura/crdt/pebblestore"
	"aura/maintenance"
)

// RestoreMemoryLimit is the Go heap limit `aura-cli backup restore` sets
// (debug.SetMemoryLimit, unless GOMEMLIMIT is set): the restore streams and
// keeps a few megabytes live, but decryption and chunking leave garbage
// behind them (age allocates every 64 KiB chunk it opens), which the
// default GC pacing lets grow to twice the live heap and more.
const RestoreMemoryLimit = 24 << 20

// Backup restore errors: each failure has its own kind (and its own exit
// code in aura-cli), so "wrong passphrase" never stands for a damaged file.
var (
	// ErrBackupKey: no given identity or passphrase opens the file.
	ErrBackupKey = errors.New("backup key does not match")
	// ErrBackupTruncated: the file ends early.
	ErrBackupTruncated = errors.New("backup file is truncated")
	// ErrBackupCorrupted: bytes of the file changed (age authentication
	// failed), or it is not an age file.
	ErrBackupCorrupted = errors.New("backup file is corrupted")
	// ErrBackupTampered: the file decrypts, but its content is not what the
	// exporting node wrote (an entry differs from the manifest, a fact's
	// signature fails, the archive is malformed).
	ErrBackupTampered = errors.New("backup content was altered")
	// ErrBackupUnverified: the snapshot's threshold signature or state
	// digest does not verify.
	ErrBackupUnverified = errors.New("backup snapshot does not verify")
	// ErrHomeNotFresh: the target home already holds a journal.
	ErrHomeNotFresh = errors.New("home already holds a journal")
)

// BackupRestoreOptions configure RestoreBackup.
type BackupRestoreOptions struct {
	Home       string
	File       string
	Identities []age.Identity // X25519 identities, or one scrypt identity
	// Progress, when set, sees the encrypted bytes read and the file size.
	Progress func(done, total int64)
}

// BackupRestoreResult reports a restore.
type BackupRestoreResult struct {
	Home        string         `json:"home"`
	Device      string         `json:"device"`
	Account     string         `json:"account"`
	Member      bool           `json:"member"` // this device is a device of the account
	Snapshot    BackupSnapshot `json:"snapshot"`
	Facts       int            `json:"facts"`        // tail facts in the backup
	Added       int            `json:"added"`        // of them, stored by the restore
	StateDigest string         `json:"state_digest"` // after the tail
	ExportedBy  string         `json:"exported_by"`
	Created     string         `json:"created"`

	account crdt.AccountID
}

// RestoreBackup brings up a node's state in o.Home from a backup file. It
// needs no running node: o.Home must be initialised (`aura-node init`),
// hold no journal yet (no data/), and no node may run there (it takes the
// home's lock). It decrypts into a staging directory inside the home,
// reads to the end, checks every entry against the manifest and every
// fact's signature, then builds the store aside: the replica's Restore
// verifies the threshold signature and the digest and hydrates, and the
// tail goes through its Receive path. Only then is the staged store moved
// to HOME/data (one rename). On any failure the home's files are as they
// were.
func RestoreBackup(ctx context.Context, o BackupRestoreOptions) (*BackupRestoreResult, error) {
	home := o.Home
	if _, err := os.Stat(filepath.Join(home, ConfigFile)); err != nil {
		return nil, errorf(ErrBadRequest, "%s is not an aura home (no %s): run `aura-node init --home %s` first", home, ConfigFile, home)
	}
	cfg, err := LoadConfig(home)
	if err != nil {
		return nil, err
	}
	key, err := LoadKey(home)
	if err != nil {
		return nil, err
	}
	unlock, err := lockHomeQuiet(home)
	if err != nil {
		return nil, err
	}
	restored := false
	defer func() { unlock(restored) }()
	data := filepath.Join(home, DataDir)
	if ents, err := os.ReadDir(data); err == nil && len(ents) > 0 {
		return nil, errorf(ErrHomeNotFresh, "%s already holds a journal (%s): restore into a fresh home (`aura-node init --home NEW`), or move %s aside first", home, data, data)
	}
	if len(o.Identities) == 0 {
		return nil, errorf(ErrBadRequest, "no key: give --identity FILE or --passphrase-file FILE")
	}
	stage, err := os.MkdirTemp(home, ".backup-restore-")
	if err != nil {
		return nil, fmt.Errorf("staging directory: %w", err)
	}
	defer os.RemoveAll(stage)
	res, err := restoreStaged(ctx, o, cfg, key, filepath.Join(stage, DataDir))
	if err != nil {
		return nil, err
	}
	if ents, err := os.ReadDir(data); err == nil && len(ents) == 0 {
		_ = os.Remove(data)
	}
	if err := os.Rename(filepath.Join(stage, DataDir), data); err != nil {
		return nil, fmt.Errorf("move the restored store into %s: %w", data, err)
	}
	restored = true
	if err := syncDir(home); err != nil {
		return nil, err
	}
	// Staging directories of restores killed midway (this one holds the
	// lock, so none is in use).
	if old, _ := filepath.Glob(filepath.Join(home, ".backup-restore-*")); len(old) > 0 {
		for _, d := range old {
			if d != stage {
				_ = os.RemoveAll(d)
			}
		}
	}
	// The account record kept outside the store (for repair), as a join
	// writes it.
	if err := writeAccountFile(home, res.account); err != nil {
		return nil, err
	}
	res.Home = home
	return res, nil
}

// lockHomeQuiet takes the home's lock for an offline command and returns
// its release. Unless keep, the lock file is left as it was found (its old
// bytes, or no file), so a failed restore changes nothing in the home.
func lockHomeQuiet(home string) (func(keep bool), error) {
	path := filepath.Join(home, LockFile)
	old, rerr := os.ReadFile(path)
	existed := rerr == nil
	l, err := lockHome(home)
	if err != nil {
		if !existed {
			_ = os.Remove(path)
		}
		return nil, err
	}
	return func(keep bool) {
		switch {
		case !existed && !keep:
			_ = os.Remove(path)
			l.release()
		case existed:
			_ = l.f.Truncate(0)
			_, _ = l.f.WriteAt(old, 0)
			f := l.f
			l.f = nil
			_ = f.Close() // closing drops the flock
		default:
			l.release()
		}
	}, nil
}

// backupContent is a backup read, checked against its manifest and with
// its facts' signatures verified.
type backupContent struct {
	manifest BackupManifest
	staged   *maintenance.Staged // the snapshot blob, read by the core as it streamed by
	stageErr error               // why the core refused the blob (checkBlob reports it)
	comp     *crdt.Fact
	snap     *crdt.SnapshotCompleted
	facts    []*crdt.Fact
}

// srcErr remembers the first error of the decrypting reader, so a TAR
// error can be told from an age one.
type srcErr struct {
	r   io.Reader
	err error
}

func (s *srcErr) Read(p []byte) (int, error) {
	k, err := s.r.Read(p)
	if err != nil && !errors.Is(err, io.EOF) && s.err == nil {
		s.err = err
	}
	return k, err
}

type countReader struct {
	r  io.Reader
	n  int64
	fn func(done, total int64)
	t  int64
}

func (c *countReader) Read(p []byte) (int, error) {
	k, err := c.r.Read(p)
	c.n += int64(k)
	if c.fn != nil {
		c.fn(c.n, c.t)
	}
	return k, err
}

// readBackup decrypts and checks the file, handing the snapshot blob's
// bytes to stage as they stream by (the core reads, checks and stores
// them; nothing holds the blob whole). It classifies every failure
// (ErrBackupKey, …Truncated, …Corrupted, …Tampered): a truncation or a
// damaged chunk is told first, then the manifest's say (a blob the core
// refused as a state encoding is an altered one).
func readBackup(ctx context.Context, o BackupRestoreOptions, stage func(io.Reader) (*maintenance.Staged, error)) (*backupContent, error) {
	f, err := os.Open(o.File)
	if err != nil {
		return nil, errorf(ErrBadRequest, "open backup: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	file := o.File
	hdr, err := age.ExtractHeader(bufio.NewReader(f))
	if err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
			return nil, errorf(ErrBackupTruncated, "%s ends inside its age header (%d bytes): the file is truncated; use a complete copy", file, fi.Size())
		}
		return nil, errorf(ErrBackupCorrupted, "%s is not an age-encrypted backup or its header is damaged (%v)", file, err)
	}
	payload := fi.Size() - int64(len(hdr)) - ageNonceSize
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return nil, err
	}
	cr := &countReader{r: f, fn: o.Progress, t: fi.Size()}
	dec, err := age.Decrypt(bufio.NewReaderSize(cr, 256<<10), o.Identities...)
	if err != nil {
		return nil, classifyHeader(file, hdr, o.Identities, err)
	}
	ahead := newReadAhead(dec, 256<<10, 4)
	defer ahead.Close()
	se := &srcErr{r: ahead}
	body := func(err error) error {
		if se.err == nil {
			return nil
		}
		e := se.err
		switch {
		case errors.Is(e, io.ErrUnexpectedEOF):
			return errorf(ErrBackupTruncated, "%s is truncated: its encrypted stream ends before the last chunk; use a complete copy", file)
		case strings.Contains(e.Error(), "authenticate") && payload%ageChunkCipher != 0:
			return errorf(ErrBackupTruncated, "%s is truncated: its last encrypted chunk is short (%d bytes of payload); use a complete copy", file, payload)
		case strings.Contains(e.Error(), "authenticate"):
			return errorf(ErrBackupCorrupted, "%s is corrupted: an encrypted chunk fails authentication (the file changed after it was written); use another copy", file)
		}
		return errorf(ErrBackupCorrupted, "%s is corrupted: %v", file, e)
	}
	tampered := func(format string, args ...any) error {
		return errorf(ErrBackupTampered, "%s decrypts but its content was altered: %s; use another copy", file, fmt.Sprintf(format, args...))
	}
	tr := tar.NewReader(se)
	c := &backupContent{}
	seen := map[string]BackupEntry{}
	var order []string
	var manifest, compBytes []byte
	facts := map[string][]byte{}
	h := sha256.New()
	buf := make([]byte, 256<<10)
	for {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		th, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			if be := body(err); be != nil {
				return nil, be
			}
			return nil, tampered("the archive is malformed (%v)", err)
		}
		if manifest != nil {
			return nil, tampered("entry %q follows the manifest", th.Name)
		}
		if th.Typeflag != tar.TypeReg {
			return nil, tampered("entry %q is not a regular file", th.Name)
		}
		if _, dup := seen[th.Name]; dup {
			return nil, tampered("entry %q appears twice", th.Name)
		}
		var dst io.Writer
		var mem *[]byte
		switch {
		case th.Name == backupManifest:
			mem = &manifest
		case th.Name == backupBlobEntry:
			// No SHA-256 pass of its own: the core hashes every byte of the
			// blob for the state digest as it reads it (a domain-separated
			// SHA-256), and the manifest names that digest too; checking it
			// there costs nothing, where a second pass cost a fifth of the
			// restore's CPU.
			er := &countReader{r: tr}
			staged, serr := stage(er)
			if be := body(serr); be != nil {
				return nil, be
			}
			// The core stops at the first byte it refuses: the rest still
			// counts for the manifest.
			if _, err := io.CopyBuffer(struct{ io.Writer }{io.Discard}, er, buf); err != nil {
				if be := body(err); be != nil {
					return nil, be
				}
				return nil, tampered("entry %q is cut short (%v)", th.Name, err)
			}
			switch {
			case errors.Is(serr, maintenance.ErrBadSnapshot):
				c.stageErr = serr
			case serr != nil:
				return nil, fmt.Errorf("stage the snapshot blob: %w", serr)
			}
			c.staged = staged
			seen[th.Name] = BackupEntry{Name: th.Name, Size: er.n}
			order = append(order, th.Name)
			continue
		case th.Name == backupCompEntry:
			mem = &compBytes
		case strings.HasPrefix(th.Name, backupFactsDir) && strings.HasSuffix(th.Name, ".fact"):
			mem = new([]byte)
		default:
			return nil, tampered("unexpected entry %q", th.Name)
		}
		if mem != nil {
			limit := int64(crdt.MaxFactSize)
			if th.Name == backupManifest {
				limit = backupMaxManifest
			}
			if th.Size > limit {
				return nil, tampered("entry %q has %d bytes, over the limit of %d", th.Name, th.Size, limit)
			}
			*mem = make([]byte, 0, th.Size)
			dst = &appendWriter{b: mem}
		}
		h.Reset()
		k, err := io.CopyBuffer(io.MultiWriter(dst, h), tr, buf)
		if err != nil {
			if be := body(err); be != nil {
				return nil, be
			}
			return nil, tampered("entry %q is cut short (%v)", th.Name, err)
		}
		if th.Name == backupManifest {
			continue
		}
		seen[th.Name] = BackupEntry{Name: th.Name, Size: k, SHA256: hex.EncodeToString(h.Sum(nil))}
		order = append(order, th.Name)
		if mem != nil && strings.HasPrefix(th.Name, backupFactsDir) {
			facts[th.Name] = *mem
		}
	}
	// Read to the end: the padding after the archive is authenticated too,
	// and a truncation there must not pass.
	if _, err := io.CopyBuffer(struct{ io.Writer }{io.Discard}, se, buf); err != nil {
		if be := body(err); be != nil {
			return nil, be
		}
		return nil, err
	}
	if manifest == nil {
		return nil, tampered("it has no manifest")
	}
	if err := json.Unmarshal(manifest, &c.manifest); err != nil {
		return nil, tampered("the manifest is not valid JSON (%v)", err)
	}
	if c.manifest.Format != BackupFormat {
		return nil, errorf(ErrBadRequest, "%s is a backup of format %q; this aura-cli reads %q: use a matching version", file, c.manifest.Format, BackupFormat)
	}
	if err := c.checkBlob(seen); err != nil {
		return nil, tampered("%v", err)
	}
	if err := c.manifest.check(seen, len(order), true); err != nil {
		return nil, tampered("%v", err)
	}
	if compBytes == nil {
		return nil, tampered("it has no %s", backupCompEntry)
	}
	if _, ok := seen[backupBlobEntry]; !ok {
		return nil, tampered("it has no %s", backupBlobEntry)
	}
	if c.comp, err = crdt.DecodeVerifiedFact(compBytes); err != nil {
		return nil, tampered("%s: %v", backupCompEntry, err)
	}
	bd, err := c.comp.DecodeBody()
	snap, ok := bd.(*crdt.SnapshotCompleted)
	if err != nil || !ok || c.comp.Kind != crdt.KindSnapshotCompleted {
		return nil, tampered("%s is a %s fact, not a snapshot completion", backupCompEntry, c.comp.Kind)
	}
	c.snap = snap
	if c.comp.Account.String() != c.manifest.Account {
		return nil, tampered("the completion is of account %s, the manifest names %s", c.comp.Account, c.manifest.Account)
	}
	if hex.EncodeToString(snap.ProposalID[:]) != c.manifest.Snapshot.ID {
		return nil, tampered("the completion is of snapshot %x, the manifest names %s", snap.ProposalID, c.manifest.Snapshot.ID)
	}
	for i := 1; i <= c.manifest.Facts; i++ {
		name := backupFactName(i)
		b, ok := facts[name]
		if !ok {
			return nil, tampered("journal facts are not numbered 1…%d (no %s)", c.manifest.Facts, name)
		}
		f, err := crdt.DecodeVerifiedFact(b)
		if err != nil {
			return nil, tampered("%s: %v", name, err)
		}
		if f.Account != c.comp.Account {
			return nil, tampered("%s is of account %s, the backup of %s", name, f.Account, c.comp.Account)
		}
		c.facts = append(c.facts, f)
	}
	return c, nil
}

// checkBlob checks the snapshot blob entry against the manifest through
// the state digest the core computed of its bytes (the manifest's
// snapshot.state_digest): bytes changed after the export differ there. A
// blob the core refused as a state encoding was altered too. On success
// the entry counts as hashed (its sha256 is the manifest's).
func (c *backupContent) checkBlob(seen map[string]BackupEntry) error {
	got, ok := seen[backupBlobEntry]
	if !ok {
		return nil // the manifest check names what is missing
	}
	if c.stageErr != nil {
		return fmt.Errorf("%s is not a snapshot state (%v)", backupBlobEntry, c.stageErr)
	}
	if d := c.staged.Digest().String(); d != c.manifest.Snapshot.StateDigest {
		return fmt.Errorf("entry %s: state digest %s (%d bytes) differs from the manifest's %s", backupBlobEntry, d, got.Size, c.manifest.Snapshot.StateDigest)
	}
	for _, e := range c.manifest.Entries {
		if e.Name == backupBlobEntry {
			got.SHA256 = e.SHA256
		}
	}
	seen[backupBlobEntry] = got
	return nil
}

// classifyHeader tells a wrong key from a damaged or truncated header.
func classifyHeader(file string, hdr []byte, ids []age.Identity, err error) error {
	var nm *age.NoIdentityMatchError
	if errors.As(err, &nm) {
		scryptFile := strings.Contains(string(hdr), "\n-> scrypt ")
		scryptKey := false
		for _, id := range ids {
			if _, ok := id.(*age.ScryptIdentity); ok {
				scryptKey = true
			}
		}
		switch {
		case scryptFile && !scryptKey:
			return errorf(ErrBackupKey, "%s is encrypted with a passphrase: pass --passphrase-file FILE instead of --identity", file)
		case !scryptFile && scryptKey:
			return errorf(ErrBackupKey, "%s is encrypted to age recipients, not a passphrase: pass --identity FILE with the matching secret key", file)
		case scryptFile:
			return errorf(ErrBackupKey, "wrong passphrase for %s: check the passphrase file (nothing was changed)", file)
		}
		return errorf(ErrBackupKey, "none of the given identities can decrypt %s: it was encrypted to other recipients; pass the matching --identity (nothing was changed)", file)
	}
	msg := err.Error()
	switch {
	case strings.Contains(msg, "nonce") && (strings.Contains(msg, "EOF")):
		return errorf(ErrBackupTruncated, "%s is truncated right after its header; use a complete copy", file)
	case strings.Contains(msg, "header MAC"):
		return errorf(ErrBackupCorrupted, "%s is corrupted: its age header fails authentication; use another copy", file)
	}
	return errorf(ErrBackupCorrupted, "%s cannot be decrypted: %v", file, err)
}

type appendWriter struct{ b *[]byte }

func (w *appendWriter) Write(p []byte) (int, error) {
	*w.b = append(*w.b, p...)
	return len(p), nil
}

// restoreStaged reads the backup into a new store in dir: the snapshot
// blob streams from the decrypting reader into the core (maintenance.Stage)
// and the staging blob store, then hydrateBackup verifies and hydrates.
// The store is closed when it returns.
func restoreStaged(ctx context.Context, o BackupRestoreOptions, cfg Config, key ed25519.PrivateKey, dir string) (res *BackupRestoreResult, err error) {
	// quietLog turns a fatal storage error in the staging store into a
	// panic; it becomes this error (the staging directory is dropped).
	defer func() {
		if p := recover(); p != nil {
			res, err = nil, fmt.Errorf("%w: staging store in %s: %v", ErrStorageFatal, dir, p)
		}
	}()
	// Small caches: the blob goes to pack files and the tail is small;
	// the running node opens the store with its own sizes.
	store, err := pebblestore.Open(dir, pebblestore.Options{CacheSize: 1 << 20, MemTableSize: 2 << 20, Pebble: &pebble.Options{Logger: quietLog{}}})
	if err != nil {
		return nil, fmt.Errorf("open the staging store: %w", err)
	}
	defer store.Close()
	blobs, err := blobstore.New(store.DB(), prefixBlobs, blobstore.WithPackDir(blobPacks(dir)))
	if err != nil {
		return nil, err
	}
	defer blobs.Close()
	b, err := readBackup(ctx, o, func(r io.Reader) (*maintenance.Staged, error) {
		return maintenance.Stage(blobAdapter{blobs}, r)
	})
	if err != nil {
		return nil, err
	}
	return hydrateBackup(ctx, cfg, key, store, blobs, b)
}

// hydrateBackup builds the staging store from a checked backup:
// maintenance.Hydrate verifies the snapshot (threshold signature, digest,
// prefix hash) and rests the journal on it, and ingests the tail through
// the replica's guards, without holding the snapshot's key/values; the
// node builds the state from the blob and the journal when it starts.
func hydrateBackup(ctx context.Context, cfg Config, key ed25519.PrivateKey, store *pebblestore.Store, blobs *blobstore.Store, b *backupContent) (*BackupRestoreResult, error) {
	unverified := func(err error) error {
		return errorf(ErrBackupUnverified, "the backup's snapshot does not verify (%w): it is not a snapshot the account signed; nothing was changed", err)
	}
	h, err := maintenance.Hydrate(maintenance.Config{
		Key: key, Store: store, Meta: &kvMeta{db: store.DB(), prefix: metaKeyPrefix}, Blobs: blobAdapter{blobs},
		Watermark: -1, KeepSnapshots: cfg.Snapshot.Keep,
	}, b.snap, b.staged, append([]*crdt.Fact{b.comp}, b.facts...))
	if err != nil {
		if errors.Is(err, maintenance.ErrBadSnapshot) || errors.Is(err, maintenance.ErrDigestMismatch) {
			return nil, unverified(err)
		}
		return nil, fmt.Errorf("restore the snapshot: %w", err)
	}
	// The core's blob plan (the restored snapshot's blob pinned); the node
	// collects unreferenced blocks when it starts.
	if err := h.Blobs.Apply(stagingBlobs{blobs}); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	device := crdt.DeviceIDFromKey(key.Public().(ed25519.PublicKey))
	return &BackupRestoreResult{
		Device: device.String(), Account: h.Account.String(), Member: h.Member,
		Snapshot: b.manifest.Snapshot, Facts: len(b.facts), Added: len(h.Tail.Added), StateDigest: h.Digest.String(),
		ExportedBy: b.manifest.Device, Created: b.manifest.Created.Format("2006-01-02 15:04:05 MST"), account: h.Account,
	}, nil
}

// restoredGuest reports whether this node holds account's state from a
// backup restore without being one of its devices yet: it may join it.
func (n *Node) restoredGuest(account crdt.AccountID) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.rep.Account() == account && !n.rep.State().IsMember(n.device)
}

// stagingBlobs is maintenance.BlobApplier over the staging blob store of a
// restore (nodeBlobs without a running node: no background collection).
type stagingBlobs struct{ s *blobstore.Store }

func (a stagingBlobs) KeepNewest(roots [][]byte, k int) error {
	var keep, release []cid.Cid
	for i, r := range roots {
		c, err := cid.Cast(r)
		if err != nil {
			continue
		}
		if i < k {
			keep = append(keep, c)
		} else {
			release = append(release, c)
		}
	}
	if len(keep) == 0 {
		return a.s.UnpinAll(release)
	}
	return a.s.KeepNewest(append(keep, release...), len(keep))
}

func (a stagingBlobs) Delete(cids [][]byte) error {
	var list []cid.Cid
	for _, r := range cids {
		if c, err := cid.Cast(r); err == nil {
			list = append(list, c)
		}
	}
	return a.s.UnpinAll(list)
}

func (a stagingBlobs) Collect() error { return nil }
