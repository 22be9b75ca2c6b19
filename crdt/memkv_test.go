package crdt

import (
	"bytes"
	"fmt"
	"maps"
	"slices"
	"testing"

	"pgregory.net/rapid"
)

// TestMemKVModel holds MemKV to a sorted map: random batches of sets
// (at random keys and runs of ascending ones), deletes and range deletes (small and large, so that both the
// per-write copies and the arena chunks are used), then Get of every key
// ever written and a Scan of random ranges, against the model.
func TestMemKVModel(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		kv := NewMemKV()
		model := map[string][]byte{}
		var written []string
		key := rapid.Custom(func(t *rapid.T) []byte {
			return fmt.Appendf(nil, "k%03d", rapid.IntRange(0, 600).Draw(t, "k"))
		})
		for range rapid.IntRange(1, 8).Draw(t, "batches") {
			b := kv.NewBatch()
			next := maps.Clone(model)
			for range rapid.IntRange(0, 800).Draw(t, "ops") {
				k := key.Draw(t, "key")
				switch rapid.IntRange(0, 9).Draw(t, "op") {
				case 9: // keys in ascending order, as the journal writes a chain
					from := rapid.IntRange(0, 600).Draw(t, "from")
					for n := range rapid.IntRange(1, 300).Draw(t, "n") {
						k := fmt.Appendf(nil, "k%03d", from+n)
						_ = b.Set(k, k)
						next[string(k)] = k
						written = append(written, string(k))
					}
				case 0:
					_ = b.Delete(k)
					delete(next, string(k))
				case 1:
					hi := key.Draw(t, "hi")
					_ = b.DeleteRange(k, hi)
					for m := range next {
						if m >= string(k) && m < string(hi) {
							delete(next, m)
						}
					}
				default:
					v := bytes.Repeat([]byte{byte(rapid.IntRange(0, 255).Draw(t, "v"))}, rapid.IntRange(0, 5000).Draw(t, "len"))
					want := bytes.Clone(v)
					_ = b.Set(k, v)
					if len(v) > 0 {
						v[0] ^= 0xff // the batch copied it
					}
					next[string(k)] = want
					written = append(written, string(k))
				}
			}
			if rapid.Bool().Draw(t, "commit") {
				if err := b.Commit(false); err != nil {
					t.Fatal(err)
				}
				model = next
			}
			_ = b.Close()
		}
		if kv.Len() != len(model) {
			t.Fatalf("len %d, model %d", kv.Len(), len(model))
		}
		for _, k := range written {
			v, ok, err := kv.Get([]byte(k))
			want, wok := model[k]
			if err != nil || ok != wok || !bytes.Equal(v, want) {
				t.Fatalf("get %s: %d bytes %v %v, want %d bytes %v", k, len(v), ok, err, len(want), wok)
			}
		}
		lo, hi := key.Draw(t, "scan lo"), key.Draw(t, "scan hi")
		var got []string
		if err := kv.Scan(lo, hi, func(k, v []byte) error {
			if !bytes.Equal(v, model[string(k)]) {
				t.Fatalf("scan %s: wrong value", k)
			}
			got = append(got, string(k))
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		var want []string
		for k := range model {
			if k >= string(lo) && k < string(hi) {
				want = append(want, k)
			}
		}
		slices.Sort(want)
		if !slices.Equal(got, want) {
			t.Fatalf("scan [%s, %s): %v, want %v", lo, hi, got, want)
		}
	})
}

// BenchmarkMemKVCommit: batches written as the journal writes them (per
// fact a locator at a random key and a chain record at the next key of
// one author), into a fresh KV and into one that holds 200k keys already;
// CPU time per fact, the keys made beforehand.
func BenchmarkMemKVCommit(b *testing.B) {
	for _, held := range []int{0, 100_000} {
		b.Run(fmt.Sprintf("held=%d", 2*held), func(b *testing.B) {
			const batch = 1024
			val := make([]byte, 400)
			var locs, chains [][]byte
			keys := func(n int) {
				for s := len(locs); s < n; s++ {
					locs = append(locs, appendLocatorKey(nil, FactIDOf(fmt.Appendf(nil, "%d", s))))
					chains = append(chains, appendSeqKey(nil, tagChain, DeviceID{1}, uint64(s)))
				}
			}
			fill := func(kv *MemKV, from, n int) {
				w := kv.NewBatch()
				for s := from; s < from+n; s++ {
					_ = w.Set(locs[s], val[:41])
					_ = w.Set(chains[s], val)
				}
				_ = w.Commit(false)
			}
			kv := NewMemKV()
			keys(held)
			for s := 0; s < held; s += batch {
				fill(kv, s, min(batch, held-s))
			}
			var cpu int64
			next := held
			for b.Loop() {
				b.StopTimer()
				keys(next + batch)
				if held == 0 {
					kv = NewMemKV()
				}
				b.StartTimer()
				t0 := cpuNanos(b)
				fill(kv, next, batch)
				cpu += cpuNanos(b) - t0
				next += batch
			}
			b.ReportMetric(float64(cpu)/float64(b.N)/batch, "cpu-ns/fact")
		})
	}
}
