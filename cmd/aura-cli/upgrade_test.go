package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"

	"aura/node"
)

// upgradeCLI runs `aura-cli --home HOME args...` in-process against a node
// with its control socket; it returns stdout, stderr and the error.
func upgradeCLI(home string, args ...string) (string, string, error) {
	a := &app{}
	root := &cobra.Command{Use: "aura-cli", SilenceUsage: true, SilenceErrors: true}
	root.PersistentFlags().StringVar(&a.home, "home", "", "")
	root.PersistentFlags().BoolVar(&a.json, "json", false, "")
	root.PersistentFlags().DurationVar(&a.timeout, "timeout", time.Minute, "")
	root.AddCommand(upgradeCmd(a))
	var out, errb bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&errb)
	root.SetArgs(append([]string{"--home", home}, args...))
	err := root.ExecuteContext(context.Background())
	return out.String(), errb.String(), err
}

// TestUpgradeCommands: `upgrade publish` stores the artifact and prints the
// id; `upgrade status --json` reports each state (verified awaiting
// approval, waiting reason, ready, activated, in force) per device;
// `upgrade approve` makes a manual device ready and the fork activates;
// refusals (rollback, a fence on a soft upgrade, an unknown id, cancelling
// after activation) exit non-zero with the reason.
func TestUpgradeCommands(t *testing.T) {
	if testing.Short() {
		t.Skip("two in-process nodes")
	}
	dir := t.TempDir()
	a, b := startInProcess(t, filepath.Join(dir, "a")), startInProcess(t, filepath.Join(dir, "b"))
	if _, err := a.CreateAccount("cli", 1); err != nil {
		t.Fatal(err)
	}
	code, _, err := a.Invite(0)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if _, err := b.Join(ctx, code); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, 20*time.Second, "both members on both", func() bool { return len(a.Members()) == 2 && len(b.Members()) == 2 })
	must := func(home string, args ...string) string {
		t.Helper()
		out, errOut, err := upgradeCLI(home, args...)
		if err != nil {
			t.Fatalf("aura-cli %s: %v\nstdout: %s\nstderr: %s", strings.Join(args, " "), err, out, errOut)
		}
		return out
	}
	status := func(n *node.Node) node.UpgradeStatus {
		t.Helper()
		var s node.UpgradeStatus
		if err := json.Unmarshal([]byte(must(n.Home(), "--json", "upgrade", "status")), &s); err != nil {
			t.Fatal(err)
		}
		return s
	}
	// first is the state of n's first upgrade, "" while n knows none (the
	// publish fact may not have reached it yet).
	first := func(n *node.Node, f func(node.UpgradeInfo) string) string {
		t.Helper()
		if s := status(n); len(s.Upgrades) > 0 {
			return f(s.Upgrades[0])
		}
		return ""
	}
	local := func(u node.UpgradeInfo) string { return u.Local.State }
	phase := func(u node.UpgradeInfo) string { return u.Phase }
	file := filepath.Join(dir, "aura-node-2.0.0")
	if err := os.WriteFile(file, []byte("the 2.0.0 binary"), 0o600); err != nil {
		t.Fatal(err)
	}
	out := must(a.Home(), "upgrade", "publish", "--package", "aura-node", "--version", "2.0.0", "--artifact", file, "--kind", "hard", "--min-ready", "2")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	id := lines[len(lines)-1]
	if len(id) != 32 || !strings.Contains(out, "published aura-node 2.0.0 (hard, fence ") {
		t.Fatalf("publish printed %q", out)
	}
	waitUntil(t, 20*time.Second, "both verified", func() bool {
		return first(a, local) == "verified" && first(b, local) == "verified"
	})
	s := status(b)
	u := s.Upgrades[0]
	if u.ID != id || u.Phase != "published" || u.Ready != 0 || u.MinReady != 2 || !strings.Contains(u.Waiting, "0 of 2 devices ready") ||
		len(u.Devices) != 2 || s.Policy != "manual" || len(s.InForce) != 0 {
		t.Fatalf("status before approval: %+v", s)
	}
	must(a.Home(), "upgrade", "approve", id)
	out = must(b.Home(), "upgrade", "approve", id)
	if !strings.Contains(out, "approved aura-node 2.0.0") {
		t.Fatalf("approve printed %q", out)
	}
	waitUntil(t, 20*time.Second, "activated on both", func() bool {
		return first(a, phase) == "activated" && first(b, phase) == "activated"
	})
	s = status(b)
	if len(s.InForce) != 1 || s.InForce[0] != id || s.Upgrades[0].Local.State != "ready" || s.Upgrades[0].Ready != 2 {
		t.Fatalf("status after activation: %+v", s)
	}
	for _, d := range s.Upgrades[0].Devices {
		if !d.Ready || d.Policy != "manual" || len(d.Supported) == 0 {
			t.Fatalf("device row %+v", d)
		}
	}
	if text := must(b.Home(), "upgrade", "status"); !strings.Contains(text, "aura-node 2.0.0  hard  activated  fence ") || !strings.Contains(text, "here: ready") {
		t.Fatalf("status text:\n%s", text)
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"upgrade", "publish", "--package", "aura-node", "--version", "1.9.0", "--artifact", file, "--kind", "soft"}, "rollback refused"},
		{[]string{"upgrade", "publish", "--package", "tools", "--version", "1.0.0", "--artifact", file, "--kind", "soft", "--fence", "9"}, "for hard forks"},
		{[]string{"upgrade", "publish", "--package", "tools", "--version", "1.0", "--artifact", file, "--kind", "soft"}, "not a semantic version"},
		{[]string{"upgrade", "approve", strings.Repeat("0", 32)}, "no such upgrade"},
		{[]string{"upgrade", "cancel", id}, "already activated"},
	} {
		_, errOut, err := upgradeCLI(a.Home(), c.args...)
		if err == nil || !strings.Contains(err.Error()+errOut, c.want) {
			t.Errorf("aura-cli %s: %v %s, want %q", strings.Join(c.args, " "), err, errOut, c.want)
		}
	}
}
