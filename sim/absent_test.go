package sim

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
)

// absentRun is the shape of the absence workloads: 5 devices (3 of 5),
// operator proposals every 2 s one round at a time and no watermark, so
// that several snapshots complete while one device is away.
func absentRun(t testing.TB, spec string, seed uint64, a Absence) Config {
	return Config{Nodes: 5, Seed: seed, Events: 1500, Faults: mustFaults(t, spec),
		Workload: Workload{Watermark: -1, ProposeEvery: 2000, SerialProposals: true, Absence: a}}
}

// TestAbsentThroughSnapshots is issue 10's first reproduction as
// simulator workloads: a device away while 1, 2 and 3 snapshots complete,
// writing offline or not, restarting meanwhile or not, must come back by
// restoring from the newest snapshot, converge, and lose no acknowledged
// write (every invariant holds, restore-newest among them). Each case runs
// one seed under a clean or a lossy network; two more run the whole chaos
// mix.
func TestAbsentThroughSnapshots(t *testing.T) {
	type tc struct {
		a    Absence
		spec string
		seed uint64
	}
	var cases []tc
	i := 0
	for _, k := range []int{1, 2, 3} {
		for _, quiet := range []bool{false, true} {
			for _, restarts := range []int{0, k} {
				i++
				spec := []string{"none", "net"}[i%2]
				cases = append(cases, tc{Absence{Snapshots: k, Quiet: quiet, Restarts: restarts}, spec, uint64(i)})
			}
		}
	}
	cases = append(cases, tc{Absence{Snapshots: 2, Restarts: 1}, "chaos", 21}, tc{Absence{Snapshots: 3, Restarts: 2}, "chaos", 22})
	for _, c := range cases {
		t.Run(fmt.Sprintf("%s/%s", c.a, c.spec), func(t *testing.T) {
			t.Parallel()
			r, err := Run(absentRun(t, c.spec, c.seed, c.a))
			if err != nil {
				t.Fatal(err)
			}
			if r.Failed() {
				t.Fatalf("%s", r.Report())
			}
			st := r.Stats
			if st.AbsentSnapshots < c.a.Snapshots || st.AbsentRestores == 0 {
				t.Fatalf("the device missed %d snapshots (want %d) and restored %d times after coming back:\n%s",
					st.AbsentSnapshots, c.a.Snapshots, st.AbsentRestores, r.Report())
			}
			t.Logf("seed %d: missed %d snapshots, %d restores after coming back, %d restores checked, %d writes, %d crashes",
				c.seed, st.AbsentSnapshots, st.AbsentRestores, st.RestoresChecked, st.Writes, st.Crashes)
		})
	}
}

// TestAbsenceReplays: the command a run with an absence prints replays it.
func TestAbsenceReplays(t *testing.T) {
	cfg := absentRun(t, "net", 5, Absence{Snapshots: 2, Quiet: true, Restarts: 1})
	cfg.Events = 1500
	r, err := Run(cfg)
	if err != nil {
		t.Fatal(err)
	}
	cmd := r.Command()
	if !strings.Contains(cmd, "--absent 2:quiet:restarts=1") || !strings.Contains(cmd, "--propose-every 2000ms") {
		t.Fatalf("command %q does not name the workload", cmd)
	}
	args := strings.Fields(strings.TrimPrefix(cmd, "aura-cli sim "))
	for i, a := range args {
		args[i] = strings.Trim(a, "'")
	}
	var out, errb bytes.Buffer
	if code := Main(append(args, "--json"), &out, &errb); code != 0 {
		t.Fatalf("replay of %q: exit %d: %s", cmd, code, errb.String())
	}
	if want := fmt.Sprintf(`"trace_sha256": "%x"`, r.TraceHash); !strings.Contains(out.String(), want) {
		t.Fatalf("replay of %q traced differently", cmd)
	}
	for _, bad := range []string{"x", "2:loud", "2:restarts=x", "-1"} {
		if _, err := ParseAbsence(bad); err == nil {
			t.Errorf("absence %q parsed", bad)
		}
	}
}
