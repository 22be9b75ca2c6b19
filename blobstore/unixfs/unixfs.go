package unixfs

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/ipfs/go-cid"
	mh "github.com/multiformats/go-multihash"
)

const (
	// ChunkSize is the leaf size of the default layout (IPIP-499 unixfs-v1-2025).
	ChunkSize = 1 << 20
	// MaxLinks is the widest internal node of the default layout.
	MaxLinks = 1024
)

// Errors callers may branch on.
var (
	// ErrMissing: a block of the DAG is not held (returned by the get
	// function of Cat, or wrapped around its error).
	ErrMissing = errors.New("unixfs: block missing")
	// ErrMalformed: a block does not decode as the layout Import builds.
	ErrMalformed = errors.New("unixfs: malformed block")
)

// Layout is the shape of the DAGs Import builds. Zero fields mean the
// defaults (ChunkSize, MaxLinks); another layout gives other CIDs.
type Layout struct {
	ChunkSize int
	MaxLinks  int
}

func (l Layout) withDefaults() (Layout, error) {
	if l.ChunkSize == 0 {
		l.ChunkSize = ChunkSize
	}
	if l.MaxLinks == 0 {
		l.MaxLinks = MaxLinks
	}
	if l.ChunkSize < 1 {
		return l, fmt.Errorf("unixfs: chunk size %d < 1", l.ChunkSize)
	}
	if l.MaxLinks < 2 {
		return l, fmt.Errorf("unixfs: max links %d < 2", l.MaxLinks)
	}
	return l, nil
}

// Emit receives one block of a DAG being built: leaves and subtrees before
// the node linking them, the root last. data is freshly allocated and not
// touched by Import afterwards: the callee may keep it.
type Emit func(c cid.Cid, data []byte) error

// Import chunks the bytes of r with layout l, calls emit for every block,
// and returns the root CID and the number of bytes read. Equal bytes give
// equal blocks and an equal root, whoever imports them.
func Import(r io.Reader, l Layout, emit Emit) (root cid.Cid, n int64, err error) {
	return importDAG(r, l, emit, false)
}

// ImportCopying is Import for an emit that copies each block before it
// returns (a store writing it out): a leaf's data is then valid only
// during the call, and Import reads every chunk into one reused buffer
// instead of allocating one per leaf (a 100 MB blob otherwise leaves 100
// MB of garbage behind it).
func ImportCopying(r io.Reader, l Layout, emit Emit) (root cid.Cid, n int64, err error) {
	return importDAG(r, l, emit, true)
}

func importDAG(r io.Reader, l Layout, emit Emit, reuse bool) (root cid.Cid, n int64, err error) {
	l, err = l.withDefaults()
	if err != nil {
		return cid.Undef, 0, err
	}
	b := &builder{r: r, l: l, emit: emit, reuse: reuse}
	var nd child
	if b.done() {
		nd, err = b.leaf(nil)
	} else {
		nd, err = b.layout()
	}
	if err == nil && b.err != nil {
		err = b.err
	}
	if err != nil {
		return cid.Undef, b.n, err
	}
	return nd.c, b.n, nil
}

// Sum returns the root CID Import gives data with the default layout,
// without keeping any block.
func Sum(data []byte) cid.Cid {
	c, _, _ := Import(bytes.NewReader(data), Layout{}, func(cid.Cid, []byte) error { return nil })
	return c
}

// RawCID is the CIDv1 (raw codec, sha2-256) of one block of bytes.
func RawCID(data []byte) cid.Cid { return blockCID(cid.Raw, data) }

// Verify reports whether data is the block c names (sha2-256 CIDv1 of its
// codec): what a store checks before keeping a block from a peer.
func Verify(c cid.Cid, data []byte) bool {
	p := c.Prefix()
	return p.Version == 1 && p.MhType == mh.SHA2_256 && blockCID(p.Codec, data).Equals(c)
}

func blockCID(codec uint64, data []byte) cid.Cid {
	sum := sha256.Sum256(data)
	m, _ := mh.Encode(sum[:], mh.SHA2_256) // cannot fail: known code, right length
	return cid.NewCidV1(codec, m)
}

// child is a built subtree as its parent links it.
type child struct {
	c        cid.Cid
	tsize    uint64 // bytes of every block in the subtree (dag-pb Tsize)
	fileSize uint64 // bytes of file data in the subtree
}

type builder struct {
	r    io.Reader
	l    Layout
	emit Emit
	n    int64

	next []byte // prefetched chunk, nil when none
	eof  bool
	err  error

	reuse bool   // ImportCopying: leaves' data is not kept by emit
	spare []byte // with reuse, the chunk buffer to read into next
}

// prepare prefetches the next chunk (idempotent).
func (b *builder) prepare() {
	if b.next != nil || b.eof || b.err != nil {
		return
	}
	buf := b.spare
	b.spare = nil
	if buf == nil {
		buf = make([]byte, b.l.ChunkSize)
	}
	k, err := io.ReadFull(b.r, buf)
	b.n += int64(k)
	switch {
	case err == nil:
		b.next = buf
	case errors.Is(err, io.ErrUnexpectedEOF):
		b.next, b.eof = buf[:k:k], true
	case errors.Is(err, io.EOF):
		b.eof = true
	default:
		b.err = err
	}
}

// done reports whether the input is used up (false on a read error, so
// that the caller goes on and meets it).
func (b *builder) done() bool {
	b.prepare()
	return b.err == nil && b.next == nil
}

// take returns the next chunk (nil at the end or on an error).
func (b *builder) take() []byte {
	b.prepare()
	d := b.next
	b.next = nil
	return d
}

func (b *builder) leaf(data []byte) (child, error) {
	if data == nil {
		data = []byte{}
	}
	c := RawCID(data)
	if err := b.emit(c, data); err != nil {
		return child{}, err
	}
	return child{c: c, tsize: uint64(len(data)), fileSize: uint64(len(data))}, nil
}

func (b *builder) leafData() (child, error) {
	d := b.take()
	if b.err != nil {
		return child{}, b.err
	}
	c, err := b.leaf(d)
	if b.reuse && cap(d) == b.l.ChunkSize {
		b.spare = d[:cap(d)] // emit copied it
	}
	return c, err
}

// layout is boxo's balanced.Layout: the first chunk is the root until a
// second one comes; then each full tree of depth d becomes the first child
// of a tree of depth d+1.
func (b *builder) layout() (child, error) {
	root, err := b.leafData()
	if err != nil {
		return child{}, err
	}
	for depth := 1; !b.done(); depth++ {
		nd := &node{}
		nd.add(root)
		if root, err = b.fill(nd, depth); err != nil {
			return child{}, err
		}
	}
	if b.err != nil {
		return child{}, b.err
	}
	return root, nil
}

func (b *builder) fill(nd *node, depth int) (child, error) {
	for len(nd.links) < b.l.MaxLinks && !b.done() {
		var c child
		var err error
		if depth == 1 {
			c, err = b.leafData()
		} else {
			c, err = b.fill(&node{}, depth-1)
		}
		if err != nil {
			return child{}, err
		}
		nd.add(c)
	}
	if b.err != nil {
		return child{}, b.err
	}
	enc := nd.encode()
	c := blockCID(cid.DagProtobuf, enc)
	if err := b.emit(c, enc); err != nil {
		return child{}, err
	}
	t := uint64(len(enc))
	for _, l := range nd.links {
		t += l.tsize
	}
	return child{c: c, tsize: t, fileSize: nd.fileSize()}, nil
}

// node is an internal dag-pb node being filled.
type node struct{ links []child }

func (n *node) add(c child) { n.links = append(n.links, c) }

func (n *node) fileSize() uint64 {
	var s uint64
	for _, l := range n.links {
		s += l.fileSize
	}
	return s
}

// Protobuf field keys (field number << 3 | wire type).
const (
	keyVarint1 = 1<<3 | 0
	keyBytes1  = 1<<3 | 2
	keyBytes2  = 2<<3 | 2
	keyVarint3 = 3<<3 | 0
	keyVarint4 = 4<<3 | 0

	typeFile = 2 // UnixFS Data.DataType File
)

// encode writes the dag-pb bytes: every PBLink{Hash, Name "", Tsize} as
// field 2, then field 1, a UnixFS Data{Type File, filesize, blocksizes}.
func (n *node) encode() []byte {
	data := []byte{keyVarint1, typeFile, keyVarint3}
	data = binary.AppendUvarint(data, n.fileSize())
	for _, l := range n.links {
		data = append(data, keyVarint4)
		data = binary.AppendUvarint(data, l.fileSize)
	}
	var out []byte
	for _, l := range n.links {
		h := l.c.Bytes()
		link := []byte{keyBytes1}
		link = binary.AppendUvarint(link, uint64(len(h)))
		link = append(link, h...)
		link = append(link, keyBytes2, 0)
		link = append(link, keyVarint3)
		link = binary.AppendUvarint(link, l.tsize)
		out = append(out, keyBytes2)
		out = binary.AppendUvarint(out, uint64(len(link)))
		out = append(out, link...)
	}
	out = append(out, keyBytes1)
	out = binary.AppendUvarint(out, uint64(len(data)))
	return append(out, data...)
}

// Link is a child of a dag-pb node.
type Link struct {
	Cid   cid.Cid
	Tsize uint64
}

// Node is a decoded block: its links in order and its UnixFS file data
// (raw blocks are all data and no links).
type Node struct {
	Links    []Link
	Data     []byte // file bytes held in this block itself
	FileSize uint64 // file bytes under this block
	Sizes    []uint64
}

// Decode parses a block of the CID c: a raw block is file data; a dag-pb
// block is a PBNode holding a UnixFS File (or Raw) Data message.
func Decode(c cid.Cid, data []byte) (*Node, error) {
	switch c.Type() {
	case cid.Raw:
		return &Node{Data: data, FileSize: uint64(len(data))}, nil
	case cid.DagProtobuf:
	default:
		return nil, fmt.Errorf("%w: %s: codec 0x%x", ErrMalformed, c, c.Type())
	}
	nd := &Node{}
	var ufs []byte
	haveData := false
	err := fields(data, func(key uint64, v []byte, _ uint64) error {
		switch key {
		case keyBytes2:
			var l Link
			err := fields(v, func(k uint64, lv []byte, x uint64) error {
				switch k {
				case keyBytes1:
					lc, err := cid.Cast(lv)
					if err != nil {
						return err
					}
					l.Cid = lc
				case keyVarint3:
					l.Tsize = x
				}
				return nil
			})
			if err != nil {
				return err
			}
			if !l.Cid.Defined() {
				return errors.New("link without a hash")
			}
			nd.Links = append(nd.Links, l)
		case keyBytes1:
			ufs, haveData = v, true
		default:
			return fmt.Errorf("unexpected field key %d", key)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrMalformed, c, err)
	}
	if !haveData {
		return nil, fmt.Errorf("%w: %s: no UnixFS data", ErrMalformed, c)
	}
	var typ uint64
	err = fields(ufs, func(key uint64, v []byte, x uint64) error {
		switch key {
		case keyVarint1:
			typ = x
		case keyBytes2:
			nd.Data = v
		case keyVarint3:
			nd.FileSize = x
		case keyVarint4:
			nd.Sizes = append(nd.Sizes, x)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("%w: %s: UnixFS data: %v", ErrMalformed, c, err)
	}
	if typ != typeFile && typ != 0 { // 0: Raw
		return nil, fmt.Errorf("%w: %s: UnixFS type %d is not a file", ErrMalformed, c, typ)
	}
	if len(nd.Sizes) != len(nd.Links) {
		return nil, fmt.Errorf("%w: %s: %d block sizes for %d links", ErrMalformed, c, len(nd.Sizes), len(nd.Links))
	}
	return nd, nil
}

// Links returns the CIDs a block links to (none for a raw block).
func Links(c cid.Cid, data []byte) ([]cid.Cid, error) {
	nd, err := Decode(c, data)
	if err != nil {
		return nil, err
	}
	out := make([]cid.Cid, len(nd.Links))
	for i, l := range nd.Links {
		out[i] = l.Cid
	}
	return out, nil
}

// Cat reassembles the file under root from its blocks. get returns a
// block's bytes (an error wrapping ErrMissing when it is not held); Cat
// checks every block against its CID and the file sizes the nodes state.
func Cat(root cid.Cid, get func(cid.Cid) ([]byte, error)) ([]byte, error) {
	var out []byte
	var walk func(c cid.Cid, want uint64, top bool) error
	walk = func(c cid.Cid, want uint64, top bool) error {
		data, err := get(c)
		if err != nil {
			return err
		}
		if !Verify(c, data) {
			return fmt.Errorf("%w: %s: bytes do not hash to the CID", ErrMalformed, c)
		}
		nd, err := Decode(c, data)
		if err != nil {
			return err
		}
		if !top && nd.FileSize != want {
			return fmt.Errorf("%w: %s holds %d bytes, its parent says %d", ErrMalformed, c, nd.FileSize, want)
		}
		start := len(out)
		out = append(out, nd.Data...)
		for i, l := range nd.Links {
			if err := walk(l.Cid, nd.Sizes[i], false); err != nil {
				return err
			}
		}
		if got := uint64(len(out) - start); got != nd.FileSize {
			return fmt.Errorf("%w: %s: %d bytes under it, it says %d", ErrMalformed, c, got, nd.FileSize)
		}
		return nil
	}
	if err := walk(root, 0, true); err != nil {
		return nil, err
	}
	if out == nil {
		out = []byte{}
	}
	return out, nil
}

// fields walks the protobuf fields of b: fn gets each key, and the bytes of
// a length-delimited field or the value of a varint one.
func fields(b []byte, fn func(key uint64, v []byte, x uint64) error) error {
	for len(b) > 0 {
		key, k := binary.Uvarint(b)
		if k <= 0 {
			return errors.New("bad field key")
		}
		b = b[k:]
		switch key & 7 {
		case 0:
			x, k := binary.Uvarint(b)
			if k <= 0 {
				return errors.New("bad varint")
			}
			b = b[k:]
			if err := fn(key, nil, x); err != nil {
				return err
			}
		case 2:
			l, k := binary.Uvarint(b)
			if k <= 0 || l > uint64(len(b)-k) {
				return errors.New("bad length")
			}
			v := b[k : k+int(l)]
			b = b[k+int(l):]
			if err := fn(key, v, 0); err != nil {
				return err
			}
		default:
			return fmt.Errorf("wire type %d", key&7)
		}
	}
	return nil
}
