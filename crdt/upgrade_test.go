package crdt

import (
	"bytes"
	"errors"
	"testing"
)

func testUpgrade(version string) *UpgradeMetadata {
	m := &UpgradeMetadata{Package: "aura-node", Version: version, UpgradeKind: UpgradeHard, ActivationFence: 4, MinReady: 2,
		Artifacts: []UpgradeArtifact{
			{Platform: "darwin/arm64", SHA256: Hash{1}, Size: 10, CID: []byte{1}},
			{Platform: "linux/amd64", SHA256: Hash{2}, Size: 20, CID: []byte{2}},
		}}
	m.ID = UpgradeIDOf(m)
	return m
}

func TestUpgradeValidate(t *testing.T) {
	if err := testUpgrade("1.2.3").Validate(); err != nil {
		t.Fatalf("good metadata refused: %v", err)
	}
	cases := []struct {
		name   string
		mutate func(*UpgradeMetadata)
		want   error
	}{
		{"no hash", func(m *UpgradeMetadata) { m.Artifacts[1].SHA256 = Hash{} }, ErrArtifactIncomplete},
		{"no size", func(m *UpgradeMetadata) { m.Artifacts[0].Size = 0 }, ErrArtifactIncomplete},
		{"no cid", func(m *UpgradeMetadata) { m.Artifacts[0].CID = nil }, ErrArtifactIncomplete},
		{"no platform", func(m *UpgradeMetadata) { m.Artifacts[0].Platform = "" }, ErrArtifactIncomplete},
		{"no artifact", func(m *UpgradeMetadata) { m.Artifacts = nil }, ErrArtifactIncomplete},
		{"platform twice", func(m *UpgradeMetadata) { m.Artifacts[1].Platform = m.Artifacts[0].Platform }, ErrBadUpgrade},
		{"not semver", func(m *UpgradeMetadata) { m.Version = "1.2" }, ErrBadUpgrade},
		{"no package", func(m *UpgradeMetadata) { m.Package = "" }, ErrBadUpgrade},
		{"package escapes its directory", func(m *UpgradeMetadata) { m.Package = "../etc" }, ErrBadUpgrade},
		{"hard without fence", func(m *UpgradeMetadata) { m.ActivationFence = 0 }, ErrBadUpgrade},
		{"hard without min-ready", func(m *UpgradeMetadata) { m.MinReady = 0 }, ErrBadUpgrade},
		{"soft with fence", func(m *UpgradeMetadata) { m.UpgradeKind = UpgradeSoft }, ErrBadUpgrade},
		{"unknown kind", func(m *UpgradeMetadata) { m.UpgradeKind = "medium" }, ErrBadUpgrade},
	}
	for _, c := range cases {
		m := testUpgrade("1.2.3")
		c.mutate(m)
		m.ID = UpgradeIDOf(m)
		if err := m.Validate(); !errors.Is(err, c.want) {
			t.Errorf("%s: got %v, want %v", c.name, err, c.want)
		}
	}
	// An id that is not the content's hash: the body was changed after.
	m := testUpgrade("1.2.3")
	m.Artifacts[0].Size = 11
	if err := m.Validate(); !errors.Is(err, ErrBadUpgrade) {
		t.Errorf("stale id: got %v", err)
	}
}

func TestCompareVersions(t *testing.T) {
	cases := []struct {
		a, b string
		want int
	}{
		{"1.2.3", "1.2.3", 0}, {"v1.2.3", "1.2.3", 0}, {"1.2.3", "1.10.0", -1}, {"2.0.0", "1.99.99", 1},
		{"1.0.0-rc.1", "1.0.0", -1}, {"1.0.0-rc.2", "1.0.0-rc.10", -1}, {"1.0.0-alpha", "1.0.0-beta", -1},
	}
	for _, c := range cases {
		if got := CompareVersions(c.a, c.b); got != c.want {
			t.Errorf("CompareVersions(%s, %s) = %d, want %d", c.a, c.b, got, c.want)
		}
	}
	for v, ok := range map[string]bool{"1.2.3": true, "v0.0.1": true, "1.0.0-rc.1": true, "1.2": false, "x": false, "1.2.3+build": false, "": false} {
		if ValidVersion(v) != ok {
			t.Errorf("ValidVersion(%q) = %v", v, !ok)
		}
	}
}

// The fold keeps metadata, readiness, activation and cancellation as
// joins, and refuses metadata without hash and size at ingest.
func TestUpgradeFold(t *testing.T) {
	s := newScenario(t, 3)
	m := testUpgrade("1.2.3")
	meta := s.write(0, s.epoch, m)
	r1 := s.write(1, s.epoch, &UpgradeReady{Upgrade: m.ID, SHA256: Hash{2}})
	r2 := s.write(2, s.epoch, &UpgradeReady{Upgrade: m.ID, SHA256: Hash{2}})
	act := s.write(0, s.epoch, &UpgradeActivated{Upgrade: m.ID, ToVersion: m.Version, ActivationFence: 4})
	bad := *m
	bad.Artifacts = []UpgradeArtifact{{Platform: "linux/amd64", CID: []byte{2}}}
	bad.ID = UpgradeIDOf(&bad)
	badFact := s.write(0, s.epoch, &bad)
	// Devices 1 and 2 lack upgrade_publish: their cancel is refused.
	refused := s.write(1, s.epoch, &UpgradeCancelled{Upgrade: m.ID})

	st := s.reduce(s.facts)
	u := st.Upgrades[m.ID]
	if u == nil || u.Meta == nil || u.Publisher() != s.dev(0) || !u.Ready[s.dev(1)] || !u.Ready[s.dev(2)] || u.Activated == nil {
		t.Fatalf("upgrade record %+v", u)
	}
	if _, ok := st.Upgrades[bad.ID]; ok {
		t.Fatal("metadata without a hash entered the state")
	}
	if err := st.Check(badFact); !errors.Is(err, ErrArtifactIncomplete) {
		t.Fatalf("ingest of metadata without a hash: %v", err)
	}
	if err := st.Check(refused); !errors.Is(err, ErrUnauthorized) {
		t.Fatalf("cancel without upgrade_publish: %v", err)
	}
	if u.CancelEffective() {
		t.Fatal("cancelled without a cancellation")
	}
	// Any order, the same state.
	rev := []*Fact{s.facts[0], s.facts[1], s.facts[2], act, r2, meta, r1}
	if s.reduce(rev).Digest() != s.reduce([]*Fact{s.facts[0], s.facts[1], s.facts[2], meta, r1, r2, act}).Digest() {
		t.Fatal("upgrade fold depends on order")
	}

	// A cancellation at epoch 3 < fence 4 takes effect; one at the fence
	// does not.
	c := s.write(0, s.epoch, &UpgradeCancelled{Upgrade: m.ID, Reason: "bad build"})
	st.Apply(c)
	if !st.Upgrades[m.ID].CancelEffective() {
		t.Fatal("cancellation before the fence had no effect")
	}
	late := &UpgradeRef{Meta: m, Ready: map[DeviceID]bool{}, Cancelled: 4}
	if late.CancelEffective() {
		t.Fatal("cancellation at the fence took effect")
	}
}

// FuzzUpgradeMetadata: any body that decodes as upgrade metadata is
// validated without panicking, and what Validate accepts has its content
// hash as id and one encoding.
func FuzzUpgradeMetadata(f *testing.F) {
	b, _ := Marshal(testUpgrade("1.2.3"))
	f.Add(b)
	f.Add([]byte{0xa0})
	f.Fuzz(func(t *testing.T, b []byte) {
		body, err := DecodeBodyOf(KindUpgradeMetadata, b)
		if err != nil {
			return
		}
		m := body.(*UpgradeMetadata)
		if m.Validate() != nil {
			return
		}
		if UpgradeIDOf(m) != m.ID {
			t.Fatal("accepted metadata whose id is not its content hash")
		}
		again, err := Marshal(m)
		if err != nil || !bytes.Equal(again, b) {
			t.Fatal("accepted metadata does not re-encode to its input")
		}
	})
}
