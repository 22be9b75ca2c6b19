package node

import "io"

// readAhead reads r in its own goroutine, a few buffers ahead of the
// reader: the backup restore decrypts in one goroutine while another
// parses, hashes and checks what was decrypted (two cores, two stages).
// It is a bufPipe with the goroutine filling it. Close stops the
// goroutine; it must be called.
type readAhead struct {
	p    *bufPipe
	gone chan struct{} // closed when the goroutine returned
}

// newReadAhead reads r in buffers of size bytes, at most n of them ahead.
// The reader gets every byte r gave, then r's error (nil at its end).
func newReadAhead(r io.Reader, size, n int) *readAhead {
	a := &readAhead{p: newBufPipe(size, n), gone: make(chan struct{})}
	go func() {
		defer close(a.gone)
		_, err := a.p.ReadFrom(r)
		if err == nil {
			_ = a.p.CloseWrite(nil)
			return
		}
		if a.p.flush() == nil { // the bytes before the error first
			_ = a.p.CloseWrite(err)
		}
	}()
	return a
}

func (a *readAhead) Read(p []byte) (int, error) { return a.p.Read(p) }

// Close stops the reading goroutine and waits for it (it finishes the
// read of r it is in), so nothing reads r, nor calls what r calls, after
// Close returns.
func (a *readAhead) Close() {
	a.p.CloseWithError(io.ErrClosedPipe)
	<-a.gone
}
