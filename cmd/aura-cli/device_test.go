package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Real processes: a device advertising only another protocol version is
// shown incompatible, with the reason, in `status` and `peers`; a key
// generation refuses to start and names it (--json carries the code);
// `device policy` changes the published metadata.
func TestIncompatibleDeviceAndPolicy(t *testing.T) {
	nodeBin, cliBin := bins(t)
	e := &env{t: t, nodeBin: nodeBin, cliBin: cliBin}
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a"), filepath.Join(dir, "b")
	e.init(a)
	idB := e.init(b)
	// The test-only key: b advertises aura/0 instead of this binary's aura/1.
	cfg, err := os.OpenFile(filepath.Join(b, "config.toml"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cfg.WriteString("test_protocols = [\"aura/0\"]\n"); err != nil {
		t.Fatal(err)
	}
	cfg.Close()
	e.start(a)
	e.start(b)
	e.cli(a, "account", "create", "--threshold", "2")
	out := e.cli(a, "account", "invite")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	e.cli(b, "account", "join", lines[len(lines)-1])

	type status struct {
		Protocols    []string `json:"supported_protocols"`
		Policy       string   `json:"upgrade_policy"`
		Required     string   `json:"required_protocol"`
		Incompatible []struct {
			Device, Reason, Code string
		} `json:"incompatible_devices"`
	}
	var st status
	deadline := time.Now().Add(30 * time.Second)
	for {
		if err := json.Unmarshal([]byte(e.cli(a, "--json", "status")), &st); err != nil {
			t.Fatal(err)
		}
		if len(st.Incompatible) == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("status never showed b incompatible: %+v", st)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if inc := st.Incompatible[0]; inc.Device != idB || inc.Code != "unsupported_protocol" || !strings.Contains(inc.Reason, "aura/1") ||
		st.Required != "aura/1" || strings.Join(st.Protocols, ",") != "aura/1" {
		t.Fatalf("status: %+v", st)
	}
	if human := e.cli(a, "status"); !strings.Contains(human, "incompatible") || !strings.Contains(human, "aura/1") {
		t.Fatalf("status does not show the incompatible device:\n%s", human)
	}
	var peers []struct {
		Peer         string
		Incompatible string `json:"incompatible"`
		Code         string `json:"incompatible_code"`
	}
	for {
		if err := json.Unmarshal([]byte(e.cli(a, "--json", "peers")), &peers); err != nil {
			t.Fatal(err)
		}
		if len(peers) == 1 || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if len(peers) != 1 || peers[0].Peer != idB || peers[0].Code != "unsupported_protocol" || !strings.Contains(peers[0].Incompatible, "aura/1") {
		t.Fatalf("peers --json: %+v", peers)
	}
	if human := e.cli(a, "peers"); !strings.Contains(human, "incompatible: ") {
		t.Fatalf("peers does not show the reason:\n%s", human)
	}

	stdout, stderr, err := e.run(cliBin, "--home", a, "--json", "threshold", "keygen", "--threshold", "2")
	var je struct{ Error, Code string }
	if err == nil || json.Unmarshal([]byte(stdout), &je) != nil || je.Code != "unsupported_protocol" ||
		!strings.Contains(je.Error, idB[len(idB)-8:]) || !strings.Contains(stderr, "lack the protocol") {
		t.Fatalf("keygen with an incompatible device: err=%v stdout=%q stderr=%q", err, stdout, stderr)
	}

	if out := e.cli(b, "device", "policy", "auto"); !strings.Contains(out, "auto") {
		t.Fatalf("device policy: %q", out)
	}
	var dev struct {
		Policy    string `json:"upgrade_policy"`
		Published bool
	}
	if err := json.Unmarshal([]byte(e.cli(b, "--json", "device")), &dev); err != nil || dev.Policy != "auto" || !dev.Published {
		t.Fatalf("device --json: %+v %v", dev, err)
	}
	if _, stderr, err := e.run(cliBin, "--home", b, "device", "policy", "sometimes"); err == nil || !strings.Contains(stderr, "manual or auto") {
		t.Fatalf("bad policy: %v %q", err, stderr)
	}
	if err := json.Unmarshal([]byte(e.cli(b, "--json", "status")), &st); err != nil || st.Policy != "auto" {
		t.Fatalf("status after the policy change: %+v %v", st, err)
	}
}
