package node

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
)

// lastSeen remembers, durably, when each device of the account was last
// connected, so an operator told that no device is reachable learns since
// when.
type lastSeen struct {
	mu    sync.Mutex
	at    map[peer.ID]time.Time
	dirty map[peer.ID]bool // not yet written to the node's records
}

// seen records that p is (or just was) connected. It runs in libp2p's
// notifier, so it only notes the time; the reconnect loop writes it down
// (persistSeen), never after the store closed.
func (n *Node) seen(p peer.ID) {
	n.last.mu.Lock()
	defer n.last.mu.Unlock()
	if n.last.at == nil {
		n.last.at = map[peer.ID]time.Time{}
	}
	if n.last.dirty == nil {
		n.last.dirty = map[peer.ID]bool{}
	}
	n.last.at[p] = time.Now()
	n.last.dirty[p] = true
}

// persistSeen writes the times noted since the last call, and notes the
// devices connected now.
func (n *Node) persistSeen() {
	for _, p := range n.ConnectedDevices() {
		n.seen(p)
	}
	n.last.mu.Lock()
	recs := map[string][]byte{}
	for p := range n.last.dirty {
		recs["seen/"+p.String()] = []byte(strconv.FormatInt(n.last.at[p].UnixMilli(), 10))
	}
	n.last.dirty = nil
	n.last.mu.Unlock()
	for k, v := range recs {
		_ = n.nmeta.Put(k, v)
	}
}

func (n *Node) loadSeen() {
	n.last.mu.Lock()
	defer n.last.mu.Unlock()
	if n.last.at == nil {
		n.last.at = map[peer.ID]time.Time{}
	}
	_ = n.nmeta.Scan("seen/", func(k string, v []byte) error {
		p, err := peer.Decode(strings.TrimPrefix(k, "seen/"))
		if ms, perr := strconv.ParseInt(string(v), 10, 64); err == nil && perr == nil {
			n.last.at[p] = time.UnixMilli(ms)
		}
		return nil
	})
}

func (n *Node) onDisconnected(_ network.Network, c network.Conn) {
	if p := c.RemotePeer(); n.gater.isMember(p) && n.host.Network().Connectedness(p) != network.Connected {
		n.seen(p)
	}
}

// ErrNoPeers: no device of the account is reachable.
var ErrNoPeers = errors.New("no device of the account is reachable")

// waitForDevices waits until a device of the account is connected, up to
// ctx's deadline, and otherwise says how many are known and when each was
// last seen (restore cannot start without one).
func (n *Node) waitForDevices(ctx context.Context) error {
	if d, ok := ctx.Value(peerWaitKey{}).(time.Duration); ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, d)
		defer cancel()
	}
	for {
		// Devices of the account, or peers trusted for a join (a fresh
		// device restoring knows no member yet).
		if len(n.connectedKnown()) > 0 {
			return nil
		}
		n.kickReconnect()
		select {
		case <-ctx.Done():
			return n.noPeersError()
		case <-time.After(250 * time.Millisecond):
		}
	}
}

type peerWaitKey struct{}

// withPeerWait bounds how long an operation waits for a device to be
// reachable (the CLI's --timeout, less a margin to print the answer).
func withPeerWait(ctx context.Context, d time.Duration) context.Context {
	if d <= 0 {
		return ctx
	}
	return context.WithValue(ctx, peerWaitKey{}, d)
}

func (n *Node) noPeersError() error {
	var known []string
	n.last.mu.Lock()
	for p := range *n.gater.members.Load() {
		if p == n.host.ID() {
			continue
		}
		when := "never seen"
		if t, ok := n.last.at[p]; ok {
			when = "last seen " + t.Local().Format("2006-01-02 15:04:05 MST")
		}
		known = append(known, fmt.Sprintf("%s (%s)", p.ShortString(), when))
	}
	n.last.mu.Unlock()
	if len(known) == 0 {
		return errorf(ErrNoPeers, "no device of the account is reachable, and this device knows of no other: add one with `aura-cli peers connect MULTIADDR` or a bootstrap entry in %s/%s", n.home, ConfigFile)
	}
	devices := "devices"
	if len(known) == 1 {
		devices = "device"
	}
	return errorf(ErrNoPeers, "no device of the account is reachable; %d %s known: %s; start one of them, or reach it with `aura-cli peers connect MULTIADDR`",
		len(known), devices, strings.Join(known, ", "))
}
