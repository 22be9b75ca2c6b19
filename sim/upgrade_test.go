package sim

import "testing"

// TestUpgradeSweep runs the upgrade simulation over many seeds: no
// invariant may fail, and the flows must actually happen (sessions
// admitted and refused, restarts, the fork activated on most seeds).
func TestUpgradeSweep(t *testing.T) {
	activated, sessions, refused, restarts := 0, 0, 0, 0
	const seeds = 40
	for seed := uint64(1); seed <= seeds; seed++ {
		res, err := RunUpgrade(UpgradeRun{Seed: seed})
		if err != nil {
			t.Fatalf("seed %d: %v", seed, err)
		}
		for _, v := range res.Violations {
			t.Errorf("seed %d: %s %s: %s", seed, v.Invariant, v.Device, v.Detail)
		}
		if res.Activated {
			activated++
		}
		sessions += res.Sessions
		refused += res.Refused
		restarts += res.Restarts
	}
	if activated < seeds/2 || sessions == 0 || refused == 0 || restarts == 0 {
		t.Fatalf("the sweep did not exercise the flows: activated on %d of %d seeds, %d sessions, %d refused, %d restarts",
			activated, seeds, sessions, refused, restarts)
	}
	t.Logf("activated on %d of %d seeds; %d sessions admitted, %d refused; %d restarts", activated, seeds, sessions, refused, restarts)
}

// The same seed gives the same run.
func TestUpgradeDeterministic(t *testing.T) {
	a, err := RunUpgrade(UpgradeRun{Seed: 7})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := RunUpgrade(UpgradeRun{Seed: 7})
	if a.Sessions != b.Sessions || a.Refused != b.Refused || a.Restarts != b.Restarts || a.Activated != b.Activated || len(a.Violations) != len(b.Violations) {
		t.Fatalf("seed 7 ran twice differently: %+v vs %+v", a, b)
	}
}

// The planted defect (readiness for a download that failed verification)
// must be caught.
func TestUpgradeDefectReadyUnverified(t *testing.T) {
	for seed := uint64(1); seed <= 20; seed++ {
		res, err := RunUpgrade(UpgradeRun{Seed: seed, ReadyUnverified: true, Corrupt: 0.6})
		if err != nil {
			t.Fatal(err)
		}
		for _, v := range res.Violations {
			if v.Invariant == "upgrade-ready-unverified" {
				return
			}
		}
	}
	t.Fatal("upgrade-ready-unverified never fired with the defect planted")
}
