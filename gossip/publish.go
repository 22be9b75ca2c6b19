package gossip

import (
	"context"
	"sync"
	"time"

	pubsub "github.com/libp2p/go-libp2p-pubsub"

	"aura/crdt"
)

// publisher coalesces published facts into batches: a batch leaves when it
// holds FlushBytes or when its oldest fact has waited FlushDelay.
type publisher struct {
	g *Gossip

	mu     sync.Mutex
	queue  []*crdt.Fact
	bytes  int       // batch-encoded size of queue
	since  time.Time // when the oldest queued fact arrived
	busy   bool      // the flush loop holds facts taken from queue
	warned bool      // a drop was logged since the queue last drained
	kick   chan struct{}
	idle   chan struct{} // closed while the queue is empty and not busy
}

func (p *publisher) init(g *Gossip) {
	p.g = g
	p.kick = make(chan struct{}, 1)
	p.idle = make(chan struct{})
	close(p.idle)
}

// setIdle closes or replaces p.idle to match the queue; p.mu is held.
func (p *publisher) setIdle() {
	idle := len(p.queue) == 0 && !p.busy
	select {
	case <-p.idle:
		if !idle {
			p.idle = make(chan struct{})
		}
	default:
		if idle {
			close(p.idle)
		}
	}
}

// Publish queues facts for gossip. The node calls it after the facts are
// durable in its journal; Publish never blocks on the network. A fact that
// does not fit the queue (Config.MaxPendingBytes) is not gossiped: it is
// counted in Stats.PublishDropped and logged, and reaches peers by sync.
func (g *Gossip) Publish(facts []*crdt.Fact) {
	p := &g.pub
	p.mu.Lock()
	if g.closed.Load() {
		p.mu.Unlock()
		g.m.publishDropped.Add(uint64(len(facts)))
		return
	}
	wasEmpty := len(p.queue) == 0
	dropped := 0
	for _, f := range facts {
		n := 0
		if f != nil {
			n = batchEntrySize(f)
		}
		if n <= 1 || p.bytes+n > g.cfg.MaxPendingBytes { // unsigned (no bytes) or no room
			dropped++
			continue
		}
		p.queue = append(p.queue, f)
		p.bytes += n
	}
	if wasEmpty && len(p.queue) > 0 {
		p.since = time.Now()
	}
	p.setIdle()
	full := p.bytes >= g.cfg.FlushBytes
	warn := dropped > 0 && !p.warned
	if dropped > 0 {
		p.warned = true
	}
	p.mu.Unlock()
	if dropped > 0 {
		g.m.publishDropped.Add(uint64(dropped))
		if warn {
			g.log.Warn("facts not gossiped (queue full or not signed): left to sync", "dropped", dropped,
				"limit", g.cfg.MaxPendingBytes)
		}
	}
	if (wasEmpty || full) && len(facts) > 0 {
		select {
		case p.kick <- struct{}{}:
		default:
		}
	}
}

// Flush waits until every fact published so far was handed to gossipsub
// (or refused by it), or ctx ends.
func (g *Gossip) Flush(ctx context.Context) error {
	p := &g.pub
	select {
	case p.kick <- struct{}{}:
	default:
	}
	for {
		p.mu.Lock()
		idle := p.idle
		p.mu.Unlock()
		select {
		case <-idle:
			p.mu.Lock()
			empty := len(p.queue) == 0 && !p.busy
			p.mu.Unlock()
			if empty {
				return nil
			}
		case <-g.ctx.Done():
			return ErrClosed
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// take removes one batch worth of facts from the queue, or returns nil
// with how long to wait before the queue's oldest fact is due.
func (p *publisher) take(force bool) ([]*crdt.Fact, time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.queue) == 0 {
		return nil, -1
	}
	if !force && p.bytes < p.g.cfg.FlushBytes {
		if wait := p.g.cfg.FlushDelay - time.Since(p.since); wait > 0 {
			return nil, wait
		}
	}
	limit := p.g.cfg.FlushBytes
	n, size := 0, 0
	for n < len(p.queue) {
		s := batchEntrySize(p.queue[n])
		if n > 0 && size+s+9 > limit {
			break
		}
		size += s
		n++
	}
	out := p.queue[:n:n]
	p.queue = p.queue[n:]
	p.bytes -= size
	if len(p.queue) == 0 {
		p.queue = nil
		p.bytes = 0
		p.warned = false
	} else {
		p.since = time.Now()
	}
	p.busy = true
	return out, 0
}

func (p *publisher) done() {
	p.mu.Lock()
	p.busy = false
	p.setIdle()
	p.mu.Unlock()
}

// flushLoop sends batches until the Gossip closes.
func (p *publisher) flushLoop() {
	g := p.g
	defer g.wg.Done()
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	for {
		batch, wait := p.take(false)
		if batch == nil {
			if wait > 0 {
				timer.Reset(wait)
			}
			select {
			case <-g.ctx.Done():
				timer.Stop()
				return
			case <-p.kick:
				timer.Stop()
			case <-timer.C:
			}
			continue
		}
		p.send(batch)
		p.done()
	}
}

func (p *publisher) send(batch []*crdt.Fact) {
	g := p.g
	data := encodeBatch(batch)
	if err := g.topic.Publish(g.ctx, data, pubsub.WithValidatorData(localBatch{})); err != nil {
		if g.ctx.Err() == nil {
			g.m.publishErrs.Add(1)
			g.log.Warn("publish gossip batch: facts left to sync", "facts", len(batch), "bytes", len(data), "err", err)
		}
		return
	}
	g.m.batches.Add(1)
	g.m.published.Add(uint64(len(batch)))
}
