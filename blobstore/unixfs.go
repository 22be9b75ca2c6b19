package blobstore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/ipfs/boxo/ipld/merkledag"
	unixfsio "github.com/ipfs/boxo/ipld/unixfs/io"
	blocks "github.com/ipfs/go-block-format"
	"github.com/ipfs/go-cid"
	ipld "github.com/ipfs/go-ipld-format"
	mh "github.com/multiformats/go-multihash"

	"aura/blobstore/unixfs"
)

// Put imports the bytes of r as a UnixFS file (see the package doc for the
// layout; the DAG is built by aura/blobstore/unixfs, the code the
// simulator's blob store runs too) and returns its root CID and the number
// of bytes read. The blocks are durable when Put returns nil. Put does not
// pin the root.
func (s *Store) Put(ctx context.Context, r io.Reader) (cid.Cid, int64, error) {
	return s.put(ctx, r, false)
}

// PutPinned is Put that also pins the root before a GC can run: a blob put
// then pinned by two calls could lose its blocks to a GC in between.
func (s *Store) PutPinned(ctx context.Context, r io.Reader) (cid.Cid, int64, error) {
	return s.put(ctx, r, true)
}

func (s *Store) put(ctx context.Context, r io.Reader, pin bool) (cid.Cid, int64, error) {
	s.gcMu.RLock()
	defer s.gcMu.RUnlock()
	if s.isClosed() {
		return cid.Undef, 0, ErrClosed
	}
	cr := &ctxReader{ctx: ctx, r: r}
	k := s.newSink()
	defer k.close(false) // stops the writer on error paths; no-op after close(true)
	// The sink copies every block (into a pack buffer or a batch) before
	// add returns.
	root, n, err := unixfs.ImportCopying(cr, unixfs.Layout{ChunkSize: s.opts.chunkSize, MaxLinks: s.opts.maxLinks}, func(c cid.Cid, data []byte) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		h := c.Hash()
		if k.has(h) {
			return nil
		}
		held, err := s.hasBlock(c)
		if err != nil || held {
			return err
		}
		return k.add(h, data)
	})
	if err != nil {
		return cid.Undef, n, fmt.Errorf("blobstore: put: %w", err)
	}
	if err := k.close(true); err != nil {
		return cid.Undef, n, fmt.Errorf("blobstore: put: %w", err)
	}
	if pin {
		if err := s.writePins([]cid.Cid{root}, nil); err != nil {
			return cid.Undef, n, fmt.Errorf("blobstore: put: %w", err)
		}
	}
	return root, n, nil
}

// Get returns the whole blob in memory. Use Open for large blobs.
func (s *Store) Get(ctx context.Context, root cid.Cid) ([]byte, error) {
	r, err := s.Open(ctx, root)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	buf := bytes.NewBuffer(make([]byte, 0, r.Size()))
	if _, err := r.WriteTo(buf); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// Reader reads a blob; it also seeks.
type Reader struct {
	unixfsio.DagReader
}

// Size is the blob's length in bytes.
func (r *Reader) Size() int64 { return int64(r.DagReader.Size()) }

// Open returns a reader of the blob named root. It fails with ErrIncomplete
// if any block of the blob is missing locally. Blocks deleted by a GC while
// the reader is open make later reads fail.
func (s *Store) Open(ctx context.Context, root cid.Cid) (*Reader, error) {
	ok, err := s.Has(ctx, root)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, fmt.Errorf("open %s: %w", root, ErrIncomplete)
	}
	g := nodeGetter{s}
	nd, err := g.Get(ctx, root)
	if err != nil {
		return nil, err
	}
	dr, err := unixfsio.NewDagReader(ctx, nd, g)
	if err != nil {
		return nil, fmt.Errorf("blobstore: open %s: %w", root, err)
	}
	return &Reader{dr}, nil
}

// Has reports whether every block of the DAG under root is stored locally.
func (s *Store) Has(ctx context.Context, root cid.Cid) (bool, error) {
	complete := true
	err := s.walkLocal(ctx, root, func(c cid.Cid, held bool, _ int) bool {
		if !held {
			complete = false
			return false
		}
		return true
	})
	return complete, err
}

// walkLocal walks the DAG under root breadth-first over the blocks held
// locally, calling visit once per distinct CID with whether it is held (and
// its size if so). The walk descends into held dag-pb nodes only; it stops
// when visit returns false.
func (s *Store) walkLocal(ctx context.Context, root cid.Cid, visit func(c cid.Cid, held bool, size int) bool) error {
	seen := map[string]struct{}{string(root.Hash()): {}}
	queue := []cid.Cid{root}
	for len(queue) > 0 {
		if err := ctx.Err(); err != nil {
			return err
		}
		c := queue[0]
		queue = queue[1:]
		if err := checkCID(c); err != nil {
			return fmt.Errorf("walk %s: %w", c, err)
		}
		size, held, err := s.blockSize(c.Hash())
		if err != nil {
			return err
		}
		var data []byte
		if held && c.Type() == cid.DagProtobuf {
			data, err = s.getBlock(c)
			if errors.Is(err, ErrNotFound) { // damaged: now it is not held
				held, size, err = false, 0, nil
			}
			if err != nil {
				return err
			}
		}
		if !visit(c, held, size) {
			return nil
		}
		if data == nil {
			continue
		}
		links, err := dagLinks(c, data)
		if err != nil {
			return err
		}
		for _, l := range links {
			if _, dup := seen[string(l.Cid.Hash())]; dup {
				continue
			}
			seen[string(l.Cid.Hash())] = struct{}{}
			queue = append(queue, l.Cid)
		}
	}
	return nil
}

// checkCID accepts the CIDs the store walks and fetches.
func checkCID(c cid.Cid) error {
	if !c.Defined() {
		return fmt.Errorf("undefined CID: %w", ErrUnsupportedCID)
	}
	if c.Type() != cid.DagProtobuf && c.Type() != cid.Raw {
		return fmt.Errorf("codec 0x%x: %w", c.Type(), ErrUnsupportedCID)
	}
	p := c.Prefix()
	if p.MhType != mh.SHA2_256 || p.MhLength != 32 {
		return fmt.Errorf("multihash 0x%x/%d: %w", p.MhType, p.MhLength, ErrUnsupportedCID)
	}
	return nil
}

// dagLinks decodes the links of a dag-pb block (nil for raw blocks) and
// checks that every link is a CID the store supports.
func dagLinks(c cid.Cid, data []byte) ([]*ipld.Link, error) {
	if c.Type() != cid.DagProtobuf {
		return nil, nil
	}
	nd, err := merkledag.DecodeProtobuf(data)
	if err != nil {
		return nil, fmt.Errorf("blobstore: decode dag-pb %s: %w", c, err)
	}
	links := nd.Links()
	for _, l := range links {
		if err := checkCID(l.Cid); err != nil {
			return nil, fmt.Errorf("blobstore: link of %s: %w", c, err)
		}
	}
	return links, nil
}

func (s *Store) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

// ctxReader stops reading when ctx is done and counts bytes.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
	n   int64
}

func (r *ctxReader) Read(p []byte) (int, error) {
	if err := r.ctx.Err(); err != nil {
		return 0, err
	}
	n, err := r.r.Read(p)
	r.n += int64(n)
	return n, err
}

// nodeGetter reads dag-pb and raw nodes from the store.
type nodeGetter struct{ s *Store }

var _ ipld.NodeGetter = nodeGetter{}

func (g nodeGetter) Get(_ context.Context, c cid.Cid) (ipld.Node, error) {
	if err := checkCID(c); err != nil {
		return nil, err
	}
	data, err := g.s.getBlock(c)
	if errors.Is(err, ErrNotFound) {
		return nil, ipld.ErrNotFound{Cid: c}
	}
	if err != nil {
		return nil, err
	}
	blk, err := blocks.NewBlockWithCid(data, c)
	if err != nil {
		return nil, err
	}
	if c.Type() == cid.Raw {
		return merkledag.DecodeRawBlock(blk)
	}
	return merkledag.DecodeProtobufBlock(blk)
}

func (g nodeGetter) GetMany(ctx context.Context, cids []cid.Cid) <-chan *ipld.NodeOption {
	out := make(chan *ipld.NodeOption, len(cids))
	for _, c := range cids {
		nd, err := g.Get(ctx, c)
		out <- &ipld.NodeOption{Node: nd, Err: err}
	}
	close(out)
	return out
}
