//go:build !natlab

package node

import (
	"testing"

	"github.com/multiformats/go-multiaddr"
	manet "github.com/multiformats/go-multiaddr/net"
)

// Without the natlab build tag the lab's internet stays a private range.
func TestLabInternetPrivateInProduct(t *testing.T) {
	if manet.IsPublicAddr(multiaddr.StringCast("/ip4/10.99.0.1/tcp/1")) {
		t.Fatal("10.99.0.1 counts as public without the natlab tag")
	}
}

func TestNoLabRoutesInProduct(t *testing.T) {
	if labRoutes != nil {
		t.Fatal("the lab's control API endpoints are in a build without the natlab tag")
	}
}
