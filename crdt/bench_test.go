package crdt

import (
	"crypto/ed25519"
	"testing"
)

func benchFact(b *testing.B) *Fact {
	_, key, _ := ed25519.GenerateKey(nil)
	val := make([]byte, 200)
	f, err := NewFact(key, AccountID{1}, 12345, 1, 99999, &Put{Key: "some/key/name", Value: val})
	if err != nil {
		b.Fatal(err)
	}
	return f
}

func BenchmarkDecodeFact(b *testing.B) {
	f := benchFact(b)
	raw := f.Bytes()
	b.SetBytes(int64(len(raw)))
	for b.Loop() {
		if _, err := DecodeFact(raw); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkSigningBytes(b *testing.B) {
	f := benchFact(b)
	for b.Loop() {
		_ = f.SigningBytes()
	}
}

func BenchmarkSignedPart(b *testing.B) {
	f := benchFact(b)
	for b.Loop() {
		if _, ok := f.signedPart(nil); !ok {
			b.Fatal("no")
		}
	}
}

func BenchmarkEd25519Verify(b *testing.B) {
	f := benchFact(b)
	msg := f.SigningBytes()
	for b.Loop() {
		ed25519.Verify(f.Author.PublicKey(), msg, f.Sig)
	}
}
