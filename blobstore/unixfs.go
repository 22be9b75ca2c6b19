package blobstore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"

	chunker "github.com/ipfs/boxo/chunker"
	"github.com/ipfs/boxo/ipld/merkledag"
	"github.com/ipfs/boxo/ipld/unixfs/importer/balanced"
	"github.com/ipfs/boxo/ipld/unixfs/importer/helpers"
	unixfsio "github.com/ipfs/boxo/ipld/unixfs/io"
	blocks "github.com/ipfs/go-block-format"
	"github.com/ipfs/go-cid"
	ipld "github.com/ipfs/go-ipld-format"
	mh "github.com/multiformats/go-multihash"
)

// cidBuilder makes the CIDs of the DAGs Put builds: CIDv1, sha2-256 (raw
// leaves get the raw codec).
var cidBuilder cid.Builder = cid.Prefix{Version: 1, Codec: cid.DagProtobuf, MhType: mh.SHA2_256, MhLength: -1}

// Put imports the bytes of r as a UnixFS file (see the package doc for the
// layout) and returns its root CID and the number of bytes read. The blocks
// are durable when Put returns nil. Put does not pin the root.
func (s *Store) Put(ctx context.Context, r io.Reader) (cid.Cid, int64, error) {
	s.gcMu.RLock()
	defer s.gcMu.RUnlock()
	if s.isClosed() {
		return cid.Undef, 0, ErrClosed
	}
	cr := &ctxReader{ctx: ctx, r: r}
	w := &dagWriter{s: s, ctx: ctx, sink: s.newSink()}
	defer w.sink.close(false) // stops the ingester on error paths; no-op after close(true)
	params := helpers.DagBuilderParams{
		Dagserv:    w,
		Maxlinks:   s.opts.maxLinks,
		RawLeaves:  true,
		CidBuilder: cidBuilder,
	}
	db, err := params.New(chunker.NewSizeSplitter(cr, int64(s.opts.chunkSize)))
	if err != nil {
		return cid.Undef, 0, fmt.Errorf("blobstore: put: %w", err)
	}
	root, err := balanced.Layout(db)
	if err != nil {
		return cid.Undef, cr.n, fmt.Errorf("blobstore: put: %w", err)
	}
	if err := w.sink.close(true); err != nil {
		return cid.Undef, cr.n, fmt.Errorf("blobstore: put: %w", err)
	}
	return root.Cid(), cr.n, nil
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
		if !visit(c, held, size) {
			return nil
		}
		if !held || c.Type() != cid.DagProtobuf {
			continue
		}
		data, err := s.getBlock(c)
		if err != nil {
			return err
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

// dagWriter is the ipld.DAGService the importer writes to: blocks go to a
// sink, which Put flushes with sync at the end.
type dagWriter struct {
	s    *Store
	ctx  context.Context
	sink *sink
}

var _ ipld.DAGService = (*dagWriter)(nil)

func (w *dagWriter) Get(ctx context.Context, c cid.Cid) (ipld.Node, error) {
	return nodeGetter{w.s}.Get(ctx, c)
}

func (w *dagWriter) GetMany(ctx context.Context, cids []cid.Cid) <-chan *ipld.NodeOption {
	return nodeGetter{w.s}.GetMany(ctx, cids)
}

func (w *dagWriter) Add(_ context.Context, nd ipld.Node) error {
	if err := w.ctx.Err(); err != nil {
		return err
	}
	h := nd.Cid().Hash()
	if w.sink.has(h) {
		return nil
	}
	held, err := w.s.hasBlock(nd.Cid())
	if err != nil || held {
		return err
	}
	return w.sink.add(h, nd.RawData())
}

func (w *dagWriter) AddMany(ctx context.Context, nds []ipld.Node) error {
	for _, nd := range nds {
		if err := w.Add(ctx, nd); err != nil {
			return err
		}
	}
	return nil
}

func (w *dagWriter) Remove(context.Context, cid.Cid) error {
	return errors.New("blobstore: remove through the importer is not supported")
}

func (w *dagWriter) RemoveMany(context.Context, []cid.Cid) error {
	return errors.New("blobstore: remove through the importer is not supported")
}
