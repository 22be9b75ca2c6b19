package directio

import (
	"bytes"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"unsafe"
)

// A File holds exactly the bytes written, whatever the sizes of the
// writes and whether the tail needed padding (direct I/O) or not.
func TestFileKeepsExactBytes(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	buffered := func(path string, perm os.FileMode) (*File, error) {
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, perm)
		if err != nil {
			return nil, err
		}
		return NewFile(f, false), nil
	}
	sizes := []int{0, 1, Align - 1, Align, BufSize, BufSize + 1, 3*BufSize + 12345}
	for i, total := range append(sizes, sizes...) {
		want := make([]byte, total)
		for i := range want {
			want[i] = byte(r.Uint32())
		}
		path := filepath.Join(t.TempDir(), "f")
		open := Create
		if i >= len(sizes) {
			open = buffered // as where O_DIRECT is refused
		}
		w, err := open(path, 0o600)
		if err != nil {
			t.Fatal(err)
		}
		for b := want; len(b) > 0; {
			k := min(len(b), 1+r.IntN(300<<10))
			if n, err := w.Write(b[:k]); err != nil || n != k {
				t.Fatalf("write %d: %d, %v", k, n, err)
			}
			b = b[k:]
		}
		if w.Size() != int64(total) {
			t.Fatalf("Size %d after %d bytes", w.Size(), total)
		}
		if err := w.Finish(); err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(path)
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("%d bytes written (direct %v), %d read back (%v), equal %v", total, w.Direct(), len(got), err, bytes.Equal(got, want))
		}
		if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
			t.Fatalf("mode %v", fi.Mode())
		}
	}
}

// A write the file system refuses (here: a file opened read-only) comes
// back as an error naming the file, from Write or Finish.
func TestFileReportsWriteErrors(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ro")
	if err := os.WriteFile(path, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	w := NewFile(f, false)
	_, werr := w.Write(make([]byte, BufSize+1))
	ferr := w.Finish()
	if werr == nil && ferr == nil {
		t.Fatal("writes to a read-only file succeeded")
	}
	for _, err := range []error{werr, ferr} {
		if err != nil && !bytes.Contains([]byte(err.Error()), []byte(path)) {
			t.Fatalf("error %q does not name the file", err)
		}
	}
}

// Aligned writes after whole alignment units go to the disk from the
// caller's memory, the buffered bytes first; the file still holds exactly
// what was written, in order, with unaligned writes in between.
func TestFileWritesAlignedThrough(t *testing.T) {
	path := filepath.Join(t.TempDir(), "f")
	w, err := Create(path, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	if !w.Direct() {
		t.Logf("%s refuses O_DIRECT: only the buffered path runs", filepath.Dir(path))
	}
	raw := make([]byte, 3*BufSize+Align)
	off := (Align - int(uintptr(unsafe.Pointer(&raw[0]))%Align)) % Align
	aligned := raw[off : off+3*BufSize]
	r := rand.New(rand.NewPCG(5, 6))
	for i := range aligned {
		aligned[i] = byte(r.Uint32())
	}
	var want []byte
	write := func(p []byte) {
		t.Helper()
		if n, err := w.Write(p); err != nil || n != len(p) {
			t.Fatalf("write %d: %d, %v", len(p), n, err)
		}
		want = append(want, p...)
	}
	write(aligned[:BufSize])            // through, buffer empty
	write([]byte("head"))               // buffered, 4 bytes
	write(make([]byte, Align-4))        // buffered, one whole unit
	write(aligned[BufSize : 2*BufSize]) // the unit first, then through
	if w.direct && len(w.buf) != 0 {
		t.Fatalf("%d bytes left in the buffer after an aligned write", len(w.buf))
	}
	write([]byte("x"))                            // buffered
	write(aligned[2*BufSize : 2*BufSize+2*Align]) // copied: the buffer is not whole units
	write(aligned[2*BufSize+2*Align:])
	if err := w.Finish(); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(path)
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("%d bytes read back of %d (%v), equal %v", len(got), len(want), err, bytes.Equal(got, want))
	}
}
