package node

import (
	"context"
	"fmt"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/peerstore"
	"github.com/libp2p/go-libp2p/p2p/net/swarm"
)

// ConnectAddr dials a device of the account at a multiaddr ending in
// /p2p/<peer id> now, and remembers the address (durably, like the
// addresses of connected devices) so the reconnect loop dials it after a
// restart: `aura-cli peers connect`.
func (n *Node) ConnectAddr(ctx context.Context, addr string) (*PeerInfo, error) {
	ai, err := parseAddrInfo(addr)
	if err != nil {
		return nil, errorf(ErrBadRequest, "%v", err)
	}
	if ai.ID == n.host.ID() {
		return nil, errorf(ErrBadRequest, "%s is this device", ai.ID)
	}
	if n.Account().IsZero() {
		return nil, ErrNoAccount
	}
	if !n.gater.isMember(ai.ID) {
		return nil, errorf(ErrBadRequest, "%s is not a device of this account (see `aura-cli status` for its devices; a new device joins with `aura-cli account join CODE`)", ai.ID)
	}
	n.clearBackoff(ai.ID)
	n.host.Peerstore().AddAddrs(ai.ID, ai.Addrs, peerstore.PermanentAddrTTL)
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	if err := n.host.Connect(ctx, *ai); err != nil {
		return nil, errorf(ErrUnavailable, "cannot reach %s at %s: %v (is its node running, and the address current? `aura-cli status` on it lists its addresses)", ai.ID, addr, err)
	}
	if err := n.rememberAddrs(ai.ID); err != nil {
		return nil, fmt.Errorf("remember the address of %s: %w", ai.ID, err)
	}
	for _, p := range n.Peers() {
		if p.Peer == ai.ID.String() {
			return &p, nil
		}
	}
	return &PeerInfo{Peer: ai.ID.String(), Device: true, Via: "direct"}, nil
}

// rememberAddrs saves the peerstore's addresses of p (the reconnect loop
// loads them at start).
func (n *Node) rememberAddrs(p peer.ID) error {
	if s := addrsKey(n.host.Peerstore().Addrs(p)); s != "" {
		return n.nmeta.Put("peer/"+p.String(), []byte(s))
	}
	return nil
}

// clearBackoff forgets failed dials of p, so a dial the user asks for now
// is not refused with "dial backoff" because of an attempt before.
func (n *Node) clearBackoff(p peer.ID) {
	if sw, ok := unwrapNet(n.host.Network()).(*swarm.Swarm); ok {
		sw.Backoff().Clear(p)
	}
}
