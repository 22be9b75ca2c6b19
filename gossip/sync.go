package gossip

import (
	"bufio"
	"container/heap"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"

	"aura/crdt"
)

// SyncProtocol is the anti-entropy stream protocol.
const SyncProtocol = protocol.ID("/aura/sync/1")

// ErrNeedsRestore is wrapped by the *RestoreNeeded a sync returns when the
// peer pruned facts this node lacks: they can no longer be sent, and the
// node must restore from the newest snapshot before it can catch up on
// those authors. Test with errors.Is; get the details with errors.As.
var ErrNeedsRestore = errors.New("behind a peer's pruned frontier: restore from a snapshot")

// RestoreNeeded reports the authors for which this node is below a peer's
// pruned floor. Everything else of the session was exchanged.
type RestoreNeeded struct {
	Peer   peer.ID
	Behind []Behind
}

// Behind is one author for which a restore is needed.
type Behind struct {
	Author   crdt.DeviceID
	Have     uint64 // this node's version vector entry
	PrunedTo uint64 // the peer's pruned floor
}

func (e *RestoreNeeded) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "sync with %s: %v:", e.Peer, ErrNeedsRestore)
	for i, x := range e.Behind {
		if i == 4 {
			fmt.Fprintf(&b, " and %d more", len(e.Behind)-i)
			break
		}
		fmt.Fprintf(&b, " %s has %d, peer pruned to %d;", x.Author.Short(), x.Have, x.PrunedTo)
	}
	return strings.TrimSuffix(b.String(), ";")
}

func (e *RestoreNeeded) Unwrap() error { return ErrNeedsRestore }

// SyncStats are the figures of one session, from this node's side.
type SyncStats struct {
	FactsIn    uint64 // facts newly stored
	FactsOut   uint64 // facts sent
	BytesIn    uint64 // stream bytes read (frames)
	BytesOut   uint64 // stream bytes written
	Duplicates uint64 // received facts already held
	Rejected   uint64 // received facts Ingest refused
}

// SyncEvent describes a finished session, for Config.OnSync.
type SyncEvent struct {
	Peer     peer.ID
	Outbound bool   // this node opened the session
	Reason   string // "join", "gap", "periodic", "request" (SyncWith) or "inbound"
	Stats    SyncStats
	Duration time.Duration
	Err      error // nil, a *RestoreNeeded, or what failed
}

// syncer schedules and runs sessions.
type syncer struct {
	g       *Gossip
	inbound chan struct{} // semaphore of inbound sessions

	notYet atomic.Uint64 // gossip facts left out because their dependencies were missing

	mu        sync.Mutex
	stopped   bool
	lastStart map[peer.ID]time.Time     // last session start with the peer, either direction
	timers    map[peer.ID]*time.Timer   // scheduled syncs, one per peer
	outbound  map[peer.ID]chan struct{} // one outbound session per peer at a time
}

func (s *syncer) init(g *Gossip) {
	s.g = g
	s.inbound = make(chan struct{}, g.cfg.MaxInboundSyncs)
	s.lastStart = map[peer.ID]time.Time{}
	s.timers = map[peer.ID]*time.Timer{}
	s.outbound = map[peer.ID]chan struct{}{}
}

// enter registers a goroutine with the Gossip's wait group, unless it is
// closing.
func (s *syncer) enter() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped {
		return false
	}
	s.g.wg.Add(1)
	return true
}

func (s *syncer) stopTimers() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stopped = true
	for p, t := range s.timers {
		t.Stop()
		delete(s.timers, p)
	}
}

func (s *syncer) started(p peer.ID) {
	s.mu.Lock()
	s.lastStart[p] = time.Now()
	s.mu.Unlock()
}

// schedule starts a session with p after delay, unless one is scheduled
// already, a session with p (either direction) starts in the meantime, or
// need (if not nil) says at that time that it is not needed any more.
func (s *syncer) schedule(p peer.ID, delay time.Duration, reason string, need func() bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped || s.timers[p] != nil || p == s.g.self {
		return
	}
	requested := time.Now()
	s.timers[p] = time.AfterFunc(delay, func() {
		s.mu.Lock()
		delete(s.timers, p)
		if s.stopped {
			s.mu.Unlock()
			return
		}
		if s.lastStart[p].After(requested) || (need != nil && !need()) {
			s.mu.Unlock()
			s.g.m.skipped.Add(1)
			return
		}
		s.g.wg.Add(1)
		s.mu.Unlock()
		defer s.g.wg.Done()
		_, _ = s.g.syncWith(s.g.ctx, p, reason)
	})
}

// gapSeen asks for a sync with p soon: gossip from p showed facts this
// node cannot place yet (notYet: facts whose dependencies are missing;
// else facts held ahead of a gap). Gossip delivers messages out of order
// now and then, so the sync starts only if, after GapSyncDelay, facts are
// still pending or more facts were left out.
func (s *syncer) gapSeen(p peer.ID, notYet bool) {
	if s.g.cfg.GapSyncDelay < 0 || p == "" {
		return
	}
	if notYet {
		s.notYet.Add(1)
	}
	seen := s.notYet.Load()
	st := s.g.j.Store()
	s.schedule(p, s.g.cfg.GapSyncDelay, "gap", func() bool {
		return st.Stats().Pending > 0 || s.notYet.Load() != seen || notYet
	})
}

// peerEventLoop syncs with peers as they join the topic: the peer with
// the lower id opens the session at once, the other one only if no session
// started within JoinSyncGrace.
func (s *syncer) peerEventLoop() {
	g := s.g
	defer g.wg.Done()
	for {
		ev, err := g.evh.NextPeerEvent(g.ctx)
		if err != nil {
			return
		}
		if ev.Type != pubsub.PeerJoin || g.cfg.DisableSyncOnJoin {
			continue
		}
		delay := time.Duration(0)
		if g.self > ev.Peer {
			delay = g.cfg.JoinSyncGrace
		}
		s.schedule(ev.Peer, delay, "join", nil)
	}
}

// periodicLoop syncs with one topic peer every SyncInterval ±25 %: the
// one tried least recently, so every peer gets its turn.
func (s *syncer) periodicLoop() {
	g := s.g
	defer g.wg.Done()
	if g.cfg.SyncInterval < 0 {
		return
	}
	rng := g.cfg.Rand
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	tried := map[peer.ID]time.Time{}
	inflight := map[peer.ID]bool{}
	done := make(chan peer.ID, 16)
	for {
		base := float64(g.cfg.SyncInterval)
		timer.Reset(time.Duration(base * (0.75 + 0.5*rng.Float64())))
	wait:
		for {
			select {
			case <-g.ctx.Done():
				return
			case q := <-done:
				delete(inflight, q)
				continue
			case <-timer.C:
				break wait
			}
		}
		peers := g.topic.ListPeers()
		if len(peers) == 0 {
			continue
		}
		// The peer tried least recently (ties drawn at random), in a
		// goroutine of its own: a peer that went away without closing
		// its connection holds its session until the idle timeout, and
		// must not hold up anti-entropy with the peers that remain.
		rng.Shuffle(len(peers), func(i, j int) { peers[i], peers[j] = peers[j], peers[i] })
		var p peer.ID
		for _, q := range peers {
			if inflight[q] {
				continue
			}
			if p == "" || tried[q].Before(tried[p]) {
				p = q
			}
		}
		if p == "" {
			continue
		}
		tried[p] = time.Now()
		inflight[p] = true
		g.wg.Add(1)
		go func() {
			defer g.wg.Done()
			_, _ = g.syncWith(g.ctx, p, "periodic")
			select {
			case done <- p:
			case <-g.ctx.Done():
			}
		}()
	}
}

// SyncWith runs one anti-entropy session with p: both sides send their
// version vectors and each streams the facts the other lacks. It returns
// this side's figures; the error is a *RestoreNeeded (errors.Is
// ErrNeedsRestore) when p pruned facts this node lacks, after everything
// else was exchanged. Sessions with one peer run one at a time.
func (g *Gossip) SyncWith(ctx context.Context, p peer.ID) (SyncStats, error) {
	if !g.syn.enter() {
		return SyncStats{}, ErrClosed
	}
	defer g.wg.Done()
	return g.syncWith(ctx, p, "request")
}

func (g *Gossip) syncWith(ctx context.Context, p peer.ID, reason string) (SyncStats, error) {
	switch reason {
	case "join":
		g.m.onJoin.Add(1)
	case "gap":
		g.m.onGap.Add(1)
	case "periodic":
		g.m.periodic.Add(1)
	default:
		g.m.onDemand.Add(1)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(g.ctx, cancel)
	defer stop()

	s := &g.syn
	s.mu.Lock()
	sem := s.outbound[p]
	if sem == nil {
		sem = make(chan struct{}, 1)
		s.outbound[p] = sem
	}
	s.mu.Unlock()
	select {
	case sem <- struct{}{}:
	case <-ctx.Done():
		return SyncStats{}, ctx.Err()
	}
	defer func() { <-sem }()

	start := time.Now()
	s.started(p)
	var stats SyncStats
	str, err := g.h.NewStream(ctx, p, SyncProtocol)
	if err == nil {
		stats, err = g.session(ctx, str, p, true)
	} else {
		err = fmt.Errorf("open sync stream to %s: %w", p, err)
	}
	g.finish(SyncEvent{Peer: p, Outbound: true, Reason: reason, Stats: stats, Duration: time.Since(start), Err: err})
	return stats, err
}

// handleStream serves a session a peer opened.
func (s *syncer) handleStream(str network.Stream) {
	g := s.g
	if !s.enter() {
		_ = str.Reset()
		return
	}
	defer g.wg.Done()
	select {
	case s.inbound <- struct{}{}:
	default:
		g.log.Warn("too many inbound sync sessions; refusing one", "peer", str.Conn().RemotePeer())
		_ = str.Reset()
		return
	}
	defer func() { <-s.inbound }()
	p := str.Conn().RemotePeer()
	start := time.Now()
	s.started(p)
	stats, err := g.session(g.ctx, str, p, false)
	g.finish(SyncEvent{Peer: p, Reason: "inbound", Stats: stats, Duration: time.Since(start), Err: err})
}

// finish accounts for a finished session.
func (g *Gossip) finish(ev SyncEvent) {
	m := &g.m
	m.syncIn.Add(ev.Stats.FactsIn)
	m.syncOut.Add(ev.Stats.FactsOut)
	m.syncBytesIn.Add(ev.Stats.BytesIn)
	m.syncBytesOut.Add(ev.Stats.BytesOut)
	var rn *RestoreNeeded
	switch {
	case ev.Err == nil:
		m.sessions.Add(1)
		m.lastSync.Store(time.Now().UnixNano())
		m.lastOK.Store(true)
		g.log.Debug("synced", "peer", ev.Peer, "reason", ev.Reason, "in", ev.Stats.FactsIn, "out", ev.Stats.FactsOut,
			"duration", ev.Duration)
	case errors.As(ev.Err, &rn):
		m.sessions.Add(1)
		m.restores.Add(1)
		m.lastSync.Store(time.Now().UnixNano())
		m.lastOK.Store(true)
		g.log.Warn("sync: restore from a snapshot needed", "peer", ev.Peer, "authors", len(rn.Behind), "err", ev.Err)
	default:
		m.syncErrs.Add(1)
		m.lastOK.Store(false)
		if g.ctx.Err() == nil {
			g.log.Info("sync failed", "peer", ev.Peer, "reason", ev.Reason, "err", ev.Err)
		}
	}
	if g.cfg.OnSync != nil {
		g.cfg.OnSync(ev)
	}
}

// countReader and countWriter count the bytes of a stream.
type countReader struct {
	r io.Reader
	n uint64
}

func (c *countReader) Read(b []byte) (int, error) {
	n, err := c.r.Read(b)
	c.n += uint64(n)
	return n, err
}

type countWriter struct {
	w io.Writer
	n uint64
}

func (c *countWriter) Write(b []byte) (int, error) {
	n, err := c.w.Write(b)
	c.n += uint64(n)
	return n, err
}

// session runs one session on str. Both sides send HELLO (the opener
// first, so that a responder of another account can refuse before it
// reveals anything), then both send FACTS frames and END concurrently,
// and each ingests what it reads, one frame at a time.
func (g *Gossip) session(ctx context.Context, str network.Stream, p peer.ID, opener bool) (stats SyncStats, err error) {
	stop := context.AfterFunc(ctx, func() { _ = str.Reset() })
	defer stop()
	cr := &countReader{r: str}
	cw := &countWriter{w: str}
	refused := false // we sent ERROR: close gracefully so that it arrives
	defer func() {
		stats.BytesIn, stats.BytesOut = cr.n, cw.n
		var rn *RestoreNeeded
		if err != nil && !refused && !errors.As(err, &rn) {
			_ = str.Reset()
			if ctx.Err() != nil && !errors.Is(err, ErrProtocol) {
				err = fmt.Errorf("sync with %s: %w (%v)", p, ctx.Err(), err)
			}
		} else {
			_ = str.Close()
		}
	}()
	idle := g.cfg.SyncIdleTimeout
	fr := newFrameReader(cr)
	fw := &frameWriter{w: bufio.NewWriterSize(cw, 64<<10)}
	flush := func() error {
		_ = str.SetWriteDeadline(time.Now().Add(idle))
		return fw.w.Flush()
	}

	mine, err := g.makeHello()
	if err != nil {
		return stats, err
	}
	mineBytes, err := encodeHello(mine)
	if err != nil {
		return stats, fmt.Errorf("encode hello: %w", err)
	}
	sendHello := func() error {
		if err := fw.write(frameHello, mineBytes); err != nil {
			return err
		}
		return flush()
	}
	if opener {
		if err := sendHello(); err != nil {
			return stats, fmt.Errorf("sync with %s: send hello: %w", p, err)
		}
	}
	_ = str.SetReadDeadline(time.Now().Add(idle))
	typ, payload, err := fr.next()
	if err != nil {
		return stats, fmt.Errorf("sync with %s: read hello: %w", p, err)
	}
	f, err := parseFrame(typ, payload)
	if err != nil {
		return stats, fmt.Errorf("sync with %s: %w", p, err)
	}
	switch {
	case f.typ == frameError:
		return stats, fmt.Errorf("sync with %s: %w: %q", p, ErrPeerRefused, f.text)
	case f.typ != frameHello:
		return stats, fmt.Errorf("sync with %s: %w: frame %d before hello", p, ErrProtocol, f.typ)
	case f.hello.Account != g.account:
		if !opener {
			_ = fw.write(frameError, []byte("wrong account"))
			refused = flush() == nil
		}
		return stats, fmt.Errorf("sync with %s: peer is in account %s: %w", p, f.hello.Account, crdt.ErrWrongAccount)
	}
	theirs := f.hello
	if !opener {
		if err := sendHello(); err != nil {
			return stats, fmt.Errorf("sync with %s: send hello: %w", p, err)
		}
	}

	sent := make(chan error, 1)
	go func() {
		n, err := g.sendMissing(fw, flush, mine, theirs)
		stats.FactsOut = n
		if err == nil {
			err = str.CloseWrite()
		}
		if err != nil {
			_ = str.Reset() // unblocks the reader
		}
		sent <- err
	}()
	rerr := g.receive(str, fr, idle, &stats)
	if rerr != nil {
		_ = str.Reset() // unblocks the sender
	}
	serr := <-sent
	if rerr != nil {
		return stats, fmt.Errorf("sync with %s: receive: %w", p, rerr)
	}
	if serr != nil {
		return stats, fmt.Errorf("sync with %s: send: %w", p, serr)
	}
	if behind := behindFloors(mine, theirs); len(behind) > 0 {
		return stats, &RestoreNeeded{Peer: p, Behind: behind}
	}
	return stats, nil
}

// makeHello describes what this node holds (crdt.Summarize).
func (g *Gossip) makeHello() (*hello, error) {
	sum, err := crdt.Summarize(g.j.Store(), maxHelloEvidence)
	if err != nil {
		return nil, err
	}
	return &hello{Version: syncVersion, Account: g.account, VV: sum.VV, Pruned: sum.Pruned, Evidence: sum.Evidence, Heads: sum.Heads}, nil
}

func (h *hello) summary() *crdt.Summary {
	return &crdt.Summary{VV: h.VV, Pruned: h.Pruned, Heads: h.Heads, Evidence: h.Evidence}
}

// behindFloors lists the authors for which mine is below theirs' pruned
// floor.
func behindFloors(mine, theirs *hello) []Behind {
	var out []Behind
	for _, a := range crdt.Behind(mine.summary(), theirs.summary()) {
		out = append(out, Behind{Author: a, Have: mine.VV[a], PrunedTo: theirs.Pruned[a]})
	}
	return out
}

// receive reads frames until END and ingests FACTS frames in order. A
// reader goroutine decodes the next frame and checks its signatures while
// the current one is ingested; it holds at most one decoded frame ahead,
// so memory stays bounded and the sender is held back by the stream's
// flow control when ingest is slower than the wire.
func (g *Gossip) receive(str network.Stream, fr *frameReader, idle time.Duration, stats *SyncStats) error {
	type item struct {
		f   frame
		err error
	}
	items := make(chan item, 1)
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		defer close(items)
		for {
			_ = str.SetReadDeadline(time.Now().Add(idle))
			typ, payload, err := fr.next()
			var f frame
			if err == nil {
				if f, err = parseFrame(typ, payload); err != nil {
					g.m.reject(reasonOf(err))
				}
			} else if errors.Is(err, io.EOF) {
				err = fmt.Errorf("%w: stream ended before END", ErrProtocol)
			}
			if err == nil && f.typ == frameFacts {
				preverify(f.facts, g.j.Store().VersionVector())
			}
			select {
			case items <- item{f, err}:
			case <-done:
				return
			}
			if err != nil || f.typ == frameEnd || f.typ == frameError || f.typ == frameHello {
				return
			}
		}
	})
	defer func() {
		close(done)
		_ = str.SetReadDeadline(time.Now()) // unblocks the reader if it still reads
		wg.Wait()
	}()

	var received uint64
	for it := range items {
		if it.err != nil {
			return it.err
		}
		f := it.f
		switch f.typ {
		case frameFacts:
			received += uint64(len(f.facts))
			res, err := g.j.Ingest(f.facts)
			if err != nil {
				g.m.ingestErrors.Add(1)
				return fmt.Errorf("ingest %d facts: %w", len(f.facts), err)
			}
			stats.FactsIn += uint64(len(res.Added))
			stats.Duplicates += uint64(res.Duplicates)
			stats.Rejected += uint64(len(res.Rejected))
			g.m.countIngestRejections(res.Rejected)
			if len(res.Rejected) > 0 {
				r := res.Rejected[0]
				g.log.Debug("sync: facts refused", "count", len(res.Rejected), "first", r.Author.Short(), "seq", r.Seq, "err", r.Err)
			}
		case frameEnd:
			if f.count != received {
				return fmt.Errorf("%w: END says %d facts, received %d", ErrProtocol, f.count, received)
			}
			return nil
		case frameError:
			return fmt.Errorf("%w: %q", ErrPeerRefused, f.text)
		case frameHello:
			return fmt.Errorf("%w: second hello", ErrProtocol)
		}
	}
	return fmt.Errorf("%w: no END", ErrProtocol)
}

// preverify checks the signatures of the facts that are likely new (above
// the version vector) in parallel, outside the journal's write path, and
// marks them verified so that Ingest does not check them again. Failures
// are left to Ingest, which rejects those facts.
func preverify(fs []*crdt.Fact, vv crdt.VersionVector) {
	fresh := make([]*crdt.Fact, 0, len(fs))
	for _, f := range fs {
		if f.Seq > vv[f.Author] {
			fresh = append(fresh, f)
		}
	}
	_ = crdt.VerifyFacts(fresh)
}

// sendMissing streams the facts theirs lacks: per author, the chain facts
// with seq in (theirs.VV, mine.VV], merged across authors in causal order
// (Lamport, author, seq) so that a fact never arrives before the facts its
// author had seen (a DeviceAdded before the new device's writes); then the
// equivocation evidence they lack; then END. Authors for which theirs is
// below our pruned floor are skipped: that side learns it from our HELLO.
func (g *Gossip) sendMissing(fw *frameWriter, flush func() error, mine, theirs *hello) (uint64, error) {
	st := g.j.Store()
	ranges, evidence, err := crdt.PlanSync(st, mine.summary(), theirs.summary())
	if err != nil {
		return 0, err
	}
	var cursors cursorHeap
	chunk := uint64(64 << 10 / max(1, len(ranges)))
	chunk = min(max(chunk, 16), 1024)
	for _, r := range ranges {
		c := &cursor{author: r.Author, next: r.From, to: r.To, chunk: chunk}
		if err := c.fill(st); err != nil {
			return 0, err
		}
		if c.head() != nil {
			cursors = append(cursors, c)
		}
	}
	heap.Init(&cursors)

	var (
		sent  uint64
		batch []*crdt.Fact
		size  = 1 // the array head, at most 3 bytes for ≤ 1024 entries
		buf   []byte
	)
	emit := func() error {
		if len(batch) == 0 {
			return nil
		}
		buf = appendBatch(buf[:0], batch)
		if err := fw.write(frameFacts, buf); err != nil {
			return err
		}
		sent += uint64(len(batch))
		batch, size = batch[:0], 1
		return flush()
	}
	add := func(f *crdt.Fact) error {
		n := batchEntrySize(f)
		if len(batch) == MaxFactsPerFrame || size+n+2 > MaxFactsFrameBytes {
			if err := emit(); err != nil {
				return err
			}
		}
		batch = append(batch, f)
		size += n
		return nil
	}
	for cursors.Len() > 0 {
		c := cursors[0]
		if err := add(c.head()); err != nil {
			return sent, err
		}
		if err := c.advance(st); err != nil {
			return sent, err
		}
		if c.head() == nil {
			heap.Pop(&cursors)
		} else {
			heap.Fix(&cursors, 0)
		}
	}
	for _, id := range evidence {
		f, err := st.Get(id)
		if errors.Is(err, crdt.ErrNotFound) || errors.Is(err, crdt.ErrPruned) {
			continue
		}
		if err != nil {
			return sent, fmt.Errorf("read evidence fact %s: %w", id, err)
		}
		if err := add(f); err != nil {
			return sent, err
		}
	}
	if err := emit(); err != nil {
		return sent, err
	}
	var end [binary.MaxVarintLen64]byte
	if err := fw.write(frameEnd, end[:binary.PutUvarint(end[:], sent)]); err != nil {
		return sent, err
	}
	return sent, flush()
}

// cursor walks one author's chain facts in bounded chunks.
type cursor struct {
	author   crdt.DeviceID
	next, to uint64 // the next seq to load, the last seq to send
	chunk    uint64
	buf      []*crdt.Fact
	i        int
}

func (c *cursor) head() *crdt.Fact {
	if c.i < len(c.buf) {
		return c.buf[c.i]
	}
	return nil
}

func (c *cursor) fill(st crdt.Store) error {
	c.buf, c.i = c.buf[:0], 0
	if c.next > c.to {
		return nil
	}
	hi := min(c.next+c.chunk-1, c.to)
	err := st.Range(c.author, c.next, hi, func(f *crdt.Fact) error {
		c.buf = append(c.buf, f)
		return nil
	})
	if err != nil {
		return fmt.Errorf("read facts of %s %d..%d: %w", c.author.Short(), c.next, hi, err)
	}
	if len(c.buf) == 0 {
		c.next = c.to + 1 // nothing there after all (pruned meanwhile?): stop
		return nil
	}
	c.next = hi + 1
	return nil
}

func (c *cursor) advance(st crdt.Store) error {
	c.i++
	if c.i < len(c.buf) {
		return nil
	}
	return c.fill(st)
}

type cursorHeap []*cursor

func (h cursorHeap) Len() int           { return len(h) }
func (h cursorHeap) Less(i, j int) bool { return crdt.CausalLess(h[i].head(), h[j].head()) }
func (h cursorHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *cursorHeap) Push(x any)        { *h = append(*h, x.(*cursor)) }
func (h *cursorHeap) Pop() any {
	old := *h
	c := old[len(old)-1]
	*h = old[:len(old)-1]
	return c
}
