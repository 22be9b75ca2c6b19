package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"aura/node"
)

// The admin replacement from the command line, with real `aura-node run`
// processes: a replacement approved on another device, its --json answer,
// and the failures' exit statuses.
func TestAdminReplaceCLI(t *testing.T) {
	e := newEnv(t)
	dir := t.TempDir()
	homes := []string{filepath.Join(dir, "a"), filepath.Join(dir, "b"), filepath.Join(dir, "c")}
	for _, h := range homes {
		e.initLoopback(h, freeTCPPort(t))
		// Requests expire quickly, so the failure below ends soon.
		cfgFile := filepath.Join(h, node.ConfigFile)
		b, err := os.ReadFile(cfgFile)
		if err != nil {
			t.Fatal(err)
		}
		edited := regexp.MustCompile(`(?m)^timeout = '0s'$`).ReplaceAll(b, []byte(`timeout = "4s"`))
		if bytes.Equal(edited, b) {
			t.Fatalf("%s has no [admin] timeout to set:\n%s", cfgFile, b)
		}
		if err := os.WriteFile(cfgFile, edited, 0o600); err != nil {
			t.Fatal(err)
		}
		e.start(h)
	}
	a, b, c := homes[0], homes[1], homes[2]
	e.cli(a, "account", "create")
	for _, h := range homes[1:] {
		e.cli(h, "account", "join", lastLine(e.cli(a, "account", "invite")))
	}
	e.waitFor("three devices everywhere", 30*time.Second, func() bool {
		for _, h := range homes {
			if len(e.status(h).Devices) != 3 {
				return false
			}
		}
		return true
	})
	e.cli(a, "threshold", "keygen", "--threshold", "2")
	device := func(h string) string {
		var s struct{ Device string }
		if err := json.Unmarshal([]byte(e.cli(h, "--json", "status")), &s); err != nil {
			t.Fatal(err)
		}
		return s.Device
	}
	idB := device(b)
	exit := func(args ...string) (int, string) {
		_, errOut, err := e.run(e.cliBin, args...)
		var ee *exec.ExitError
		if !errors.As(err, &ee) {
			t.Fatalf("aura-cli %s: want a failure, got %v", strings.Join(args, " "), err)
		}
		return ee.ExitCode(), errOut
	}
	// Not a member: exit 20, nothing appended.
	outsider := e.init(filepath.Join(dir, "outsider")) // a device id, never admitted
	if code, msg := exit("--home", b, "admin", "replace", "--new", outsider); code != 20 || !strings.Contains(msg, "not a member") {
		t.Fatalf("not a member: exit %d %q", code, msg)
	}
	idA := device(a)
	if code, msg := exit("--home", b, "admin", "replace", "--new", idA); code != 21 || !strings.Contains(msg, "admin already") {
		t.Fatalf("already admin: exit %d %q", code, msg)
	}
	// Nobody approves: exit 22 once the request expires.
	if code, msg := exit("--home", b, "admin", "replace", "--new", idB); code != 22 || !strings.Contains(msg, "1 of the 2 needed") {
		t.Fatalf("not enough approvals: exit %d %q", code, msg)
	}
	// c approves in advance, b asks again: replaced.
	var ap node.AdminReplaceInfo
	if err := json.Unmarshal([]byte(e.cli(c, "--json", "admin", "replace", "--new", idB, "--approve")), &ap); err != nil || ap.Status != "approval-recorded" {
		t.Fatalf("approve --json: %v %+v", err, ap)
	}
	var info node.AdminReplaceInfo
	if err := json.Unmarshal([]byte(e.cli(b, "--json", "admin", "replace", "--new", idB)), &info); err != nil || info.Status != "replaced" || info.Previous != idA {
		t.Fatalf("replace --json: %v %+v", err, info)
	}
	e.waitFor("the new admin everywhere", 20*time.Second, func() bool {
		for _, h := range homes {
			var s node.AdminStatus
			if json.Unmarshal([]byte(e.cli(h, "--json", "admin", "status")), &s) != nil || s.Admin != idB || len(s.Overrides) != 1 {
				return false
			}
		}
		return true
	})
	// The old admin can no longer invite; the new one can.
	if _, errOut, err := e.run(e.cliBin, "--home", a, "account", "invite"); err == nil {
		t.Fatalf("old admin invites: %q", errOut)
	}
	e.cli(b, "account", "invite")
}
