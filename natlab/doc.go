// Package natlab is the NAT lab: a test (lab_test.go, build tag natlab)
// that builds Linux network namespaces — an "internet" bridge, 10.99.0.0/24,
// with one public device, and two home networks each behind its own NAT
// router (iptables MASQUERADE; one variant symmetric with --random-fully) —
// runs real aura-node processes in them and checks, with timings, that
// devices behind NAT join, reach each other through the account's relay,
// move to a direct connection by hole punching, replicate with and without
// the public device, stay on the relay past libp2p's default circuit limits
// behind a symmetric NAT, and come back after the relay restarts.
//
// It needs root, ip (iproute2) and iptables, and the natlab build tag, which
// also builds the binaries with the tag (node/natlab.go: the lab's internet
// counts as public there, so libp2p runs NAT traversal in it):
//
//	go test -tags natlab -v ./natlab/
//
// The lab uses only addresses inside the namespaces it creates (named
// auranat<pid>…), removes them when it ends, also on failure, and first
// removes those of earlier runs whose process is gone. It imports nothing
// the product imports it for: no package imports natlab.
//
// Known edge, not root-caused: in about one run in four, the first write a
// home makes after the public device is killed reaches the other home only
// by anti-entropy (0.7–1.2 s; the lab sets sync.interval = 10s and logs a
// WARNING when it happens), as if gossip after the relayed-to-direct
// handover still routed through the dead device. CI retries the lab once.
package natlab
