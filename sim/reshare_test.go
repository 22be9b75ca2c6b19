package sim

import (
	"strings"
	"testing"
)

// TestReshareWorkload: a device removed at setup and the key reshared
// under three fault mixes (the removed device voting with its old share
// throughout): no invariant fails, resharing ran, and snapshots completed.
func TestReshareWorkload(t *testing.T) {
	for _, mix := range []string{"none", "chaos", "byz"} {
		f, err := ParseFaults(mix)
		if err != nil {
			t.Fatal(err)
		}
		var st Stats
		for seed := uint64(1); seed <= 3; seed++ {
			cfg := Config{Seed: seed, Nodes: 5, Events: 300, Faults: f}
			cfg.Workload.Reshare.On = true
			r, err := Run(cfg)
			if err != nil {
				t.Fatal(err)
			}
			if r.Failed() {
				t.Fatalf("%s seed %d: %v\nreplay: %s", mix, seed, r.Violations, r.Command())
			}
			st.add(r.Stats)
		}
		if st.ReshareAttempts == 0 || st.Completed == 0 {
			t.Fatalf("%s: %d resharing attempts, %d snapshots", mix, st.ReshareAttempts, st.Completed)
		}
		t.Logf("%s: %d resharing attempts, %d snapshots completed, %d Byzantine acts", mix, st.ReshareAttempts, st.Completed, st.ByzActs)
	}
}

// TestRemovedShareInvariantFires: with the defect that throws the
// reshared key away, the removed device's old share keeps counting, and
// removed-share says so on some seed.
func TestRemovedShareInvariantFires(t *testing.T) {
	f, err := ParseFaults("none")
	if err != nil {
		t.Fatal(err)
	}
	for seed := uint64(1); seed <= 10; seed++ {
		cfg := Config{Seed: seed, Nodes: 5, Events: 400, Faults: f}
		cfg.Workload.Reshare.On = true
		cfg.Workload.Reshare.keepOldKey = true
		r, err := Run(cfg)
		if err != nil {
			t.Fatal(err)
		}
		for _, v := range r.Violations {
			if v.Invariant == "removed-share" {
				if !strings.Contains(v.Detail, "old share") {
					t.Fatalf("violation %+v", v)
				}
				return
			}
		}
	}
	t.Fatal("removed-share never fired with the reshared key thrown away")
}
