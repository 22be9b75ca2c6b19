package crdt

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"fmt"
	"testing"

	"pgregory.net/rapid"
)

func TestGuardRejectsOutsiders(t *testing.T) {
	s := newScenario(t, 3)
	st := s.reduce(s.facts)
	before := st.Digest()

	outsider := NewWriter(testKey(99), s.account, 0, 100)
	f, err := outsider.Write(s.epoch, &Put{Key: "k", Value: []byte("evil")})
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Apply(f); !errors.Is(err, ErrUnauthorized) {
		t.Fatalf("outsider put: got %v, want ErrUnauthorized", err)
	}
	if st.Digest() != before {
		t.Fatal("rejected fact changed the state")
	}
	if _, ok := st.Value("k"); ok {
		t.Fatal("outsider's value visible")
	}
}

func TestGuardNeedsCapabilityAtEpoch(t *testing.T) {
	s := newScenario(t, 3)
	// A member without admin cannot add devices.
	s.writers[1].Observe(100)
	add, err := s.writers[1].Write(s.epoch+1, &DeviceAdded{Device: DeviceIDFromKey(testKey(50).Public().(ed25519.PublicKey)), Capabilities: AllCapabilities})
	if err != nil {
		t.Fatal(err)
	}
	st := s.reduce(s.facts)
	before := st.Digest()
	if err := st.Apply(add); !errors.Is(err, ErrUnauthorized) {
		t.Fatalf("non-admin add: got %v", err)
	}
	// Device 2 joined at epoch 3: a fact claiming epoch 2 predates it.
	early, err := s.writers[2].Write(2, &Put{Key: "x", Value: []byte("1")})
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Apply(early); !errors.Is(err, ErrUnauthorized) {
		t.Fatalf("write before joining: got %v", err)
	}
	// A proposal naming another proposer is refused.
	prop, _ := s.writers[1].Write(s.epoch, &SnapshotProposed{Proposer: s.dev(2), TargetEpoch: s.epoch})
	if err := st.Apply(prop); !errors.Is(err, ErrUnauthorized) {
		t.Fatalf("proposal for someone else: got %v", err)
	}
	if st.Digest() != before {
		t.Fatal("rejected facts changed the state")
	}
}

func TestRemovedDeviceCannotWrite(t *testing.T) {
	s := newScenario(t, 3)
	s.epoch++
	s.write(0, s.epoch, &DeviceRemoved{Device: s.dev(2)})
	ok := s.write(2, s.epoch-1, &Put{Key: "before", Value: []byte("kept")}) // written before it learned of removal
	st := s.reduce(s.facts)
	if v, found := st.Value("before"); !found || string(v) != "kept" {
		t.Fatalf("write at epoch before removal lost: %q %v (%v)", v, found, st.Check(ok))
	}
	late, _ := s.writers[2].Write(s.epoch, &Put{Key: "after", Value: []byte("x")})
	if err := st.Apply(late); !errors.Is(err, ErrUnauthorized) {
		t.Fatalf("removed device write: got %v", err)
	}
	if st.IsMember(s.dev(2)) {
		t.Fatal("removed device still a member")
	}
}

func TestFactsAheadOfMembershipAreParked(t *testing.T) {
	s := newScenario(t, 3)
	put := s.write(2, s.epoch, &Put{Key: "k", Value: []byte("v")})
	st := NewState(s.account, nil)
	// Deliver the device's write before the admin's facts.
	if err := st.Apply(put); !errors.Is(err, ErrNotYet) {
		t.Fatalf("got %v, want ErrNotYet", err)
	}
	st.Fold(s.facts)
	if v, ok := st.Value("k"); !ok || string(v) != "v" {
		t.Fatal("parked fact not applied once its author joined")
	}
	if st.Parked() != 0 {
		t.Fatalf("%d facts still parked", st.Parked())
	}
}

func TestLastWriterWins(t *testing.T) {
	s := newScenario(t, 3)
	s.write(1, s.epoch, &Put{Key: "k", Value: []byte("one")})
	s.write(2, s.epoch, &Put{Key: "k", Value: []byte("two")}) // sees the first: higher Lamport
	st := s.reduce(s.facts)
	if v, _ := st.Value("k"); string(v) != "two" {
		t.Fatalf("got %q", v)
	}
	s.write(1, s.epoch, &Delete{Key: "k"})
	st = s.reduce(s.facts)
	if _, ok := st.Value("k"); ok {
		t.Fatal("delete lost")
	}
}

// randomFacts builds a valid workload: the scenario's membership facts and
// a random mix of writes by random devices, some concurrent (writers that
// did not observe each other).
func randomFacts(t *rapid.T) (*scenario, []*Fact) {
	n := rapid.IntRange(2, 4).Draw(t, "devices")
	s := newScenario(t, n)
	ops := rapid.IntRange(0, 40).Draw(t, "ops")
	for i := 0; i < ops; i++ {
		d := rapid.IntRange(0, n-1).Draw(t, "dev")
		key := fmt.Sprintf("k%d", rapid.IntRange(0, 5).Draw(t, "key"))
		w := s.writers[d]
		if rapid.Bool().Draw(t, "observe") {
			for _, f := range s.facts {
				w.Observe(f.Lamport)
			}
		}
		var body Body
		switch rapid.IntRange(0, 6).Draw(t, "kind") {
		case 0, 1, 2:
			body = &Put{Key: key, Value: []byte(rapid.StringN(0, 8, -1).Draw(t, "val"))}
		case 3:
			body = &Delete{Key: key}
		case 4:
			body = &BlobStored{CID: []byte(key), Size: uint64(i)}
		case 5:
			body = &BlobTombstoned{CID: []byte(key)}
		case 6:
			body = &CacheInvalidated{Keys: []string{key}, EpochFloor: uint64(rapid.IntRange(0, 9).Draw(t, "floor"))}
		}
		f, err := w.Write(s.epoch, body)
		if err != nil {
			t.Fatal(err)
		}
		s.facts = append(s.facts, f)
	}
	return s, s.facts
}

func shuffled(t *rapid.T, facts []*Fact, label string) []*Fact {
	out := append([]*Fact(nil), facts...)
	for i := len(out) - 1; i > 0; i-- {
		j := rapid.IntRange(0, i).Draw(t, label)
		out[i], out[j] = out[j], out[i]
	}
	return out
}

func TestReducerOrderIndependence(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		s, facts := randomFacts(t)
		want := s.reduce(facts).Digest()
		// Any order, with duplicates.
		again := shuffled(t, facts, "perm")
		dups := rapid.IntRange(0, len(facts)).Draw(t, "dups")
		again = append(again, shuffled(t, facts, "dupperm")[:dups]...)
		if got := s.reduce(again).Digest(); got != want {
			t.Fatalf("digest depends on order: %s vs %s", got, want)
		}
	})
}

func TestStateJoinLaws(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		s, facts := randomFacts(t)
		perm := shuffled(t, facts, "perm")
		// Split into three random sub-journals (overlapping allowed).
		var parts [3][]*Fact
		for _, f := range perm {
			mask := rapid.IntRange(1, 7).Draw(t, "mask")
			for p := 0; p < 3; p++ {
				if mask&(1<<p) != 0 {
					parts[p] = append(parts[p], f)
				}
			}
		}
		a, b, c := s.reduce(parts[0]), s.reduce(parts[1]), s.reduce(parts[2])
		join := func(x, y *State) *State { z := x.Clone(); z.Join(y); return z }
		if join(a, b).Digest() != join(b, a).Digest() {
			t.Fatal("join not commutative")
		}
		if join(join(a, b), c).Digest() != join(a, join(b, c)).Digest() {
			t.Fatal("join not associative")
		}
		if join(a, a).Digest() != a.Digest() {
			t.Fatal("join not idempotent")
		}
		// Join of the reductions is the reduction of the union.
		if join(join(a, b), c).Digest() != s.reduce(facts).Digest() {
			t.Fatal("join of parts differs from reduction of the whole")
		}
	})
}

func TestStateEncodingRoundTrip(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		s, facts := randomFacts(t)
		st := s.reduce(facts)
		enc := st.Encode()
		back, err := DecodeState(enc)
		if err != nil {
			t.Fatal(err)
		}
		if back.Digest() != st.Digest() {
			t.Fatal("digest changed through encoding")
		}
	})
}

func TestStreamedEncodingEqualsCanonical(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		s, facts := randomFacts(t)
		st := s.reduce(facts)
		// Keys of many lengths, to cross CBOR head sizes.
		for i := 0; i < rapid.IntRange(0, 40).Draw(t, "extra"); i++ {
			k := rapid.StringN(0, 300, -1).Draw(t, "k")
			st.KV[k] = &Entry{Value: []byte(k), Stamp: Stamp{Lamport: uint64(i)}}
		}
		want, err := Marshal(st)
		if err != nil {
			t.Fatal(err)
		}
		if got := st.Encode(); !bytes.Equal(got, want) {
			t.Fatalf("streamed encoding differs from the canonical encoder's (%d vs %d bytes)", len(got), len(want))
		}
		if st.Digest() != DigestOf(want) {
			t.Fatal("digest differs from the digest of the canonical bytes")
		}
	})
}

// TestStateWithBinaryBlobCIDsDecodes: blobs are named by binary CIDs,
// which are not UTF-8; the state (a snapshot blob) must still decode.
func TestStateWithBinaryBlobCIDsDecodes(t *testing.T) {
	s := newScenario(t, 1)
	cid := []byte{0x01, 0x55, 0x12, 0x20, 0xff, 0xfe, 0x80, 0xc3}
	s.write(0, s.epoch, &BlobStored{CID: cid, Size: 3})
	s.write(0, s.epoch, &BlobTombstoned{CID: []byte{0x01, 0x70, 0xff}})
	enc := s.reduce(s.facts).Encode()
	back, err := DecodeState(enc)
	if err != nil {
		t.Fatalf("decode a state holding binary blob CIDs: %v", err)
	}
	ref := back.Blobs[BlobKey(cid)]
	if ref == nil || ref.Size != 3 {
		t.Fatalf("blob lost: %+v", back.Blobs)
	}
	if c, err := BlobKeyCID(BlobKey(cid)); err != nil || string(c) != string(cid) {
		t.Fatalf("BlobKeyCID: %x %v", c, err)
	}
}
