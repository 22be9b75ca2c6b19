package node

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"testing"
)

// The reader sees exactly the bytes written, in order, whatever the sizes
// of the writes and reads, then the writer's end.
func TestBufPipeCarriesBytesInOrder(t *testing.T) {
	want := make([]byte, 3<<20+12345)
	r := rand.New(rand.NewPCG(1, 2))
	for i := range want {
		want[i] = byte(r.Uint32())
	}
	p := newBufPipe(64<<10, 3)
	go func() {
		b := want
		for len(b) > 0 {
			k := min(len(b), 1+r.IntN(200<<10))
			if _, err := p.Write(b[:k]); err != nil {
				t.Error(err)
				return
			}
			b = b[k:]
		}
		_ = p.CloseWrite(nil)
	}()
	got, err := io.ReadAll(p)
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("read %d bytes (err %v), wrote %d; equal %v", len(got), err, len(want), bytes.Equal(got, want))
	}
}

// A reader that gives up fails the writer's blocked and later writes with
// its error; a writer's error reaches the reader after what came before.
func TestBufPipeErrorsReachTheOtherEnd(t *testing.T) {
	p := newBufPipe(1024, 2)
	stop := errors.New("reader stopped")
	done := make(chan error, 1)
	go func() {
		_, err := p.Write(make([]byte, 1<<20)) // more than the buffers hold
		done <- err
	}()
	buf := make([]byte, 100)
	if _, err := p.Read(buf); err != nil {
		t.Fatal(err)
	}
	p.CloseWithError(stop)
	if err := <-done; !errors.Is(err, stop) {
		t.Fatalf("blocked write: %v, want the reader's error", err)
	}
	if _, err := p.Write([]byte("x")); !errors.Is(err, stop) {
		t.Fatalf("later write: %v", err)
	}

	q := newBufPipe(1024, 2)
	_, _ = q.Write([]byte("abc"))
	_ = q.CloseWrite(errBlobAborted)
	if b, err := io.ReadAll(q); !errors.Is(err, errBlobAborted) || len(b) != 0 {
		t.Fatalf("aborted pipe read %q, %v; want nothing and the abort", b, err)
	}
}
