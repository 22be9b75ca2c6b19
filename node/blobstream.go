package node

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/ipfs/go-cid"

	"aura/blobstore"
	"aura/maintenance"
)

// The streaming side of blobAdapter (maintenance.BlobStreamer and
// BlobOpener): the core's restore writes a snapshot blob into the blob
// store as it reads it, and reads a held blob back as a stream, so neither
// needs the blob whole in memory.

var (
	_ maintenance.BlobStreamer = blobAdapter{}
	_ maintenance.BlobOpener   = blobAdapter{}
)

// errBlobAborted ends the Put of an aborted blob.
var errBlobAborted = errors.New("blob aborted")

// blobWriter feeds blobstore.Put, which runs in its own goroutine: four
// buffers of 256 KiB lie between them (bufPipe), so Put chunks, hashes and
// stores a megabyte while the caller decodes and hashes the next.
type blobWriter struct {
	p    *bufPipe
	done chan putResult
}

type putResult struct {
	c   cid.Cid
	err error
}

// Create starts a blob; its blocks are stored as they come (unpinned),
// and Commit returns its root once all are durable.
func (b blobAdapter) Create() (maintenance.BlobWriter, error) {
	p := newBufPipe(256<<10, 4)
	w := &blobWriter{p: p, done: make(chan putResult, 1)}
	go func() {
		c, _, err := b.s.Put(context.Background(), p)
		p.CloseWithError(err) // a failed Put fails the writer's next Write
		w.done <- putResult{c, err}
	}()
	return w, nil
}

func (w *blobWriter) Write(p []byte) (int, error) { return w.p.Write(p) }

func (w *blobWriter) Commit() ([]byte, error) {
	if err := w.p.CloseWrite(nil); err != nil {
		<-w.done
		return nil, err
	}
	r := <-w.done
	if r.err != nil {
		return nil, r.err
	}
	return r.c.Bytes(), nil
}

func (w *blobWriter) Abort() {
	_ = w.p.CloseWrite(errBlobAborted)
	<-w.done
}

// Open reads a held blob as a stream.
func (b blobAdapter) Open(raw []byte) (io.ReadCloser, error) {
	c, err := cid.Cast(raw)
	if err != nil {
		return nil, fmt.Errorf("blob %x: %w", raw, err)
	}
	r, err := b.s.Open(context.Background(), c)
	if err != nil {
		if errors.Is(err, blobstore.ErrIncomplete) || errors.Is(err, blobstore.ErrNotFound) {
			return nil, fmt.Errorf("blob %s: %w", c, maintenance.ErrBlobMissing)
		}
		return nil, err
	}
	return r, nil
}
