package node

import (
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/control"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	rcmgr "github.com/libp2p/go-libp2p/p2p/host/resource-manager"
	"github.com/libp2p/go-libp2p/p2p/muxer/yamux"
	"github.com/libp2p/go-libp2p/p2p/net/connmgr"
	"github.com/libp2p/go-libp2p/p2p/security/noise"
	quic "github.com/libp2p/go-libp2p/p2p/transport/quic"
	"github.com/libp2p/go-libp2p/p2p/transport/tcp"
	"github.com/multiformats/go-multiaddr"
	"github.com/prometheus/client_golang/prometheus"
)

// gater keeps the mesh private: it admits devices of the account (the
// members of the replica's state), peers this node trusts for a join in
// progress, and, while an invite is open, unknown peers as guests that may
// only speak the join protocol.
type gater struct {
	members atomic.Pointer[map[peer.ID]bool]

	mu      sync.Mutex
	trusted map[peer.ID]bool
	blocked map[peer.ID]bool
	// inviteOpen reports whether an unexpired, unused invite exists.
	inviteOpen func() bool
	self       peer.ID
}

func newGater() *gater {
	g := &gater{trusted: map[peer.ID]bool{}, blocked: map[peer.ID]bool{}, inviteOpen: func() bool { return false }}
	m := map[peer.ID]bool{}
	g.members.Store(&m)
	return g
}

func (g *gater) setMembers(m map[peer.ID]bool) { g.members.Store(&m) }

func (g *gater) isMember(p peer.ID) bool { return (*g.members.Load())[p] }

func (g *gater) trust(p peer.ID, on bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if on {
		g.trusted[p] = true
	} else {
		delete(g.trusted, p)
	}
}

func (g *gater) block(p peer.ID, on bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if on {
		g.blocked[p] = true
	} else {
		delete(g.blocked, p)
	}
}

func (g *gater) isBlocked(p peer.ID) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.blocked[p]
}

// known: a member or trusted peer, not blocked.
func (g *gater) known(p peer.ID) bool {
	g.mu.Lock()
	blocked, trusted := g.blocked[p], g.trusted[p]
	g.mu.Unlock()
	if blocked {
		return false
	}
	return trusted || g.isMember(p)
}

func (g *gater) InterceptPeerDial(p peer.ID) bool { return g.known(p) }

func (g *gater) InterceptAddrDial(peer.ID, multiaddr.Multiaddr) bool { return true }

func (g *gater) InterceptAccept(network.ConnMultiaddrs) bool { return true }

func (g *gater) InterceptSecured(_ network.Direction, p peer.ID, _ network.ConnMultiaddrs) bool {
	if g.known(p) {
		return true
	}
	return !g.isBlocked(p) && g.inviteOpen()
}

func (g *gater) InterceptUpgraded(network.Conn) (bool, control.DisconnectReason) { return true, 0 }

// guardedHost is the host handed to gossip and the blob store: every stream
// handler they register refuses peers that are not devices of the account
// (or trusted for a join), so a guest admitted for an invite can reach the
// join protocol only.
type guardedHost struct {
	host.Host
	g *gater
}

func (h *guardedHost) wrap(fn network.StreamHandler) network.StreamHandler {
	return func(s network.Stream) {
		if !h.g.known(s.Conn().RemotePeer()) {
			_ = s.Reset()
			return
		}
		fn(s)
	}
}

func (h *guardedHost) SetStreamHandler(pid protocol.ID, fn network.StreamHandler) {
	h.Host.SetStreamHandler(pid, h.wrap(fn))
}

func (h *guardedHost) SetStreamHandlerMatch(pid protocol.ID, m func(protocol.ID) bool, fn network.StreamHandler) {
	h.Host.SetStreamHandlerMatch(pid, m, h.wrap(fn))
}

// newHost builds the libp2p host of DESIGN §4.
func newHost(cfg Config, key []byte, g *gater, reg prometheus.Registerer) (host.Host, error) {
	priv, err := libp2pKey(key)
	if err != nil {
		return nil, err
	}
	cm, err := connmgr.NewConnManager(cfg.Conn.Low, cfg.Conn.High, connmgr.WithGracePeriod(time.Minute))
	if err != nil {
		return nil, fmt.Errorf("connection manager: %w", err)
	}
	limits := rcmgr.DefaultLimits
	libp2p.SetDefaultServiceLimits(&limits)
	rm, err := rcmgr.NewResourceManager(rcmgr.NewFixedLimiter(limits.Scale(int64(cfg.Conn.MaxMemoryMB)<<20, cfg.Conn.MaxFDs)))
	if err != nil {
		cm.Close()
		return nil, fmt.Errorf("resource manager: %w", err)
	}
	opts := []libp2p.Option{
		libp2p.Identity(priv),
		libp2p.ListenAddrStrings(cfg.Listen...),
		libp2p.Transport(tcp.NewTCPTransport),
		libp2p.Transport(quic.NewTransport),
		libp2p.Security(noise.ID, noise.New),
		libp2p.Muxer(yamux.ID, yamux.DefaultTransport),
		libp2p.ConnectionManager(cm),
		libp2p.ResourceManager(rm),
		libp2p.ConnectionGater(g),
		libp2p.EnableRelay(),
		libp2p.UserAgent("aura-node/" + Version),
	}
	if reg != nil {
		opts = append(opts, libp2p.PrometheusRegisterer(reg))
	} else {
		opts = append(opts, libp2p.DisableMetrics())
	}
	if *cfg.NAT.PortMap {
		opts = append(opts, libp2p.NATPortMap())
	}
	if *cfg.NAT.HolePunching {
		opts = append(opts, libp2p.EnableHolePunching())
	}
	if *cfg.NAT.AutoNAT {
		opts = append(opts, libp2p.EnableNATService())
	}
	self, err := peer.IDFromPrivateKey(priv)
	if err != nil {
		cm.Close()
		return nil, fmt.Errorf("device key: %w", err)
	}
	nat, err := natOptions(cfg, g, self)
	if err != nil {
		cm.Close()
		return nil, err
	}
	opts = append(opts, nat...)
	h, err := libp2p.New(opts...)
	if err != nil {
		return nil, fmt.Errorf("start libp2p host: %w", err)
	}
	g.self = h.ID()
	ah := &auraHost{Host: h}
	if cfg.Relay.Service {
		if ah.relay, err = startRelay(h, cfg, g, reg); err != nil {
			_ = h.Close()
			return nil, err
		}
	}
	return ah, nil
}

// isRelayed reports whether a connection goes through a circuit relay.
func isRelayed(c network.Conn) bool {
	return c.Stat().Limited || strings.Contains(c.RemoteMultiaddr().String(), "/p2p-circuit")
}
