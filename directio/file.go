package directio

import (
	"errors"
	"fmt"
	"os"
	"unsafe"
)

// File is a new file written once, front to back, bypassing the page cache
// where the file system allows it (Linux, O_DIRECT): the bytes go from an
// aligned buffer to the disk, the tail is written padded to the alignment
// and the file truncated to its length before the fsync. Elsewhere, or
// when the file system refuses O_DIRECT, it is an ordinary buffered file.
// It is not safe for concurrent use.
type File struct {
	f      *os.File
	direct bool
	buf    []byte // aligned to Align when direct; len is the fill
	size   int64  // bytes written to f so far
}

const (
	// Align is the alignment of offsets, lengths and memory O_DIRECT
	// writes use (the largest logical block size in common use).
	Align = 4096
	// BufSize is the buffer a File writes from: every write but the last
	// is exactly this long.
	BufSize = 1 << 20
)

// ErrShortWrite: the file system took fewer bytes than given, without an
// error.
var ErrShortWrite = errors.New("directio: short write")

// Create creates (or truncates) path with mode perm for writing.
func Create(path string, perm os.FileMode) (*File, error) {
	f, direct, err := openFile(path, perm)
	if err != nil {
		return nil, err
	}
	return NewFile(f, direct), nil
}

// NewFile writes f, an empty file open for writing; direct says f was
// opened with O_DIRECT.
func NewFile(f *os.File, direct bool) *File {
	raw := make([]byte, BufSize+Align)
	off := 0
	if r := int(uintptr(unsafe.Pointer(&raw[0])) % Align); r != 0 {
		off = Align - r
	}
	return &File{f: f, direct: direct, buf: raw[off : off : off+BufSize]}
}

// Direct reports whether the file bypasses the page cache.
func (w *File) Direct() bool { return w.direct }

// Name is the file's path.
func (w *File) Name() string { return w.f.Name() }

// Size is the number of bytes written so far (buffered ones included).
func (w *File) Size() int64 { return w.size + int64(len(w.buf)) }

// Write copies p into the buffer, writing out every full buffer. When p
// is aligned (memory and length) and the bytes before it fill whole
// alignment units, it goes to the disk straight from p, uncopied: the
// buffered bytes first, then p.
func (w *File) Write(p []byte) (int, error) {
	if w.direct && len(p) > 0 && len(p)%Align == 0 && len(w.buf)%Align == 0 && uintptr(unsafe.Pointer(&p[0]))%Align == 0 {
		if len(w.buf) > 0 {
			if err := w.flush(len(w.buf)); err != nil {
				return 0, err
			}
		}
		return w.writeThrough(p)
	}
	n := 0
	for len(p) > 0 {
		k := copy(w.buf[len(w.buf):cap(w.buf)], p)
		w.buf = w.buf[:len(w.buf)+k]
		p, n = p[k:], n+k
		if len(w.buf) == cap(w.buf) {
			if err := w.flush(len(w.buf)); err != nil {
				return n, err
			}
		}
	}
	return n, nil
}

// flush writes the first n bytes of the buffer region (n a multiple of
// Align when direct, possibly past the fill: padding).
func (w *File) flush(n int) error {
	k, err := w.f.Write(w.buf[:n])
	w.size += int64(k)
	if err == nil && k != n {
		err = ErrShortWrite
	}
	if err != nil {
		return fmt.Errorf("write %s: %w", w.f.Name(), err)
	}
	w.buf = w.buf[:0]
	return nil
}

// writeThrough writes p (aligned) with the buffer empty.
func (w *File) writeThrough(p []byte) (int, error) {
	k, err := w.f.Write(p)
	w.size += int64(k)
	if err == nil && k != len(p) {
		err = ErrShortWrite
	}
	if err != nil {
		return k, fmt.Errorf("write %s: %w", w.f.Name(), err)
	}
	return k, nil
}

// Finish writes what is buffered, trims the padding, syncs and closes the
// file: its bytes are durable when it returns nil.
func (w *File) Finish() error {
	err := w.finish()
	if cerr := w.f.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("close %s: %w", w.f.Name(), cerr)
	}
	return err
}

func (w *File) finish() error {
	if n := len(w.buf); n > 0 {
		end := w.size + int64(n)
		if w.direct {
			padded := (n + Align - 1) / Align * Align
			clear(w.buf[n:padded])
			if err := w.flush(padded); err != nil {
				return err
			}
		} else if err := w.flush(n); err != nil {
			return err
		}
		if w.size != end {
			if err := w.f.Truncate(end); err != nil {
				return fmt.Errorf("trim %s: %w", w.f.Name(), err)
			}
			w.size = end
		}
	}
	if err := w.f.Sync(); err != nil {
		return fmt.Errorf("fsync %s: %w", w.f.Name(), err)
	}
	return nil
}

// Abort closes the file without syncing; the caller removes it.
func (w *File) Abort() { _ = w.f.Close() }
