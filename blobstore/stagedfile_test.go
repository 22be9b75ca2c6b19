package blobstore

import (
	"bytes"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
)

// A staged file holds exactly the bytes written, whatever the sizes of the
// writes and whether the tail needed padding (direct I/O) or not.
func TestStagedWritableKeepsExactBytes(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	buffered := func(path string) (*stagedWritable, error) {
		f, err := os.Create(path)
		if err != nil {
			return nil, err
		}
		return newStaged(f, false), nil
	}
	sizes := []int{0, 1, directAlign - 1, directAlign, stagedBuf, stagedBuf + 1, 3*stagedBuf + 12345}
	for i, total := range append(sizes, sizes...) {
		want := make([]byte, total)
		for i := range want {
			want[i] = byte(r.Uint32())
		}
		path := filepath.Join(t.TempDir(), "s.sst")
		open := createStaged
		if i%2 == 1 {
			open = buffered // as where O_DIRECT is refused
		}
		w, err := open(path)
		if err != nil {
			t.Fatal(err)
		}
		for b := want; len(b) > 0; {
			k := min(len(b), 1+r.IntN(300<<10))
			if err := w.Write(b[:k]); err != nil {
				t.Fatal(err)
			}
			b = b[k:]
		}
		if err := w.Finish(); err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(path)
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("%d bytes written (direct %v), %d read back (%v), equal %v", total, w.direct, len(got), err, bytes.Equal(got, want))
		}
	}
}
