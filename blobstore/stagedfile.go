package blobstore

import (
	"errors"
	"fmt"
	"os"
	"unsafe"
)

// stagedWritable is the objstorage.Writable a staged sstable is written
// through. Where the file system allows it (Linux, O_DIRECT), the bytes
// go from an aligned buffer to the disk without passing through the page
// cache: a staged file is written once, ingested, and read back only
// block by block later, so caching 32 MiB of it buys nothing, and copying
// every byte into freshly allocated page-cache pages cost a fetch more CPU
// than hashing them (on a VM each new page faults to the hypervisor). The
// tail is written padded to the alignment and the file truncated to its
// length before the fsync. Elsewhere (or when the file system refuses
// O_DIRECT, as tmpfs does) it is an ordinary buffered file.
type stagedWritable struct {
	f      *os.File
	direct bool
	buf    []byte // aligned to directAlign when direct; len is the fill
	size   int64  // bytes written to f so far
}

const (
	directAlign = 4096
	stagedBuf   = 1 << 20
)

// createStaged creates (truncates) path for writing a staged sstable.
func createStaged(path string) (*stagedWritable, error) {
	f, direct, err := openStagedFile(path)
	if err != nil {
		return nil, err
	}
	return newStaged(f, direct), nil
}

func newStaged(f *os.File, direct bool) *stagedWritable {
	raw := make([]byte, stagedBuf+directAlign)
	off := 0
	if r := int(uintptr(unsafe.Pointer(&raw[0])) % directAlign); r != 0 {
		off = directAlign - r
	}
	return &stagedWritable{f: f, direct: direct, buf: raw[off : off : off+stagedBuf]}
}

// Write copies p into the buffer, writing out every full buffer.
func (w *stagedWritable) Write(p []byte) error {
	for len(p) > 0 {
		k := copy(w.buf[len(w.buf):cap(w.buf)], p)
		w.buf = w.buf[:len(w.buf)+k]
		p = p[k:]
		if len(w.buf) == cap(w.buf) {
			if err := w.flush(len(w.buf)); err != nil {
				return err
			}
		}
	}
	return nil
}

// flush writes the first n bytes of the buffer region (n a multiple of
// directAlign when direct, possibly past the fill: padding).
func (w *stagedWritable) flush(n int) error {
	k, err := w.f.Write(w.buf[:n])
	w.size += int64(k)
	if err == nil && k != n {
		err = errors.New("short write")
	}
	if err != nil {
		return fmt.Errorf("blobstore: write staged sstable: %w", err)
	}
	w.buf = w.buf[:0]
	return nil
}

// Finish writes what is buffered, trims the padding, and syncs.
func (w *stagedWritable) Finish() error {
	err := w.finish()
	if cerr := w.f.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("blobstore: close staged sstable: %w", cerr)
	}
	return err
}

func (w *stagedWritable) finish() error {
	if n := len(w.buf); n > 0 {
		end := w.size + int64(n)
		if w.direct {
			padded := (n + directAlign - 1) / directAlign * directAlign
			clear(w.buf[n:padded])
			if err := w.flush(padded); err != nil {
				return err
			}
		} else if err := w.flush(n); err != nil {
			return err
		}
		if w.size != end {
			if err := w.f.Truncate(end); err != nil {
				return fmt.Errorf("blobstore: trim staged sstable: %w", err)
			}
			w.size = end
		}
	}
	if err := w.f.Sync(); err != nil {
		return fmt.Errorf("blobstore: sync staged sstable: %w", err)
	}
	return nil
}

// Abort closes the file; the caller removes it.
func (w *stagedWritable) Abort() { _ = w.f.Close() }
