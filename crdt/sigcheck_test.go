package crdt

import (
	"crypto/ed25519"
	"crypto/sha256"
	"errors"
	"fmt"
	"testing"

	"pgregory.net/rapid"
)

// VerifyFacts names exactly the facts whose signatures are bad, whatever
// the batch size, the mix and the position of the bad ones, and its verdict
// equals VerifyOnce's on each fact alone.
func TestVerifyFactsNamesExactlyTheBad(t *testing.T) {
	var keys []ed25519.PrivateKey
	for i := range 3 {
		seed := sha256.Sum256([]byte(fmt.Sprintf("sigcheck %d", i)))
		keys = append(keys, ed25519.NewKeyFromSeed(seed[:]))
	}
	rapid.Check(t, func(t *rapid.T) {
		n := rapid.IntRange(0, 300).Draw(t, "n")
		var fs []*Fact
		bad := make([]bool, n)
		for i := range n {
			k := keys[rapid.IntRange(0, len(keys)-1).Draw(t, "key")]
			f, err := NewFact(k, AccountID{1}, uint64(i+1), 1, uint64(i+1), &Put{Key: fmt.Sprint(i), Value: []byte("v")})
			if err != nil {
				t.Fatal(err)
			}
			raw := append([]byte(nil), f.Bytes()...)
			switch rapid.IntRange(0, 9).Draw(t, "fault") {
			case 0: // a flipped signature bit
				raw[len(raw)-1-rapid.IntRange(0, 63).Draw(t, "bit")/8] ^= 1 << rapid.IntRange(0, 7).Draw(t, "shift")
				bad[i] = true
			case 1: // another fact's valid signature
				other, _ := NewFact(k, AccountID{1}, uint64(i+1), 1, uint64(i+2), &Put{Key: "other", Value: []byte("w")})
				copy(raw[len(raw)-64:], other.Sig)
				bad[i] = true
			}
			g, err := DecodeFact(raw)
			if err != nil {
				t.Fatal(err)
			}
			if !bad[i] && rapid.IntRange(0, 4).Draw(t, "checked") == 0 {
				if err := g.VerifyOnce(); err != nil { // already marked: skipped
					t.Fatal(err)
				}
			}
			fs = append(fs, g)
		}
		errs := VerifyFacts(fs)
		if len(errs) != n {
			t.Fatalf("%d errors for %d facts", len(errs), n)
		}
		for i, f := range fs {
			if got := errs[i] != nil; got != bad[i] {
				t.Fatalf("fact %d: error %v, bad %v", i, errs[i], bad[i])
			}
			if bad[i] && !errors.Is(errs[i], ErrBadSignature) {
				t.Fatalf("fact %d: %v, want ErrBadSignature", i, errs[i])
			}
			// The verdict is VerifyOnce's on a fresh copy, and a bad fact
			// is never marked.
			fresh, _ := DecodeFact(f.Bytes())
			if (fresh.VerifyOnce() != nil) != bad[i] || (f.VerifyOnce() != nil) != bad[i] {
				t.Fatalf("fact %d: VerifyFacts and VerifyOnce disagree", i)
			}
		}
	})
}

// A fact whose fields were changed after decoding is checked against its
// fields, not its stale bytes, in a batch as alone.
func TestVerifyFactsChangedFields(t *testing.T) {
	seed := sha256.Sum256([]byte("sigcheck changed"))
	k := ed25519.NewKeyFromSeed(seed[:])
	var fs []*Fact
	for i := range 8 {
		f, err := NewFact(k, AccountID{1}, uint64(i+1), 1, uint64(i+1), &Put{Key: "k", Value: []byte("v")})
		if err != nil {
			t.Fatal(err)
		}
		fs = append(fs, f)
	}
	fs[3].Lamport++ // marked by Sign, but no longer what was signed
	errs := VerifyFacts(fs)
	for i, err := range errs {
		if (err != nil) != (i == 3) {
			t.Fatalf("fact %d: %v", i, err)
		}
	}
}
