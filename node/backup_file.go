package node

import (
	"archive/tar"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"

	"filippo.io/age"

	"aura/directio"
)

// The encrypted backup file. The process that asks for the backup (the
// CLI) writes the file, not the node: the passphrase never reaches the
// daemon, the file belongs to the user who asked for it and lands where a
// relative --out means from their shell, and a node running as a service
// user or in a sandbox need not be able to write there. The plaintext
// crosses only the control socket (0600, the same trust as HOME/data).

// backupChunk is age's plaintext chunk size. The plaintext is padded with
// zero bytes (which TAR readers ignore after the end-of-archive blocks) to a
// multiple of it, so every chunk of a good backup is full-size: a short
// final chunk can only mean a truncated file, and a full-size chunk that
// fails authentication a corrupted one.
const (
	backupChunk    = 64 << 10
	ageChunkCipher = backupChunk + 16
	ageNonceSize   = 16
)

// ExportResult reports a written backup.
type ExportResult struct {
	File     string         `json:"file"`
	Bytes    int64          `json:"bytes"` // of the encrypted file
	Manifest BackupManifest `json:"manifest"`
}

// ExportOptions configure Client.ExportBackup.
type ExportOptions struct {
	Out        string
	Recipients []age.Recipient // X25519 (or other age) recipients, or one scrypt recipient
	// Progress, when set, sees the plaintext bytes written and an estimate
	// of the total.
	Progress func(done, total int64)
}

// ExportBackup asks the node for its backup and writes it, encrypted, to
// o.Out (atomically: a crash leaves no partial file there).
func (c *Client) ExportBackup(ctx context.Context, o ExportOptions) (*ExportResult, error) {
	resp, err := c.open(ctx, "GET", "/v1/backup", nil)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	total, _ := strconv.ParseInt(resp.Header.Get(backupSizeHeader), 10, 64)
	prog := o.Progress
	if prog != nil {
		prog = func(done, _ int64) { o.Progress(done, max(total, done)) }
	}
	res, err := WriteBackupFile(ctx, o.Out, o.Recipients, resp.Body, prog)
	if err != nil {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20)) // reach the trailer
		if msg := resp.Trailer.Get(backupErrorTrailer); msg != "" {
			return nil, fmt.Errorf("the node stopped the export: %s (nothing was written to %s)", msg, o.Out)
		}
		return nil, err
	}
	return res, nil
}

// ExportBackupFile writes n's backup, encrypted, to out (in-process: the
// demo and benchmarks).
//
// The node's side (blob read, hashed, archived) runs in its own goroutine
// a megabyte ahead of the encryption (bufPipe), as the node's process
// runs ahead of aura-cli's through the socket.
func ExportBackupFile(ctx context.Context, n *Node, out string, recipients []age.Recipient) (*ExportResult, error) {
	p := newBufPipe(256<<10, 4)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_, err := n.ExportBackup(ctx, p)
		_ = p.CloseWrite(err)
	}()
	res, err := WriteBackupFile(ctx, out, recipients, p, nil)
	p.CloseWithError(errors.New("export abandoned"))
	<-done
	return res, err
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	k, err := c.w.Write(p)
	c.n += int64(k)
	return k, err
}

// WriteBackupFile encrypts the backup TAR read from src to recipients and
// writes it to out: into a temporary file in out's directory, checked
// entry by entry against the manifest that ends it, padded, fsynced,
// renamed over out, and the directory fsynced. On any failure (or a crash)
// out is untouched.
func WriteBackupFile(ctx context.Context, out string, recipients []age.Recipient, src io.Reader, progress func(done, total int64)) (res *ExportResult, err error) {
	if len(recipients) == 0 {
		return nil, errorf(ErrBadRequest, "no recipient: give --recipient AGE_PUBKEY (preferred) or --passphrase-file F")
	}
	if fi, err := os.Stat(out); err == nil && fi.IsDir() {
		return nil, errorf(ErrBadRequest, "--out %s is a directory: name a file", out)
	}
	dir, base := filepath.Split(out)
	if dir == "" {
		dir = "."
	}
	tmp, err := os.CreateTemp(dir, "."+base+".tmp-*")
	if err != nil {
		return nil, fmt.Errorf("create a temporary file beside %s: %w", out, err)
	}
	tmpName := tmp.Name()
	tmp.Close()
	// Written once and read back only by a restore: past the page cache
	// (directio), so the export does not pay for caching 100 MB.
	file, err := directio.Create(tmpName, 0o600)
	if err != nil {
		os.Remove(tmpName)
		return nil, fmt.Errorf("create a temporary file beside %s: %w", out, err)
	}
	defer func() {
		if err != nil {
			if file != nil {
				file.Abort()
			}
			os.Remove(tmpName)
		}
	}()
	aw, err := age.Encrypt(file, recipients...)
	if err != nil {
		return nil, fmt.Errorf("encrypt: %w", err)
	}
	cw := &countWriter{w: aw}
	var tee io.Reader = io.TeeReader(src, cw)
	if progress != nil {
		tee = &progressReader{r: tee, cw: cw, fn: progress}
	}
	tr := tar.NewReader(tee)
	seen := map[string]BackupEntry{}
	var order []string
	var manifest []byte
	buf := make([]byte, 256<<10)
	for {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("%w: %v", errBackupIncomplete, err)
		}
		if manifest != nil {
			return nil, fmt.Errorf("backup stream has entry %q after its manifest", hdr.Name)
		}
		if hdr.Name == backupManifest {
			if manifest, err = io.ReadAll(io.LimitReader(tr, backupMaxManifest+1)); err != nil {
				return nil, fmt.Errorf("%w: %v", errBackupIncomplete, err)
			}
			continue
		}
		// Sizes only: the stream comes from the local node, and restore
		// checks every hash; what matters here is that nothing is missing.
		k, err := io.CopyBuffer(struct{ io.Writer }{io.Discard}, tr, buf) // buf, not Discard's 8 KiB reads
		if err != nil {
			return nil, fmt.Errorf("%w: %v", errBackupIncomplete, err)
		}
		seen[hdr.Name] = BackupEntry{Name: hdr.Name, Size: k}
		order = append(order, hdr.Name)
	}
	if _, err := io.Copy(cw, src); err != nil { // the end-of-archive blocks
		return nil, fmt.Errorf("%w: %v", errBackupIncomplete, err)
	}
	if manifest == nil {
		return nil, errBackupIncomplete
	}
	var m BackupManifest
	if err := json.Unmarshal(manifest, &m); err != nil {
		return nil, fmt.Errorf("backup manifest: %w", err)
	}
	if err := m.check(seen, len(order), false); err != nil {
		return nil, fmt.Errorf("backup stream: %w", err)
	}
	if pad := (backupChunk - cw.n%backupChunk) % backupChunk; pad > 0 {
		if _, err := cw.Write(make([]byte, pad)); err != nil {
			return nil, fmt.Errorf("write %s: %w", tmpName, err)
		}
	}
	if err := aw.Close(); err != nil {
		return nil, fmt.Errorf("write %s: %w", tmpName, err)
	}
	size := file.Size()
	ferr := file.Finish() // writes the tail, fsyncs, closes
	file = nil
	if ferr != nil {
		return nil, ferr
	}
	if err := os.Rename(tmpName, out); err != nil {
		return nil, fmt.Errorf("move the backup into place: %w", err)
	}
	if err := syncDir(dir); err != nil {
		return nil, err
	}
	return &ExportResult{File: out, Bytes: size, Manifest: m}, nil
}

// check compares the entries read with the manifest's list (their
// hashes too when hashes).
func (m *BackupManifest) check(seen map[string]BackupEntry, entries int, hashes bool) error {
	if m.Format != BackupFormat {
		return fmt.Errorf("manifest format %q, this aura-cli reads %q", m.Format, BackupFormat)
	}
	if len(m.Entries) != entries || len(seen) != entries {
		return fmt.Errorf("manifest lists %d entries, the archive holds %d", len(m.Entries), entries)
	}
	for _, e := range m.Entries {
		got, ok := seen[e.Name]
		if !ok {
			return fmt.Errorf("manifest lists %s, which the archive lacks", e.Name)
		}
		if got.Size != e.Size || (hashes && got.SHA256 != e.SHA256) {
			return fmt.Errorf("entry %s: sha256 %s (%d bytes) differs from the manifest's %s (%d bytes)", e.Name, got.SHA256, got.Size, e.SHA256, e.Size)
		}
	}
	if m.Facts != entries-2 {
		return fmt.Errorf("manifest counts %d journal facts, the archive holds %d", m.Facts, entries-2)
	}
	return nil
}

type progressReader struct {
	r  io.Reader
	cw *countWriter
	fn func(done, total int64)
}

func (p *progressReader) Read(b []byte) (int, error) {
	k, err := p.r.Read(b)
	p.fn(p.cw.n, 0)
	return k, err
}

// syncDir fsyncs a directory, so a rename in it is durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("fsync %s: %w", dir, err)
	}
	return nil
}
