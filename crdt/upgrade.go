package crdt

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"

	"golang.org/x/mod/semver"
)

// Errors of upgrade metadata the guard refuses (at publish and at ingest
// alike: the check is a function of the fact alone, so every replica
// refuses the same facts).
var (
	// ErrBadUpgrade: the metadata is not well formed (id, version, kind,
	// fence, readiness threshold).
	ErrBadUpgrade = errors.New("upgrade metadata refused")
	// ErrArtifactIncomplete: an artifact lacks its platform, sha2-256,
	// size or CID, or there is none at all.
	ErrArtifactIncomplete = errors.New("upgrade artifact lacks its platform, hash, size or CID")
)

// UpgradeIDOf is the id of an upgrade: sha2-256 over a domain tag and the
// canonical encoding of its metadata with the ID field zeroed, truncated
// to 16 bytes. One id names one content.
func UpgradeIDOf(m *UpgradeMetadata) [16]byte {
	c := *m
	c.ID = [16]byte{}
	b, err := Marshal(&c)
	if err != nil {
		panic(fmt.Sprintf("encode upgrade metadata: %v", err)) // plain types
	}
	h := sha256.New()
	h.Write([]byte("aura/upgrade/v1\x00"))
	h.Write(b)
	var id [16]byte
	copy(id[:], h.Sum(nil))
	return id
}

// canonicalSemver is v with a leading "v", as golang.org/x/mod/semver
// wants it.
func canonicalSemver(v string) string {
	if strings.HasPrefix(v, "v") {
		return v
	}
	return "v" + v
}

// ValidVersion reports whether v is a semantic version ("1.2.3",
// "v1.2.3-rc.1"; no build metadata, which semver ignores in comparisons).
func ValidVersion(v string) bool {
	c := canonicalSemver(v)
	return semver.IsValid(c) && semver.Build(c) == "" && semver.Canonical(c) == c
}

// CompareVersions compares two semantic versions (-1, 0, +1) by semver
// precedence. Invalid versions sort below every valid one.
func CompareVersions(a, b string) int { return semver.Compare(canonicalSemver(a), canonicalSemver(b)) }

// validPackage: a package name is also a directory name on every device.
func validPackage(p string) bool {
	if len(p) == 0 || len(p) > 64 || p[0] == '.' || p[0] == '-' || p[0] == '_' {
		return false
	}
	for _, r := range p {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '.' || r == '-' || r == '_') {
			return false
		}
	}
	return true
}

// Artifact returns the artifact of a platform, or nil.
func (m *UpgradeMetadata) Artifact(platform string) *UpgradeArtifact {
	for i := range m.Artifacts {
		if m.Artifacts[i].Platform == platform {
			return &m.Artifacts[i]
		}
	}
	return nil
}

// Validate is the guard's check of upgrade metadata: the id is
// UpgradeIDOf the body, the package is named, the version is semver, the
// kind is soft or hard, a hard fork has a fence and a readiness threshold,
// and there is at least one artifact, each with a platform, a sha2-256, a
// size and a CID, platforms sorted and distinct. It wraps ErrBadUpgrade or
// ErrArtifactIncomplete.
func (m *UpgradeMetadata) Validate() error {
	if !validPackage(m.Package) {
		return fmt.Errorf("%w: package name %q is not 1 to 64 of [a-z0-9._-] starting with a letter or digit", ErrBadUpgrade, m.Package)
	}
	if !ValidVersion(m.Version) {
		return fmt.Errorf("%w: version %q is not a semantic version (MAJOR.MINOR.PATCH)", ErrBadUpgrade, m.Version)
	}
	switch m.UpgradeKind {
	case UpgradeSoft:
		if m.ActivationFence != 0 || m.MinReady != 0 {
			return fmt.Errorf("%w: a soft upgrade has no fence and no readiness threshold", ErrBadUpgrade)
		}
	case UpgradeHard:
		if m.ActivationFence == 0 {
			return fmt.Errorf("%w: a hard fork needs an activation fence", ErrBadUpgrade)
		}
		if m.MinReady == 0 {
			return fmt.Errorf("%w: a hard fork needs a readiness threshold (min-ready ≥ 1)", ErrBadUpgrade)
		}
	default:
		return fmt.Errorf("%w: kind %q is neither %q nor %q", ErrBadUpgrade, m.UpgradeKind, UpgradeSoft, UpgradeHard)
	}
	if len(m.Artifacts) == 0 {
		return fmt.Errorf("%w: no artifact", ErrArtifactIncomplete)
	}
	for i, a := range m.Artifacts {
		switch {
		case a.Platform == "":
			return fmt.Errorf("%w: artifact %d has no platform", ErrArtifactIncomplete, i)
		case a.SHA256 == (Hash{}):
			return fmt.Errorf("%w: artifact for %s has no sha256", ErrArtifactIncomplete, a.Platform)
		case a.Size == 0:
			return fmt.Errorf("%w: artifact for %s has no size", ErrArtifactIncomplete, a.Platform)
		case len(a.CID) == 0:
			return fmt.Errorf("%w: artifact for %s has no CID", ErrArtifactIncomplete, a.Platform)
		}
		if i > 0 && m.Artifacts[i-1].Platform >= a.Platform {
			return fmt.Errorf("%w: artifacts not sorted by platform, or %s twice", ErrBadUpgrade, a.Platform)
		}
	}
	if m.ID != UpgradeIDOf(m) {
		return fmt.Errorf("%w: id %x is not the hash of its content", ErrBadUpgrade, m.ID)
	}
	return nil
}

// CancelEffective reports whether the upgrade is cancelled: a cancellation
// was written before its fence (any, for a soft upgrade or while the
// metadata is unknown).
func (u *UpgradeRef) CancelEffective() bool {
	if u.Cancelled == 0 {
		return false
	}
	if u.Meta == nil || u.Meta.UpgradeKind != UpgradeHard {
		return true
	}
	return u.Cancelled < u.Meta.ActivationFence
}

// Publisher is the author of the upgrade's metadata (zero if unknown).
func (u *UpgradeRef) Publisher() DeviceID {
	if u.Meta == nil {
		return DeviceID{}
	}
	return u.Stamp.Author
}

// UpgradeName is the printed form of an upgrade id (hex).
func UpgradeName(id [16]byte) string { return fmt.Sprintf("%x", id[:]) }

// ParseUpgradeName parses UpgradeName's form.
func ParseUpgradeName(s string) ([16]byte, error) {
	var id [16]byte
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != 16 {
		return id, fmt.Errorf("%q is not an upgrade id (32 hex digits)", s)
	}
	copy(id[:], b)
	return id, nil
}
