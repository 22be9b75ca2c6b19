package node

import (
	"bytes"
	"errors"
	"io"
	"testing"
	"testing/iotest"
)

// The read-ahead hands over every byte in order, then the source's own
// error (the restore tells truncation from corruption by it), and Close
// stops it midway.
func TestReadAheadKeepsOrderAndError(t *testing.T) {
	data := bytes.Repeat([]byte("0123456789"), 100_000)
	boom := errors.New("chunk fails authentication")
	for _, tail := range []error{io.EOF, boom, io.ErrUnexpectedEOF} {
		src := io.MultiReader(iotest.HalfReader(bytes.NewReader(data)), iotest.ErrReader(tail))
		a := newReadAhead(src, 4096, 3)
		got, err := io.ReadAll(a)
		a.Close()
		if !bytes.Equal(got, data) {
			t.Fatalf("%v: got %d bytes, want %d in order", tail, len(got), len(data))
		}
		if (tail == io.EOF && err != nil) || (tail != io.EOF && !errors.Is(err, tail)) {
			t.Fatalf("source ended with %v, read-ahead with %v", tail, err)
		}
	}
	a := newReadAhead(bytes.NewReader(data), 4096, 3)
	if _, err := io.ReadFull(a, make([]byte, 10_000)); err != nil {
		t.Fatal(err)
	}
	a.Close() // with the goroutine ahead and blocked: returns, no leak (goleak)
}
