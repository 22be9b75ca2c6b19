package sim

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
)

// adminRun is a small run with the admin replacement workload: k
// candidates, threshold m of 5 (0: the default).
func adminRun(t testing.TB, spec string, seed uint64, k int, m int) Config {
	cfg := small(t, spec, seed)
	cfg.Threshold = m
	cfg.Workload.Admin = AdminWorkload{Candidates: k}
	cfg.Workload.Fresh = -1
	return cfg
}

// runTraced runs cfg and returns its result and trace.
func runTraced(t *testing.T, cfg Config) (Result, string) {
	t.Helper()
	var tr bytes.Buffer
	cfg.TraceWriter = &tr
	r, err := Run(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return r, tr.String()
}

// The workload replaces the admin under faults, competing requests
// included, and every honest device ends with the winner the oracle
// recomputes from the ground truth (admin-override).
func TestAdminReplaceWorkload(t *testing.T) {
	cases := []struct {
		name   string
		faults string
		k, m   int
	}{
		{"one candidate", "none", 1, 0},
		{"competing, majority threshold", "net", 2, 0},
		{"competing, both can complete", "net", 2, 2},
		{"competing under chaos", "chaos", 3, 2},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			replaced, both := 0, 0
			for seed := uint64(1); seed <= 4; seed++ {
				r, tr := runTraced(t, adminRun(t, c.faults, seed, c.k, c.m))
				if r.Failed() {
					t.Fatalf("%s", r.Report())
				}
				n := strings.Count(tr, "commit admin_replaced")
				if n > 0 {
					replaced++
				}
				if n > 1 {
					both++
				}
			}
			if replaced == 0 {
				t.Fatal("no seed replaced the admin")
			}
			t.Logf("%d of 4 seeds replaced the admin, %d with more than one completion", replaced, both)
		})
	}
}

// The planted defect admin-persist-own (the driver persists its own
// replacement under maintenance:admin_override) is caught by
// admin-override, and the same seed passes without it.
func TestAdminPersistOwnDefectIsCaught(t *testing.T) {
	for seed := uint64(1); seed <= 20; seed++ {
		cfg := adminRun(t, "none", seed, 2, 2)
		cfg.Defects = Defects{AdminPersistOwn: true}
		r, err := Run(cfg)
		if err != nil {
			t.Fatal(err)
		}
		for _, v := range r.Violations {
			if v.Invariant != "admin-override" {
				continue
			}
			t.Logf("caught at seed %d: %s\nreplay: %s", seed, v, r.Command())
			cfg.Defects = Defects{}
			if r, err := Run(cfg); err != nil || r.Failed() {
				t.Fatalf("seed %d fails without the defect too: %v\n%s", seed, err, r.Report())
			}
			return
		}
	}
	t.Fatal("defect admin-persist-own went unnoticed for 20 seeds")
}

// The replay command names the workload, and replays the run bit for bit.
func TestAdminReplayCommand(t *testing.T) {
	cfg := adminRun(t, "net", 3, 2, 2)
	r, _ := runTraced(t, cfg)
	cmd := r.Command()
	if !strings.Contains(cmd, "--admin-replace 2") {
		t.Fatalf("command %q lacks the workload", cmd)
	}
	var out, errOut bytes.Buffer
	args := strings.Fields(strings.ReplaceAll(strings.TrimPrefix(cmd, "aura-cli sim "), "'", ""))
	if code := Main(append(args, "--json"), &out, &errOut); code != 0 {
		t.Fatalf("replay %q: exit %d: %s", cmd, code, errOut.String())
	}
	if !strings.Contains(out.String(), fmt.Sprintf("%x", r.TraceHash)) {
		t.Fatalf("replay gives another run: %s", out.String())
	}
}

func TestParseAdminDefect(t *testing.T) {
	d, err := ParseDefects("admin-persist-own")
	if err != nil || !d.AdminPersistOwn || d.String() != "admin-persist-own" {
		t.Fatalf("%+v %v", d, err)
	}
}
