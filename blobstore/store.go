package blobstore

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/cockroachdb/pebble"
	"github.com/ipfs/boxo/blockstore"
	blocks "github.com/ipfs/go-block-format"
	"github.com/ipfs/go-cid"
	ipld "github.com/ipfs/go-ipld-format"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	mh "github.com/multiformats/go-multihash"
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
	ChunkSize = 1 << 20
	// MaxLinks is the widest internal node Put builds (IPIP-499 unixfs-v1-2025).
	MaxLinks = 1024
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

	// writeBatchBytes is when Put and Fetch commit an intermediate batch.
	writeBatchBytes = 8 << 20
)

// Option configures a Store.
type Option func(*options)

type options struct {
	host        host.Host
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

// WithBanDuration sets how long a peer that sent a tampered block is skipped
// by later fetches (default DefaultBanDuration; negative disables bans
// beyond the fetch where it happened).
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
	return nil
}

func (s *Store) key(kind byte, rest []byte) []byte {
	k := make([]byte, 0, len(s.prefix)+1+len(rest))
	k = append(k, s.prefix...)
	k = append(k, kind)
	return append(k, rest...)
}

func (s *Store) blockKey(h mh.Multihash) []byte   { return s.key(kindBlock, h) }
func (s *Store) catalogKey(h mh.Multihash) []byte { return s.key(kindCatalog, h) }

// blobRange is the key range holding blocks and the catalogue.
func (s *Store) blobRange() (lo, hi []byte) {
	return s.key(kindBlock, nil), s.key(kindCatalog+1, nil)
}

// hasBlock reports whether the block is stored (catalogue lookup: the block
// itself is not read).
func (s *Store) hasBlock(c cid.Cid) (bool, error) {
	_, ok, err := s.blockSize(c.Hash())
	return ok, err
}

func (s *Store) blockSize(h mh.Multihash) (int, bool, error) {
	v, closer, err := s.db.Get(s.catalogKey(h))
	if errors.Is(err, pebble.ErrNotFound) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, fmt.Errorf("blobstore: read catalogue: %w", err)
	}
	defer closer.Close()
	n, k := binary.Uvarint(v)
	if k <= 0 {
		return 0, false, fmt.Errorf("blobstore: corrupt catalogue entry for %s", h.B58String())
	}
	return int(n), true, nil
}

// getBlock returns a copy of the block's bytes.
func (s *Store) getBlock(c cid.Cid) ([]byte, error) {
	v, closer, err := s.db.Get(s.blockKey(c.Hash()))
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, fmt.Errorf("block %s: %w", c, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("blobstore: read block %s: %w", c, err)
	}
	out := append([]byte(nil), v...)
	closer.Close()
	return out, nil
}

// setBlock adds a block and its catalogue entry to b.
func (s *Store) setBlock(b *pebble.Batch, h mh.Multihash, data []byte) error {
	if err := b.Set(s.blockKey(h), data, nil); err != nil {
		return err
	}
	var sz [binary.MaxVarintLen64]byte
	n := binary.PutUvarint(sz[:], uint64(len(data)))
	return b.Set(s.catalogKey(h), sz[:n], nil)
}

func (s *Store) deleteBlock(b *pebble.Batch, h mh.Multihash) error {
	if err := b.Delete(s.blockKey(h), nil); err != nil {
		return err
	}
	return b.Delete(s.catalogKey(h), nil)
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
	batch := b.s.db.NewBatch()
	defer batch.Close()
	if err := b.s.deleteBlock(batch, c.Hash()); err != nil {
		return err
	}
	return batch.Commit(pebble.NoSync)
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
	v, closer, err := b.s.db.Get(b.s.blockKey(c.Hash()))
	if errors.Is(err, pebble.ErrNotFound) {
		return ipld.ErrNotFound{Cid: c}
	}
	if err != nil {
		return err
	}
	defer closer.Close()
	return f(v)
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
	batch := b.s.db.NewBatch()
	defer batch.Close()
	for _, blk := range blks {
		if len(blk.RawData()) > MaxBlockSize {
			return fmt.Errorf("blobstore: block %s is %d bytes, over %d", blk.Cid(), len(blk.RawData()), MaxBlockSize)
		}
		if err := b.s.setBlock(batch, blk.Cid().Hash(), blk.RawData()); err != nil {
			return err
		}
	}
	return batch.Commit(pebble.NoSync)
}

// AllKeysChan lists stored blocks as CIDv1 with the raw codec (the store
// keys blocks by multihash only, as boxo's datastore blockstore does).
func (b bstore) AllKeysChan(ctx context.Context) (<-chan cid.Cid, error) {
	lo := b.s.key(kindCatalog, nil)
	it, err := b.s.db.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: b.s.key(kindCatalog+1, nil)})
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
