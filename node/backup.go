package node

import (
	"archive/tar"
	"bytes"
	"container/heap"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/ipfs/go-cid"

	"aura/crdt"
)

// Backups (DESIGN §6 Backup, issue 12). A backup is an ordinary age file
// holding a TAR archive whose entries are, in this order:
//
//	snapshot.blob          the newest completed snapshot's state blob
//	completed.fact         its SnapshotCompleted fact (signed bytes)
//	facts/000001.fact …    the last BackupTail journal facts (signed bytes)
//	manifest.json          BackupManifest: sha256 and size of every entry above
//
// The node writes the plaintext TAR to the control API (GET /v1/backup);
// the CLI encrypts and writes the file (backup_file.go). Restore is offline
// (backup_restore.go).

// Entry names of a backup TAR.
const (
	BackupFormat       = "aura-backup/1"
	backupBlobEntry    = "snapshot.blob"
	backupCompEntry    = "completed.fact"
	backupFactsDir     = "facts/"
	backupManifest     = "manifest.json"
	backupMaxManifest  = 4 << 20
	backupErrorTrailer = "Aura-Backup-Error"
	backupSizeHeader   = "Aura-Backup-Size"
)

// BackupTail is how many journal facts a backup carries.
const BackupTail = 1000

// BackupManifest is the last entry of a backup: what it holds and the
// sha256 of every other entry. Restore checks the snapshot blob through
// Snapshot.StateDigest (the domain-separated SHA-256 of its bytes, which
// the core computes as it reads them) and every other entry through its
// sha256; the blob's sha256 is there for `sha256sum` after `tar x`.
type BackupManifest struct {
	Format    string         `json:"format"`
	Account   string         `json:"account"`
	Device    string         `json:"device"` // the device that exported it
	Software  string         `json:"software"`
	Commit    string         `json:"commit"`
	Protocols []string       `json:"protocols"`
	Created   time.Time      `json:"created"`
	Snapshot  BackupSnapshot `json:"snapshot"`
	Facts     int            `json:"facts"` // journal facts under facts/
	Entries   []BackupEntry  `json:"entries"`
}

// BackupSnapshot names the snapshot a backup holds.
type BackupSnapshot struct {
	ID          string `json:"id"`
	Epoch       uint64 `json:"epoch"`
	Facts       uint64 `json:"facts"` // frontier total
	StateDigest string `json:"state_digest"`
	BlobCID     string `json:"blob_cid"`
	BlobSize    uint64 `json:"blob_size"`
}

// BackupEntry is one TAR entry of a backup.
type BackupEntry struct {
	Name   string `json:"name"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
}

// backupPlan is what an export streams, chosen under the node's lock.
type backupPlan struct {
	comp     []byte // completion fact bytes
	snap     *crdt.SnapshotCompleted
	root     cid.Cid
	blobSize int64
	tail     []crdt.FactID // causal order
	manifest BackupManifest
}

// tailKey orders facts causally (Lamport, author, seq), as `fact list` does.
type tailKey struct {
	lamport uint64
	author  string
	seq     uint64
	id      crdt.FactID
}

func (a tailKey) less(b tailKey) bool {
	if a.lamport != b.lamport {
		return a.lamport < b.lamport
	}
	if a.author != b.author {
		return a.author < b.author
	}
	return a.seq < b.seq
}

// tailHeap is a min-heap: the oldest of the kept facts on top.
type tailHeap []tailKey

func (h tailHeap) Len() int           { return len(h) }
func (h tailHeap) Less(i, j int) bool { return h[i].less(h[j]) }
func (h tailHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *tailHeap) Push(x any)        { *h = append(*h, x.(tailKey)) }
func (h *tailHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

// planBackup picks the newest completed snapshot, its completion fact and
// the journal tail. Nothing is written yet, so a refusal is a plain error.
func (n *Node) planBackup(ctx context.Context) (*backupPlan, error) {
	if n.closed.Load() {
		return nil, ErrClosed
	}
	n.mu.Lock()
	acct := n.rep.Account()
	st := n.rep.State()
	var c *crdt.SnapshotCompleted
	var ref *crdt.CompletedRef
	if !acct.IsZero() {
		if c = st.NewestSnapshot(); c != nil {
			ref = st.Completed[c.ProposalID]
		}
	}
	n.mu.Unlock()
	if acct.IsZero() {
		return nil, ErrNoAccount
	}
	if c == nil || ref == nil {
		return nil, errorf(ErrNoSnapshot, "nothing to back up: the account has no completed snapshot yet; run `aura-cli snapshot propose` first")
	}
	f, err := n.store.Get(ref.Stamp.ID)
	if err != nil {
		return nil, errorf(ErrUnavailable, "the completion fact of snapshot %x is not in this journal (%v): run `aura-cli restore`, then export again", c.ProposalID[:4], err)
	}
	root, err := cid.Cast(c.Snapshot.BlobCID)
	if err != nil {
		return nil, fmt.Errorf("snapshot blob CID: %w", err)
	}
	if held, _ := n.blobs.Has(ctx, root); !held {
		return nil, errorf(ErrUnavailable, "this device does not hold the blob of the newest snapshot (%s): run `aura-cli restore` to fetch it, then export again", root)
	}
	h := &tailHeap{}
	err = n.store.All(func(f *crdt.Fact) error {
		k := tailKey{lamport: f.Lamport, author: f.Author.String(), seq: f.Seq, id: f.ID()}
		if h.Len() < BackupTail {
			heap.Push(h, k)
		} else if (*h)[0].less(k) {
			(*h)[0] = k
			heap.Fix(h, 0)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read the journal: %w", err)
	}
	tail := make([]crdt.FactID, h.Len())
	for i := len(tail) - 1; i >= 0; i-- {
		tail[i] = heap.Pop(h).(tailKey).id
	}
	b := Build()
	p := &backupPlan{comp: f.Bytes(), snap: c, root: root, blobSize: int64(c.Snapshot.BlobSize), tail: tail}
	p.manifest = BackupManifest{
		Format: BackupFormat, Account: acct.String(), Device: n.device.String(),
		Software: b.Version, Commit: b.Commit, Protocols: b.Protocols, Created: time.Now().UTC(),
		Snapshot: BackupSnapshot{ID: hex.EncodeToString(c.ProposalID[:]), Epoch: c.Snapshot.Epoch, Facts: c.Snapshot.Frontier.Total(),
			StateDigest: c.Snapshot.StateDigest.String(), BlobCID: root.String(), BlobSize: c.Snapshot.BlobSize},
		Facts: len(tail),
	}
	return p, nil
}

// estimate is the plaintext size to expect (for progress bars).
func (p *backupPlan) estimate() int64 {
	return p.blobSize + int64(len(p.comp)) + int64(len(p.tail))*1536 + 16<<10
}

// write streams the TAR: blob, completion, tail, manifest last. The blob
// goes from the blob store to w in chunks; it is never held in memory.
func (n *Node) writeBackup(ctx context.Context, p *backupPlan, w io.Writer) error {
	tw := tar.NewWriter(w)
	h := sha256.New()
	mod := p.manifest.Created
	entry := func(name string, size int64, body io.Reader) error {
		hdr := &tar.Header{Name: name, Mode: 0o600, Size: size, ModTime: mod, Typeflag: tar.TypeReg}
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		h.Reset()
		k, err := io.CopyBuffer(io.MultiWriter(tw, h), body, make([]byte, 256<<10))
		if err != nil {
			return fmt.Errorf("backup entry %s: %w", name, err)
		}
		if k != size {
			return fmt.Errorf("backup entry %s: %d bytes, expected %d", name, k, size)
		}
		p.manifest.Entries = append(p.manifest.Entries, BackupEntry{Name: name, Size: size, SHA256: hex.EncodeToString(h.Sum(nil))})
		return nil
	}
	r, err := n.blobs.Open(ctx, p.root)
	if err != nil {
		return fmt.Errorf("open snapshot blob %s: %w", p.root, err)
	}
	err = entry(backupBlobEntry, r.Size(), r)
	_ = r.Close()
	if err != nil {
		return err
	}
	if err := entry(backupCompEntry, int64(len(p.comp)), bytes.NewReader(p.comp)); err != nil {
		return err
	}
	for i, id := range p.tail {
		f, err := n.store.Get(id)
		if err != nil {
			return fmt.Errorf("journal fact %s is gone (a newer snapshot collected it during the export): %w; export again", id, err)
		}
		if err := entry(backupFactName(i+1), int64(f.Size()), bytes.NewReader(f.Bytes())); err != nil {
			return err
		}
	}
	m, err := json.MarshalIndent(&p.manifest, "", "  ")
	if err != nil {
		return err
	}
	if err := tw.WriteHeader(&tar.Header{Name: backupManifest, Mode: 0o600, Size: int64(len(m)), ModTime: mod, Typeflag: tar.TypeReg}); err != nil {
		return err
	}
	if _, err := tw.Write(m); err != nil {
		return err
	}
	return tw.Close()
}

func backupFactName(i int) string { return fmt.Sprintf("%s%06d.fact", backupFactsDir, i) }

// ExportBackup writes this node's backup TAR (plaintext) to w: the newest
// snapshot blob, its completion, the journal tail and the manifest.
// Encrypt it with WriteBackupFile.
func (n *Node) ExportBackup(ctx context.Context, w io.Writer) (*BackupManifest, error) {
	p, err := n.planBackup(ctx)
	if err != nil {
		return nil, err
	}
	if err := n.writeBackup(ctx, p, w); err != nil {
		return nil, err
	}
	return &p.manifest, nil
}

// backupRoutes serves GET /v1/backup: the plaintext TAR, streamed. A
// failure before the first byte is an ordinary error answer; one midway
// ends the TAR early and names the cause in the Aura-Backup-Error trailer.
func (n *Node) backupRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET /v1/backup", func(w http.ResponseWriter, r *http.Request) {
		p, err := n.planBackup(r.Context())
		if err != nil {
			reply(w, nil, err)
			return
		}
		w.Header().Set("Trailer", backupErrorTrailer)
		w.Header().Set("Content-Type", "application/x-tar")
		w.Header().Set(backupSizeHeader, strconv.FormatInt(p.estimate(), 10))
		w.WriteHeader(http.StatusOK)
		if err := n.writeBackup(r.Context(), p, w); err != nil {
			n.log.Warn("backup export failed", "err", err)
			w.Header().Set(backupErrorTrailer, err.Error())
		}
	})
}

// hashWriter counts and hashes what passes.
type hashWriter struct {
	h hash.Hash
	n int64
}

func (w *hashWriter) Write(p []byte) (int, error) {
	w.h.Write(p)
	w.n += int64(len(p))
	return len(p), nil
}

var errBackupIncomplete = errors.New("backup stream ended before its manifest")
