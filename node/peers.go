package node

import (
	"context"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	"github.com/multiformats/go-multiaddr"

	"aura/crdt"
)

// PeersProtocol is the address exchange between devices of an account: the
// asker gets, from a connected device, the addresses that device knows for
// the account's other devices. A device that joined through the admin, or
// knows one bootstrap peer, thus finds the rest of the account without mDNS,
// and can still reach them when the peer it came through is gone. Only
// devices of the account may ask (the handler is guarded), and only
// addresses of current members are kept.
const PeersProtocol = protocol.ID("/aura/peers/1")

const (
	maxPeerRecords = 256      // devices in one answer
	maxPeerAddrs   = 16       // addresses per device
	maxPeersReply  = 64 << 10 // bytes of one answer
	peersTimeout   = 5 * time.Second
	// peersEvery is how often a connected device is asked again when
	// nothing changed (a new connection or a membership change asks at once).
	peersEvery = time.Minute
	// peerAddrTTL is how long learned addresses stay in the peerstore.
	peerAddrTTL = time.Hour
)

// peerRecord is one device's addresses in an answer (binary multiaddrs).
type peerRecord struct {
	_     struct{} `cbor:",toarray"`
	ID    []byte
	Addrs [][]byte
}

// peerPush is what an asker may send before it half-closes the stream:
// addresses it wants the answering device to know (its own, when they just
// changed). Forward asks the receiver to pass the records on to the
// devices it is connected to (one hop). An asker that sends nothing just
// asks; a device of an older version answers without reading.
type peerPush struct {
	_       struct{} `cbor:",toarray"`
	Records []peerRecord
	Forward bool
}

// handlePeers learns what the asker pushed, if anything, and answers with
// the addresses of the account's devices other than the asker and this
// node.
func (n *Node) handlePeers(s network.Stream) {
	defer s.Close()
	_ = s.SetDeadline(time.Now().Add(peersTimeout))
	from := s.Conn().RemotePeer()
	b, err := io.ReadAll(io.LimitReader(s, maxPeersReply+1))
	if err != nil || len(b) > maxPeersReply {
		_ = s.Reset()
		return
	}
	if len(b) > 0 {
		var push peerPush
		if err := crdt.Unmarshal(b, &push); err != nil {
			_ = s.Reset()
			return
		}
		recs := push.Records[:min(len(push.Records), maxPeerRecords)]
		if n.learnPeers(recs, false) > 0 {
			n.kickReconnect()
			if push.Forward {
				n.pushPeers(peerPush{Records: recs}, from)
			}
		}
	}
	recs := n.peerRecords(from, maxPeerRecords)
	b, err = crdt.Marshal(recs)
	if err != nil || len(b) > maxPeersReply {
		_ = s.Reset()
		return
	}
	_, _ = s.Write(b)
}

// peerRecords lists the addresses this node knows for the account's
// devices other than itself and except (at most limit devices).
func (n *Node) peerRecords(except peer.ID, limit int) []peerRecord {
	var recs []peerRecord
	for p := range *n.gater.members.Load() {
		if p == except || p == n.host.ID() || len(recs) == limit {
			continue
		}
		addrs := n.host.Peerstore().Addrs(p)
		if len(addrs) == 0 {
			continue
		}
		rec := peerRecord{ID: []byte(p)}
		for _, a := range addrs[:min(len(addrs), maxPeerAddrs)] {
			rec.Addrs = append(rec.Addrs, a.Bytes())
		}
		recs = append(recs, rec)
	}
	return recs
}

// learnPeers adds the addresses of records to the peerstore: of members
// only, unless joined (a join answer, which arrives before the membership
// facts do; its addresses are also remembered durably). It returns how
// many devices it learned addresses for.
func (n *Node) learnPeers(recs []peerRecord, joined bool) int {
	learned := 0
	for _, rec := range recs {
		id, err := peer.IDFromBytes(rec.ID)
		if err != nil || id == n.host.ID() || (!joined && !n.gater.isMember(id)) {
			continue
		}
		var addrs []multiaddr.Multiaddr
		for _, ab := range rec.Addrs[:min(len(rec.Addrs), maxPeerAddrs)] {
			if a, err := multiaddr.NewMultiaddrBytes(ab); err == nil {
				addrs = append(addrs, a)
			}
		}
		if len(addrs) == 0 {
			continue
		}
		n.host.Peerstore().AddAddrs(id, addrs, peerAddrTTL)
		if joined {
			// The inviter vouched for these devices; keep their addresses
			// across a restart that comes before the first connection.
			_ = n.rememberAddrs(id)
		}
		learned++
	}
	return learned
}

// askPeers asks p for the addresses of the account's devices and adds those
// of members to the peerstore. It returns how many devices it learned
// addresses for.
func (n *Node) askPeers(ctx context.Context, p peer.ID) (int, error) {
	return n.exchangePeers(ctx, p, peerPush{})
}

// exchangePeers sends push to p (nothing when it is empty), then reads and
// learns p's answer.
func (n *Node) exchangePeers(ctx context.Context, p peer.ID, push peerPush) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, peersTimeout)
	defer cancel()
	s, err := n.host.NewStream(ctx, p, PeersProtocol)
	if err != nil {
		return 0, fmt.Errorf("ask %s for peers: %w", p, err)
	}
	defer s.Close()
	_ = s.SetDeadline(time.Now().Add(peersTimeout))
	if len(push.Records) > 0 {
		b, err := crdt.Marshal(&push)
		if err != nil {
			return 0, fmt.Errorf("push addresses to %s: %w", p, err)
		}
		if _, err := s.Write(b); err != nil {
			return 0, fmt.Errorf("push addresses to %s: %w", p, err)
		}
	}
	_ = s.CloseWrite()
	b, err := io.ReadAll(io.LimitReader(s, maxPeersReply+1))
	if err != nil {
		return 0, fmt.Errorf("ask %s for peers: %w", p, err)
	}
	if len(b) > maxPeersReply {
		return 0, fmt.Errorf("ask %s for peers: answer over %d bytes", p, maxPeersReply)
	}
	var recs []peerRecord
	if err := crdt.Unmarshal(b, &recs); err != nil {
		return 0, fmt.Errorf("ask %s for peers: %w", p, err)
	}
	return n.learnPeers(recs[:min(len(recs), maxPeerRecords)], false), nil
}

// peerAsks remembers when each connected device was last asked for peers.
type peerAsks struct {
	mu   sync.Mutex
	last map[peer.ID]time.Time
}

// due reports whether p should be asked now (and records the ask): always
// when force, else when not asked within peersEvery.
func (a *peerAsks) due(p peer.ID, now time.Time, force bool) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.last == nil {
		a.last = map[peer.ID]time.Time{}
	}
	if !force && now.Sub(a.last[p]) < peersEvery {
		return false
	}
	a.last[p] = now
	return true
}

// kickReconnect wakes the reconnect loop: a device connected or the
// membership changed, so there may be addresses to exchange and devices to
// dial.
func (n *Node) kickReconnect() {
	select {
	case n.kick <- struct{}{}:
	default:
	}
}
