package maintenance

import (
	"bytes"
	"errors"
	"testing"

	"aura/crdt"
)

// Writes behind the fence are listed in commit order by Pending, and a
// write too large to ever sign is refused before it is buffered (never
// acknowledged and then lost at release).
func TestPendingListsBufferedWritesAndRefusesOversized(t *testing.T) {
	c := newCluster(t, 3, 2)
	c.down[1], c.down[2] = true, true
	out, err := c.reps[0].Propose(c.now)
	c.must(err)
	c.deliver(0, out)
	r := c.reps[0]
	for _, b := range []crdt.Body{&crdt.Put{Key: "a", Value: []byte("1")}, &crdt.Delete{Key: "b"}, &crdt.Put{Key: "a", Value: []byte("2")}} {
		_, err := r.Write(c.now, b)
		c.must(err)
	}
	big := &crdt.Put{Key: "big", Value: bytes.Repeat([]byte{1}, crdt.MaxBodySize)}
	if _, err := r.Write(c.now, big); !errors.Is(err, crdt.ErrTooLarge) {
		t.Fatalf("oversized write behind the fence: err = %v, want ErrTooLarge", err)
	}
	p, err := r.Pending()
	c.must(err)
	if len(p) != 3 || r.Buffered() != 3 {
		t.Fatalf("pending %d, buffered %d; want 3", len(p), r.Buffered())
	}
	if put, ok := p[2].(*crdt.Put); !ok || put.Key != "a" || string(put.Value) != "2" {
		t.Fatalf("pending[2] = %#v, want the last put of a", p[2])
	}
	if _, ok := p[1].(*crdt.Delete); !ok {
		t.Fatalf("pending[1] = %#v, want the delete", p[1])
	}
}

// Propose returns the id of the round it opened; event kinds are typed
// and print their names.
func TestProposeReturnsItsIDAndEventsAreTyped(t *testing.T) {
	c := newCluster(t, 3, 2)
	out, err := c.reps[0].Propose(c.now)
	c.must(err)
	if out.Proposed == ([16]byte{}) || c.reps[0].State().Proposals[out.Proposed] == nil {
		t.Fatalf("Propose returned id %x, not the round it opened", out.Proposed)
	}
	if EventProposed.String() != "proposed" || EventGcRefused.String() != "gc-refused" || !EventMismatch.Warning() || EventVoted.Warning() {
		t.Fatal("event kinds lost their names")
	}
}

type failDelete struct {
	Meta
	err error
}

func (f failDelete) Delete(string) error { return f.err }

// A storage failure while the fence drops is reported as an error event
// carrying the cause (not swallowed), and no acknowledged write is lost.
func TestReleaseReportsMetaFailures(t *testing.T) {
	c := newCluster(t, 3, 2)
	c.down[1], c.down[2] = true, true
	out, err := c.reps[0].Propose(c.now)
	c.must(err)
	c.deliver(0, out)
	r := c.reps[0]
	_, err = r.Write(c.now, &crdt.Put{Key: "k", Value: []byte("v")})
	c.must(err)
	boom := errors.New("disk on fire")
	r.cfg.Meta = failDelete{Meta: r.cfg.Meta, err: boom}
	c.tick(20_000) // past the deadline: the round is abandoned, the fence drops
	found := false
	for _, e := range c.events {
		found = found || (e.Kind == EventError && errors.Is(e.Err, boom))
	}
	if !found {
		t.Fatalf("no error event carrying the cause; events: %v", c.events)
	}
	if v, ok := r.State().Value("k"); !ok || string(v) != "v" {
		t.Fatal("the buffered write did not commit")
	}
}
