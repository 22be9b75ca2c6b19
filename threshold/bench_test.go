package threshold

import (
	"fmt"
	"testing"

	"go.dedis.ch/kyber/v3/pairing/bn256"
	"go.dedis.ch/kyber/v3/sign/tbls"
)

// Run with, e.g.:
//
//	go test -run '^$' -bench . -benchtime 20x ./threshold/
//
// BenchmarkRecover and BenchmarkTBLSRecover recover from the same honest
// partials; compare their ns/op.

var benchSizes = [][2]int{{3, 5}, {7, 10}, {34, 50}}

type benchFixture struct {
	key      *GroupKey
	shares   []*Share
	partials [][]byte // honest, one per signer
	msg      []byte
}

func newBenchFixture(b *testing.B, m, n int) *benchFixture {
	b.Helper()
	key, shares := mustDeal(b, nil, fmt.Sprintf("bench-%d-%d", m, n), m, n)
	msg := []byte("aura/snapshot/v1 benchmark proposal")
	f := &benchFixture{key: key, shares: shares, msg: msg}
	for _, s := range shares {
		f.partials = append(f.partials, mustSign(b, s, msg))
	}
	return f
}

func forEachSize(b *testing.B, fn func(b *testing.B, f *benchFixture)) {
	for _, sz := range benchSizes {
		b.Run(fmt.Sprintf("M=%d,N=%d", sz[0], sz[1]), func(b *testing.B) {
			fn(b, newBenchFixture(b, sz[0], sz[1]))
		})
	}
}

func BenchmarkPartialSign(b *testing.B) {
	forEachSize(b, func(b *testing.B, f *benchFixture) {
		for b.Loop() {
			if _, err := SignPartial(f.shares[0], f.msg); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func BenchmarkPartialVerify(b *testing.B) {
	forEachSize(b, func(b *testing.B, f *benchFixture) {
		v := NewVerifier(f.key)
		p := f.partials[len(f.partials)-1]
		if err := v.VerifyPartial(f.msg, p); err != nil { // warm the cache
			b.Fatal(err)
		}
		for b.Loop() {
			if err := v.VerifyPartial(f.msg, p); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkRecover: ours, M honest partials, verified group signature.
func BenchmarkRecover(b *testing.B) {
	forEachSize(b, func(b *testing.B, f *benchFixture) {
		m := f.key.Threshold()
		v := NewVerifier(f.key)
		for b.Loop() {
			sig, bad, err := Recover(v, f.msg, f.partials[:m])
			if err != nil || len(bad) != 0 || sig == nil {
				b.Fatalf("Recover: %v %v", bad, err)
			}
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "sigs/s")
	})
}

// BenchmarkTBLSRecover: kyber v3.1.0 tbls.Recover on the same partials.
func BenchmarkTBLSRecover(b *testing.B) {
	suite := bn256.NewSuite()
	forEachSize(b, func(b *testing.B, f *benchFixture) {
		m, n := f.key.Threshold(), f.key.Signers()
		for b.Loop() {
			if _, err := tbls.Recover(suite, f.key.poly, f.msg, f.partials[:m], m, n); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "sigs/s")
	})
}

// BenchmarkRecoverOneBad: ours, the first of the M+1 partials is forged;
// recovery must name it and finish from the honest ones.
func BenchmarkRecoverOneBad(b *testing.B) {
	forEachSize(b, func(b *testing.B, f *benchFixture) {
		m := f.key.Threshold()
		ps := append([][]byte{forge(b, f.key.backend, 0, f.msg)}, f.partials[1:m+1]...)
		v := NewVerifier(f.key)
		for b.Loop() {
			_, bad, err := Recover(v, f.msg, ps)
			if err != nil || len(bad) != 1 || bad[0] != 0 {
				b.Fatalf("Recover: %v %v", bad, err)
			}
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "sigs/s")
	})
}

// BenchmarkVerifyGroup: one group signature against a parsed key, and
// against encoded key bytes (parsing and subgroup checks included).
func BenchmarkVerifyGroup(b *testing.B) {
	forEachSize(b, func(b *testing.B, f *benchFixture) {
		m := f.key.Threshold()
		sig, _, err := Recover(NewVerifier(f.key), f.msg, f.partials[:m])
		if err != nil {
			b.Fatal(err)
		}
		b.Run("parsed", func(b *testing.B) {
			for b.Loop() {
				if err := f.key.Verify(f.msg, sig); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run("bytes", func(b *testing.B) {
			raw := f.key.Bytes()
			for b.Loop() {
				if err := VerifyGroup(raw, f.msg, sig); err != nil {
					b.Fatal(err)
				}
			}
		})
	})
}
