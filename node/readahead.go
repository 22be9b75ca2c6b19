package node

import "io"

// readAhead reads r in its own goroutine, a few buffers ahead of the
// reader: the backup restore decrypts in one goroutine while another
// parses, hashes and checks what was decrypted (two cores, two stages).
// Close stops the goroutine; it must be called.
type readAhead struct {
	full chan aheadBuf
	free chan []byte
	done chan struct{}
	gone chan struct{} // closed when the goroutine returned
	cur  aheadBuf
	off  int
}

type aheadBuf struct {
	b   []byte
	err error // after b
}

// newReadAhead reads r in buffers of size bytes, at most n of them ahead.
func newReadAhead(r io.Reader, size, n int) *readAhead {
	a := &readAhead{full: make(chan aheadBuf, n), free: make(chan []byte, n+1), done: make(chan struct{}), gone: make(chan struct{})}
	for range n + 1 {
		a.free <- make([]byte, size)
	}
	go func() {
		defer close(a.gone)
		defer close(a.full)
		for {
			var b []byte
			select {
			case b = <-a.free:
			case <-a.done:
				return
			}
			k, err := 0, error(nil)
			for k < len(b) && err == nil {
				var m int
				m, err = r.Read(b[k:])
				k += m
			}
			select {
			case a.full <- aheadBuf{b[:k], err}:
			case <-a.done:
				return
			}
			if err != nil {
				return
			}
		}
	}()
	return a
}

func (a *readAhead) Read(p []byte) (int, error) {
	for a.off == len(a.cur.b) {
		if a.cur.err != nil {
			return 0, a.cur.err
		}
		if a.cur.b != nil {
			a.free <- a.cur.b[:cap(a.cur.b)]
		}
		next, ok := <-a.full
		if !ok {
			return 0, io.ErrClosedPipe
		}
		a.cur, a.off = next, 0
	}
	k := copy(p, a.cur.b[a.off:])
	a.off += k
	return k, nil
}

// Close stops the reading goroutine and waits for it (it finishes the
// read of r it is in), so nothing reads r, nor calls what r calls, after
// Close returns.
func (a *readAhead) Close() {
	select {
	case <-a.done:
	default:
		close(a.done)
	}
	<-a.gone
}
