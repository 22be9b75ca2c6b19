package node

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"aura/crdt"
	"aura/maintenance"
)

// adminMesh forms an account of k nodes (node i's config edited by
// edit(i, cfg)) with an m-of-k group key, every node advertising its
// protocols everywhere.
func adminMesh(t *testing.T, k int, m int, edit func(int, *Config)) []*Node {
	t.Helper()
	dir := t.TempDir()
	var ns []*Node
	for i := range k {
		ns = append(ns, startNodeWith(t, filepath.Join(dir, fmt.Sprintf("n%d", i+1)), func(c *Config) {
			if edit != nil {
				edit(i, c)
			}
		}))
	}
	formAccount(t, ns, uint64(m))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if _, err := ns[0].Keygen(ctx, m); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 20*time.Second, "group key and metadata everywhere", func() bool {
		for _, n := range ns {
			n.mu.Lock()
			st := n.rep.State()
			ok := st.GroupKey() != nil && len(st.Devices) == k
			n.mu.Unlock()
			if !ok {
				return false
			}
		}
		return true
	})
	return ns
}

// testKeyPub is a deterministic device public key that no node holds.
func testKeyPub(t *testing.T, i int) ed25519.PublicKey {
	t.Helper()
	seed := sha256.Sum256([]byte(fmt.Sprintf("admin test outsider %d", i)))
	return ed25519.NewKeyFromSeed(seed[:]).Public().(ed25519.PublicKey)
}

func adminOf(n *Node) crdt.DeviceID {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.rep.State().Admin()
}

// signAs signs body with n's device key at epoch as n's next fact (n's
// own replica never sees it): what a replaced admin could still send.
func signAs(t *testing.T, n *Node, epoch uint64, body crdt.Body) *crdt.Fact {
	t.Helper()
	n.mu.Lock()
	vv := n.store.VersionVector()[n.device]
	lamport := n.rep.State().MaxLamport() + 100
	acct := n.rep.Account()
	n.mu.Unlock()
	w := crdt.NewWriter(n.key, acct, vv, lamport)
	f, err := w.Write(epoch, body)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func rejectedWith(t *testing.T, n *Node, f *crdt.Fact, want ...error) {
	t.Helper()
	res, err := n.receive([]*crdt.Fact{f})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Rejected) != 1 {
		t.Fatalf("%s: %s fact accepted (%+v)", n.Device().Short(), f.Kind, res)
	}
	for _, w := range want {
		if !errors.Is(res.Rejected[0].Err, w) {
			t.Fatalf("%s: %s rejected with %v, want %v", n.Device().Short(), f.Kind, res.Rejected[0].Err, w)
		}
	}
}

func TestAdminReplaceMesh(t *testing.T) {
	ns := adminMesh(t, 3, 2, nil)
	old, next := ns[0], ns[1]
	// An admin fact of the old admin before the replacement: stays valid.
	earlierMember := next.Device()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if info, err := ns[2].ReplaceAdmin(ctx, AdminReplaceRequest{New: next.Device().String(), Approve: true}); err != nil || info.Status != "approval-recorded" {
		t.Fatalf("approval before the request: %+v %v", info, err)
	}
	info, err := next.ReplaceAdmin(ctx, AdminReplaceRequest{New: next.Device().String()})
	if err != nil {
		t.Fatal(err)
	}
	if info.Status != "replaced" || info.Previous != old.Device().String() || info.Votes < 2 {
		t.Fatalf("replace: %+v", info)
	}
	waitFor(t, 20*time.Second, "the new admin everywhere", func() bool {
		for _, n := range ns {
			if adminOf(n) != next.Device() {
				return false
			}
		}
		return true
	})
	for _, n := range ns {
		s, err := n.AdminStatus()
		if err != nil {
			t.Fatal(err)
		}
		if len(s.Overrides) != 1 || s.Overrides[0].New != next.Device().String() || s.Overrides[0].ActivationEpoch != info.ActivationEpoch {
			t.Fatalf("%s: %s holds %+v", n.Device().Short(), maintenance.MetaAdminOverride, s.Overrides)
		}
	}
	// The old admin's later admin facts are refused everywhere …
	outsider := crdt.DeviceIDFromKey(testKeyPub(t, 77))
	late := signAs(t, old, info.ActivationEpoch+1, &crdt.DeviceAdded{Device: outsider, Capabilities: crdt.AllCapabilities})
	for _, n := range ns[1:] {
		rejectedWith(t, n, late, crdt.ErrUnauthorized)
	}
	if _, _, err := old.Invite(0); !errors.Is(err, ErrNotAdmin) {
		t.Fatalf("old admin invites: got %v, want ErrNotAdmin", err)
	}
	// … its earlier ones stay valid: the devices it admitted are members.
	for _, n := range ns {
		n.mu.Lock()
		ok := n.rep.State().IsMember(earlierMember)
		n.mu.Unlock()
		if !ok {
			t.Fatalf("%s: a device the old admin admitted is no longer a member", n.Device().Short())
		}
	}
	// A forged or short threshold signature is refused at ingest.
	for _, sig := range [][]byte{make([]byte, 64), {1, 2, 3}} {
		forged := signAs(t, ns[2], info.ActivationEpoch+1, &crdt.AdminReplaced{Previous: next.Device(), New: ns[2].Device(),
			ActivationEpoch: info.ActivationEpoch + 1, ThresholdSignature: sig})
		rejectedWith(t, next, forged, crdt.ErrBadThresholdSignature)
	}
	if adminOf(next) != next.Device() {
		t.Fatal("a forged replacement changed the admin")
	}
	// The new admin admits a device.
	code, _, err := next.Invite(0)
	if err != nil {
		t.Fatal(err)
	}
	joiner := startNode(t, filepath.Join(t.TempDir(), "n4"))
	if _, err := joiner.Join(ctx, code); err != nil {
		t.Fatalf("join through the new admin: %v", err)
	}
	waitFor(t, 20*time.Second, "the new device everywhere", func() bool {
		for _, n := range ns {
			if len(n.Members()) != 4 {
				return false
			}
		}
		return true
	})
}

func TestAdminReplaceMeshFailures(t *testing.T) {
	ns := adminMesh(t, 3, 2, func(_ int, c *Config) { c.Admin.Timeout = Duration(3 * time.Second) })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	code := func(err error) string {
		c, _ := adminCodeOf(err)
		return c
	}
	// The new device is not a member: refused before anything is appended.
	before := ns[1].store.VersionVector().Total()
	_, err := ns[1].ReplaceAdmin(ctx, AdminReplaceRequest{New: crdt.DeviceIDFromKey(testKeyPub(t, 78)).String()})
	if !errors.Is(err, maintenance.ErrNotMember) || code(err) != AdminCodeNotMember {
		t.Fatalf("new device not a member: %v", err)
	}
	if ns[1].store.VersionVector().Total() != before {
		t.Fatal("a refused request appended a fact")
	}
	// Nobody else approves (manual policy, no operator, the admin is up):
	// not enough approvals, nothing appended.
	start := time.Now()
	_, err = ns[1].ReplaceAdmin(ctx, AdminReplaceRequest{New: ns[1].Device().String()})
	var ne *maintenance.NotEnoughApprovalsError
	if !errors.As(err, &ne) || ne.Votes != 1 || ne.Threshold != 2 || code(err) != AdminCodeNotEnough {
		t.Fatalf("without approvals: %v", err)
	}
	if time.Since(start) < 3*time.Second {
		t.Fatal("gave up before the request's deadline")
	}
	// The device that did not approve says why.
	s, err := ns[2].AdminStatus()
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Rounds) != 1 || s.Rounds[0].Voted || s.Rounds[0].Verdict != "refused" || s.Rounds[0].Status != "expired" {
		t.Fatalf("the device that did not approve: %+v", s.Rounds)
	}
	for _, n := range ns {
		if adminOf(n) != ns[0].Device() {
			t.Fatalf("%s: the admin changed without approvals", n.Device().Short())
		}
		n.mu.Lock()
		k := len(n.rep.State().AdminReplacements)
		n.mu.Unlock()
		if k != 0 {
			t.Fatalf("%s holds an admin replacement", n.Device().Short())
		}
	}
	// Approving after expiry: the expired request is over (its verdict says
	// so), the approval is kept for the next request, which then completes.
	info, err := ns[2].ReplaceAdmin(ctx, AdminReplaceRequest{New: ns[1].Device().String(), Approve: true})
	if err != nil || info.Status != "approval-recorded" || !strings.Contains(info.Detail, "expired") {
		t.Fatalf("approve after expiry: %+v %v", info, err)
	}
	if s, _ := ns[2].AdminStatus(); len(s.Rounds) != 1 || !strings.Contains(s.Rounds[0].Reason, maintenance.ErrRequestExpired.Error()) {
		t.Fatalf("the expired request's verdict: %+v", s.Rounds)
	}
	if info, err := ns[1].ReplaceAdmin(ctx, AdminReplaceRequest{New: ns[1].Device().String()}); err != nil || info.Status != "replaced" {
		t.Fatalf("the next request: %+v %v", info, err)
	}
}

// The admin is gone: a device whose policy auto-approves after the admin
// has been unreachable for [admin] auto_approve_after signs by itself,
// and the replacement completes without any operator but the asker.
func TestAdminReplaceAutoApproveMesh(t *testing.T) {
	ns := adminMesh(t, 3, 2, func(i int, c *Config) {
		if i == 2 {
			c.Admin.AutoApproveAfter = Duration(2 * time.Second)
		}
	})
	if err := ns[0].Close(); err != nil {
		t.Fatal(err)
	}
	gone := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	info, err := ns[1].ReplaceAdmin(ctx, AdminReplaceRequest{New: ns[1].Device().String()})
	if err != nil {
		s, _ := ns[2].AdminStatus()
		t.Fatalf("%v; the auto-approving device: %+v", err, s.Rounds)
	}
	if info.Status != "replaced" || time.Since(gone) < 2*time.Second {
		t.Fatalf("replaced after %s: %+v (auto-approval must wait for the admin to be away 2 s)", time.Since(gone), info)
	}
	s, err := ns[2].AdminStatus()
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Rounds) != 1 || !s.Rounds[0].Voted || s.Rounds[0].Verdict != "auto" {
		t.Fatalf("the auto-approving device: %+v", s.Rounds)
	}
}
