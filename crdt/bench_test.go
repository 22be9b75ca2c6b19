package crdt

import (
	"crypto/ed25519"
	"fmt"
	"syscall"
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

// cpuNanos is the CPU time this process has used (user and system, every
// thread): the benchmarks below report CPU, not wall, per fact, since the
// verifier runs on every core.
func cpuNanos(b *testing.B) int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return ru.Utime.Nano() + ru.Stime.Nano()
}

// receiveFixture is an account whose device 1 wrote n puts: the genesis
// and membership facts, and the puts' canonical bytes as they arrive.
func receiveFixture(b *testing.B, n int) (*scenario, [][]byte) {
	s := newScenario(b, 2)
	raws := make([][]byte, n)
	val := make([]byte, 200)
	for i := range raws {
		f, err := s.writers[1].Write(s.epoch, &Put{Key: fmt.Sprintf("bench/key/%d", i), Value: val})
		if err != nil {
			b.Fatal(err)
		}
		raws[i] = f.Bytes()
	}
	return s, raws
}

// BenchmarkReceive measures what a receiver spends per fact of a batch of
// n: decoding, signature check (VerifyFacts), the guard check of the
// validator, ingest into an in-memory journal with the guard as admit, and
// the fold — as a gossip message travels through gossip/validate.go and
// the node's receive. In the same iterations it measures the batched
// signature check alone over the same facts (decoded beforehand), and
// reports both as cpu-µs per fact and their ratio (the target is ≤ 1.25).
func BenchmarkReceive(b *testing.B) {
	for _, n := range []int{256, 1024, 3000} {
		b.Run(fmt.Sprintf("batch=%d", n), func(b *testing.B) {
			s, raws := receiveFixture(b, n)
			var verifyNs, recvNs int64
			for b.Loop() {
				// Baseline: the batched check alone.
				fs := make([]*Fact, n)
				for i, r := range raws {
					f, err := DecodeFact(r)
					if err != nil {
						b.Fatal(err)
					}
					fs[i] = f
				}
				t0 := cpuNanos(b)
				for _, err := range VerifyFacts(fs) {
					if err != nil {
						b.Fatal(err)
					}
				}
				verifyNs += cpuNanos(b) - t0

				// The receive path.
				recvNs += receiveOnce(b, s, raws, false)
			}
			per := float64(b.N) * float64(n) * 1e3
			b.ReportMetric(float64(verifyNs)/per, "verify-cpu-µs/fact")
			b.ReportMetric(float64(recvNs)/per, "recv-cpu-µs/fact")
			b.ReportMetric(float64(recvNs)/float64(verifyNs), "recv/verify")
		})
	}
}

// receiveOnce runs the receive path over raws (the next facts of s after
// s.facts) into a fresh memory journal and state holding s.facts, and
// returns the CPU nanoseconds it took: decode, the batched signature check
// (skipped, as for facts a validator checked, when preverified), causal
// sort, guard check, ingest, fold.
func receiveOnce(b *testing.B, s *scenario, raws [][]byte, preverified bool) int64 {
	j := NewMemStore(s.account)
	st := NewState(s.account, nil)
	if _, err := j.Ingest(s.facts, nil); err != nil {
		b.Fatal(err)
	}
	st.Fold(s.facts)
	t0 := cpuNanos(b)
	fs := make([]*Fact, len(raws))
	for i, r := range raws {
		f, err := DecodeFact(r)
		if err != nil {
			b.Fatal(err)
		}
		if preverified {
			f.markVerified()
		}
		fs[i] = f
	}
	for _, err := range VerifyFacts(fs) {
		if err != nil {
			b.Fatal(err)
		}
	}
	SortCausal(fs)
	for _, f := range fs {
		if err := st.Check(f); err != nil {
			b.Fatal(err)
		}
	}
	res, err := j.Ingest(fs, st.Check)
	if err != nil || len(res.Chained) != len(fs) {
		b.Fatalf("ingest: %d chained, %v", len(res.Chained), err)
	}
	for _, f := range res.Chained {
		if err := st.Apply(f); err != nil {
			b.Fatal(err)
		}
	}
	return cpuNanos(b) - t0
}

// BenchmarkReadBack: what a fold over the journal (StateAt) pays per stored
// fact to get its body: the one-pass parse with the body decoded without
// re-encoding (trusted), against the general decoding with the canonical
// check (DecodeBody), in the same run.
func BenchmarkReadBack(b *testing.B) {
	raw := benchFact(b).Bytes()
	b.Run("trusted", func(b *testing.B) {
		for b.Loop() {
			f, err := decodeStored(raw)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := f.decodedBody(); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("checked", func(b *testing.B) {
		for b.Loop() {
			f, err := decodeEnvelope(raw)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := f.DecodeBody(); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkReceiveRest is BenchmarkReceive's receive path without the
// signature check (the decoded facts are marked checked, so VerifyFacts
// skips them): what a receiver spends per fact besides ed25519, in
// allocations (those of the few setup facts included) and CPU time, for
// profiling that part alone. (No StopTimer: with -benchmem it reads the
// memory statistics, which stops the world, every iteration.)
func BenchmarkReceiveRest(b *testing.B) {
	const n = 1024
	s, raws := receiveFixture(b, n)
	b.ReportAllocs()
	var cpu int64
	for b.Loop() {
		cpu += receiveOnce(b, s, raws, true)
	}
	b.ReportMetric(float64(cpu)/float64(b.N)/n/1e3, "cpu-µs/fact")
}
