package node

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
)

// DemoOptions configure RunDemo.
type DemoOptions struct {
	Nodes int // default 3
	// Dir holds the nodes' homes (default: a temporary directory, removed
	// at the end).
	Dir string
	// Logger receives the nodes' logs (default: discarded).
	Logger *slog.Logger
	// Timeout bounds each wait for convergence (default 20 s).
	Timeout time.Duration
}

// TestConfig is a config for loopback meshes (demo and tests): 127.0.0.1
// with ephemeral ports, no mDNS, no port mapping, no metrics, fast timers.
func TestConfig() Config {
	c := DefaultConfig()
	c.Name = ""
	c.Listen = []string{"/ip4/127.0.0.1/tcp/0"}
	c.Discovery.MDNS = boolp(false)
	c.NAT = NATConfig{PortMap: boolp(false), HolePunching: boolp(false), AutoNAT: boolp(false)}
	c.Metrics.Address = "off"
	c.Sync.Interval = Duration(2 * time.Second)
	c.Sync.Reconnect = Duration(500 * time.Millisecond)
	c.Snapshot.Tick = Duration(100 * time.Millisecond)
	c.Snapshot.Timeout = Duration(15 * time.Second)
	c.Snapshot.WatermarkMB = -1
	c.Storage.BallastMB = -1 // many homes at once: no 16 MB reserve each
	c.Upgrade.Check = Duration(200 * time.Millisecond)
	return c
}

// RunDemo brings up a mesh of in-process nodes on 127.0.0.1 and runs every
// flow built so far, narrating to w: account, invites, writes, a
// partition and its healing, threshold keygen, a snapshot round with GC,
// the restore of a new device, a backup exported and restored into a
// fresh home that joins and converges, and a device removed and the key
// reshared without it.
func RunDemo(ctx context.Context, w io.Writer, o DemoOptions) (err error) {
	if o.Nodes == 0 {
		o.Nodes = 3
	}
	if o.Nodes < 2 {
		return fmt.Errorf("--nodes must be at least 2")
	}
	if o.Timeout == 0 {
		o.Timeout = 20 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	dir := o.Dir
	if dir == "" {
		if dir, err = os.MkdirTemp("", "aura-demo-"); err != nil {
			return err
		}
		defer os.RemoveAll(dir)
	}
	start := time.Now()
	say := func(format string, args ...any) {
		fmt.Fprintf(w, "[%5.1fs] %s\n", time.Since(start).Seconds(), fmt.Sprintf(format, args...))
	}
	var nodes []*Node
	defer func() {
		for _, n := range nodes {
			n.Close()
		}
	}()
	newNode := func(i int) (*Node, error) {
		home := filepath.Join(dir, fmt.Sprintf("node%d", i+1))
		cfg := TestConfig()
		cfg.Name = fmt.Sprintf("node%d", i+1)
		if _, err := Init(home, InitOptions{Config: &cfg}); err != nil {
			return nil, err
		}
		return New(ctx, Options{Home: home, Logger: o.Logger.With("node", cfg.Name), NoSocket: true})
	}
	say("starting %d nodes on 127.0.0.1 in %s", o.Nodes, dir)
	for i := 0; i < o.Nodes; i++ {
		n, err := newNode(i)
		if err != nil {
			return err
		}
		nodes = append(nodes, n)
		say("  node%d is device %s at %s", i+1, n.Device(), n.host.Addrs()[0])
	}
	m := o.Nodes/2 + 1
	acct, err := nodes[0].CreateAccount("demo", uint64(m))
	if err != nil {
		return err
	}
	say("node1 created account %s (it is the admin)", acct)
	for i, n := range nodes[1:] {
		code, _, err := nodes[0].Invite(0)
		if err != nil {
			return err
		}
		if _, err := n.Join(ctx, code); err != nil {
			return fmt.Errorf("node%d join: %w", i+2, err)
		}
		say("node%d joined with a one-time invite code (%d characters)", i+2, len(code))
	}
	meshUp(ctx, nodes)
	if err := converge(ctx, o.Timeout, nodes, func() bool {
		for _, n := range nodes {
			if len(n.Members()) != len(nodes) {
				return false
			}
		}
		return true
	}); err != nil {
		return fmt.Errorf("membership did not spread: %w", err)
	}
	say("every node knows all %d devices; the mesh is private (the gater admits only them)", len(nodes))

	for i, n := range nodes {
		if _, err := n.Put(fmt.Sprintf("greeting/node%d", i+1), []byte(fmt.Sprintf("hello from node%d", i+1))); err != nil {
			return err
		}
	}
	say("each node wrote a fact; gossip spreads them")
	if err := waitSame(ctx, o.Timeout, nodes); err != nil {
		return err
	}
	say("converged: state digest %s on all %d nodes", short(nodes[0].Digest().String()), len(nodes))

	last := nodes[len(nodes)-1]
	rest := nodes[:len(nodes)-1]
	say("partition: node%d is cut off (connections closed, gaters refuse it)", len(nodes))
	for _, n := range rest {
		n.Block(last.host.ID(), true)
		last.Block(n.host.ID(), true)
	}
	for i := 0; i < 5; i++ {
		if _, err := rest[i%len(rest)].Put(fmt.Sprintf("majority/%d", i), []byte("written during the partition")); err != nil {
			return err
		}
		if _, err := last.Put(fmt.Sprintf("island/%d", i), []byte("written offline")); err != nil {
			return err
		}
	}
	if err := waitSame(ctx, o.Timeout, rest); err != nil {
		return err
	}
	say("both sides wrote 5 facts: majority digest %s, node%d digest %s", short(rest[0].Digest().String()), len(nodes), short(last.Digest().String()))
	say("healing the partition")
	for _, n := range rest {
		n.Block(last.host.ID(), false)
		last.Block(n.host.ID(), false)
	}
	meshUp(ctx, nodes)
	if err := waitSame(ctx, o.Timeout, nodes); err != nil {
		return err
	}
	say("converged after healing: state digest %s on all nodes, %d facts each", short(nodes[0].Digest().String()), nodes[0].store.Stats().Facts)
	v, _ := last.Get("majority/0")
	say("node%d reads majority/0 = %q", len(nodes), v)

	// Maintenance: threshold key, snapshot, GC, restore.
	gk, err := nodes[0].Keygen(ctx, m)
	if err != nil {
		return err
	}
	say("distributed key generation: %d-of-%d group key (epoch %d); each device sealed its share at rest", gk.Threshold, len(gk.Participants), gk.KeyEpoch)
	if err := waitSame(ctx, o.Timeout, nodes); err != nil {
		return err
	}
	before := nodes[0].store.Stats()
	info, err := nodes[0].Propose()
	if err != nil {
		return err
	}
	say("node1 proposed snapshot %s over %d facts; its writer fence is up", short(info.ID), info.Facts)
	if _, err := nodes[0].Put("during/fence", []byte("buffered, then committed")); err != nil {
		return err
	}
	if err := converge(ctx, o.Timeout, nodes, func() bool {
		for _, n := range nodes {
			if n.Status().LastGC == nil {
				return false
			}
		}
		return true
	}); err != nil {
		return fmt.Errorf("snapshot did not complete and collect everywhere: %w", err)
	}
	st := nodes[0].Status()
	say("snapshot completed with %d votes (threshold %d); every node verified it and collected garbage", len(st.NewestSnapshot.Participants), m)
	after := nodes[0].store.Stats()
	say("  node1 journal: %d facts / %d bytes before → %d facts / %d bytes after", before.Facts, before.Bytes, after.Facts, after.Bytes)
	if err := waitSame(ctx, o.Timeout, nodes); err != nil {
		return err
	}
	if v, ok := nodes[1].Get("during/fence"); ok {
		say("the write buffered behind the fence committed after: during/fence = %q", v)
	}

	fresh, err := newNode(len(nodes))
	if err != nil {
		return err
	}
	nodes = append(nodes, fresh)
	code, _, err := nodes[0].Invite(0)
	if err != nil {
		return err
	}
	if _, err := fresh.Join(ctx, code); err != nil {
		return fmt.Errorf("new node join: %w", err)
	}
	meshUp(ctx, nodes)
	say("a new device node%d joined; the facts below the snapshot are gone, so it restores", len(nodes))
	res, err := fresh.Restore(ctx, nil)
	if err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	// (The restore its first sync started may have done it already.)
	say("node%d fetched the %d-byte snapshot blob by CID from %d peer(s), verified the threshold signature and digest, and hydrated", len(nodes), res.Snapshot.BlobSize, res.Peers)
	if err := waitSame(ctx, o.Timeout, nodes); err != nil {
		return err
	}
	v, _ = fresh.Get("greeting/node1")
	say("converged: digest %s on all %d nodes; node%d reads greeting/node1 = %q", short(fresh.Digest().String()), len(nodes), len(nodes), v)
	if err := demoBackup(ctx, say, dir, &nodes, o); err != nil {
		return err
	}
	if err := demoUpgrade(ctx, say, nodes, o); err != nil {
		return err
	}
	if err := demoAdmin(ctx, say, nodes, o); err != nil {
		return err
	}
	if err := demoRemove(ctx, say, nodes, o); err != nil {
		return err
	}
	say("demo finished in %.1fs", time.Since(start).Seconds())
	return nil
}

func short(s string) string {
	if len(s) > 12 {
		return s[:12]
	}
	return s
}

// meshUp connects every pair of nodes.
func meshUp(ctx context.Context, nodes []*Node) {
	for i, a := range nodes {
		for _, b := range nodes[i+1:] {
			cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			_ = a.Connect(cctx, peer.AddrInfo{ID: b.host.ID(), Addrs: b.host.Addrs()})
			cancel()
		}
	}
}

var errNoConvergence = errors.New("no convergence within the timeout")

func converge(ctx context.Context, timeout time.Duration, nodes []*Node, ok func() bool) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for !ok() {
		select {
		case <-ctx.Done():
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return errNoConvergence
			}
			return ctx.Err()
		case <-t.C:
		}
	}
	return nil
}

// waitSame waits until the nodes hold the same journal prefix and state.
func waitSame(ctx context.Context, timeout time.Duration, nodes []*Node) error {
	err := converge(ctx, timeout, nodes, func() bool { return Converged(nodes) })
	if err != nil {
		var desc string
		for i, n := range nodes {
			desc += fmt.Sprintf(" node%d=%s/%d", i+1, short(n.Digest().String()), n.VersionVector().Total())
		}
		return fmt.Errorf("%w:%s", err, desc)
	}
	return nil
}

// Converged reports whether all nodes have the same state digest and
// version vector.
func Converged(nodes []*Node) bool {
	d := nodes[0].Digest()
	v := nodes[0].VersionVector()
	for _, n := range nodes[1:] {
		if n.Digest() != d || !n.VersionVector().Equal(v) {
			return false
		}
	}
	return true
}
