package maintenance

import (
	"crypto/ed25519"
	"crypto/sha256"
	"fmt"
	"testing"

	"aura/crdt"
	"aura/threshold"
)

// cluster drives replicas in one goroutine, delivering every published
// fact to every replica that is up (a perfect network, minus the downs).
type cluster struct {
	t      *testing.T
	reps   []*Replica
	down   map[int]bool
	now    int64
	events []Event
	keys   []ed25519.PrivateKey
	blobs  []*MemBlobs
}

func key(i int) ed25519.PrivateKey {
	seed := sha256.Sum256([]byte(fmt.Sprintf("maintenance test device %d", i)))
	return ed25519.NewKeyFromSeed(seed[:])
}

func newReplica(t *testing.T, k ed25519.PrivateKey, blobs *MemBlobs) *Replica {
	r, err := Open(Config{Key: k, Store: crdt.NewMemStore(crdt.AccountID{}), Meta: NewMemMeta(), Blobs: blobs,
		SnapshotTimeout: 10_000, Watermark: -1})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// newCluster forms an account of n devices with an m-of-n dealt group key.
func newCluster(t *testing.T, n, m int) *cluster {
	c := &cluster{t: t, down: map[int]bool{}, now: 1_000_000}
	for i := 0; i < n; i++ {
		c.keys = append(c.keys, key(i))
		c.blobs = append(c.blobs, NewMemBlobs())
		c.reps = append(c.reps, newReplica(t, c.keys[i], c.blobs[i]))
	}
	out, err := c.reps[0].CreateAccount("test", uint64(m), [16]byte{7})
	c.must(err)
	for i := 1; i < n; i++ {
		c.must(c.reps[i].Join(c.reps[0].Account()))
	}
	c.deliver(0, out)
	for i := 1; i < n; i++ {
		out, err := c.reps[0].AddDevice(c.reps[i].Device(), fmt.Sprintf("d%d", i), nil)
		c.must(err)
		c.deliver(0, out)
	}
	key, shares, err := threshold.Deal(threshold.NewBN256(), threshold.SeededReader([]byte("cluster")), m, n)
	c.must(err)
	var parts []crdt.DeviceID
	for i := 0; i < n; i++ {
		parts = append(parts, c.reps[i].Device())
		c.reps[i].SetShare(shares[i])
	}
	out, err = c.reps[0].PublishGroupKey(key, parts)
	c.must(err)
	c.deliver(0, out)
	return c
}

func (c *cluster) must(err error) {
	c.t.Helper()
	if err != nil {
		c.t.Fatal(err)
	}
}

// deliver hands the facts of out to every other up replica, and their
// reactions onward, until quiet.
func (c *cluster) deliver(from int, out Output) {
	c.t.Helper()
	type msg struct {
		from  int
		facts []*crdt.Fact
	}
	c.events = append(c.events, out.Events...)
	queue := []msg{{from, out.Publish}}
	for len(queue) > 0 {
		m := queue[0]
		queue = queue[1:]
		if len(m.facts) == 0 {
			continue
		}
		for i, r := range c.reps {
			if i == m.from || c.down[i] {
				continue
			}
			_, o, err := r.Receive(c.now, m.facts)
			c.must(err)
			c.events = append(c.events, o.Events...)
			if len(o.Publish) > 0 {
				queue = append(queue, msg{i, o.Publish})
			}
		}
	}
}

// tick advances the clock and ticks every up replica.
func (c *cluster) tick(ms int64) {
	c.now += ms
	for i, r := range c.reps {
		if !c.down[i] {
			c.deliver(i, r.Tick(c.now))
		}
	}
}

func (c *cluster) write(i int, key, val string) Output {
	c.t.Helper()
	out, err := c.reps[i].Write(c.now, &crdt.Put{Key: key, Value: []byte(val)})
	c.must(err)
	c.deliver(i, out)
	return out
}

func (c *cluster) hasEvent(kind EventKind, dev *crdt.DeviceID) bool {
	for _, e := range c.events {
		if e.Kind == kind && (dev == nil || e.Device == *dev) {
			return true
		}
	}
	return false
}
