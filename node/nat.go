package node

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/event"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	"github.com/libp2p/go-libp2p/p2p/host/autorelay"
	relayv2 "github.com/libp2p/go-libp2p/p2p/protocol/circuitv2/relay"
	"github.com/multiformats/go-multiaddr"
	"github.com/prometheus/client_golang/prometheus"
)

// NAT traversal (DESIGN §4): devices behind NAT reserve a slot on a relay
// of the account ([relay] static), reach each other through it, and move to
// a direct connection when hole punching (DCUtR) succeeds. Behind a
// symmetric NAT or CGNAT hole punching fails and the devices stay on the
// relayed connection, so every aura protocol accepts a relayed, "limited"
// connection when nothing better exists: the host the node and its
// packages use (auraHost) opens streams with network.WithAllowLimitedConn
// and counts a limited peer as connected. A direct connection is preferred
// as soon as it exists: libp2p opens new streams on it, and the relayed
// connections to that peer are closed once idle (retireRelayed).

// Reachability values of [nat] reachability.
const (
	ReachAuto    = "auto"
	ReachPublic  = "public"
	ReachPrivate = "private"
)

// Defaults of this device's relay service (for devices of the account).
const (
	defaultCircuitDuration = time.Hour
	defaultCircuitDataMB   = 1024
	// relayBuffer is the relay's per-direction copy buffer (libp2p's
	// default of 2 KiB costs a syscall per 2 KiB relayed).
	relayBuffer = 32 << 10
)

// natState is the node's NAT traversal state.
type natState struct {
	retiring sync.Map // peer.ID → true while retireRelayed runs for it
}

// auraHost is the libp2p host the node, gossip and the blob store use: it
// opens streams over limited (relayed) connections when no better one
// exists, reports a peer reachable only over a limited connection as
// connected (so the reconnect loop does not redial it forever and gossipsub
// talks to it), and closes this device's relay service with the host.
type auraHost struct {
	host.Host
	relay *relayv2.Relay
}

func (h *auraHost) NewStream(ctx context.Context, p peer.ID, pids ...protocol.ID) (network.Stream, error) {
	return h.Host.NewStream(network.WithAllowLimitedConn(ctx, "aura"), p, pids...)
}

func (h *auraHost) Connect(ctx context.Context, ai peer.AddrInfo) error {
	return h.Host.Connect(network.WithAllowLimitedConn(ctx, "aura"), ai)
}

func (h *auraHost) Network() network.Network { return linkNet{h.Host.Network()} }

func (h *auraHost) Close() error {
	if h.relay != nil {
		_ = h.relay.Close()
	}
	return h.Host.Close()
}

// linkNet counts a peer reachable over a limited connection as connected.
type linkNet struct{ network.Network }

func (n linkNet) Connectedness(p peer.ID) network.Connectedness {
	c := n.Network.Connectedness(p)
	if c == network.Limited {
		return network.Connected
	}
	return c
}

// unwrapNet is the swarm under a linkNet.
func unwrapNet(nw network.Network) network.Network {
	if l, ok := nw.(linkNet); ok {
		return l.Network
	}
	return nw
}

// mergeRelays parses relay.static and merges the entries of one relay (its
// TCP and its QUIC address, say) into one AddrInfo: autorelay counts
// candidates per peer, and waits for as many as it was given entries.
func mergeRelays(static []string) ([]peer.AddrInfo, error) {
	var out []peer.AddrInfo
	at := map[peer.ID]int{}
	for i, s := range static {
		ai, err := parseAddrInfo(s)
		if err != nil {
			return nil, fmt.Errorf("relay.static[%d]: %w", i, err)
		}
		j, ok := at[ai.ID]
		if !ok {
			at[ai.ID] = len(out)
			out = append(out, peer.AddrInfo{ID: ai.ID})
			j = len(out) - 1
		}
		for _, a := range ai.Addrs {
			if !slices.ContainsFunc(out[j].Addrs, a.Equal) {
				out[j].Addrs = append(out[j].Addrs, a)
			}
		}
	}
	return out, nil
}

// natOptions are the libp2p options of [nat] reachability and [relay] static.
func natOptions(cfg Config, g *gater, self peer.ID) ([]libp2p.Option, error) {
	var opts []libp2p.Option
	switch cfg.NAT.Reachability {
	case ReachPublic:
		opts = append(opts, libp2p.ForceReachabilityPublic())
	case ReachPrivate:
		opts = append(opts, libp2p.ForceReachabilityPrivate())
	}
	if len(cfg.Relay.Static) > 0 {
		relays, err := mergeRelays(cfg.Relay.Static)
		if err != nil {
			return nil, err
		}
		for _, ai := range relays {
			g.trust(ai.ID, true)
		}
		opts = append(opts, libp2p.EnableAutoRelayWithPeerSource(relaySource(relays, g, self),
			// Reserve on the first relay that answers (the others follow);
			// retry a refused or lost reservation within seconds, not after
			// libp2p's hour.
			autorelay.WithMaxCandidates(len(relays)),
			autorelay.WithMinCandidates(1),
			autorelay.WithNumRelays(len(relays)),
			autorelay.WithBootDelay(0),
			autorelay.WithBackoff(5*time.Second),
			autorelay.WithMinInterval(5*time.Second),
		))
	}
	return opts, nil
}

// relaySource offers the static relays to autorelay once this device
// belongs to an account: the account's relay admits devices of the account
// only, and a device that tried before its join would be held up by the
// refused attempt (autorelay waits 20 s for an identify that never comes).
func relaySource(relays []peer.AddrInfo, g *gater, self peer.ID) autorelay.PeerSource {
	return func(ctx context.Context, num int) <-chan peer.AddrInfo {
		out := make(chan peer.AddrInfo, len(relays))
		defer close(out)
		if !g.isMember(self) {
			return out
		}
		for _, ai := range relays[:min(num, len(relays))] {
			out <- ai
		}
		return out
	}
}

// relayACL lets devices of the account, and only them, reserve a slot and
// open circuits on this device's relay (the gater already keeps others
// out, but admits guests while an invite is open).
type relayACL struct{ g *gater }

func (a relayACL) AllowReserve(p peer.ID, _ multiaddr.Multiaddr) bool {
	return a.g.isMember(p) && !a.g.isBlocked(p)
}

func (a relayACL) AllowConnect(src peer.ID, _ multiaddr.Multiaddr, dest peer.ID) bool {
	return a.g.known(src) && a.g.isMember(dest) && !a.g.isBlocked(dest)
}

// startRelay runs this device's circuit relay ([relay] service) at once,
// whatever AutoNAT thinks of its reachability: libp2p would start it only
// once AutoNAT calls the host public, which a relay whose only peers are
// NAT'd devices never learns. Circuits carry real traffic: the limits are
// [relay] circuit_duration and circuit_data_mb instead of libp2p's 2
// minutes and 128 KiB.
func startRelay(h host.Host, cfg Config, g *gater, reg prometheus.Registerer) (*relayv2.Relay, error) {
	res := relayv2.DefaultResources()
	res.Limit = &relayv2.RelayLimit{
		Duration: time.Duration(cfg.Relay.CircuitDuration),
		Data:     cfg.Relay.CircuitDataMB << 20,
	}
	res.BufferSize = relayBuffer
	opts := []relayv2.Option{relayv2.WithResources(res), relayv2.WithACL(relayACL{g})}
	if reg != nil {
		opts = append(opts, relayv2.WithMetricsTracer(relayv2.NewMetricsTracer(relayv2.WithRegisterer(reg))))
	}
	r, err := relayv2.New(h, opts...)
	if err != nil {
		return nil, fmt.Errorf("start the relay service ([relay] service): %w", err)
	}
	return r, nil
}

// pathOf names how a connection goes: "relayed" or "direct".
func pathOf(c network.Conn) string {
	if isRelayed(c) {
		return "relayed"
	}
	return "direct"
}

func isCircuit(a multiaddr.Multiaddr) bool { return strings.Contains(a.String(), "/p2p-circuit") }

// startNAT watches connections and local addresses: it logs how each
// device connects, hands a peer over to a direct connection when one
// appears, and tells the account's devices this device's new addresses
// when they change (a relay reservation, a new observed address).
func (n *Node) startNAT() error {
	n.host.Network().Notify(&network.NotifyBundle{ConnectedF: n.natConnected})
	sub, err := n.host.EventBus().Subscribe(new(event.EvtLocalAddressesUpdated))
	if err != nil {
		return fmt.Errorf("watch local addresses: %w", err)
	}
	n.wg.Add(1)
	go n.addrLoop(sub)
	return nil
}

func (n *Node) natConnected(_ network.Network, c network.Conn) {
	p := c.RemotePeer()
	if !n.gater.isMember(p) || n.closed.Load() {
		return
	}
	n.log.Info("device connected", "peer", p, "path", pathOf(c), "addr", c.RemoteMultiaddr(), "direction", strings.ToLower(c.Stat().Direction.String()))
	conns := n.host.Network().ConnsToPeer(p)
	if slices.ContainsFunc(conns, isRelayed) && slices.ContainsFunc(conns, func(c network.Conn) bool { return !isRelayed(c) }) {
		if _, busy := n.nat.retiring.LoadOrStore(p, true); !busy {
			go func() {
				defer n.nat.retiring.Delete(p)
				n.retireRelayed(p)
			}()
		}
	}
}

// quietProtocols may still run on a relayed connection being retired
// (gossipsub's long-lived streams move to the direct connection when their
// connection goes; identify and hole punching end by themselves).
var quietProtocols = []string{"/meshsub/", "/ipfs/id/", "/libp2p/dcutr", "/floodsub/"}

func quiet(s network.Stream) bool {
	pid := string(s.Protocol())
	if pid == "" {
		return true
	}
	for _, q := range quietProtocols {
		if strings.HasPrefix(pid, q) {
			return true
		}
	}
	return false
}

// retireRelayed closes the relayed connections to p while a direct one
// exists: each as soon as only long-lived gossip streams run on it (a sync
// or block transfer in flight finishes first), all of them after
// retireWithin. Gossipsub reopens its stream on the direct connection.
func (n *Node) retireRelayed(p peer.ID) {
	const retireWithin = 30 * time.Second
	deadline := time.Now().Add(retireWithin)
	for {
		select {
		case <-n.ctx.Done():
			return
		case <-time.After(time.Second):
		}
		nw := unwrapNet(n.host.Network())
		direct, relayed := 0, []network.Conn{}
		for _, c := range nw.ConnsToPeer(p) {
			if c.IsClosed() {
				continue
			}
			if isRelayed(c) {
				relayed = append(relayed, c)
			} else {
				direct++
			}
		}
		if direct == 0 || len(relayed) == 0 {
			return
		}
		late := time.Now().After(deadline)
		for _, c := range relayed {
			if late || !slices.ContainsFunc(c.GetStreams(), func(s network.Stream) bool { return !quiet(s) }) {
				n.log.Info("direct connection: relayed connection closed", "peer", p, "addr", c.RemoteMultiaddr())
				_ = c.Close()
			}
		}
	}
}

// addrLoop announces this device's addresses to the connected devices of
// the account when they change (debounced), and logs relay reservations.
func (n *Node) addrLoop(sub event.Subscription) {
	defer n.wg.Done()
	defer sub.Close()
	var circuits string
	var fire <-chan time.Time
	for {
		select {
		case <-n.ctx.Done():
			return
		case _, ok := <-sub.Out():
			if !ok {
				return
			}
			var cs []string
			for _, a := range n.host.Addrs() {
				if isCircuit(a) {
					cs = append(cs, a.String())
				}
			}
			slices.Sort(cs)
			if k := strings.Join(cs, " "); k != circuits {
				if len(cs) > 0 {
					n.log.Info("relay reservation", "addrs", cs)
				} else {
					n.log.Info("relay reservation gone")
				}
				circuits = k
			}
			fire = time.After(time.Second)
		case <-fire:
			fire = nil
			n.announceAddrs()
		}
	}
}

// announceAddrs pushes this device's addresses to every connected device
// of the account, which passes them on to the devices it is connected to:
// a device behind NAT that just got a relay reservation is dialable through
// it at once, not at the next peer exchange.
func (n *Node) announceAddrs() {
	if n.Account().IsZero() {
		return
	}
	self := peerRecord{ID: []byte(n.host.ID())}
	for _, a := range n.host.Addrs() {
		if len(self.Addrs) < maxPeerAddrs {
			self.Addrs = append(self.Addrs, a.Bytes())
		}
	}
	n.pushPeers(peerPush{Records: []peerRecord{self}, Forward: true}, "")
}

// pushPeers sends push to every connected device of the account but except
// and the devices it describes, and learns their answers.
func (n *Node) pushPeers(push peerPush, except peer.ID) {
	about := map[peer.ID]bool{except: true}
	for _, r := range push.Records {
		if id, err := peer.IDFromBytes(r.ID); err == nil {
			about[id] = true
		}
	}
	for p := range *n.gater.members.Load() {
		if p == n.host.ID() || about[p] || n.host.Network().Connectedness(p) != network.Connected {
			continue
		}
		go func() {
			if _, err := n.exchangePeers(n.ctx, p, push); err != nil {
				n.log.Debug("address push failed", "peer", p, "err", err)
			}
		}()
	}
}

// labRoutes, when set (the natlab build), adds the NAT lab's measurement
// endpoints to the control API.
var labRoutes func(n *Node, mux *http.ServeMux)
