package crdt

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"testing"

	"pgregory.net/rapid"
)

// macVerifier stands in for threshold.VerifyGroup in this package's tests
// (crdt imports no curve code): a signature is sha256(groupKey ‖ msg).
// Only a holder of the "group key" bytes can make one, which is what the
// guard relies on.
func macVerifier(groupKey, msg, sig []byte) error {
	want := macSign(groupKey, msg)
	if !bytes.Equal(want, sig) {
		return errors.New("bad mac")
	}
	return nil
}

func macSign(groupKey, msg []byte) []byte {
	h := sha256.New()
	h.Write(groupKey)
	h.Write(msg)
	return h.Sum(nil)
}

var testGroupKey = []byte("test group key")

// adminScenario is a scenario of n devices whose admin published a group
// key at the last membership epoch.
func adminScenario(t fataler, n int) *scenario {
	s := newScenario(t, n)
	s.write(0, s.epoch, &GroupKey{KeyEpoch: 1, Threshold: 2, PublicKey: testGroupKey})
	return s
}

// replace has device by sign and publish the replacement prev → next
// activating at epoch act.
func (s *scenario) replace(by int, prev, next DeviceID, act uint64) *Fact {
	r := &AdminReplaced{Previous: prev, New: next, ActivationEpoch: act}
	r.ThresholdSignature = macSign(testGroupKey, AdminReplaceMessage(s.account, r))
	return s.write(by, act, r)
}

func (s *scenario) foldAdmin(facts []*Fact) *State {
	st := NewState(s.account, macVerifier)
	st.Fold(facts)
	return st
}

func TestAdminReplacementRefusesPreviousAdminFromActivation(t *testing.T) {
	s := adminScenario(t, 3)
	earlier := append([]*Fact(nil), s.facts...) // the old admin's facts before the replacement
	act := s.epoch + 1
	repl := s.replace(2, s.dev(0), s.dev(1), act)
	latecomer := DeviceIDFromKey(testKey(8).Public().(ed25519PublicKeyT))
	late := s.write(0, act+1, &DeviceAdded{Device: latecomer, Capabilities: AllCapabilities})
	lateKey := s.write(0, act, &GroupKey{KeyEpoch: 2, Threshold: 2, PublicKey: []byte("old admin's key")})

	// Arriving before the replacement, the old admin's later facts wait:
	// epoch act is not opened yet, so no replica can decide them early.
	st := NewState(s.account, macVerifier)
	st.Fold(earlier)
	if err := st.Apply(late); !errors.Is(err, ErrNotYet) {
		t.Fatalf("old admin's fact at epoch %d before the replacement: got %v, want ErrNotYet", act, err)
	}
	if err := st.Apply(repl); err != nil {
		t.Fatalf("replacement: %v", err)
	}
	if st.Parked() != 0 {
		t.Fatalf("%d facts still parked after the replacement", st.Parked())
	}
	if err := st.Check(late); !errors.Is(err, ErrUnauthorized) {
		t.Fatalf("old admin's membership fact after activation: got %v, want ErrUnauthorized", err)
	}
	if err := st.Apply(lateKey); !errors.Is(err, ErrUnauthorized) {
		t.Fatalf("old admin's group key at activation: got %v, want ErrUnauthorized", err)
	}
	if st.GroupKeys[2] != nil {
		t.Fatal("refused group key entered the state")
	}
	// Its earlier facts stay valid: every member it added is still one.
	for i := 1; i < 3; i++ {
		if !st.IsMember(s.dev(i)) {
			t.Fatalf("device %d added by the old admin before activation is no longer a member", i)
		}
		if err := st.Check(earlier[i]); err != nil {
			t.Fatalf("old admin's fact %d before activation: %v", i, err)
		}
	}
	if st.Admin() != s.dev(1) || st.Epoch != act {
		t.Fatalf("admin %s epoch %d, want %s at %d", st.Admin().Short(), st.Epoch, s.dev(1).Short(), act)
	}
	// The new admin admits a device.
	newcomer := DeviceIDFromKey(testKey(7).Public().(ed25519PublicKeyT))
	add := s.write(1, act+1, &DeviceAdded{Device: newcomer, Capabilities: DefaultDeviceCapabilities})
	if err := st.Apply(add); err != nil {
		t.Fatalf("new admin adds a device: %v", err)
	}
	if !st.IsMember(newcomer) {
		t.Fatal("device added by the new admin is not a member")
	}
}

func TestAdminReplacementGuardRefusals(t *testing.T) {
	s := adminScenario(t, 3)
	st := s.foldAdmin(s.facts)
	act := s.epoch + 1
	outsider := DeviceIDFromKey(testKey(9).Public().(ed25519PublicKeyT))
	signed := func(r *AdminReplaced) *AdminReplaced {
		r.ThresholdSignature = macSign(testGroupKey, AdminReplaceMessage(s.account, r))
		return r
	}
	cases := []struct {
		name  string
		epoch uint64
		body  *AdminReplaced
		want  []error
	}{
		{"forged signature", act, &AdminReplaced{Previous: s.dev(0), New: s.dev(1), ActivationEpoch: act, ThresholdSignature: bytes.Repeat([]byte{7}, 32)},
			[]error{ErrBadThresholdSignature, ErrNotYet}},
		{"short signature", act, &AdminReplaced{Previous: s.dev(0), New: s.dev(1), ActivationEpoch: act, ThresholdSignature: []byte{1}},
			[]error{ErrBadThresholdSignature}},
		{"signature over another replacement", act, &AdminReplaced{Previous: s.dev(0), New: s.dev(2), ActivationEpoch: act,
			ThresholdSignature: signed(&AdminReplaced{Previous: s.dev(0), New: s.dev(1), ActivationEpoch: act}).ThresholdSignature},
			[]error{ErrBadThresholdSignature}},
		{"new admin not a member", act, signed(&AdminReplaced{Previous: s.dev(0), New: outsider, ActivationEpoch: act}),
			[]error{ErrNewAdminNotMember, ErrUnauthorized}},
		{"fact epoch is not the activation epoch", act, signed(&AdminReplaced{Previous: s.dev(0), New: s.dev(1), ActivationEpoch: act + 1}),
			[]error{ErrBadReplacement, ErrUnauthorized}},
		{"replaces a device by itself", act, signed(&AdminReplaced{Previous: s.dev(1), New: s.dev(1), ActivationEpoch: act}),
			[]error{ErrBadReplacement}},
	}
	before := st.Digest()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s.writers[2].Observe(1000)
			f, err := s.writers[2].Write(c.epoch, c.body)
			if err != nil {
				t.Fatal(err)
			}
			err = st.Apply(f)
			for _, w := range c.want {
				if !errors.Is(err, w) {
					t.Fatalf("got %v, want %v", err, w)
				}
			}
		})
	}
	if st.Digest() != before || len(st.AdminReplacements) != 0 || st.Admin() != s.dev(0) {
		t.Fatal("a refused replacement changed the state")
	}
}

// Competing replacements of one admin: whatever the arrival order (and
// however states are joined), every replica ends with the same winner,
// the one AdminOverride.Wins picks, and only it holds the admin capability.
func TestCompetingAdminReplacementsOneWinner(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		n := rapid.IntRange(3, 5).Draw(t, "devices")
		s := adminScenario(t, n)
		act := s.epoch + 1
		k := rapid.IntRange(1, 4).Draw(t, "replacements")
		var best *AdminOverride
		for range k {
			next := rapid.IntRange(1, n-1).Draw(t, "new")
			by := rapid.IntRange(1, n-1).Draw(t, "by")
			s.replace(by, s.dev(0), s.dev(next), act)
			o := AdminOverride{New: s.dev(next), ActivationEpoch: act}
			if best == nil || o.Wins(*best) {
				best = &o
			}
		}
		// The old admin keeps writing after activation; the new ones too.
		s.write(0, act+1, &CapabilityGrant{Device: s.dev(1), Capabilities: []string{CapUpgradePublish}})
		for i := 1; i < n; i++ {
			s.write(i, act, &Put{Key: "k", Value: []byte{byte(i)}})
		}
		want := s.foldAdmin(s.facts)
		if want.Admin() != best.New || want.AdminReplacements[s.dev(0)] != *best {
			t.Fatalf("winner %s, want %s", want.Admin().Short(), best.New.Short())
		}
		for i := 1; i < n; i++ {
			if got, exp := want.Holds(s.dev(i), CapAdmin, act), s.dev(i) == best.New; got != exp {
				t.Fatalf("device %d holds admin at activation: %v, want %v", i, got, exp)
			}
		}
		if want.Holds(s.dev(0), CapAdmin, act) {
			t.Fatal("the replaced admin still holds admin at activation")
		}
		got := s.foldAdmin(shuffled(t, s.facts, "order"))
		if got.Digest() != want.Digest() {
			t.Fatal("folding in another order gives another state")
		}
		// Two replicas that saw different halves, joined.
		cut := rapid.IntRange(0, len(s.facts)).Draw(t, "cut")
		order := shuffled(t, s.facts, "split")
		a, b := s.foldAdmin(order[:cut]), s.foldAdmin(order[cut:])
		a.Join(b)
		if a.Admin() != best.New {
			t.Fatalf("joined winner %s, want %s", a.Admin().Short(), best.New.Short())
		}
	})
}

func TestAdminStateEncodingRoundTrip(t *testing.T) {
	s := adminScenario(t, 3)
	s.write(1, s.epoch, &AdminReplaceProposed{ProposalID: [16]byte{1}, Previous: s.dev(0), New: s.dev(1), ActivationEpoch: s.epoch + 1})
	s.write(2, s.epoch, &AdminReplaceVote{ProposalID: [16]byte{1}, Partial: []byte{1, 2, 3}})
	s.replace(2, s.dev(0), s.dev(1), s.epoch+1)
	st := s.foldAdmin(s.facts)
	if len(st.AdminProposals) != 1 || len(st.AdminProposals[[16]byte{1}].Votes) != 1 {
		t.Fatalf("proposals %+v", st.AdminProposals)
	}
	enc := st.Encode()
	back, err := DecodeState(enc)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(back.Encode(), enc) {
		t.Fatal("state with admin records does not round-trip")
	}
	m, err := Marshal(st)
	if err != nil || !bytes.Equal(m, enc) {
		t.Fatalf("streamed encoding differs from the canonical one (%v)", err)
	}
}

// The admin bodies are decoders of wire input (fact bodies from peers):
// they never panic, accept only canonical bytes, and what they accept
// goes through the guard without panicking.
func FuzzAdminBodies(f *testing.F) {
	s := adminScenario(f, 3)
	for _, b := range []Body{
		&AdminReplaceProposed{ProposalID: [16]byte{1}, Previous: s.dev(0), New: s.dev(1), ActivationEpoch: 4, Deadline: 99},
		&AdminReplaceVote{ProposalID: [16]byte{1}, Partial: []byte{0, 1, 2}},
		&AdminReplaced{Previous: s.dev(0), New: s.dev(1), ActivationEpoch: 4, ThresholdSignature: []byte{9}},
	} {
		enc, err := Marshal(b)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(uint8(b.Kind()), enc)
	}
	st := s.foldAdmin(s.facts)
	f.Fuzz(func(t *testing.T, k uint8, b []byte) {
		kind := []Kind{KindAdminReplaceProposed, KindAdminReplaceVote, KindAdminReplaced}[int(k)%3]
		body, err := DecodeBodyOf(kind, b)
		if err != nil {
			return
		}
		enc, err := Marshal(body)
		if err != nil || !bytes.Equal(enc, b) {
			t.Fatalf("decoded %s body does not re-encode to its input (%v)", kind, err)
		}
		s.writers[2].Observe(1000)
		fact, err := s.writers[2].Write(st.Epoch+1, body)
		if err != nil {
			return // too large, say
		}
		c := st.Clone()
		_ = c.Apply(fact)
		_ = c.Digest()
	})
}
