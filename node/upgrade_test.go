package node

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"aura/crdt"
	"aura/maintenance"
)

// setPolicy declares this device's upgrade policy (what `aura-cli device
// policy` writes: DeviceMetadata).
func setPolicy(t *testing.T, n *Node, policy string) {
	t.Helper()
	if _, err := n.SetUpgradePolicy(policy); err != nil {
		t.Fatal(err)
	}
}

// publish stores data as this platform's artifact on n and publishes it.
func publish(t *testing.T, n *Node, req PublishRequest, data []byte) *UpgradeInfo {
	t.Helper()
	u, err := tryPublish(n, req, data)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

func tryPublish(n *Node, req PublishRequest, data []byte) (*UpgradeInfo, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	a, err := n.StoreArtifact(ctx, bytes.NewReader(data), n.upgradeCfg().Platform)
	if err != nil {
		return nil, err
	}
	req.Artifacts = append(req.Artifacts, *a)
	return n.PublishUpgrade(ctx, req)
}

// writeMetadata appends metadata as a careless or hostile publisher would,
// past the node's publish checks (the guard still applies).
func writeMetadata(t *testing.T, n *Node, m *crdt.UpgradeMetadata) error {
	t.Helper()
	m.ID = crdt.UpgradeIDOf(m)
	var out maintenance.Output
	err := n.withLock(func() error {
		var err error
		out, err = n.rep.Write(now(), m)
		return err
	})
	if err == nil {
		n.handle(out)
	}
	return err
}

func upgradeOn(t *testing.T, n *Node, id string) UpgradeInfo {
	t.Helper()
	for _, u := range n.Upgrades().Upgrades {
		if u.ID == id {
			return u
		}
	}
	return UpgradeInfo{Phase: "absent"}
}

func idOf(t *testing.T, s string) [16]byte {
	id, err := crdt.ParseUpgradeName(s)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func inForce(n *Node, id [16]byte) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return maintenance.InForce(n.rep.State(), id)
}

// gate is the session check every maintenance session runs, over all
// current members.
func gate(n *Node) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	st := n.rep.State()
	return maintenance.UpgradeGate(st, st.MemberList())
}

// A hard fork with min-ready 2 of 3: one auto device is ready at once, the
// two manual ones only after approval. No activation with one ready; the
// publisher activates when the second approves; the third, holding out,
// is then refused by the session gate with a typed error naming it, until
// it approves too.
func TestUpgradeHardForkManualHoldout(t *testing.T) {
	ns := newNodes(t, 3)
	formAccount(t, ns, 2)
	keygen(t, ns, 2)
	setPolicy(t, ns[0], crdt.PolicyAuto)
	epoch := ns[0].Status().IdentityEpoch
	bin := []byte("aura-node 2.0.0, a new binary for this platform")
	u := publish(t, ns[0], PublishRequest{Package: "aura-node", Version: "2.0.0", Kind: "hard", Fence: epoch, MinReady: 2}, bin)
	id := idOf(t, u.ID)
	if u.Fence != epoch || u.MinReady != 2 || u.Phase != "published" {
		t.Fatalf("published %+v", u)
	}
	for i, n := range ns[1:] {
		waitFor(t, 20*time.Second, fmt.Sprintf("n%d verified the artifact", i+2), func() bool { return upgradeOn(t, n, u.ID).Local.State == "verified" })
	}
	waitFor(t, 10*time.Second, "the auto publisher ready", func() bool { return upgradeOn(t, ns[0], u.ID).Ready == 1 })
	// Verified under manual policy is not ready; nobody activates on 1 of 2.
	time.Sleep(time.Second)
	for _, n := range ns {
		got := upgradeOn(t, n, u.ID)
		if got.Activated || got.Ready != 1 {
			t.Fatalf("%s: activated %v with %d ready", n.cfg.Name, got.Activated, got.Ready)
		}
	}
	if w := upgradeOn(t, ns[0], u.ID).Waiting; !strings.Contains(w, "1 of 2 devices ready") {
		t.Fatalf("waiting reason %q", w)
	}
	path := filepath.Join(ns[2].Home(), UpgradesDir, "aura-node", "2.0.0")
	if b, err := os.ReadFile(path); err != nil || !bytes.Equal(b, bin) {
		t.Fatalf("verified artifact at %s: %v", path, err)
	}
	if _, err := os.Stat(path + ".unverified"); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("unverified file left behind: %v", err)
	}

	if _, err := ns[1].ApproveUpgrade(id); err != nil {
		t.Fatal(err)
	}
	for _, n := range ns {
		waitFor(t, 20*time.Second, n.cfg.Name+" sees the fork in force", func() bool { return inForce(n, id) })
	}
	err := gate(ns[0])
	var nr *maintenance.NotReadyError
	if !errors.As(err, &nr) || nr.Device != ns[2].Device() || nr.Version != "2.0.0" {
		t.Fatalf("gate after activation: %v", err)
	}
	if want := fmt.Sprintf("device %s not ready for 2.0.0", ns[2].Device().Short()); err.Error() != want {
		t.Fatalf("gate error %q, want %q", err, want)
	}
	st := ns[2].Upgrades()
	got := upgradeOn(t, ns[2], u.ID)
	if len(st.InForce) != 1 || got.Phase != "activated" || got.Local.State != "verified" || got.Local.Approved {
		t.Fatalf("holdout status: in force %v, %+v", st.InForce, got.Local)
	}
	b, _ := json.Marshal(got)
	for _, k := range []string{`"phase":"activated"`, `"state":"verified"`, `"fence":`, `"policy":"manual"`, `"supported_protocols":["aura/1"]`} {
		if !strings.Contains(string(b), k) {
			t.Errorf("status JSON lacks %s: %s", k, b)
		}
	}

	// The next snapshot round: the holdout is refused with the typed
	// error (it cannot propose, its vote would not count), the others
	// complete without it, and status names it not ready.
	if _, err := ns[0].Put("after/fork", []byte("v")); err != nil {
		t.Fatal(err)
	}
	waitConverged(t, 20*time.Second, ns)
	if _, err := ns[2].ProposeChecked(false); !errors.As(err, &nr) || nr.Device != ns[2].Device() || ErrorCode(err) != CodeNotReady {
		t.Fatalf("holdout's proposal: %v", err)
	}
	info, err := ns[0].ProposeChecked(false)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "the round completes without the holdout", func() bool {
		s := ns[0].Status().NewestSnapshot
		return s != nil && s.ID == info.ID
	})
	for _, p := range ns[0].Status().NewestSnapshot.Participants {
		if p == ns[2].Device().String() {
			t.Fatal("the unready device signed the snapshot after the activation")
		}
	}
	var listed bool
	for _, d := range ns[0].Status().Incompatible {
		listed = listed || (d.Device == ns[2].Device().String() && d.Code == CodeNotReady && strings.Contains(d.Reason, "not ready for 2.0.0"))
	}
	if !listed {
		t.Fatalf("status does not name the holdout not ready: %+v", ns[0].Status().Incompatible)
	}

	if _, err := ns[2].ApproveUpgrade(id); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 20*time.Second, "the gate opens once the holdout is ready", func() bool { return gate(ns[0]) == nil })
}

// Every failure path has its own error and status, and none makes a device
// ready: a hash mismatch, a size overrun, metadata without hash and size,
// an expired publication, a rollback. A bad artifact for another platform
// blocks no one.
func TestUpgradeRefusals(t *testing.T) {
	ns := newNodes(t, 2)
	formAccount(t, ns, 2)
	setPolicy(t, ns[0], crdt.PolicyAuto)
	setPolicy(t, ns[1], crdt.PolicyAuto)
	platform := ns[1].upgradeCfg().Platform
	ctx := context.Background()
	store := func(data []byte) *ArtifactInfo {
		a, err := ns[0].StoreArtifact(ctx, bytes.NewReader(data), platform)
		if err != nil {
			t.Fatal(err)
		}
		return a
	}
	art := func(a *ArtifactInfo) crdt.UpgradeArtifact {
		c, _ := ParseBlobCID(a.CID)
		h, _ := hex.DecodeString(a.SHA256)
		var sum crdt.Hash
		copy(sum[:], h)
		return crdt.UpgradeArtifact{Platform: a.Platform, SHA256: sum, Size: a.Size, CID: c.Bytes()}
	}

	// Hash mismatch: the signed hash is not the bytes'.
	bad := art(store([]byte("build one, whose hash the metadata does not carry")))
	bad.SHA256 = sha256.Sum256([]byte("something else"))
	mm := &crdt.UpgradeMetadata{Package: "tool", Version: "1.0.0", UpgradeKind: crdt.UpgradeSoft, Artifacts: []crdt.UpgradeArtifact{bad}}
	if err := writeMetadata(t, ns[0], mm); err != nil {
		t.Fatal(err)
	}
	// Size overrun: the blob is longer than signed.
	big := store(bytes.Repeat([]byte("x"), 300_000))
	over := art(big)
	over.Size = 1000
	om := &crdt.UpgradeMetadata{Package: "tool", Version: "1.1.0", UpgradeKind: crdt.UpgradeSoft, Artifacts: []crdt.UpgradeArtifact{over}}
	if err := writeMetadata(t, ns[0], om); err != nil {
		t.Fatal(err)
	}
	// A good artifact for this platform beside a bad one for another.
	good := art(store([]byte("tool 1.2.0")))
	other := crdt.UpgradeArtifact{Platform: "plan9/386", SHA256: sha256.Sum256([]byte("nope")), Size: 4, CID: good.CID}
	arts := []crdt.UpgradeArtifact{good, other}
	if other.Platform < good.Platform {
		arts = []crdt.UpgradeArtifact{other, good}
	}
	gm := &crdt.UpgradeMetadata{Package: "tool", Version: "1.2.0", UpgradeKind: crdt.UpgradeSoft, Artifacts: arts}
	if err := writeMetadata(t, ns[0], gm); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		id   [16]byte
		kind string
		err  error
	}{{mm.ID, "hash_mismatch", maintenance.ErrHashMismatch}, {om.ID, "size_overrun", maintenance.ErrSizeOverrun}} {
		name := crdt.UpgradeName(c.id)
		waitFor(t, 20*time.Second, c.kind+" reported", func() bool { return upgradeOn(t, ns[1], name).Local.State == "failed" })
		got := upgradeOn(t, ns[1], name)
		if got.Local.ErrorKind != c.kind || got.Ready != 0 || !strings.Contains(got.Local.Error, c.err.Error()) {
			t.Fatalf("%s: %+v (ready %d)", c.kind, got.Local, got.Ready)
		}
		n := ns[1]
		n.upg.mu.Lock()
		lerr := n.upg.local[c.id].err
		n.upg.mu.Unlock()
		if !errors.Is(lerr, c.err) {
			t.Fatalf("%s: error %v is not %v", c.kind, lerr, c.err)
		}
	}
	waitFor(t, 20*time.Second, "the good artifact ready despite another platform's bad one", func() bool {
		return upgradeOn(t, ns[1], crdt.UpgradeName(gm.ID)).Local.State == "ready"
	})
	for _, v := range []string{"1.0.0", "1.1.0"} {
		for _, suffix := range []string{"", ".unverified"} {
			if _, err := os.Stat(filepath.Join(ns[1].Home(), UpgradesDir, "tool", v+suffix)); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("refused artifact %s%s on disk: %v", v, suffix, err)
			}
		}
	}

	// Metadata without hash and size: refused at publish and by the guard.
	noHash := ArtifactInfo{Platform: platform, CID: big.CID}
	if _, err := ns[0].PublishUpgrade(ctx, PublishRequest{Package: "tool", Version: "1.3.0", Kind: "soft", Artifacts: []ArtifactInfo{noHash}}); !errors.Is(err, crdt.ErrArtifactIncomplete) || !errors.Is(err, ErrBadRequest) {
		t.Fatalf("publish without hash: %v", err)
	}
	hollow := art(big)
	hollow.SHA256, hollow.Size = crdt.Hash{}, 0
	if err := writeMetadata(t, ns[0], &crdt.UpgradeMetadata{Package: "tool", Version: "1.3.0", UpgradeKind: crdt.UpgradeSoft, Artifacts: []crdt.UpgradeArtifact{hollow}}); !errors.Is(err, crdt.ErrArtifactIncomplete) {
		t.Fatalf("guard on metadata without hash: %v", err)
	}

	// Expired: a stale replay stays in the journal, nobody acts on it.
	exp := art(store([]byte("tool 1.4.0")))
	em := &crdt.UpgradeMetadata{Package: "tool", Version: "1.4.0", UpgradeKind: crdt.UpgradeSoft, Artifacts: []crdt.UpgradeArtifact{exp},
		Expires: uint64(time.Now().Add(-time.Hour).UnixMilli())}
	if err := writeMetadata(t, ns[0], em); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "expired metadata replicated", func() bool { return upgradeOn(t, ns[1], crdt.UpgradeName(em.ID)).Phase == "expired" })
	if _, err := ns[1].ApproveUpgrade(em.ID); !errors.Is(err, maintenance.ErrUpgradeExpired) {
		t.Fatalf("approve expired: %v", err)
	}
	if _, err := tryPublish(ns[0], PublishRequest{Package: "tool", Version: "1.5.0", Kind: "soft", Expires: "-1h"}, []byte("x")); !errors.Is(err, ErrBadRequest) {
		t.Fatalf("publish with a negative expiry: %v", err)
	}

	// Rollback: once 2.0.0 is activated, 2.0.0 again or 1.9.0 is refused.
	epoch := ns[0].Status().IdentityEpoch
	hf := publish(t, ns[0], PublishRequest{Package: "tool", Version: "2.0.0", Kind: "hard", Fence: epoch, MinReady: 2}, []byte("tool 2.0.0"))
	waitFor(t, 20*time.Second, "2.0.0 in force", func() bool { return inForce(ns[1], idOf(t, hf.ID)) })
	for _, v := range []string{"2.0.0", "1.9.0"} {
		if _, err := tryPublish(ns[0], PublishRequest{Package: "tool", Version: v, Kind: "soft"}, []byte("tool "+v+" again")); !errors.Is(err, maintenance.ErrRollback) {
			t.Fatalf("rollback to %s: %v", v, err)
		}
	}
	if upgradeOn(t, ns[1], crdt.UpgradeName(gm.ID)).Phase != "rollback" {
		t.Fatal("soft 1.2.0 is not marked rollback after 2.0.0 activated")
	}
	// Cancel refuses once activated.
	if _, err := ns[0].CancelUpgrade(idOf(t, hf.ID), ""); !errors.Is(err, maintenance.ErrActivated) {
		t.Fatalf("cancel after activation: %v", err)
	}
}

// Restart exactly at the fence: the publisher's loop never runs (check =
// 1h), the identity epoch reaches the fence while min-ready devices are
// ready, and the publisher stops before it could activate. Restarted, it
// has activated by the time New returns (startup reconciliation, before
// the API serves) and the new rules are in force; a node restarted after
// the activation has them in force at once too.
func TestUpgradeRestartAtFence(t *testing.T) {
	dir := t.TempDir()
	home0 := filepath.Join(dir, "n1")
	cfg := TestConfig()
	cfg.Name = "n1"
	cfg.Upgrade.Check = Duration(time.Hour)
	if _, err := Init(home0, InitOptions{Config: &cfg}); err != nil {
		t.Fatal(err)
	}
	ns := []*Node{startNode(t, home0), startNode(t, filepath.Join(dir, "n2")), startNode(t, filepath.Join(dir, "n3"))}
	formAccount(t, ns, 2)
	setPolicy(t, ns[0], crdt.PolicyAuto)
	setPolicy(t, ns[1], crdt.PolicyAuto)
	fence := ns[0].Status().IdentityEpoch + 1
	u := publish(t, ns[0], PublishRequest{Package: "aura-node", Version: "3.0.0", Kind: "hard", Fence: fence, MinReady: 2}, []byte("aura-node 3.0.0"))
	id := idOf(t, u.ID)
	waitFor(t, 20*time.Second, "two devices ready", func() bool { return upgradeOn(t, ns[0], u.ID).Ready == 2 })

	n4 := startNode(t, filepath.Join(dir, "n4"))
	code, _, err := ns[0].Invite(0)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := n4.Join(ctx, code); err != nil {
		t.Fatal(err)
	}
	if got := ns[0].Status().IdentityEpoch; got != fence {
		t.Fatalf("identity epoch %d, fence %d", got, fence)
	}
	if upgradeOn(t, ns[0], u.ID).Activated {
		t.Fatal("activated before the restart: the test cannot show reconciliation")
	}
	ns[0].Close()
	restarted := startNode(t, home0)
	if !inForce(restarted, id) {
		t.Fatal("restarted at the fence, the node serves without the activation")
	}
	var nr *maintenance.NotReadyError
	if err := gate(restarted); !errors.As(err, &nr) {
		t.Fatalf("new rules not in force after restart: gate %v", err)
	}
	waitFor(t, 20*time.Second, "the activation reaches n2", func() bool { return inForce(ns[1], id) })
	ns[1].Close()
	again := startNode(t, ns[1].Home())
	if !inForce(again, id) || gate(again) == nil {
		t.Fatal("a node restarted after the fence runs the old rules")
	}
}

// The hook runs with the verified artifact's path as its last argument
// before readiness; a failing hook withholds readiness and says why.
func TestUpgradeHook(t *testing.T) {
	dir := t.TempDir()
	rec := filepath.Join(dir, "hook.out")
	script := filepath.Join(dir, "hook.sh")
	if err := os.WriteFile(script, []byte("#!/bin/sh\nif [ \"$1\" = fail ]; then echo refusing; exit 3; fi\necho \"$2\" >> "+rec+"\n"), 0o700); err != nil {
		t.Fatal(err)
	}
	good := startNodeWith(t, filepath.Join(dir, "good"), func(c *Config) { c.Upgrade.Hook = "/bin/sh " + script + " install" })
	bad := startNodeWith(t, filepath.Join(dir, "bad"), func(c *Config) { c.Upgrade.Hook = "/bin/sh " + script + " fail" })
	for _, n := range []*Node{good, bad} {
		if _, err := n.CreateAccount("hook", 1); err != nil {
			t.Fatal(err)
		}
		setPolicy(t, n, crdt.PolicyAuto)
	}
	ug := publish(t, good, PublishRequest{Package: "srv", Version: "1.0.0", Kind: "soft"}, []byte("server build"))
	ub := publish(t, bad, PublishRequest{Package: "srv", Version: "1.0.0", Kind: "soft"}, []byte("server build"))
	waitFor(t, 10*time.Second, "ready after the hook", func() bool { return upgradeOn(t, good, ug.ID).Local.State == "ready" })
	want := filepath.Join(good.Home(), UpgradesDir, "srv", "1.0.0")
	if b, err := os.ReadFile(rec); err != nil || strings.TrimSpace(string(b)) != want {
		t.Fatalf("hook saw %q (%v), want %q", b, err, want)
	}
	waitFor(t, 10*time.Second, "the failing hook reported", func() bool { return upgradeOn(t, bad, ub.ID).Local.State == "failed" })
	if got := upgradeOn(t, bad, ub.ID); got.Local.ErrorKind != "hook" || got.Ready != 0 {
		t.Fatalf("failing hook: %+v, %d ready", got.Local, got.Ready)
	}
}
