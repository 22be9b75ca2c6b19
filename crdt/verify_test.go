package crdt

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"errors"
	"testing"
)

// The signed part sliced out of the canonical bytes must equal SigningBytes
// for every size class of the CBOR heads.
func TestSignedPartMatchesSigningBytes(t *testing.T) {
	seed := sha256.Sum256([]byte("verify"))
	key := ed25519.NewKeyFromSeed(seed[:])
	for _, n := range []uint64{0, 1, 23, 24, 255, 256, 65535, 65536, 1<<32 - 1, 1 << 32, 1<<64 - 1} {
		for _, size := range []int{0, 10, 23, 24, 200, 300, 70000 / 2} {
			seq := n
			if seq == 0 {
				seq = 1
			}
			f, err := NewFact(key, AccountID{byte(n)}, seq, n, n, &Put{Key: "k", Value: make([]byte, size)})
			if err != nil {
				t.Fatal(err)
			}
			msg, ok := f.signedPart(nil)
			if !ok || !bytes.Equal(msg, f.SigningBytes()) {
				t.Fatalf("n=%d size=%d: signed part differs from SigningBytes (ok=%v)", n, size, ok)
			}
			g, err := DecodeFact(f.Bytes())
			if err != nil {
				t.Fatal(err)
			}
			if g.isMarked() {
				t.Fatal("decoded fact is marked verified")
			}
			if err := g.VerifyOnce(); err != nil || !g.isMarked() {
				t.Fatalf("VerifyOnce: %v", err)
			}
		}
	}
}

func TestVerifyOnceNoticesChanges(t *testing.T) {
	seed := sha256.Sum256([]byte("verify"))
	key := ed25519.NewKeyFromSeed(seed[:])
	for name, change := range map[string]func(*Fact){
		"seq":     func(f *Fact) { f.Seq++ },
		"lamport": func(f *Fact) { f.Lamport++ },
		"epoch":   func(f *Fact) { f.Epoch++ },
		"account": func(f *Fact) { f.Account[0]++ },
		"author":  func(f *Fact) { f.Author[0]++ },
		"kind":    func(f *Fact) { f.Kind = KindDelete },
		"body":    func(f *Fact) { f.Body = append(bytes.Clone(f.Body), 0) },
		"sig":     func(f *Fact) { f.Sig = bytes.Clone(f.Sig); f.Sig[5] ^= 1 },
	} {
		f, err := NewFact(key, AccountID{1}, 3, 1, 3, &Put{Key: "k", Value: []byte("v")})
		if err != nil {
			t.Fatal(err)
		}
		if err := f.VerifyOnce(); err != nil {
			t.Fatal(err)
		}
		change(f)
		if err := f.VerifyOnce(); !errors.Is(err, ErrBadSignature) {
			t.Fatalf("%s changed after signing: VerifyOnce = %v, want ErrBadSignature", name, err)
		}
	}
}

// FuzzSignedPart: for every input that decodes as a fact, the signed part
// sliced from its bytes is exactly SigningBytes.
func FuzzSignedPart(f *testing.F) {
	seed := sha256.Sum256([]byte("fuzz"))
	key := ed25519.NewKeyFromSeed(seed[:])
	for i, body := range []Body{&Put{Key: "k", Value: []byte("v")}, &Delete{Key: "gone"},
		&Genesis{Name: "acct", Threshold: 2}, &Put{Key: "big", Value: make([]byte, 300)}} {
		fact, err := NewFact(key, AccountID{7}, uint64(i+1), 1, uint64(1000*i), body)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(fact.Bytes())
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		fact, err := DecodeFact(b)
		if err != nil {
			return
		}
		msg, ok := fact.signedPart(nil)
		if !ok || !bytes.Equal(msg, fact.SigningBytes()) {
			t.Fatalf("signed part (ok=%v) differs from SigningBytes", ok)
		}
	})
}
