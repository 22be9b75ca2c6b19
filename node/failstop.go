package node

import (
	"errors"
	"fmt"
	"log/slog"
	"sync"
)

// Fail-stop (DESIGN §7): when the store fails in a way Pebble cannot
// continue from (its Logger.Fatalf: a WAL or manifest write that failed,
// corruption found while running), the node must not go on, and must not
// wedge either. The failing call never returns, so nothing it was doing is
// acknowledged; the reason goes to the log and to Fatal(), and the process
// owner (aura-node run) exits non-zero at once so a supervisor restarts it.

// ErrStorageFatal wraps the reason of a fatal storage error.
var ErrStorageFatal = errors.New("fatal storage error")

// fatalSignal delivers the first fatal error once.
type fatalSignal struct {
	once sync.Once
	ch   chan error
}

func newFatalSignal() *fatalSignal { return &fatalSignal{ch: make(chan error, 1)} }

func (f *fatalSignal) raise(err error) {
	f.once.Do(func() { f.ch <- err })
}

// Fatal delivers the error that made this node stop serving (a fatal
// storage error). aura-node run exits non-zero when it arrives.
func (n *Node) Fatal() <-chan error { return n.fatal.ch }

// pebbleLog routes Pebble's logs to the node's logger (debug level: WAL
// replays and compactions are routine) and turns its Fatalf into
// fail-stop.
type pebbleLog struct {
	log   *slog.Logger
	fatal *fatalSignal
}

func (l pebbleLog) Infof(format string, args ...any) { l.log.Debug(fmt.Sprintf(format, args...)) }

func (l pebbleLog) Errorf(format string, args ...any) { l.log.Error(fmt.Sprintf(format, args...)) }

// Fatalf never returns: Pebble may not continue after it. The goroutine
// that hit the error parks (so the call it serves is never acknowledged)
// while the owner of the process exits.
func (l pebbleLog) Fatalf(format string, args ...any) {
	err := fmt.Errorf("%w: %s", ErrStorageFatal, fmt.Sprintf(format, args...))
	l.log.Error("fatal storage error: the node stops (restart it once the cause is fixed)", "err", err)
	if l.fatal != nil {
		l.fatal.raise(err)
	}
	select {}
}

// withLock runs fn under n.mu, released on every path (a panic included).
func (n *Node) withLock(fn func() error) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	return fn()
}
