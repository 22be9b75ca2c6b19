package sim

import (
	"bytes"
	"strings"
	"testing"
)

// keygenMixes are fault mixes under which the key generation session runs
// (Workload.Keygen): each can make an attempt fail, and the run must still
// hold every invariant.
var keygenMixes = []struct{ name, spec string }{
	{"none", "none"},
	{"net", "net,loss=0.1"},
	{"crash", "crash=0.04"},
	{"lie", "byz=1:lie"},
	{"all", "net,partition=0.1,crash=0.04,offline=0.04,skew=500ms,byz=1:all"},
}

func keygenConfig(t testing.TB, spec string, seed uint64) Config {
	cfg := small(t, spec, seed)
	cfg.Events = 200
	cfg.Workload.Keygen = true
	return cfg
}

// TestKeygenUnderFaults runs key generation through the product's session
// under each mix, a few seeds each, and checks that faults did make
// attempts fail (so the blame checks had something to check).
func TestKeygenUnderFaults(t *testing.T) {
	seeds := uint64(3)
	if testing.Short() {
		seeds = 2
	}
	for _, m := range keygenMixes {
		t.Run(m.name, func(t *testing.T) {
			t.Parallel()
			var st Stats
			for seed := uint64(1); seed <= seeds; seed++ {
				r, err := Run(keygenConfig(t, m.spec, seed))
				if err != nil {
					t.Fatal(err)
				}
				if r.Failed() {
					t.Fatalf("%s", r.Report())
				}
				if r.Stats.KeygenAttempts == 0 || r.Stats.Completed == 0 {
					t.Fatalf("seed %d: no key generation or no snapshot: %+v", seed, r.Stats)
				}
				st.add(r.Stats)
			}
			t.Logf("%d seeds: %d key generation attempts, %d failed, %d snapshots", seeds, st.KeygenAttempts, st.KeygenFailures, st.Completed)
			if m.name == "none" && st.KeygenFailures != 0 {
				t.Fatalf("%d attempts failed without faults", st.KeygenFailures)
			}
			if (m.name == "lie" || m.name == "all") && st.KeygenFailures == 0 {
				t.Fatal("no attempt failed: the blame checks checked nothing")
			}
		})
	}
}

// TestKeygenDeterminism: with key generation, one seed still gives one
// trace.
func TestKeygenDeterminism(t *testing.T) {
	cfg := keygenConfig(t, "all", 7)
	var traces [2]bytes.Buffer
	var hashes [2][32]byte
	for i := range traces {
		c := cfg
		c.TraceWriter = &traces[i]
		r, err := Run(c)
		if err != nil {
			t.Fatal(err)
		}
		hashes[i] = r.TraceHash
	}
	if hashes[0] != hashes[1] || !bytes.Equal(traces[0].Bytes(), traces[1].Bytes()) {
		t.Fatal("one seed, two traces")
	}
	if !strings.Contains(traces[0].String(), "keygen attempt 1: hub ") {
		t.Fatal("the trace shows no key generation")
	}
}

// TestKeygenDefectIsCaught: a participant driver that acknowledges
// without keeping its share is caught by keygen-share.
func TestKeygenDefectIsCaught(t *testing.T) {
	cfg := keygenConfig(t, "none", 1)
	cfg.Defects.KeygenUnsealed = true
	r, err := Run(cfg)
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range r.Violations {
		if v.Invariant == "keygen-share" {
			if !strings.Contains(r.Command(), "--keygen") || !strings.Contains(r.Command(), "keygen-unsealed") {
				t.Fatalf("replay command %q", r.Command())
			}
			return
		}
	}
	t.Fatalf("defect went unnoticed:\n%s", r.Report())
}
