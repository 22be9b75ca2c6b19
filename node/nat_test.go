package node

import (
	"strings"
	"testing"
)

func TestMergeRelaysByPeer(t *testing.T) {
	a := "/p2p/12D3KooWQYhTNQdmr3ArTeUHRYzFg94BKyTkoWBDWez9kSCVe2Xo"
	b := "/p2p/12D3KooWLyAMnxSQ3c8uSEXxDH4XhJmGvsiTd2cmNMAm2KzAwqJV"
	got, err := mergeRelays([]string{"/ip4/1.2.3.4/tcp/4401" + a, "/ip4/1.2.3.4/udp/4401/quic-v1" + a, "/ip4/5.6.7.8/tcp/1" + b, "/ip4/1.2.3.4/tcp/4401" + a})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || len(got[0].Addrs) != 2 || len(got[1].Addrs) != 1 || "/p2p/"+got[0].ID.String() != a {
		t.Fatalf("merged: %v", got)
	}
	if _, err := mergeRelays([]string{"/ip4/1.2.3.4/tcp/1"}); err == nil || !strings.Contains(err.Error(), "relay.static[0]") {
		t.Fatalf("entry without /p2p/: %v", err)
	}
}

func TestConfigNATKeys(t *testing.T) {
	c := DefaultConfig()
	if c.NAT.Reachability != ReachAuto || c.Relay.CircuitDataMB != defaultCircuitDataMB {
		t.Fatalf("defaults: %+v %+v", c.NAT, c.Relay)
	}
	out := string(c.Render())
	for _, k := range []string{"reachability = 'auto'", "circuit_duration = '1h0m0s'", "circuit_data_mb = 1024"} {
		if !strings.Contains(out, k) {
			t.Errorf("config.toml lacks %q", k)
		}
	}
	c.NAT.Reachability = "sometimes"
	c.Relay.CircuitDuration = Duration(1)
	err := c.Validate()
	if err == nil || !strings.Contains(err.Error(), "nat.reachability") || !strings.Contains(err.Error(), "relay.circuit_duration") {
		t.Fatalf("Validate: %v", err)
	}
}
