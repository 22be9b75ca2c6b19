package crdt

import (
	"bytes"
	"crypto/ed25519"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"testing"
)

var update = flag.Bool("update", false, "rewrite golden files")

func TestDecodeRejects(t *testing.T) {
	s := newScenario(t, 2)
	good := s.write(1, s.epoch, &Put{Key: "k", Value: []byte("v")})

	if _, err := DecodeVerifiedFact(good.Bytes()); err != nil {
		t.Fatalf("good fact: %v", err)
	}
	cases := []struct {
		name string
		b    []byte
		want error
	}{
		{"oversized", make([]byte, MaxFactSize+1), ErrTooLarge},
		{"garbage", []byte{0xff, 0x00, 0x13}, ErrMalformed},
		{"empty", nil, ErrMalformed},
		{"non-canonical", nonCanonical(t, good), ErrNotCanonical},
		{"unknown kind", resign(t, s, good, func(f *Fact) { f.Kind = 200 }), ErrUnknownKind},
		{"bad body", resign(t, s, good, func(f *Fact) { f.Body = []byte{0xa1, 0x01} }), ErrMalformed},
	}
	for _, c := range cases {
		_, err := DecodeVerifiedFact(c.b)
		if !errors.Is(err, c.want) {
			t.Errorf("%s: got %v, want %v", c.name, err, c.want)
		}
	}
	// A flipped signature bit decodes but does not verify.
	bad := *good
	bad.Sig = append([]byte(nil), good.Sig...)
	bad.Sig[5] ^= 1
	raw, _ := Marshal(bad.wire())
	if _, err := DecodeVerifiedFact(raw); !errors.Is(err, ErrBadSignature) {
		t.Errorf("forged signature: got %v", err)
	}
	// So does a changed value under the old signature.
	forged := *good
	forged.Body, _ = Marshal(&Put{Key: "k", Value: []byte("w")})
	raw, _ = Marshal(forged.wire())
	if _, err := DecodeVerifiedFact(raw); !errors.Is(err, ErrBadSignature) {
		t.Errorf("forged body: got %v", err)
	}
	// A signature of the wrong length is refused by DecodeFact itself.
	short := *good
	short.Sig = good.Sig[:4]
	raw, _ = Marshal(short.wire())
	if _, err := DecodeFact(raw); !errors.Is(err, ErrBadSignature) {
		t.Errorf("short signature: got %v", err)
	}
}

// nonCanonical re-encodes the fact with the seq as a non-minimal integer.
func nonCanonical(t *testing.T, f *Fact) []byte {
	b := f.Bytes()
	// The array header (1 byte) is followed by V (1 byte), account (1+16),
	// author (2+32), seq. Seq < 24 is one byte; write it as 0x18 NN.
	i := 1 + 1 + 17 + 34
	if b[i] >= 24 {
		t.Fatalf("seq %d too large for this test", f.Seq)
	}
	out := append([]byte{}, b[:i]...)
	out = append(out, 0x18, b[i])
	return append(out, b[i+1:]...)
}

func resign(t *testing.T, s *scenario, f *Fact, mutate func(*Fact)) []byte {
	c := *f
	mutate(&c)
	key := s.keys[1]
	c.Sig = nil
	c.Sig = ed25519Sign(key, c.SigningBytes())
	raw, err := Marshal(c.wire())
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

type goldenFact struct {
	Name string `json:"name"`
	Hex  string `json:"hex"`
	CID  string `json:"cid"`
}

type goldenFile struct {
	Facts       []goldenFact `json:"facts"`
	StateDigest string       `json:"state_digest"`
	PrefixHash  string       `json:"prefix_hash"`
}

// TestGoldenVectors pins the encoding: bytes, CIDs and the state digest of
// a fixed journal. Regenerate with -update only for a deliberate format
// change (which breaks every existing journal).
func TestGoldenVectors(t *testing.T) {
	s := newScenario(t, 3)
	s.write(1, s.epoch, &Put{Key: "greeting", Value: []byte("hello")})
	s.write(2, s.epoch, &Delete{Key: "greeting"})
	s.write(1, s.epoch, &DeviceMetadata{Name: "laptop", SupportedProtocols: []string{"aura/1"}, UpgradePolicy: PolicyManual})
	var g goldenFile
	heads := map[DeviceID]Hash{}
	vv := VersionVector{}
	for _, f := range s.facts {
		g.Facts = append(g.Facts, goldenFact{Name: f.Kind.String(), Hex: hex.EncodeToString(f.Bytes()), CID: f.ID().String()})
		h, ok := heads[f.Author]
		if !ok {
			h = ChainGenesis(f.Author)
		}
		heads[f.Author] = ChainNext(h, f.ID())
		vv[f.Author] = f.Seq
	}
	g.StateDigest = s.reduce(s.facts).Digest().String()
	g.PrefixHash = PrefixHash(vv, heads).String()

	path := filepath.Join("testdata", "golden.json")
	if *update {
		b, _ := json.MarshalIndent(g, "", "  ")
		if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read golden (run with -update to create): %v", err)
	}
	var want goldenFile
	if err := json.Unmarshal(raw, &want); err != nil {
		t.Fatal(err)
	}
	if len(want.Facts) != len(g.Facts) {
		t.Fatalf("golden has %d facts, made %d", len(want.Facts), len(g.Facts))
	}
	for i, w := range want.Facts {
		b, _ := hex.DecodeString(w.Hex)
		f, err := DecodeVerifiedFact(b)
		if err != nil {
			t.Fatalf("golden fact %d (%s) no longer decodes: %v", i, w.Name, err)
		}
		if !bytes.Equal(f.Bytes(), b) || f.ID().String() != w.CID {
			t.Errorf("golden fact %d (%s): CID %s, want %s", i, w.Name, f.ID(), w.CID)
		}
		if g.Facts[i].Hex != w.Hex {
			t.Errorf("golden fact %d (%s): encoding changed", i, w.Name)
		}
	}
	if g.StateDigest != want.StateDigest {
		t.Errorf("state digest %s, golden %s", g.StateDigest, want.StateDigest)
	}
	if g.PrefixHash != want.PrefixHash {
		t.Errorf("prefix hash %s, golden %s", g.PrefixHash, want.PrefixHash)
	}
}

func TestDeviceIDIsPeerID(t *testing.T) {
	d := DeviceIDFromKey(testKey(1).Public().(ed25519PublicKeyT))
	s := d.String()
	if len(s) < 50 || s[:8] != "12D3KooW" {
		t.Fatalf("device id %q does not look like an ed25519 peer id", s)
	}
	back, err := ParseDeviceID(s)
	if err != nil || back != d {
		t.Fatalf("round trip: %v", err)
	}
}

func FuzzDecodeFact(f *testing.F) {
	raw, err := os.ReadFile(filepath.Join("testdata", "golden.json"))
	if err == nil {
		var g goldenFile
		_ = json.Unmarshal(raw, &g)
		for _, gf := range g.Facts {
			b, _ := hex.DecodeString(gf.Hex)
			f.Add(b)
		}
	}
	f.Add([]byte{0x89})
	f.Fuzz(func(t *testing.T, b []byte) {
		// The one-pass parser and the general decoder agree on every input.
		if len(b) <= MaxFactSize {
			fast, fastOK := parseEnvelope(b)
			slow, slowErr := decodeEnvelope(b)
			if fastOK {
				if slowErr != nil {
					t.Fatalf("parser accepts what the decoder refuses: %v", slowErr)
				}
				if fast.Account != slow.Account || fast.Author != slow.Author || fast.Seq != slow.Seq ||
					fast.Epoch != slow.Epoch || fast.Lamport != slow.Lamport || fast.Kind != slow.Kind ||
					!bytes.Equal(fast.Body, slow.Body) || !bytes.Equal(fast.Sig, slow.Sig) ||
					!bytes.Equal(fast.raw, slow.raw) || fast.id != slow.id {
					t.Fatalf("parser and decoder disagree: %+v vs %+v", fast, slow)
				}
			} else if slowErr == nil {
				t.Fatal("decoder accepts what the parser refuses")
			}
		}
		fact, err := DecodeFact(b)
		if err != nil {
			return
		}
		if body, err := fact.decodedBody(); err != nil || body == nil {
			t.Fatalf("accepted fact without its decoded body: %v", err)
		}
		// One fact, one encoding: what decodes re-encodes to the input.
		if !bytes.Equal(fact.Bytes(), b) {
			t.Fatal("decoded fact does not re-encode to its input")
		}
		if _, err := fact.DecodeBody(); err != nil {
			t.Fatalf("accepted fact with undecodable body: %v", err)
		}
		_ = fact.Verify()
	})
}

func FuzzDecodeState(f *testing.F) {
	s := newScenario(f, 3)
	s.write(1, s.epoch, &Put{Key: "a", Value: []byte("b")})
	s.write(2, s.epoch, &BlobStored{CID: []byte("c"), Size: 3})
	s.write(2, s.epoch, &DeviceMetadata{SupportedProtocols: []string{"p"}, UpgradePolicy: PolicyAuto})
	f.Add(s.reduce(s.facts).Encode())
	f.Add(NewState(s.account, nil).Encode())
	f.Fuzz(func(t *testing.T, b []byte) {
		st, err := DecodeState(b)
		if err != nil {
			return
		}
		if !bytes.Equal(st.Encode(), b) {
			t.Fatal("decoded state does not re-encode to its input")
		}
		// A decoded state must survive being folded into.
		w := NewWriter(testKey(1), st.Account, 0, 0)
		if fact, err := w.Write(1, &Put{Key: "z", Value: []byte("z")}); err == nil {
			_ = st.Apply(fact)
		}
		other := st.Clone()
		other.Join(st)
		_ = other.Digest()
	})
}

// A body of MaxBodySize bytes signs with the largest envelope fields, so
// CheckBodySize never admits a body that Sign then refuses.
func TestMaxBodySizeAlwaysSigns(t *testing.T) {
	_, key, _ := ed25519.GenerateKey(nil)
	body := make([]byte, MaxBodySize)
	f := &Fact{Account: AccountID{1}, Seq: ^uint64(0), Epoch: ^uint64(0), Lamport: ^uint64(0), Kind: KindPut, Body: body}
	if err := f.Sign(key); err != nil {
		t.Fatalf("body of MaxBodySize: %v", err)
	}
	if err := CheckBodySize(KindPut, MaxBodySize+1); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("CheckBodySize(MaxBodySize+1) = %v, want ErrTooLarge", err)
	}
}
