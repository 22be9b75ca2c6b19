package blobstore

import (
	"bufio"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ipfs/go-cid"
	ipld "github.com/ipfs/go-ipld-format"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
)

// FetchStats reports what a Fetch did.
type FetchStats struct {
	Blocks     int   // distinct blocks of the DAG seen (all of them when the fetch completed)
	Held       int   // of which were already held before the fetch
	Fetched    int   // received, verified and stored by this fetch
	Bytes      int64 // bytes of the fetched blocks
	Duplicates int   // blocks received twice (end-game requests) and dropped
	Peers      map[peer.ID]PeerStats
}

// PeerStats is one peer's part in a fetch.
type PeerStats struct {
	Requested int   // CIDs asked of the peer
	Blocks    int   // valid blocks received from it
	Bytes     int64 // their bytes
	Missing   int   // CIDs it said it does not hold
	Err       error // why it was dropped (wraps ErrTamperedBlock, ErrBanned, ErrProtocol…); nil if it served to the end
}

// Banned lists the peers dropped for sending a tampered block or skipped
// because of an earlier one.
func (st FetchStats) Banned() []peer.ID {
	var out []peer.ID
	for p, ps := range st.Peers {
		if errors.Is(ps.Err, ErrTamperedBlock) || errors.Is(ps.Err, ErrBanned) {
			out = append(out, p)
		}
	}
	return out
}

// Fetch makes the DAG under root complete locally, asking peers for the
// blocks it lacks, several peers at once. Blocks already held are not asked
// for, so a Fetch that was cancelled or failed resumes where it stopped.
// Every block is verified against its CID; a peer sending a tampered block
// is dropped (and banned, see WithBanDuration) and the fetch goes on with
// the others. progress, if not nil, is called from one goroutine at a time
// with the bytes held so far and the DAG's total size (0 until the root is
// known). The blocks received are durable when Fetch returns, even on error.
// Fetch does not pin root.
func (s *Store) Fetch(ctx context.Context, root cid.Cid, peers []peer.ID, progress func(done, total int64)) (FetchStats, error) {
	if err := checkCID(root); err != nil {
		return FetchStats{}, fmt.Errorf("blobstore: fetch %s: %w", root, err)
	}
	if s.opts.host == nil {
		return FetchStats{}, ErrNoHost
	}
	s.gcMu.RLock()
	defer s.gcMu.RUnlock()
	if s.isClosed() {
		return FetchStats{}, ErrClosed
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	f := &fetch{
		s:        s,
		ctx:      ctx,
		cancel:   cancel,
		root:     root,
		progress: progress,
		seen:     make(map[string]struct{}),
		stats:    FetchStats{Peers: make(map[peer.ID]PeerStats)},
	}
	f.cond.L = &f.mu
	stop := context.AfterFunc(ctx, func() {
		f.mu.Lock()
		f.cond.Broadcast()
		f.mu.Unlock()
	})
	defer stop()

	self := s.opts.host.ID()
	for _, p := range peers {
		if _, dup := f.stats.Peers[p]; dup || p == self {
			continue
		}
		st := &PeerStats{}
		if s.isBanned(p) {
			st.Err = ErrBanned
			f.stats.Peers[p] = *st
			continue
		}
		f.stats.Peers[p] = PeerStats{}
		f.workers = append(f.workers, &worker{p: p, st: st, inflight: make(map[*want]struct{})})
	}
	defer func() {
		for _, w := range f.workers {
			f.stats.Peers[w.p] = *w.st
		}
	}()

	missing, err := f.discover([]*ipld.Link{{Cid: root}})
	if err != nil {
		return f.stats, err
	}
	f.report()
	if len(missing) == 0 {
		return f.stats, nil
	}
	f.mu.Lock()
	f.addWantsLocked(missing)
	err = f.err
	f.mu.Unlock()
	if err != nil {
		return f.stats, err
	}

	f.sink = s.newSink()
	f.sink.release = putBuf
	for _, w := range f.workers {
		f.wg.Go(func() { f.runWorker(w) })
	}
	f.wg.Wait()
	if err := f.sink.close(false); err != nil {
		f.mu.Lock()
		f.failLocked(fmt.Errorf("blobstore: fetch: store blocks: %w", err))
		f.mu.Unlock()
	}
	f.mu.Lock()
	if f.wake != nil {
		f.wake.Stop()
	}
	f.mu.Unlock()
	if f.wrote.Load() {
		// Durable even on error or cancellation, so that the next
		// fetch resumes from everything received.
		if err := s.syncWAL(); err != nil {
			f.mu.Lock()
			f.failLocked(err)
			f.mu.Unlock()
		}
	}

	f.mu.Lock()
	err, pending := f.err, f.pending
	f.mu.Unlock()
	switch {
	case err != nil:
		return f.stats, err
	case pending > 0:
		if err := ctx.Err(); err != nil {
			return f.stats, fmt.Errorf("blobstore: fetch %s: %w", root, err)
		}
		return f.stats, fmt.Errorf("blobstore: fetch %s: %d blocks missing: %w", root, pending, ErrNoPeers)
	}
	f.report()
	return f.stats, nil
}

func (s *Store) ban(p peer.ID) {
	if s.opts.banDuration <= 0 {
		return
	}
	s.mu.Lock()
	s.banned[p] = time.Now().Add(s.opts.banDuration)
	s.mu.Unlock()
}

func (s *Store) isBanned(p peer.ID) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	until, ok := s.banned[p]
	if ok && time.Now().After(until) {
		delete(s.banned, p)
		return false
	}
	return ok
}

// Banned lists the peers currently banned for having sent a tampered block.
func (s *Store) Banned() []peer.ID {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []peer.ID
	now := time.Now()
	for p, until := range s.banned {
		if now.Before(until) {
			out = append(out, p)
		}
	}
	return out
}

// want is a block the fetch lacks.
type want struct {
	c         cid.Cid
	digest    [32]byte
	done      bool      // received and verified
	requested time.Time // when the current request went out
	at        []*worker // workers it is requested from right now
	refused   []*worker // workers that said they do not hold it
}

type worker struct {
	p        peer.ID
	st       *PeerStats
	queue    []*want // assigned, not requested yet
	inflight map[*want]struct{}
	dead     bool
}

type fetch struct {
	s        *Store
	ctx      context.Context // cancelled as soon as the fetch is over
	cancel   context.CancelFunc
	root     cid.Cid
	progress func(done, total int64)
	wg       sync.WaitGroup

	total     atomic.Int64 // DAG size from the root's links
	heldBytes atomic.Int64 // held before, or shared subtrees counted once
	stored    atomic.Int64 // bytes written by the sink
	wrote     atomic.Bool  // the sink wrote something

	// sink stores the blocks of all workers: one stream of pack files,
	// so a fetch writes a pack per stageBytes, not per peer.
	sinkMu sync.Mutex
	sink   *sink

	progressMu sync.Mutex // progress is called by one goroutine at a time

	mu      sync.Mutex
	cond    sync.Cond
	seen    map[string]struct{} // multihashes discovered so far
	workers []*worker
	pending int // wants not done
	rr      int // round-robin cursor
	wake    *time.Timer
	wakeAt  time.Time
	err     error
	stats   FetchStats
}

// report calls progress.
func (f *fetch) report() {
	if f.progress == nil {
		return
	}
	f.progressMu.Lock()
	defer f.progressMu.Unlock()
	total := f.total.Load()
	done := f.heldBytes.Load() + f.stored.Load()
	if total > 0 && done > total {
		done = total
	}
	f.progress(done, total)
}

// discover walks the given links over the blocks held locally and returns
// wants for the blocks missing. Already discovered CIDs are skipped (their
// size counts as done: the first occurrence brings the bytes).
func (f *fetch) discover(links []*ipld.Link) ([]*want, error) {
	var missing []*want
	queue := links
	for len(queue) > 0 {
		l := queue[0]
		queue = queue[1:]
		if err := f.ctx.Err(); err != nil {
			return nil, err
		}
		h := string(l.Cid.Hash())
		f.mu.Lock()
		_, dup := f.seen[h]
		if !dup {
			f.seen[h] = struct{}{}
			f.stats.Blocks++
		}
		f.mu.Unlock()
		if dup {
			f.heldBytes.Add(int64(l.Size))
			continue
		}
		if err := checkCID(l.Cid); err != nil {
			return nil, fmt.Errorf("blobstore: fetch: %w", err)
		}
		size, held, err := f.s.blockSize(l.Cid.Hash())
		if err != nil {
			return nil, err
		}
		if !held {
			w := &want{c: l.Cid}
			copy(w.digest[:], l.Cid.Hash()[2:])
			missing = append(missing, w)
			continue
		}
		f.mu.Lock()
		f.stats.Held++
		f.mu.Unlock()
		f.heldBytes.Add(int64(size))
		if l.Cid.Type() != cid.DagProtobuf {
			if l.Cid.Equals(f.root) {
				f.total.Store(int64(size))
			}
			continue
		}
		data, err := f.s.getBlock(l.Cid)
		if err != nil {
			return nil, err
		}
		sub, err := dagLinks(l.Cid, data)
		if err != nil {
			return nil, err
		}
		f.noteRoot(l.Cid, data, sub)
		queue = append(queue, sub...)
	}
	return missing, nil
}

// noteRoot sets the total size once the root block is known.
func (f *fetch) noteRoot(c cid.Cid, data []byte, links []*ipld.Link) {
	if !c.Equals(f.root) {
		return
	}
	total := int64(len(data))
	for _, l := range links {
		total += int64(l.Size)
	}
	f.total.Store(total)
}

func (f *fetch) overLocked() bool {
	return f.err != nil || f.pending == 0 || f.ctx.Err() != nil
}

func (f *fetch) failLocked(err error) {
	if f.err == nil {
		f.err = err
	}
	f.cancel()
	f.cond.Broadcast()
}

// addWantsLocked hands new wants round-robin to the live workers.
func (f *fetch) addWantsLocked(ws []*want) {
	f.pending += len(ws)
	for _, x := range ws {
		f.assignLocked(x, true)
	}
	f.cond.Broadcast()
}

// assignLocked queues x at a live worker that has not refused it: the next
// in round-robin order (new wants) or the one with the shortest queue.
func (f *fetch) assignLocked(x *want, roundRobin bool) {
	var best *worker
	n := len(f.workers)
	for i := range n {
		w := f.workers[(f.rr+i)%n]
		if w.dead || refusedBy(x, w) {
			continue
		}
		if roundRobin {
			best = w
			f.rr = (f.rr + i + 1) % n
			break
		}
		if best == nil || len(w.queue) < len(best.queue) {
			best = w
		}
	}
	if best == nil {
		f.failLocked(f.noPeersErrLocked(x))
		return
	}
	best.queue = append(best.queue, x)
}

func (f *fetch) noPeersErrLocked(x *want) error {
	errs := []error{fmt.Errorf("blobstore: fetch %s: block %s: %w", f.root, x.c, ErrNoPeers)}
	for _, w := range f.workers {
		if w.st.Err != nil {
			errs = append(errs, &PeerError{Peer: w.p, Err: w.st.Err})
		}
	}
	return errors.Join(errs...)
}

func refusedBy(x *want, w *worker) bool {
	for _, r := range x.refused {
		if r == w {
			return true
		}
	}
	return false
}

func (x *want) dropRequest(w *worker) {
	for i, r := range x.at {
		if r == w {
			x.at = append(x.at[:i], x.at[i+1:]...)
			return
		}
	}
}

// take returns the next CIDs for w to request, waiting for work; nil when
// the fetch is over or w was dropped.
func (f *fetch) take(w *worker, max int) []*want {
	f.mu.Lock()
	defer f.mu.Unlock()
	for {
		if f.overLocked() || w.dead {
			return nil
		}
		batch := f.popLocked(w, max)
		// An idle worker (own queue empty, nothing in flight) steals
		// queued work first, then, in the end game, work in flight.
		if len(batch) == 0 && len(w.inflight) == 0 {
			batch = f.stealLocked(w, max)
		}
		if len(batch) == 0 && len(w.inflight) == 0 {
			batch = f.endgameLocked(w, max)
		}
		if len(batch) > 0 {
			now := time.Now()
			for _, x := range batch {
				if len(x.at) == 0 {
					x.requested = now
				}
				x.at = append(x.at, w)
				w.inflight[x] = struct{}{}
			}
			w.st.Requested += len(batch)
			return batch
		}
		f.cond.Wait()
	}
}

func (f *fetch) popLocked(w *worker, max int) []*want {
	var batch []*want
	for len(w.queue) > 0 && len(batch) < max {
		x := w.queue[0]
		w.queue = w.queue[1:]
		if !x.done && len(x.at) == 0 {
			batch = append(batch, x)
		}
	}
	return batch
}

// stealLocked moves up to half the queue of the busiest other worker to w.
func (f *fetch) stealLocked(w *worker, max int) []*want {
	var victim *worker
	for _, v := range f.workers {
		if v != w && !v.dead && len(v.queue) > 0 && (victim == nil || len(v.queue) > len(victim.queue)) {
			victim = v
		}
	}
	if victim == nil {
		return nil
	}
	k := min(max, (len(victim.queue)+1)/2)
	var batch []*want
	keep := victim.queue[:0:0]
	for i := len(victim.queue) - 1; i >= 0; i-- {
		x := victim.queue[i]
		switch {
		case x.done || len(x.at) > 0:
		case len(batch) < k && !refusedBy(x, w):
			batch = append(batch, x)
		default:
			keep = append(keep, x)
		}
	}
	// keep was built back to front.
	for i, j := 0, len(keep)-1; i < j; i, j = i+1, j-1 {
		keep[i], keep[j] = keep[j], keep[i]
	}
	victim.queue = keep
	return batch
}

// endgameLocked asks idle w for blocks requested from a single other
// worker at least stallAfter ago, so that a slow or stalled peer does not
// hold up the end of the fetch. If some will qualify later, it arms a timer
// to wake the waiting workers then.
func (f *fetch) endgameLocked(w *worker, max int) []*want {
	var batch []*want
	now := time.Now()
	var next time.Time
	for _, v := range f.workers {
		if v == w || v.dead {
			continue
		}
		for x := range v.inflight {
			if len(batch) == max {
				return batch
			}
			if x.done || len(x.at) != 1 || refusedBy(x, w) {
				continue
			}
			if due := x.requested.Add(f.s.opts.stallAfter); due.After(now) {
				if next.IsZero() || due.Before(next) {
					next = due
				}
				continue
			}
			batch = append(batch, x)
		}
	}
	if len(batch) == 0 && !next.IsZero() && (f.wake == nil || f.wakeAt.After(next)) {
		if f.wake != nil {
			f.wake.Stop()
		}
		f.wakeAt = next
		f.wake = time.AfterFunc(next.Sub(now), func() {
			f.mu.Lock()
			f.wake = nil
			f.cond.Broadcast()
			f.mu.Unlock()
		})
	}
	return batch
}

// refused records that w does not hold x.
func (f *fetch) refused(w *worker, x *want) {
	f.mu.Lock()
	defer f.mu.Unlock()
	w.st.Missing++
	f.unrequestLocked(w, x)
	x.refused = append(x.refused, w)
	if !x.done && len(x.at) == 0 && !f.overLocked() {
		f.assignLocked(x, false)
	}
	f.cond.Broadcast()
}

func (f *fetch) unrequestLocked(w *worker, x *want) {
	x.dropRequest(w)
	delete(w.inflight, x)
}

// drop takes w out of the fetch and gives its work to the others.
func (f *fetch) drop(w *worker, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if w.dead {
		return
	}
	w.dead = true
	if f.overLocked() {
		return // the fetch ended; streams are torn down on purpose
	}
	if w.st.Err == nil {
		w.st.Err = err
	}
	requeue := w.queue
	w.queue = nil
	for x := range w.inflight {
		x.dropRequest(w)
		if len(x.at) == 0 {
			requeue = append(requeue, x)
		}
	}
	clear(w.inflight)
	for _, x := range requeue {
		if !x.done && f.err == nil {
			f.assignLocked(x, false)
		}
	}
	f.cond.Broadcast()
}

// receive verifies a block w sent for x and moves the fetch on.
func (f *fetch) receive(w *worker, x *want, data []byte) error {
	if sha256.Sum256(data) != x.digest {
		putBuf(data)
		f.s.ban(w.p)
		return fmt.Errorf("block %s: %w", x.c, ErrTamperedBlock)
	}
	f.mu.Lock()
	f.unrequestLocked(w, x)
	w.st.Blocks++
	w.st.Bytes += int64(len(data))
	if x.done {
		f.stats.Duplicates++
		f.mu.Unlock()
		putBuf(data)
		return nil
	}
	x.done = true
	f.mu.Unlock()

	// Decode the links before the sink takes the buffer back.
	links, err := dagLinks(x.c, data)
	if err == nil {
		f.noteRoot(x.c, data, links)
		if x.c.Type() == cid.Raw && x.c.Equals(f.root) {
			f.total.Store(int64(len(data)))
		}
	}
	size := int64(len(data))
	f.sinkMu.Lock()
	serr := f.sink.add(x.c.Hash(), data)
	f.sinkMu.Unlock()
	if serr != nil {
		err = fmt.Errorf("blobstore: fetch: store block: %w", serr)
	} else {
		f.wrote.Store(true)
		f.stored.Add(size)
		f.report()
	}
	var missing []*want
	if err == nil {
		missing, err = f.discover(links)
	}

	f.mu.Lock()
	defer f.mu.Unlock()
	if err != nil {
		// The block hashes right, so its content is the blob's (or the
		// disk failed): no other peer can do better.
		if f.ctx.Err() == nil {
			f.failLocked(err)
		}
		return nil
	}
	f.addWantsLocked(missing)
	f.pending--
	f.stats.Fetched++
	f.stats.Bytes += size
	if f.pending == 0 {
		f.cancel() // stop the workers and their outstanding requests
		f.cond.Broadcast()
	}
	return nil
}

func (f *fetch) runWorker(w *worker) {
	str, err := f.s.opts.host.NewStream(f.ctx, w.p, ProtocolID)
	if err != nil {
		f.drop(w, &PeerError{Peer: w.p, Err: err})
		return
	}
	window := f.s.opts.window
	slots := make(chan struct{}, window)
	batches := make(chan []*want, window)
	readerDone := make(chan struct{})
	go func() {
		defer close(readerDone)
		if err := f.readLoop(w, str, batches, slots); err != nil {
			f.drop(w, err)
			_ = str.Reset()
		}
	}()

	bw := bufio.NewWriterSize(str, 4<<10)
	var buf []byte
	var cids []cid.Cid
loop:
	for {
		select {
		case slots <- struct{}{}:
		case <-readerDone:
			break loop
		case <-f.ctx.Done():
			break loop
		}
		batch := f.take(w, f.s.opts.batchSize)
		if batch == nil {
			break
		}
		cids = cids[:0]
		for _, x := range batch {
			cids = append(cids, x.c)
		}
		buf = appendRequest(buf[:0], cids)
		_, err := bw.Write(buf)
		if err == nil {
			err = bw.Flush()
		}
		if err != nil {
			f.drop(w, err)
			break
		}
		batches <- batch
	}
	close(batches)
	// The fetch is over or this peer is out: outstanding answers are not
	// needed any more.
	_ = str.Reset()
	<-readerDone
}

func (f *fetch) readLoop(w *worker, str network.Stream, batches <-chan []*want, slots <-chan struct{}) error {
	br := bufio.NewReaderSize(str, 64<<10)
	for batch := range batches {
		for _, x := range batch {
			data, held, err := readBlockInto(br, getBuf)
			if err != nil {
				return err
			}
			if !held {
				f.refused(w, x)
				continue
			}
			if err := f.receive(w, x, data); err != nil {
				return err
			}
		}
		<-slots
	}
	return nil
}

// Receive buffers for blocks of the usual size (ChunkSize), reused once the
// block is stored: a fetch goes through hundreds of them.
var bufPool = sync.Pool{New: func() any { return new([ChunkSize]byte) }}

func getBuf(n int) []byte {
	if n != ChunkSize {
		return make([]byte, n)
	}
	return bufPool.Get().(*[ChunkSize]byte)[:]
}

func putBuf(b []byte) {
	if len(b) == ChunkSize && cap(b) == ChunkSize {
		bufPool.Put((*[ChunkSize]byte)(b))
	}
}
