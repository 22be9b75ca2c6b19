package blobstore

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble"
	"github.com/ipfs/boxo/blockstore"
	blocks "github.com/ipfs/go-block-format"
	"github.com/ipfs/go-cid"
	ipld "github.com/ipfs/go-ipld-format"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	mh "github.com/multiformats/go-multihash"

	"aura/blobstore/unixfs"
)

// Errors callers may branch on. Errors returned by the package wrap them.
var (
	// ErrNotFound: the block is not in the local store.
	ErrNotFound = errors.New("blobstore: block not found")
	// ErrIncomplete: some blocks of the blob are missing locally; Fetch it.
	ErrIncomplete = errors.New("blobstore: blob is incomplete locally")
	// ErrTamperedBlock: a peer sent bytes that do not hash to the CID asked for.
	ErrTamperedBlock = errors.New("blobstore: block does not match its CID")
	// ErrBanned: the peer sent a tampered block recently and is not asked again.
	ErrBanned = errors.New("blobstore: peer banned for sending a tampered block")
	// ErrNoPeers: no usable peer holds the blocks still missing.
	ErrNoPeers = errors.New("blobstore: no peer can supply the missing blocks")
	// ErrUnsupportedCID: only sha2-256 CIDs with the dag-pb or raw codec are walked and fetched.
	ErrUnsupportedCID = errors.New("blobstore: unsupported CID (want sha2-256, dag-pb or raw)")
	// ErrProtocol: a peer broke the /aura/blocks/1 framing.
	ErrProtocol = errors.New("blobstore: protocol violation")
	// ErrNoHost: Fetch needs a Store created WithHost.
	ErrNoHost = errors.New("blobstore: no libp2p host (use WithHost)")
	// ErrClosed: the Store was closed.
	ErrClosed = errors.New("blobstore: store closed")
)

// PeerError says why a peer was dropped from a fetch.
type PeerError struct {
	Peer peer.ID
	Err  error
}

func (e *PeerError) Error() string { return fmt.Sprintf("peer %s: %v", e.Peer, e.Err) }
func (e *PeerError) Unwrap() error { return e.Err }

const (
	// ChunkSize is the leaf size Put uses (IPIP-499 unixfs-v1-2025).
	ChunkSize = unixfs.ChunkSize
	// MaxLinks is the widest internal node Put builds (IPIP-499 unixfs-v1-2025).
	MaxLinks = unixfs.MaxLinks
	// MaxBlockSize is the largest block accepted from a peer (bitswap's limit).
	MaxBlockSize = 2 << 20
	// DefaultKeep is how many roots KeepNewest keeps pinned when n <= 0.
	DefaultKeep = 2
	// DefaultStallAfter is how long a block may be in flight at one peer
	// before an idle peer is asked for it too (end game).
	DefaultStallAfter = 500 * time.Millisecond
	// DefaultBanDuration is how long a peer that sent a tampered block is skipped.
	DefaultBanDuration = time.Hour

	// Key kinds after the prefix.
	kindBlock   = 'b'
	kindCatalog = 'c'
	kindPin     = 'p'
	kindProbe   = 'i'

	// stageBytes is how many block bytes a sink writes into one pack file
	// (or one batch) before committing their catalogue entries.
	stageBytes = 32 << 20
)

// Option configures a Store.
type Option func(*options)

type options struct {
	host        host.Host
	packDir     string
	banDuration time.Duration
	chunkSize   int
	maxLinks    int
	// fetch tuning
	batchSize int // CIDs per request
	window    int // requests in flight per peer
	// stallAfter: a block requested this long ago from one peer may be
	// asked of an idle peer too, once nothing else is left to ask.
	stallAfter time.Duration
	// serveHook, when set, sees every block served and returns what to send
	// (tests use it to tamper and to count requests).
	serveHook func(to peer.ID, c cid.Cid, data []byte) []byte
}

// WithHost serves /aura/blocks/1 on h and lets Fetch open streams from it.
func WithHost(h host.Host) Option { return func(o *options) { o.host = h } }

// WithPackDir keeps block bytes in pack files in dir (created if
// missing), with only the catalogue and pins in Pebble. Put it inside or
// beside the Pebble directory, on the same disk: it is part of the store.
// Each block's bytes are then written once, straight to the disk (no WAL,
// flush or compaction, no page-cache copy), and served with one read. Without
// it the Store keeps block bytes in Pebble batches, which suits small or
// in-memory stores. Blocks an earlier Store wrote into Pebble stay readable
// either way.
func WithPackDir(dir string) Option { return func(o *options) { o.packDir = dir } }

// WithBanDuration sets how long a peer that sent a tampered block is skipped
// by later fetches (default DefaultBanDuration; zero or negative: the peer
// is only dropped from the fetch where it happened).
func WithBanDuration(d time.Duration) Option { return func(o *options) { o.banDuration = d } }

// withLayout changes the chunk size and width of the DAGs Put builds; tests
// use it to get deep DAGs from small inputs. It changes the CIDs.
func withLayout(chunkSize, maxLinks int) Option {
	return func(o *options) { o.chunkSize, o.maxLinks = chunkSize, maxLinks }
}

// withFetchWindow tunes the request pipeline.
func withFetchWindow(batchSize, window int) Option {
	return func(o *options) { o.batchSize, o.window = batchSize, window }
}

// withServeHook adds a hook called on every block served (after the hooks
// added before it).
func withServeHook(f func(to peer.ID, c cid.Cid, data []byte) []byte) Option {
	return func(o *options) {
		prev := o.serveHook
		if prev == nil {
			o.serveHook = f
			return
		}
		o.serveHook = func(to peer.ID, c cid.Cid, data []byte) []byte {
			return f(to, c, prev(to, c, data))
		}
	}
}

// Store is a blob store over a key range of a Pebble database. It is safe for
// concurrent use.
type Store struct {
	db     *pebble.DB
	prefix []byte
	opts   options

	// gcMu: Put, Fetch and Pin hold it shared, GC exclusively.
	gcMu sync.RWMutex
	// catMu serializes the commits of pack entries with the dropping of
	// damaged ones (dropDamagedPack), which runs under no other lock: any
	// read may meet a damaged pack, GC's walk among them.
	catMu sync.Mutex

	nextSeq atomic.Uint64 // next free block number (blocks held in Pebble)
	packs   *packDir      // nil: block bytes go into Pebble batches

	mu      sync.Mutex
	closed  bool
	banned  map[peer.ID]time.Time
	streams map[*serverStream]struct{}
	serveWG sync.WaitGroup
}

// New returns a Store keeping its blocks and pins in db under prefix. The
// caller owns db and closes it after Store.Close. With WithHost, the Store
// serves the blocks it holds to peers until Close.
func New(db *pebble.DB, prefix []byte, opts ...Option) (*Store, error) {
	if db == nil {
		return nil, errors.New("blobstore: nil pebble DB")
	}
	if len(prefix) == 0 {
		return nil, errors.New("blobstore: empty key prefix (the blob range must not cover the whole DB)")
	}
	o := options{
		banDuration: DefaultBanDuration,
		chunkSize:   ChunkSize,
		maxLinks:    MaxLinks,
		batchSize:   4,
		window:      4,
		stallAfter:  DefaultStallAfter,
	}
	for _, opt := range opts {
		opt(&o)
	}
	if o.chunkSize <= 0 || o.chunkSize > MaxBlockSize/2 {
		return nil, fmt.Errorf("blobstore: chunk size %d out of range", o.chunkSize)
	}
	if o.maxLinks < 2 {
		return nil, fmt.Errorf("blobstore: max links %d < 2", o.maxLinks)
	}
	if o.batchSize < 1 || o.batchSize > maxRequestCIDs || o.window < 1 {
		return nil, fmt.Errorf("blobstore: bad fetch window %d×%d", o.batchSize, o.window)
	}
	s := &Store{
		db:      db,
		prefix:  append([]byte(nil), prefix...),
		opts:    o,
		banned:  make(map[peer.ID]time.Time),
		streams: make(map[*serverStream]struct{}),
	}
	if err := s.loadNextSeq(); err != nil {
		return nil, err
	}
	if o.packDir != "" {
		d, err := openPackDir(o.packDir)
		if err != nil {
			return nil, err
		}
		s.packs = d
	}
	if o.host != nil {
		o.host.SetStreamHandler(ProtocolID, s.handleStream)
	}
	return s, nil
}

// Close stops serving blocks and waits for the streams being served to end.
// It does not close the Pebble DB.
func (s *Store) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	for st := range s.streams {
		_ = st.s.Reset()
	}
	s.mu.Unlock()
	if s.opts.host != nil {
		s.opts.host.RemoveStreamHandler(ProtocolID)
	}
	s.serveWG.Wait()
	if s.packs != nil {
		s.packs.close()
	}
	return nil
}

func (s *Store) key(kind byte, rest []byte) []byte {
	k := make([]byte, 0, len(s.prefix)+1+len(rest))
	k = append(k, s.prefix...)
	k = append(k, kind)
	return append(k, rest...)
}

// blockKey is where the bytes of the block numbered seq live. Numbers grow
// in write order, so a blob's blocks sit side by side and whole sstables of
// them can be dropped without rewriting their neighbours.
func (s *Store) blockKey(seq uint64) []byte {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], seq)
	return s.key(kindBlock, b[:])
}

func (s *Store) catalogKey(h mh.Multihash) []byte { return s.key(kindCatalog, h) }

// blockRange is the key range holding block bytes; catalogRange the
// catalogue.
func (s *Store) blockRange() (lo, hi []byte) { return s.key(kindBlock, nil), s.key(kindBlock+1, nil) }
func (s *Store) catalogRange() (lo, hi []byte) {
	return s.key(kindCatalog, nil), s.key(kindCatalog+1, nil)
}

// loadNextSeq finds the first free block number.
func (s *Store) loadNextSeq() error {
	lo, hi := s.blockRange()
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: hi})
	if err != nil {
		return err
	}
	defer it.Close()
	if it.Last() {
		k := it.Key()[len(lo):]
		if len(k) != 8 {
			return fmt.Errorf("blobstore: corrupt block key %x", it.Key())
		}
		s.nextSeq.Store(binary.BigEndian.Uint64(k) + 1)
	}
	return it.Error()
}

// allocSeq reserves n block numbers and returns the first.
func (s *Store) allocSeq(n int) uint64 { return s.nextSeq.Add(uint64(n)) - uint64(n) }

// location is where a block's bytes are, as its catalogue entry says: in
// pack file pack at offset off, or (pack 0) in Pebble under block number
// seq. Encoded as uvarints: size, pack, off for a pack; size, seq for
// Pebble (the form every entry had before pack files).
type location struct {
	size int
	pack uint64
	off  int64
	seq  uint64
}

func (l location) encode() []byte {
	v := binary.AppendUvarint(make([]byte, 0, 3*binary.MaxVarintLen64), uint64(l.size))
	if l.pack == 0 {
		return binary.AppendUvarint(v, l.seq)
	}
	v = binary.AppendUvarint(v, l.pack)
	return binary.AppendUvarint(v, uint64(l.off))
}

var errCorruptEntry = errors.New("blobstore: corrupt catalogue entry")

func decodeLocation(v []byte) (location, error) {
	var xs [3]uint64
	n := 0
	for len(v) > 0 {
		if n == len(xs) {
			return location{}, errCorruptEntry
		}
		x, k := binary.Uvarint(v)
		if k <= 0 {
			return location{}, errCorruptEntry
		}
		xs[n], v, n = x, v[k:], n+1
	}
	if xs[0] > MaxBlockSize {
		return location{}, errCorruptEntry
	}
	switch {
	case n == 2:
		return location{size: int(xs[0]), seq: xs[1]}, nil
	case n == 3 && xs[1] != 0 && xs[2] <= 1<<62:
		return location{size: int(xs[0]), pack: xs[1], off: int64(xs[2])}, nil
	}
	return location{}, errCorruptEntry
}

// lookup reads the catalogue entry of a block.
func (s *Store) lookup(h mh.Multihash) (loc location, ok bool, err error) {
	v, closer, err := s.db.Get(s.catalogKey(h))
	if errors.Is(err, pebble.ErrNotFound) {
		return location{}, false, nil
	}
	if err != nil {
		return location{}, false, fmt.Errorf("blobstore: read catalogue: %w", err)
	}
	defer closer.Close()
	loc, err = decodeLocation(v)
	if err != nil {
		return location{}, false, fmt.Errorf("%w for %s", err, h.B58String())
	}
	return loc, true, nil
}

// hasBlock reports whether the block is stored (catalogue lookup: the block
// itself is not read).
func (s *Store) hasBlock(c cid.Cid) (bool, error) {
	_, ok, err := s.lookup(c.Hash())
	return ok, err
}

func (s *Store) blockSize(h mh.Multihash) (int, bool, error) {
	loc, ok, err := s.lookup(h)
	return loc.size, ok, err
}

// viewBlock calls f with the block's bytes, valid only during the call.
func (s *Store) viewBlock(h mh.Multihash, f func([]byte) error) error {
	loc, ok, err := s.lookup(h)
	if err != nil {
		return err
	}
	if !ok {
		return ErrNotFound
	}
	if loc.pack == 0 {
		return s.viewPebbleBlock(h, loc.seq, f)
	}
	if s.packs == nil {
		return fmt.Errorf("blobstore: block %s is in pack %d, and the Store has no pack directory (WithPackDir)", h.B58String(), loc.pack)
	}
	buf := getBuf(loc.size)
	defer putBuf(buf)
	err = s.packs.readAt(loc.pack, loc.off, buf)
	if errors.Is(err, errPackGone) {
		// A GC may have moved the block to a new pack since the lookup.
		again, ok, lerr := s.lookup(h)
		switch {
		case lerr != nil:
			return lerr
		case !ok:
			return ErrNotFound
		case again != loc && again.pack != 0:
			loc, err = again, s.packs.readAt(again.pack, again.off, buf)
		}
	}
	if packDamaged(err) {
		return s.dropDamaged(h, loc, err)
	}
	if err != nil {
		return err
	}
	return f(buf)
}

// dropDamaged handles a block whose pack is missing or cut short: it
// deletes the catalogue entries of every block of that pack whose bytes
// are not all there, so that they count as not held and a fetch brings
// them back, and returns why, wrapping ErrNotFound.
func (s *Store) dropDamaged(h mh.Multihash, loc location, why error) error {
	err := fmt.Errorf("blobstore: block %s is damaged (%v); the blocks of the pack that are not all there count as missing now, so fetching the blob again brings them back: %w", h.B58String(), why, ErrNotFound)
	if derr := s.dropDamagedPack(loc.pack); derr != nil {
		return fmt.Errorf("%w (dropping their entries failed: %v)", err, derr)
	}
	return err
}

func (s *Store) dropDamagedPack(num uint64) error {
	s.catMu.Lock()
	defer s.catMu.Unlock()
	size := int64(-1) // missing
	if info, err := os.Stat(s.packs.path(num)); err == nil {
		size = info.Size()
	} else if !errors.Is(err, os.ErrNotExist) {
		return err
	}
	lo, hi := s.catalogRange()
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: hi})
	if err != nil {
		return err
	}
	b := s.db.NewBatch()
	defer b.Close()
	for ok := it.First(); ok; ok = it.Next() {
		loc, err := decodeLocation(it.Value())
		if err != nil || loc.pack != num || loc.off+int64(loc.size) <= size {
			continue
		}
		if err := b.Delete(it.Key(), nil); err != nil {
			it.Close()
			return err
		}
	}
	if err := it.Close(); err != nil {
		return err
	}
	return b.Commit(pebble.Sync)
}

// viewPebbleBlock is viewBlock for bytes held in Pebble.
func (s *Store) viewPebbleBlock(h mh.Multihash, seq uint64, f func([]byte) error) error {
	v, closer, err := s.db.Get(s.blockKey(seq))
	if errors.Is(err, pebble.ErrNotFound) {
		return fmt.Errorf("blobstore: catalogued block %s has no bytes: %w", h.B58String(), ErrNotFound)
	}
	if err != nil {
		return fmt.Errorf("blobstore: read block: %w", err)
	}
	defer closer.Close()
	return f(v)
}

// getBlock returns a copy of the block's bytes.
func (s *Store) getBlock(c cid.Cid) ([]byte, error) {
	var out []byte
	err := s.viewBlock(c.Hash(), func(v []byte) error {
		out = append([]byte(nil), v...)
		return nil
	})
	if errors.Is(err, ErrNotFound) {
		return nil, fmt.Errorf("block %s: %w", c, err)
	}
	return out, err
}

// deleteBlock removes a block's catalogue entry, and its bytes when they
// are in Pebble (bytes in a pack go at the next GC).
func (s *Store) deleteBlock(h mh.Multihash) error {
	loc, ok, err := s.lookup(h)
	if err != nil || !ok {
		return err
	}
	b := s.db.NewBatch()
	defer b.Close()
	if err := b.Delete(s.catalogKey(h), nil); err != nil {
		return err
	}
	if loc.pack == 0 {
		if err := b.Delete(s.blockKey(loc.seq), nil); err != nil {
			return err
		}
	}
	return b.Commit(pebble.NoSync)
}

// Blockstore returns a boxo blockstore.Blockstore view of the Store (for
// boxo components such as bitswap or a gateway). Its Put does not verify
// blocks; wrap it in blockstore.NewValidatingBlockstore if the source is
// untrusted. Writes through it are not synced individually.
func (s *Store) Blockstore() blockstore.Blockstore { return bstore{s} }

type bstore struct{ s *Store }

var (
	_ blockstore.Blockstore = bstore{}
	_ blockstore.Viewer     = bstore{}
)

func (b bstore) DeleteBlock(_ context.Context, c cid.Cid) error {
	b.s.gcMu.RLock()
	defer b.s.gcMu.RUnlock()
	return b.s.deleteBlock(c.Hash())
}

func (b bstore) Has(_ context.Context, c cid.Cid) (bool, error) { return b.s.hasBlock(c) }

func (b bstore) Get(_ context.Context, c cid.Cid) (blocks.Block, error) {
	data, err := b.s.getBlock(c)
	if errors.Is(err, ErrNotFound) {
		return nil, ipld.ErrNotFound{Cid: c}
	}
	if err != nil {
		return nil, err
	}
	return blocks.NewBlockWithCid(data, c)
}

func (b bstore) View(_ context.Context, c cid.Cid, f func([]byte) error) error {
	err := b.s.viewBlock(c.Hash(), f)
	if errors.Is(err, ErrNotFound) {
		return ipld.ErrNotFound{Cid: c}
	}
	return err
}

func (b bstore) GetSize(_ context.Context, c cid.Cid) (int, error) {
	n, ok, err := b.s.blockSize(c.Hash())
	if err != nil {
		return -1, err
	}
	if !ok {
		return -1, ipld.ErrNotFound{Cid: c}
	}
	return n, nil
}

func (b bstore) Put(ctx context.Context, blk blocks.Block) error {
	return b.PutMany(ctx, []blocks.Block{blk})
}

func (b bstore) PutMany(_ context.Context, blks []blocks.Block) error {
	b.s.gcMu.RLock()
	defer b.s.gcMu.RUnlock()
	k := b.s.newSink()
	for _, blk := range blks {
		if len(blk.RawData()) > MaxBlockSize {
			return fmt.Errorf("blobstore: block %s is %d bytes, over %d", blk.Cid(), len(blk.RawData()), MaxBlockSize)
		}
		held, err := b.s.hasBlock(blk.Cid())
		if err != nil {
			return err
		}
		if held {
			continue
		}
		if err := k.add(blk.Cid().Hash(), blk.RawData()); err != nil {
			return err
		}
	}
	return k.close(false)
}

// AllKeysChan lists stored blocks as CIDv1 with the raw codec (the store
// keys blocks by multihash only, as boxo's datastore blockstore does).
func (b bstore) AllKeysChan(ctx context.Context) (<-chan cid.Cid, error) {
	lo, hi := b.s.catalogRange()
	it, err := b.s.db.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: hi})
	if err != nil {
		return nil, err
	}
	out := make(chan cid.Cid, 64)
	go func() {
		defer close(out)
		defer it.Close()
		for ok := it.First(); ok; ok = it.Next() {
			h, err := mh.Cast(append([]byte(nil), it.Key()[len(lo):]...))
			if err != nil {
				continue
			}
			select {
			case out <- cid.NewCidV1(cid.Raw, h):
			case <-ctx.Done():
				return
			}
		}
	}()
	return out, nil
}
