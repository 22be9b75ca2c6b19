package node

import (
	"errors"
	"io"
	"sync"
)

// bufPipe is an in-memory pipe with a few buffers between its ends, so
// the writer runs ahead of the reader instead of in lockstep with it (an
// io.Pipe blocks every Write until the reader has consumed all of it,
// which serialises two goroutines that could use two cores). The blob
// writer of a restore fills it while blobstore.Put, in its own
// goroutine, chunks, hashes and stores what came before.
type bufPipe struct {
	full chan []byte // filled buffers, in order
	free chan []byte // buffers to fill
	cur  []byte      // the writer's buffer being filled

	once sync.Once
	done chan struct{} // closed by the reader's CloseWithError
	err  error         // the reader's error, set before done closes

	rcur []byte // the reader's buffer being consumed
	roff int
	werr error // set by the writer before full closes (io.EOF on Close)
}

var errPipeClosed = errors.New("bufpipe: closed")

// newBufPipe holds up to n buffers of size bytes between the ends.
func newBufPipe(size, n int) *bufPipe {
	p := &bufPipe{full: make(chan []byte, n), free: make(chan []byte, n+1), done: make(chan struct{})}
	for range n + 1 {
		p.free <- make([]byte, 0, size)
	}
	p.cur = <-p.free
	return p
}

// Write copies b into the pipe's buffers; it blocks only while all of
// them wait for the reader. It fails with the reader's error once the
// reader closed.
func (p *bufPipe) Write(b []byte) (int, error) {
	n := 0
	for len(b) > 0 {
		select {
		case <-p.done:
			return n, p.err
		default:
		}
		k := copy(p.cur[len(p.cur):cap(p.cur)], b)
		p.cur = p.cur[:len(p.cur)+k]
		b, n = b[k:], n+k
		if len(p.cur) == cap(p.cur) {
			if err := p.send(); err != nil {
				return n, err
			}
		}
	}
	return n, nil
}

// send hands the current buffer to the reader and takes a free one.
func (p *bufPipe) send() error {
	select {
	case p.full <- p.cur:
	case <-p.done:
		return p.err
	}
	select {
	case p.cur = <-p.free:
	case <-p.done:
		return p.err
	}
	return nil
}

// ReadFrom fills the pipe's buffers straight from r (no copy in between:
// io.Copy into a bufPipe uses it) until r ends; io.EOF is not an error.
func (p *bufPipe) ReadFrom(r io.Reader) (int64, error) {
	var n int64
	for {
		select {
		case <-p.done:
			return n, p.err
		default:
		}
		k, err := r.Read(p.cur[len(p.cur):cap(p.cur)])
		p.cur = p.cur[:len(p.cur)+k]
		n += int64(k)
		if len(p.cur) == cap(p.cur) {
			if serr := p.send(); serr != nil {
				return n, serr
			}
		}
		if errors.Is(err, io.EOF) {
			return n, nil
		}
		if err != nil {
			return n, err
		}
	}
}

// flush hands over what the current buffer holds, if anything.
func (p *bufPipe) flush() error {
	if len(p.cur) == 0 {
		return nil
	}
	return p.send()
}

// CloseWrite ends the stream: the reader reads what was written, then
// err (io.EOF when nil). With another error, bytes still buffered on this
// side are dropped (an aborted blob stays aborted): flush first to keep
// them.
func (p *bufPipe) CloseWrite(err error) error {
	if err == nil {
		err = io.EOF
	}
	var serr error
	if err == io.EOF {
		serr = p.flush()
	}
	p.werr = err // closing full publishes it
	close(p.full)
	return serr
}

// Read reads what the writer wrote, in order.
func (p *bufPipe) Read(b []byte) (int, error) {
	for p.roff == len(p.rcur) {
		if p.rcur != nil {
			p.free <- p.rcur[:0] // never blocks: n+1 buffers, n+1 slots
			p.rcur = nil
		}
		next, ok := <-p.full
		if !ok {
			return 0, p.werr
		}
		p.rcur, p.roff = next, 0
	}
	k := copy(b, p.rcur[p.roff:])
	p.roff += k
	return k, nil
}

// CloseWithError is the reader's end: the writer's next Write (or the
// one blocked) fails with err.
func (p *bufPipe) CloseWithError(err error) {
	if err == nil {
		err = errPipeClosed
	}
	p.once.Do(func() {
		p.err = err
		close(p.done)
	})
}
