package blobstore

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"aura/directio"
)

// Pack files hold the bytes of blocks when the Store has a pack directory
// (WithPackDir): each is a run of whole blocks written back to back by one
// sink, front to back, once, then never modified. The catalogue says which
// pack holds a block and at which offset; a GC deletes the packs no entry
// points to and copies the live blocks out of sparse ones.

const (
	packExt = ".pack"
	// maxOpenPacks bounds the file descriptors kept open for reading.
	maxOpenPacks = 64
)

// errPackGone: the pack file a location names does not exist (a GC
// removed it after moving its live blocks, or the file was lost).
// errPackShort: the pack ends before the block does (truncated).
var (
	errPackGone  = errors.New("blobstore: pack file missing")
	errPackShort = errors.New("blobstore: pack file shorter than its catalogue says")
)

// packDamaged reports whether a pack read failed because the pack is
// missing or cut short (not, say, an I/O error worth retrying).
func packDamaged(err error) bool { return errors.Is(err, errPackGone) || errors.Is(err, errPackShort) }

// packDir is the directory of pack files and a cache of open readers.
type packDir struct {
	dir  string
	next atomic.Uint64 // next pack number; numbers start at 1

	mu   sync.RWMutex // readers hold it shared while they read; remove exclusively
	open map[uint64]*os.File
}

func openPackDir(dir string) (*packDir, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("blobstore: pack directory: %w", err)
	}
	d := &packDir{dir: dir, open: make(map[uint64]*os.File)}
	files, err := d.list()
	if err != nil {
		return nil, err
	}
	var last uint64
	for num := range files {
		last = max(last, num)
	}
	d.next.Store(last + 1)
	return d, nil
}

func packName(num uint64) string { return fmt.Sprintf("%016x%s", num, packExt) }

func parsePackName(name string) (uint64, bool) {
	hex, ok := strings.CutSuffix(name, packExt)
	if !ok || len(hex) != 16 {
		return 0, false
	}
	num, err := strconv.ParseUint(hex, 16, 64)
	return num, err == nil && num != 0
}

func (d *packDir) path(num uint64) string { return filepath.Join(d.dir, packName(num)) }

// list returns the size of every pack file in the directory, by number.
func (d *packDir) list() (map[uint64]int64, error) {
	ents, err := os.ReadDir(d.dir)
	if err != nil {
		return nil, fmt.Errorf("blobstore: list packs: %w", err)
	}
	out := make(map[uint64]int64)
	for _, e := range ents {
		num, ok := parsePackName(e.Name())
		if !ok || !e.Type().IsRegular() {
			continue
		}
		info, err := e.Info()
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("blobstore: list packs: %w", err)
		}
		out[num] = info.Size()
	}
	return out, nil
}

// create starts a new pack file under a fresh number.
func (d *packDir) create() (*packFile, error) {
	num := d.next.Add(1) - 1
	w, err := directio.Create(d.path(num), 0o600)
	if err != nil {
		return nil, fmt.Errorf("blobstore: new pack: %w", err)
	}
	return &packFile{num: num, w: w}, nil
}

// readAt fills p with the bytes at off in pack num.
func (d *packDir) readAt(num uint64, off int64, p []byte) error {
	d.mu.RLock()
	f := d.open[num]
	if f == nil {
		d.mu.RUnlock()
		if err := d.openReader(num); err != nil {
			return err
		}
		d.mu.RLock()
		f = d.open[num]
	}
	if f == nil { // closed again between the two locks: read unshared
		d.mu.RUnlock()
		return d.readOnce(num, off, p)
	}
	_, err := f.ReadAt(p, off)
	d.mu.RUnlock()
	return readErr(num, err)
}

func (d *packDir) openReader(num uint64) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.open[num] != nil {
		return nil
	}
	f, err := os.Open(d.path(num))
	if errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("pack %d: %w", num, errPackGone)
	}
	if err != nil {
		return fmt.Errorf("blobstore: open pack: %w", err)
	}
	if len(d.open) >= maxOpenPacks {
		for n, g := range d.open { // any one: reopening costs one syscall
			g.Close()
			delete(d.open, n)
			break
		}
	}
	d.open[num] = f
	return nil
}

func (d *packDir) readOnce(num uint64, off int64, p []byte) error {
	f, err := os.Open(d.path(num))
	if errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("pack %d: %w", num, errPackGone)
	}
	if err != nil {
		return fmt.Errorf("blobstore: open pack: %w", err)
	}
	defer f.Close()
	_, err = f.ReadAt(p, off)
	return readErr(num, err)
}

func readErr(num uint64, err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, io.EOF):
		return fmt.Errorf("pack %d: %w", num, errPackShort)
	default:
		return fmt.Errorf("blobstore: read pack %d: %w", num, err)
	}
}

// remove deletes pack files (readers in flight finish first) and syncs the
// directory.
func (d *packDir) remove(nums []uint64) error {
	if len(nums) == 0 {
		return nil
	}
	d.mu.Lock()
	var errs []error
	for _, num := range nums {
		if f := d.open[num]; f != nil {
			f.Close()
			delete(d.open, num)
		}
		if err := os.Remove(d.path(num)); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	d.mu.Unlock()
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("blobstore: remove packs: %w", err)
	}
	return d.syncDir()
}

// syncDir makes the directory's entries (new and removed pack names)
// durable.
func (d *packDir) syncDir() error {
	f, err := os.Open(d.dir)
	if err != nil {
		return fmt.Errorf("blobstore: sync pack directory: %w", err)
	}
	defer f.Close()
	if err := f.Sync(); err != nil {
		return fmt.Errorf("blobstore: sync pack directory: %w", err)
	}
	return nil
}

// close closes the cached readers.
func (d *packDir) close() {
	d.mu.Lock()
	defer d.mu.Unlock()
	for n, f := range d.open {
		f.Close()
		delete(d.open, n)
	}
}

// packFile is a pack being written by a sink: block bytes are appended in
// the order of entries, each at the offset its entry gives.
type packFile struct {
	num     uint64
	w       *directio.File
	size    int64 // bytes queued for it (offset of the next block)
	entries []entry
}

// finish makes the pack's bytes and name durable.
func (p *packFile) finish(d *packDir) error {
	err := p.w.Finish()
	p.w = nil
	if err != nil {
		return fmt.Errorf("blobstore: write pack: %w", err)
	}
	return d.syncDir()
}

// discard abandons the pack and deletes its file.
func (p *packFile) discard(d *packDir) {
	if p.w != nil {
		p.w.Abort()
		p.w = nil
	}
	os.Remove(d.path(p.num))
}
