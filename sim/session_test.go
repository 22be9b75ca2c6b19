package sim

import (
	"strings"
	"testing"
)

func sessionConfig(t testing.TB, spec string, seed uint64, hardFork bool) Config {
	cfg := small(t, spec, seed)
	cfg.Workload.Rekey, cfg.Workload.HardFork = true, hardFork
	return cfg
}

// TestSessionsUnderTheGate: the key generation whose epoch moves aborts
// and its retry succeeds; after a hard fork, the rounds complete without
// the unready device and the key generation refuses to start; the
// session invariants hold throughout.
func TestSessionsUnderTheGate(t *testing.T) {
	for _, tc := range []struct {
		name     string
		spec     string
		hardFork bool
	}{{"rekey", "none", false}, {"rekey-net", "net", false}, {"hard-fork", "net", true}, {"hard-fork-chaos", "net,crash=0.03,skew=300ms", true}} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			for seed := uint64(1); seed <= 2; seed++ {
				r, err := Run(sessionConfig(t, tc.spec, seed, tc.hardFork))
				if err != nil {
					t.Fatal(err)
				}
				if r.Failed() {
					t.Fatalf("%s", r.Report())
				}
				if r.Stats.Completed == 0 {
					t.Fatalf("seed %d: no snapshot completed: %+v", seed, r.Stats)
				}
				if tc.hardFork {
					if r.Stats.SessionRefusals != 1 || r.Stats.SessionAborts != 0 {
						t.Fatalf("seed %d: %d refusals, %d aborts; want the key generation refused once", seed, r.Stats.SessionRefusals, r.Stats.SessionAborts)
					}
				} else if r.Stats.SessionAborts != 1 || r.Stats.KeygenAttempts != 2 {
					t.Fatalf("seed %d: %d aborts in %d attempts; want one abort and a retry", seed, r.Stats.SessionAborts, r.Stats.KeygenAttempts)
				}
			}
		})
	}
}

// TestSessionDefectsAreCaught: each planted defect of the session gate's
// driver is caught by its invariant.
func TestSessionDefectsAreCaught(t *testing.T) {
	for _, tc := range []struct {
		name      string
		defect    Defects
		hardFork  bool
		invariant string
	}{
		{"keygen-ignore-epoch", Defects{KeygenIgnoreEpoch: true}, false, "session-epoch"},
		{"keygen-skip-gate", Defects{KeygenSkipGate: true}, true, "session-ready"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cfg := sessionConfig(t, "none", 1, tc.hardFork)
			cfg.Defects = tc.defect
			r, err := Run(cfg)
			if err != nil {
				t.Fatal(err)
			}
			for _, v := range r.Violations {
				if v.Invariant == tc.invariant {
					if !strings.Contains(r.Command(), tc.name) {
						t.Fatalf("replay command %q lacks the defect", r.Command())
					}
					return
				}
			}
			t.Fatalf("defect went unnoticed:\n%s", r.Report())
		})
	}
	if d, err := ParseDefects("keygen-ignore-epoch,keygen-skip-gate"); err != nil || !d.KeygenIgnoreEpoch || !d.KeygenSkipGate || d.String() != "keygen-ignore-epoch,keygen-skip-gate" {
		t.Fatalf("ParseDefects: %+v %v", d, err)
	}
}
