package crdt

import (
	"bytes"
	"fmt"
	"testing"
	"time"
)

// unsignedPut builds a Put fact with its canonical bytes and id but a zero
// signature: the reducer does not check signatures (ingest does), so the
// digest benchmark need not pay 1M ed25519 signatures to set up.
func unsignedPut(account AccountID, author DeviceID, seq, epoch uint64, key string, val []byte) *Fact {
	body, _ := Marshal(&Put{Key: key, Value: val})
	f := &Fact{Account: account, Author: author, Seq: seq, Epoch: epoch, Lamport: seq + 100, Kind: KindPut, Body: body, Sig: make([]byte, 64)}
	f.raw, _ = Marshal(f.wire())
	f.id = FactIDOf(f.raw)
	return f
}

// BenchmarkDigest1M reports the cost of the state digest for a journal of
// 1,000,000 ~300-byte facts (one application key each): the fold that
// builds the state (fold-s, once) and the digest itself (ns/op).
func BenchmarkDigest1M(b *testing.B) {
	n := benchDigestFacts
	s := newScenario(b, 3)
	st := s.reduce(s.facts)
	val := make([]byte, 200)
	authors := []DeviceID{s.dev(0), s.dev(1), s.dev(2)}
	start := time.Now()
	for i := 0; i < n; i++ {
		a := authors[i%3]
		f := unsignedPut(s.account, a, uint64(i/3+10), s.epoch, fmt.Sprintf("key/%09d", i), val)
		if err := st.Apply(f); err != nil {
			b.Fatal(err)
		}
	}
	fold := time.Since(start)
	b.ReportMetric(fold.Seconds(), "fold-s")
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		_ = st.Digest()
	}
	b.StopTimer()
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(n), "ns/fact")
}

// benchDigestFacts is the journal size of BenchmarkDigest1M.
var benchDigestFacts = 1_000_000

// BenchmarkEncode300k: the canonical encoding of a state of 300,000 keys
// with 150-byte values (a snapshot blob of ~70 MB), by Encode (which
// sizes its own buffer) against EncodeTo into a buffer already of the
// right size and reused: the cost of Encode's buffer handling.
func BenchmarkEncode300k(b *testing.B) {
	const n = 300_000
	s := newScenario(b, 3)
	st := s.reduce(s.facts)
	val := make([]byte, 150)
	for i := 0; i < n; i++ {
		f := unsignedPut(s.account, s.dev(i%3), uint64(i/3+10), s.epoch, fmt.Sprintf("key/%09d", i), val)
		if err := st.Apply(f); err != nil {
			b.Fatal(err)
		}
	}
	size := len(st.Encode())
	b.Run("Encode", func(b *testing.B) {
		b.SetBytes(int64(size))
		for i := 0; i < b.N; i++ {
			if len(st.Encode()) != size {
				b.Fatal("size changed")
			}
		}
	})
	b.Run("EncodeTo-presized", func(b *testing.B) {
		b.SetBytes(int64(size))
		var buf bytes.Buffer
		buf.Grow(size)
		for i := 0; i < b.N; i++ {
			buf.Reset()
			if err := st.EncodeTo(&buf); err != nil || buf.Len() != size {
				b.Fatal(err)
			}
		}
	})
}
