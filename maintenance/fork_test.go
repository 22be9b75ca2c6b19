package maintenance

import (
	"slices"
	"strings"
	"testing"

	"aura/crdt"
)

// within hands out's facts from replica from to the other replicas of
// group, and their reactions onward inside group, until quiet: the
// network of a partition.
func (c *cluster) within(group []int, from int, out Output) {
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
		for _, i := range group {
			if i == m.from || c.down[i] {
				continue
			}
			_, o, err := c.reps[i].Receive(c.now, m.facts)
			c.must(err)
			c.events = append(c.events, o.Events...)
			queue = append(queue, msg{i, o.Publish})
		}
	}
}

// syncInto hands every fact replica from holds to replica to (an
// anti-entropy exchange), and routes the reactions inside group.
func (c *cluster) syncInto(group []int, from, to int) {
	c.t.Helper()
	var facts []*crdt.Fact
	c.must(c.reps[from].Store().All(func(f *crdt.Fact) error { facts = append(facts, f); return nil }))
	_, out, err := c.reps[to].Receive(c.now, facts)
	c.must(err)
	c.within(group, to, out)
}

func (c *cluster) restart(i int) {
	c.t.Helper()
	old := c.reps[i]
	r, err := Open(old.cfg)
	c.must(err)
	r.SetShare(old.Share())
	c.reps[i] = r
}

func votedFor(r *Replica, id [16]byte) bool {
	ref := r.State().Proposals[id]
	if ref == nil {
		return false
	}
	_, ok := ref.Votes[r.Device()]
	return ok
}

// TestNoForkAfterUnseenCompletion is the schedule of simulator seed 149
// (5 devices, chaos), without the simulator: a partition {0,1,4} | {2,3};
// each side writes what the other lacks; device 0's round A completes
// with the votes of 0, 4 and 1, but the completion never reaches 4. Then
// 4 either restarts (its vote lock was rebuilt only at the next Tick, so
// the first Receive could vote again) or simply waits until its time lock
// on A expires, and joins the other side, where device 2 proposes B, whose
// frontier holds the other side's write and not A's. 4 holds all of B's
// frontier and the digest matches. Its vote would complete B with 2 and 3:
// two completed snapshots with incomparable frontiers, which no device can
// get past (sync stops at the pruned floors, restore refuses a snapshot
// that does not cover its base). The cover rule refuses that vote; after
// the heal a round covering both completes and everyone converges.
func TestNoForkAfterUnseenCompletion(t *testing.T) {
	for _, how := range []string{"restart", "lock-expired"} {
		t.Run(how, func(t *testing.T) {
			c := newCluster(t, 5, 3)
			left, right := []int{0, 1, 4}, []int{2, 3}
			c.within(left, 0, c.mustWrite(0, "left", "a"))
			c.within(right, 2, c.mustWrite(2, "right", "b"))

			// Round A: 4 votes first, then 1, and 0 completes; 4 never
			// hears of the completion.
			outA, err := c.reps[0].Propose(c.now)
			c.must(err)
			idA := proposalIn(t, outA)
			c.within([]int{0, 4}, 0, outA)
			c.syncInto([]int{0, 1}, 0, 1)
			if c.reps[0].State().Completed[idA] == nil {
				t.Fatal("round A did not complete")
			}
			if !votedFor(c.reps[4], idA) || c.reps[4].State().Completed[idA] != nil {
				t.Fatal("set-up: device 4 must have voted for A and not know it completed")
			}

			switch how {
			case "restart":
				c.restart(4)
			case "lock-expired":
				c.now += 31_000 // past A's deadline plus two timeouts
				c.within([]int{4}, 4, c.reps[4].Tick(c.now))
			}

			// Round B on the right, with 4 joining it.
			outB, err := c.reps[2].Propose(c.now)
			c.must(err)
			idB := proposalIn(t, outB)
			c.within(right, 2, outB)
			join := []int{2, 3, 4}
			c.syncInto(join, 2, 4)
			c.syncInto(join, 4, 2)
			pa, pb := c.reps[0].State().Proposals[idA].Proposal.Frontier, c.reps[2].State().Proposals[idB].Proposal.Frontier
			if pa.Covers(pb) || pb.Covers(pa) {
				t.Fatal("set-up: A's and B's frontiers must be incomparable")
			}
			if !c.reps[4].Store().VersionVector().Covers(pb) {
				t.Fatal("set-up: device 4 must hold B's whole frontier")
			}
			if votedFor(c.reps[4], idB) {
				t.Fatal("device 4 voted for B, whose frontier does not cover A's it voted for")
			}
			if c.reps[2].State().Completed[idB] != nil {
				t.Fatal("B completed: two completed snapshots with incomparable frontiers")
			}
			refused := slices.ContainsFunc(c.events, func(e Event) bool {
				return e.Kind == EventRefused && e.Proposal == idB && strings.Contains(e.Detail, "voted for")
			})
			if !refused {
				t.Fatal("no refusal event naming the vote that B does not cover")
			}

			// Heal: B runs out, everyone syncs, and a round covering both
			// sides completes; every device then rests on it.
			c.now += 11_000
			for i := range c.reps {
				c.within([]int{0, 1, 2, 3, 4}, i, c.reps[i].Tick(c.now))
			}
			c.heal()
			out, err := c.reps[2].Propose(c.now)
			c.must(err)
			c.deliver(2, out)
			newest := c.reps[2].State().NewestSnapshot()
			if newest == nil || !newest.Snapshot.Frontier.Covers(pa) || !newest.Snapshot.Frontier.Covers(pb) {
				t.Fatal("no snapshot covering both sides completed after the heal")
			}
			for i, r := range c.reps {
				if pid, _ := r.Base(); pid != newest.ProposalID {
					t.Errorf("device %d rests on %x, not on the covering snapshot %x", i, pid[:4], newest.ProposalID[:4])
				}
				if r.State().Digest() != c.reps[0].State().Digest() {
					t.Errorf("device %d did not converge", i)
				}
				for _, k := range []string{"left", "right"} {
					if _, ok := r.State().Value(k); !ok {
						t.Errorf("device %d lost the write %q", i, k)
					}
				}
			}
		})
	}
}

// TestVoteCoverRuleOutlivesAbandonment: a device that voted for a round
// that was then abandoned still refuses a round whose frontier does not
// cover it (an abandonment does not prove that nobody completed it: a
// device whose clock runs late may have), and votes again for one that
// covers it. The others complete without it meanwhile.
func TestVoteCoverRuleOutlivesAbandonment(t *testing.T) {
	c := newCluster(t, 5, 3)
	c.write(1, "k", "v")
	// Round A holds a write that only 0 and 3 have; it gets their votes
	// only, and is abandoned.
	c.within([]int{0, 3}, 0, c.mustWrite(0, "x", "only 0 and 3"))
	outA, err := c.reps[0].Propose(c.now)
	c.must(err)
	idA := proposalIn(t, outA)
	c.within([]int{0, 3}, 0, outA)
	if !votedFor(c.reps[3], idA) {
		t.Fatal("device 3 did not vote for A")
	}
	c.now += 100_000
	c.within([]int{0, 3}, 0, c.reps[0].Tick(c.now))
	if ref := c.reps[3].State().Proposals[idA]; !ref.Abandoned {
		t.Fatal("A was not abandoned")
	}
	c.down[0] = true

	// Round B lacks A's write: 3 refuses it, 1, 2 and 4 complete it.
	outB, err := c.reps[2].Propose(c.now)
	c.must(err)
	idB := proposalIn(t, outB)
	c.deliver(2, outB)
	if votedFor(c.reps[3], idB) {
		t.Fatal("device 3 voted for B, below the round A it voted for")
	}
	if c.reps[2].State().Completed[idB] == nil {
		t.Fatal("B did not complete with the other three")
	}

	// Round C covers A and B: 3 votes again.
	for _, i := range []int{1, 2, 4} {
		c.syncFrom(3, i)
	}
	outC, err := c.reps[1].Propose(c.now)
	c.must(err)
	idC := proposalIn(t, outC)
	c.deliver(1, outC)
	if !votedFor(c.reps[3], idC) || c.reps[1].State().Completed[idC] == nil {
		t.Fatal("a round covering A got no vote from 3, or did not complete")
	}
}

func (c *cluster) mustWrite(i int, key, val string) Output {
	c.t.Helper()
	out, err := c.reps[i].Write(c.now, &crdt.Put{Key: key, Value: []byte(val)})
	c.must(err)
	return out
}

// proposalIn is the id of the SnapshotProposed that out publishes.
func proposalIn(t *testing.T, out Output) [16]byte {
	t.Helper()
	for _, f := range out.Publish {
		if f.Kind == crdt.KindSnapshotProposed {
			b, err := f.DecodeBody()
			if err != nil {
				t.Fatal(err)
			}
			return b.(*crdt.SnapshotProposed).ProposalID
		}
	}
	t.Fatal("no proposal published")
	return [16]byte{}
}

// heal runs anti-entropy between every pair of replicas, as a driver
// does: a replica below a peer's pruned floor first restores from the
// snapshot that peer rests on (its blob from the peer), then takes the
// facts it lacks.
func (c *cluster) heal() {
	c.t.Helper()
	for range 2 {
		for i, from := range c.reps {
			for j, to := range c.reps {
				if i == j || c.down[i] || c.down[j] {
					continue
				}
				if pid, _ := from.Base(); !to.Store().VersionVector().Covers(from.Store().PrunedTo()) {
					done := from.State().Completed[pid].Completed
					if to.NeedsRestore(&done) {
						blob, err := c.blobs[i].Get(done.Snapshot.BlobCID)
						c.must(err)
						out, err := to.Restore(c.now, &done, blob)
						c.must(err)
						c.deliver(j, out)
					}
				}
				c.syncFrom(i, j)
			}
		}
	}
}
