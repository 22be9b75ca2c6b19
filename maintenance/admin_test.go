package maintenance

import (
	"crypto/ed25519"
	"errors"
	"testing"

	"aura/crdt"
)

// adminCluster is an n-device, m-of-n cluster whose devices advertise the
// base protocol (CheckSession needs it).
func adminCluster(t *testing.T, n, m int) *cluster {
	c := newCluster(t, n, m)
	for i, r := range c.reps {
		out, err := r.WriteMeta(&crdt.DeviceMetadata{SupportedProtocols: []string{BaseProtocol}, UpgradePolicy: crdt.PolicyManual})
		c.must(err)
		c.deliver(i, out)
	}
	return c
}

func (c *cluster) dev(i int) crdt.DeviceID { return c.reps[i].Device() }

func TestAdminReplaceByApprovals(t *testing.T) {
	c := adminCluster(t, 3, 2)
	out, id, err := c.reps[1].ProposeAdminReplace(c.now, c.dev(1))
	c.must(err)
	c.deliver(1, out)
	if done, _ := c.reps[1].AdminOutcome(c.now, id); done {
		t.Fatal("one approval of two completed the replacement")
	}
	out, err = c.reps[2].ApproveAdminReplace(c.now, c.dev(1))
	c.must(err)
	c.deliver(2, out)
	for i, r := range c.reps {
		if done, err := r.AdminOutcome(c.now, id); !done || err != nil {
			t.Fatalf("device %d: outcome done=%v err=%v", i, done, err)
		}
		if r.State().Admin() != c.dev(1) {
			t.Fatalf("device %d: admin %s, want %s", i, r.State().Admin().Short(), c.dev(1).Short())
		}
		saved, err := r.AdminOverrides()
		c.must(err)
		if o, ok := saved[c.dev(0)]; !ok || o.New != c.dev(1) {
			t.Fatalf("device %d: %s holds %v", i, MetaAdminOverride, saved)
		}
	}
	if !c.hasEvent(EventAdminReplaced, nil) {
		t.Fatal("no admin-replaced event")
	}
	// The old admin can no longer admit devices; the new one can.
	newcomer := crdt.DeviceIDFromKey(key(9).Public().(ed25519.PublicKey))
	if _, err := c.reps[0].AddDevice(newcomer, "x", nil); !errors.Is(err, ErrNotPermitted) {
		t.Fatalf("old admin adds a device: got %v, want ErrNotPermitted", err)
	}
	out, err = c.reps[1].AddDevice(newcomer, "x", nil)
	c.must(err)
	c.deliver(1, out)
	for i, r := range c.reps {
		if !r.State().IsMember(newcomer) {
			t.Fatalf("device %d: the new admin's device is not a member", i)
		}
	}
}

func TestAdminReplaceAutoApprovesWhenAdminUnreachable(t *testing.T) {
	c := adminCluster(t, 3, 2)
	c.reps[2].cfg.AdminPolicy = AdminPolicy{AutoApproveAfter: 30_000}
	c.reps[2].SetAdminSeen(c.now)
	c.reps[1].cfg.AdminTimeout = 120_000
	out, id, err := c.reps[1].ProposeAdminReplace(c.now, c.dev(1))
	c.must(err)
	c.deliver(1, out)
	if done, _ := c.reps[2].AdminOutcome(c.now, id); done {
		t.Fatal("approved by itself while the admin was just seen")
	}
	rounds := c.reps[2].AdminRounds()
	if len(rounds) != 1 || !errors.Is(rounds[0].Verdict.Reason, ErrAwaitingOperator) {
		t.Fatalf("rounds %+v, want one awaiting the operator", rounds)
	}
	c.tick(31_000)
	if done, err := c.reps[0].AdminOutcome(c.now, id); !done || err != nil {
		t.Fatalf("after the admin was away 31 s: done=%v err=%v", done, err)
	}
	if c.reps[0].State().Admin() != c.dev(1) {
		t.Fatal("replaced admin does not see its replacement")
	}
}

func TestAdminReplaceFailures(t *testing.T) {
	t.Run("new device not a member", func(t *testing.T) {
		c := adminCluster(t, 3, 2)
		outsider := crdt.DeviceIDFromKey(key(42).Public().(ed25519.PublicKey))
		before := c.reps[1].Store().VersionVector().Total()
		if _, _, err := c.reps[1].ProposeAdminReplace(c.now, outsider); !errors.Is(err, ErrNotMember) {
			t.Fatalf("got %v, want ErrNotMember", err)
		}
		if c.reps[1].Store().VersionVector().Total() != before {
			t.Fatal("a refused request appended a fact")
		}
	})
	t.Run("already admin", func(t *testing.T) {
		c := adminCluster(t, 3, 2)
		if _, _, err := c.reps[1].ProposeAdminReplace(c.now, c.dev(0)); !errors.Is(err, ErrAlreadyAdmin) {
			t.Fatalf("got %v, want ErrAlreadyAdmin", err)
		}
	})
	t.Run("not enough approvals", func(t *testing.T) {
		c := adminCluster(t, 3, 2)
		out, id, err := c.reps[1].ProposeAdminReplace(c.now, c.dev(1))
		c.must(err)
		c.deliver(1, out)
		c.tick(c.reps[1].cfg.AdminTimeout + 1)
		done, err := c.reps[1].AdminOutcome(c.now, id)
		var ne *NotEnoughApprovalsError
		if !done || !errors.As(err, &ne) || !errors.Is(err, ErrNotEnoughApprovals) || ne.Votes != 1 || ne.Threshold != 2 {
			t.Fatalf("done=%v err=%v, want 1 of 2 approvals", done, err)
		}
		for i, r := range c.reps {
			if len(r.State().AdminReplacements) != 0 {
				t.Fatalf("device %d holds a replacement", i)
			}
		}
		// Too late to approve: the request expired, and the verdict says so;
		// the approval waits for the next request.
		if _, err := c.reps[2].ApproveAdminReplace(c.now, c.dev(1)); !errors.Is(err, ErrNoRequest) {
			t.Fatalf("late approval: got %v, want ErrNoRequest", err)
		}
		if rd := c.reps[2].AdminRounds(); len(rd) != 1 || !errors.Is(rd[0].Verdict.Reason, ErrRequestExpired) {
			t.Fatalf("rounds after expiry: %+v", rd)
		}
	})
	t.Run("a device signs one replacement per admin", func(t *testing.T) {
		c := adminCluster(t, 4, 3)
		out, _, err := c.reps[1].ProposeAdminReplace(c.now, c.dev(1))
		c.must(err)
		c.deliver(1, out)
		out, err = c.reps[3].ApproveAdminReplace(c.now, c.dev(1))
		c.must(err)
		c.deliver(3, out)
		out, _, err = c.reps[2].ProposeAdminReplace(c.now, c.dev(2))
		c.must(err)
		c.deliver(2, out)
		if _, err := c.reps[3].ApproveAdminReplace(c.now, c.dev(2)); !errors.Is(err, ErrApprovedOther) {
			t.Fatalf("got %v, want ErrApprovedOther", err)
		}
		if _, _, err := c.reps[1].ProposeAdminReplace(c.now, c.dev(3)); !errors.Is(err, ErrApprovedOther) {
			t.Fatalf("proposer of one asks for another: got %v, want ErrApprovedOther", err)
		}
	})
	t.Run("stale epoch", func(t *testing.T) {
		c := adminCluster(t, 3, 2)
		out, _, err := c.reps[1].ProposeAdminReplace(c.now, c.dev(1))
		c.must(err)
		c.deliver(1, out)
		// The admin admits a device meanwhile: the request's epoch is gone.
		out, err = c.reps[0].AddDevice(crdt.DeviceIDFromKey(key(8).Public().(ed25519.PublicKey)), "y", nil)
		c.must(err)
		c.deliver(0, out)
		if _, err := c.reps[2].ApproveAdminReplace(c.now, c.dev(1)); !errors.Is(err, ErrStaleEpoch) {
			t.Fatalf("got %v, want ErrStaleEpoch", err)
		}
		if len(c.reps[2].State().AdminReplacements) != 0 {
			t.Fatal("a stale request completed")
		}
	})
}

// Two requests that both gather M partials (M ≤ N/2 lets disjoint sets
// sign): every device ends with the winner AdminOverride.Wins names.
func TestCompetingAdminReplacementsConverge(t *testing.T) {
	c := adminCluster(t, 5, 2)
	c.down[2], c.down[4] = true, true // each side proposes without hearing the other
	out, id1, err := c.reps[1].ProposeAdminReplace(c.now, c.dev(1))
	c.must(err)
	c.down[3] = true
	c.down[2] = false
	c.deliver(1, out)
	out, err = c.reps[2].ApproveAdminReplace(c.now, c.dev(1))
	c.must(err)
	c.deliver(2, out)
	c.down[1], c.down[2], c.down[3], c.down[4] = true, true, false, false
	out, id2, err := c.reps[3].ProposeAdminReplace(c.now, c.dev(3))
	c.must(err)
	c.deliver(3, out)
	out, err = c.reps[4].ApproveAdminReplace(c.now, c.dev(3))
	c.must(err)
	c.deliver(4, out)
	// Heal: everyone exchanges everything.
	for i := range c.reps {
		c.down[i] = false
	}
	for i, r := range c.reps {
		var all []*crdt.Fact
		vv := r.Store().VersionVector()
		for _, a := range vv.Authors() {
			c.must(r.Store().Range(a, 1, vv[a], func(f *crdt.Fact) error { all = append(all, f); return nil }))
		}
		c.deliver(i, Output{Publish: all})
	}
	replaced := 0
	vv := c.reps[0].Store().VersionVector()
	for _, a := range vv.Authors() {
		c.must(c.reps[0].Store().Range(a, 1, vv[a], func(f *crdt.Fact) error {
			if f.Kind == crdt.KindAdminReplaced {
				replaced++
			}
			return nil
		}))
	}
	if replaced != 2 {
		t.Fatalf("%d AdminReplaced facts, want the two competing ones", replaced)
	}
	want := crdt.AdminOverride{New: c.dev(1), ActivationEpoch: c.reps[1].State().Epoch}
	if o := (crdt.AdminOverride{New: c.dev(3), ActivationEpoch: want.ActivationEpoch}); o.Wins(want) {
		want = o
	}
	for i, r := range c.reps {
		if got := r.State().AdminReplacements[c.dev(0)]; got != want {
			t.Fatalf("device %d: winner %s, want %s", i, got.New.Short(), want.New.Short())
		}
		for _, id := range [][16]byte{id1, id2} {
			done, err := r.AdminOutcome(c.now, id)
			won := r.State().AdminProposals[id].Proposal.New == want.New
			if !done || (won && err != nil) || (!won && !errors.Is(err, ErrLostToCompeting)) {
				t.Fatalf("device %d request %x: done=%v err=%v", i, id[:2], done, err)
			}
		}
	}
	if c.reps[0].State().Digest() != c.reps[4].State().Digest() {
		t.Fatal("devices disagree after competing replacements")
	}
}

func TestDecideAdminApproval(t *testing.T) {
	c := adminCluster(t, 3, 2)
	st := c.reps[2].State()
	req := func(prev, next crdt.DeviceID, deadline uint64) *crdt.AdminReplaceProposed {
		return &crdt.AdminReplaceProposed{ProposalID: [16]byte{9}, Previous: prev, New: next, ActivationEpoch: st.Epoch + 1, Deadline: deadline}
	}
	outsider := crdt.DeviceIDFromKey(key(40).Public().(ed25519.PublicKey))
	now := c.now
	cases := []struct {
		name string
		in   AdminApprovalInput
		want ApprovalKind
		err  error
	}{
		{"operator approved", AdminApprovalInput{Request: req(c.dev(0), c.dev(1), 0), Operator: true}, ApprovalOperator, nil},
		{"no operator, no policy", AdminApprovalInput{Request: req(c.dev(0), c.dev(1), 0)}, ApprovalRefused, ErrAwaitingOperator},
		{"admin seen recently", AdminApprovalInput{Request: req(c.dev(0), c.dev(1), 0), Policy: AdminPolicy{AutoApproveAfter: 1000}, AdminSeen: now - 999}, ApprovalRefused, ErrAwaitingOperator},
		{"admin away long enough", AdminApprovalInput{Request: req(c.dev(0), c.dev(1), 0), Policy: AdminPolicy{AutoApproveAfter: 1000}, AdminSeen: now - 1000}, ApprovalAuto, nil},
		{"new admin not a member", AdminApprovalInput{Request: req(c.dev(0), outsider, 0), Operator: true}, ApprovalRefused, ErrNotMember},
		{"previous is not the admin", AdminApprovalInput{Request: req(c.dev(1), c.dev(2), 0), Operator: true}, ApprovalRefused, ErrNotCurrentAdmin},
		{"expired", AdminApprovalInput{Request: req(c.dev(0), c.dev(1), uint64(now-1)), Operator: true}, ApprovalRefused, ErrRequestExpired},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tc.in.State, tc.in.Self, tc.in.Now = st, c.dev(2), now
			got := DecideAdminApproval(tc.in)
			if got.Kind != tc.want || (tc.err == nil) != (got.Reason == nil) || (tc.err != nil && !errors.Is(got.Reason, tc.err)) {
				t.Fatalf("got %v (%v), want %v (%v)", got.Kind, got.Reason, tc.want, tc.err)
			}
		})
	}
	// The replaced admin never approves by itself.
	in := AdminApprovalInput{State: c.reps[0].State(), Self: c.dev(0), Request: req(c.dev(0), c.dev(1), 0),
		Policy: AdminPolicy{AutoApproveAfter: 1}, Now: now}
	if got := DecideAdminApproval(in); !errors.Is(got.Reason, ErrAwaitingOperator) {
		t.Fatalf("replaced admin by itself: %v", got.Reason)
	}
}
