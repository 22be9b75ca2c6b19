package node

import (
	"bufio"
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

// blobWriter feeds blobstore.Put, which runs in its own goroutine: a
// megabyte is buffered on this side, so Put hashes and stores one while
// the caller produces the next.
type blobWriter struct {
	pw   *io.PipeWriter
	bw   *bufio.Writer
	done chan putResult
}

type putResult struct {
	c   cid.Cid
	err error
}

// Create starts a blob; its blocks are stored as they come (unpinned),
// and Commit returns its root once all are durable.
func (b blobAdapter) Create() (maintenance.BlobWriter, error) {
	pr, pw := io.Pipe()
	w := &blobWriter{pw: pw, bw: bufio.NewWriterSize(pw, 1<<20), done: make(chan putResult, 1)}
	go func() {
		c, _, err := b.s.Put(context.Background(), pr)
		pr.CloseWithError(err) // a failed Put fails the writer's next Write
		w.done <- putResult{c, err}
	}()
	return w, nil
}

func (w *blobWriter) Write(p []byte) (int, error) { return w.bw.Write(p) }

func (w *blobWriter) Commit() ([]byte, error) {
	if err := w.bw.Flush(); err != nil {
		w.pw.CloseWithError(err)
		<-w.done
		return nil, err
	}
	w.pw.Close()
	r := <-w.done
	if r.err != nil {
		return nil, r.err
	}
	return r.c.Bytes(), nil
}

func (w *blobWriter) Abort() {
	w.pw.CloseWithError(errBlobAborted)
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
