//go:build natlab

package node

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"
	manet "github.com/multiformats/go-multiaddr/net"
)

// The NAT lab build (go build -tags natlab), for the lab in natlab/ only:
// its "internet", LabInternet, counts as public, so libp2p runs AutoNAT,
// relay reservations and hole punching there as it would on the internet
// (the home networks behind the lab's NAT routers stay private), and the
// control API gets two measurement endpoints. A build without the tag has
// neither.

// LabInternet is the NAT lab's internet.
const LabInternet = "10.99.0.0/24"

func init() {
	_, lab, err := net.ParseCIDR(LabInternet)
	if err != nil {
		return
	}
	var out []*net.IPNet
	for _, n := range manet.Private4 {
		out = append(out, subtractNet(n, lab)...)
	}
	manet.Private4 = out
	labRoutes = natlabRoutes
}

// subtractNet is n without cut (IPv4), as a list of prefixes.
func subtractNet(n, cut *net.IPNet) []*net.IPNet {
	nOnes, _ := n.Mask.Size()
	cOnes, _ := cut.Mask.Size()
	if !n.Contains(cut.IP) || cOnes < nOnes {
		if cOnes <= nOnes && cut.Contains(n.IP) {
			return nil // n lies inside cut
		}
		return []*net.IPNet{n}
	}
	if cOnes == nOnes {
		return nil
	}
	// Split n in halves; keep the half without cut, recurse into the other.
	base := binary.BigEndian.Uint32(n.IP.To4())
	mask := net.CIDRMask(nOnes+1, 32)
	lo := &net.IPNet{IP: ipv4(base), Mask: mask}
	hi := &net.IPNet{IP: ipv4(base | 1<<(31-uint(nOnes))), Mask: mask}
	if lo.Contains(cut.IP) {
		return append(subtractNet(lo, cut), hi)
	}
	return append([]*net.IPNet{lo}, subtractNet(hi, cut)...)
}

func ipv4(v uint32) net.IP {
	b := make(net.IP, 4)
	binary.BigEndian.PutUint32(b, v)
	return b
}

// LabBlobRequest asks for a blob of Size pseudo-random bytes from Seed.
type LabBlobRequest struct {
	Size int64  `json:"size"`
	Seed uint64 `json:"seed"`
}

// LabFetchRequest asks to fetch blob CID from Peer alone.
type LabFetchRequest struct {
	CID  string `json:"cid"`
	Peer string `json:"peer"`
}

// LabFetchResult is what a lab fetch measured.
type LabFetchResult struct {
	Bytes   int64   `json:"bytes"`
	Seconds float64 `json:"seconds"`
	// Via is the path to the peer when the fetch started and when it ended.
	ViaStart string `json:"via_start"`
	ViaEnd   string `json:"via_end"`
}

func natlabRoutes(n *Node, mux *http.ServeMux) {
	mux.HandleFunc("POST /v1/natlab/blob", func(w http.ResponseWriter, r *http.Request) {
		var req LabBlobRequest
		if !decode(w, r, &req) {
			return
		}
		src := rand.NewChaCha8([32]byte{byte(req.Seed), byte(req.Seed >> 8), byte(req.Seed >> 16), byte(req.Seed >> 24)})
		c, size, err := n.blobs.Put(r.Context(), io.LimitReader(src, req.Size))
		if err == nil {
			err = n.blobs.Pin(c)
		}
		reply(w, map[string]any{"cid": c.String(), "size": size}, err)
	})
	mux.HandleFunc("POST /v1/natlab/fetch", func(w http.ResponseWriter, r *http.Request) {
		var req LabFetchRequest
		if !decode(w, r, &req) {
			return
		}
		c, err := cid.Decode(req.CID)
		if err != nil {
			reply(w, nil, errorf(ErrBadRequest, "cid: %v", err))
			return
		}
		p, err := peer.Decode(req.Peer)
		if err != nil {
			reply(w, nil, errorf(ErrBadRequest, "peer: %v", err))
			return
		}
		res := LabFetchResult{ViaStart: n.via(p)}
		ctx, cancel := context.WithTimeout(r.Context(), 5*time.Minute)
		defer cancel()
		start := time.Now()
		st, err := n.blobs.Fetch(ctx, c, []peer.ID{p}, nil)
		res.Seconds = time.Since(start).Seconds()
		res.Bytes = st.Bytes
		res.ViaEnd = n.via(p)
		if err != nil {
			err = fmt.Errorf("fetch %s from %s: %w", c, p, err)
		}
		reply(w, res, err)
	})
}

// via is how p is connected now: direct, relayed or none.
func (n *Node) via(p peer.ID) string {
	v := "none"
	for _, c := range n.host.Network().ConnsToPeer(p) {
		if !isRelayed(c) {
			return "direct"
		}
		v = "relayed"
	}
	return v
}
