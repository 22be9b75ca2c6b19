//go:build natlab

package node

import (
	"testing"

	"github.com/multiformats/go-multiaddr"
	manet "github.com/multiformats/go-multiaddr/net"
)

func TestNATLabInternetIsPublic(t *testing.T) {
	for a, public := range map[string]bool{
		"/ip4/10.99.0.1/udp/1/quic-v1": true,
		"/ip4/10.99.0.254/tcp/1":       true,
		"/ip4/10.99.1.1/tcp/1":         false,
		"/ip4/10.98.255.255/tcp/1":     false,
		"/ip4/10.1.0.2/tcp/1":          false,
		"/ip4/192.168.1.1/tcp/1":       false,
		"/ip4/127.0.0.1/tcp/1":         false,
		"/ip4/8.8.8.8/tcp/1":           true,
	} {
		if got := manet.IsPublicAddr(multiaddr.StringCast(a)); got != public {
			t.Errorf("IsPublicAddr(%s) = %v, want %v", a, got, public)
		}
	}
}
