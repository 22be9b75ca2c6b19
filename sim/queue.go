package sim

import (
	"container/heap"
	"crypto/sha256"
	"fmt"
	"hash"
	"io"

	"aura/crdt"
)

// evKind is what a scheduled event does.
type evKind uint8

const (
	evDeliver     evKind = iota + 1 // a message arrives at a device
	evTick                          // a device's timer
	evWrite                         // an application write
	evSync                          // a device starts anti-entropy with a peer
	evPropose                       // an operator proposes a snapshot
	evRestore                       // a device restores from a snapshot blob
	evCrash                         // a device crashes
	evRestart                       // a crashed device restarts
	evHeal                          // the partition heals
	evOnline                        // an offline device comes back
	evByz                           // a Byzantine device acts
	evAdmit                         // the admin adds a fresh device
	evBlob                          // a device stores, fetches or tombstones a blob
	evFaultClock                    // once a virtual second: draw schedule faults
	evBack                          // the absent device (Workload.Absence) comes back
	evRekey                         // the admin runs a key generation (Workload.Rekey)
	evReplace                       // the admin replacement workload starts (admin.go)
	evGrant                         // the admin grants a capability or removes a device (grants.go)
	evFencedWrite                   // one write by an operator whose snapshot round is open (contend.go)
)

// msgKind is what a message carries.
type msgKind uint8

const (
	msgGossip    msgKind = iota + 1 // published facts
	msgHello                        // sync: the opener's HELLO
	msgSyncReply                    // sync: the peer's HELLO and the facts the opener lacks
	msgSyncFacts                    // sync: the facts the peer lacks
)

func (k msgKind) String() string {
	switch k {
	case msgGossip:
		return "gossip"
	case msgHello:
		return "hello"
	case msgSyncReply:
		return "sync-reply"
	case msgSyncFacts:
		return "sync-facts"
	}
	return "msg?"
}

// hello is a device's sync HELLO (gossip/frame.go): what it holds.
type hello = crdt.Summary

// message is what travels on the virtual network.
type message struct {
	kind  msgKind
	facts []*crdt.Fact
	hello *hello
	offer *crdt.SnapshotCompleted // sync reply: the sender's newest completion (the node's snapshot protocol answer)
}

// event is one entry of the virtual timeline. Events are ordered by
// (at, seq): seq is the order of scheduling, so ties never depend on
// anything but the run's own history.
type event struct {
	at   int64
	seq  uint64
	kind evKind
	dev  int // the device it concerns
	inc  int // the device's incarnation when scheduled (stale after a crash)
	// deliveries
	from    int
	fromInc int
	msg     *message
	// restores and syncs
	tries int
	// partitions and down times
	dur int64
}

type eventQueue []*event

func (q eventQueue) Len() int { return len(q) }
func (q eventQueue) Less(i, j int) bool {
	if q[i].at != q[j].at {
		return q[i].at < q[j].at
	}
	return q[i].seq < q[j].seq
}
func (q eventQueue) Swap(i, j int) { q[i], q[j] = q[j], q[i] }
func (q *eventQueue) Push(x any)   { *q = append(*q, x.(*event)) }
func (q *eventQueue) Pop() any {
	old := *q
	e := old[len(old)-1]
	old[len(old)-1] = nil
	*q = old[:len(old)-1]
	return e
}

// timeline is the scheduler.
type timeline struct {
	q   eventQueue
	seq uint64
}

func (t *timeline) push(e *event) {
	t.seq++
	e.seq = t.seq
	heap.Push(&t.q, e)
}

func (t *timeline) pop() *event {
	if len(t.q) == 0 {
		return nil
	}
	return heap.Pop(&t.q).(*event)
}

func (t *timeline) len() int { return len(t.q) }

// tracer writes the trace and hashes it, line by line.
type tracer struct {
	w     io.Writer
	h     hash.Hash
	lines int
	buf   []byte
}

func newTracer(w io.Writer) *tracer { return &tracer{w: w, h: sha256.New()} }

func (t *tracer) printf(now int64, format string, args ...any) {
	t.buf = t.buf[:0]
	t.buf = fmt.Appendf(t.buf, "%9d ", now)
	t.buf = fmt.Appendf(t.buf, format, args...)
	t.buf = append(t.buf, '\n')
	t.h.Write(t.buf)
	t.lines++
	if t.w != nil {
		_, _ = t.w.Write(t.buf)
	}
}

func (t *tracer) sum() [32]byte {
	var out [32]byte
	t.h.Sum(out[:0])
	return out
}
