package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

var (
	buildOnce sync.Once
	binDir    string
	buildErr  error
)

// TestMain removes the binaries bins built.
func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// bins builds aura-node and aura-cli once for the package's tests.
func bins(t *testing.T) (nodeBin, cliBin string) {
	t.Helper()
	buildOnce.Do(func() {
		if binDir, buildErr = os.MkdirTemp("", "aura-bins"); buildErr != nil {
			return
		}
		for _, pkg := range []string{"aura/cmd/aura-node", "aura/cmd/aura-cli"} {
			out, err := exec.Command("go", "build", "-o", binDir, pkg).CombinedOutput()
			if err != nil {
				buildErr = fmt.Errorf("go build %s: %v\n%s", pkg, err, out)
				return
			}
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return filepath.Join(binDir, "aura-node"), filepath.Join(binDir, "aura-cli")
}

type env struct {
	t       *testing.T
	nodeBin string
	cliBin  string
}

func (e *env) run(bin string, args ...string) (stdout, stderr string, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = append(os.Environ(), "AURA_HOME=/nonexistent-aura-home")
	var o, ee bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &ee
	err = cmd.Run()
	return o.String(), ee.String(), err
}

func (e *env) cli(home string, args ...string) string {
	e.t.Helper()
	out, errOut, err := e.run(e.cliBin, append([]string{"--home", home}, args...)...)
	if err != nil {
		e.t.Fatalf("aura-cli %s: %v\nstdout: %s\nstderr: %s", strings.Join(args, " "), err, out, errOut)
	}
	return out
}

func (e *env) init(home string) string {
	e.t.Helper()
	out, errOut, err := e.run(e.nodeBin, "init", "--home", home, "--listen", "/ip4/127.0.0.1/tcp/0", "--no-mdns", "--metrics", "off", "--no-port-map")
	if err != nil {
		e.t.Fatalf("aura-node init: %v\n%s", err, errOut)
	}
	return strings.TrimSpace(out)
}

// start runs `aura-node run` and waits until its control socket answers.
func (e *env) start(home string) *exec.Cmd {
	e.t.Helper()
	cmd := exec.Command(e.nodeBin, "run", "--home", home)
	logf, err := os.Create(filepath.Join(home, "node.log"))
	if err != nil {
		e.t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		logf.Close()
	})
	deadline := time.Now().Add(20 * time.Second)
	for {
		if _, _, err := e.run(e.cliBin, "--home", home, "status"); err == nil {
			return cmd
		}
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(filepath.Join(home, "node.log"))
			e.t.Fatalf("node at %s did not come up:\n%s", home, b)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func TestTwoProcesses(t *testing.T) {
	if testing.Short() {
		t.Skip("builds binaries")
	}
	nodeBin, cliBin := bins(t)
	e := &env{t: t, nodeBin: nodeBin, cliBin: cliBin}
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a"), filepath.Join(dir, "b")
	idA, idB := e.init(a), e.init(b)
	if !strings.HasPrefix(idA, "12D3KooW") || idA == idB {
		t.Fatalf("device ids %q %q", idA, idB)
	}
	if fi, err := os.Stat(filepath.Join(a, "device.key")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("device key mode: %v %v", fi.Mode(), err)
	}

	// No node running: a clear error and a non-zero exit.
	_, errOut, err := e.run(cliBin, "--home", a, "status")
	if err == nil || !strings.Contains(errOut, "no node is running") || !strings.Contains(errOut, "aura-node run") {
		t.Fatalf("status without a node: err=%v stderr=%q", err, errOut)
	}

	nodeA := e.start(a)
	e.start(b)
	if fi, err := os.Stat(filepath.Join(a, "aura.sock")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("socket mode: %v %v", fi, err)
	}
	e.cli(a, "account", "create", "--threshold", "1")
	out := e.cli(a, "account", "invite")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	code := lines[len(lines)-1]
	var js struct{ Code string }
	if err := json.Unmarshal([]byte(e.cli(a, "--json", "account", "invite")), &js); err != nil || !strings.HasPrefix(js.Code, "aura1") {
		t.Fatalf("invite --json: %v %q", err, js.Code)
	}
	e.cli(b, "account", "join", code)
	// The code is single-use.
	c := filepath.Join(dir, "c")
	e.init(c)
	e.start(c)
	_, errOut, err = e.run(cliBin, "--home", c, "account", "join", code)
	if err == nil || !strings.Contains(errOut, "invite already used") {
		t.Fatalf("reused invite: err=%v stderr=%q", err, errOut)
	}

	e.cli(a, "fact", "put", "greeting", "hello world")
	deadline := time.Now().Add(30 * time.Second)
	for {
		out, _, err := e.run(cliBin, "--home", b, "fact", "get", "greeting")
		if err == nil && out == "hello world" { // exact bytes when piped
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("fact get on b: %q %v", out, err)
		}
		time.Sleep(100 * time.Millisecond)
	}

	var st struct {
		Account string
		Devices []string
		Journal struct{ Facts uint64 }
	}
	if err := json.Unmarshal([]byte(e.cli(b, "--json", "status")), &st); err != nil || st.Account == "" || len(st.Devices) != 2 {
		t.Fatalf("status --json: %v %+v", err, st)
	}
	if !strings.Contains(e.cli(a, "fact", "list", "--tail", "3"), "greeting") {
		t.Fatal("fact list lacks the put")
	}
	e.cli(a, "peers")

	// Kill -9 after acknowledged writes: nothing acknowledged is lost.
	for _, k := range []string{"k1", "k2", "k3"} {
		e.cli(a, "fact", "put", k, "v-"+k)
	}
	_ = nodeA.Process.Kill()
	_ = nodeA.Wait()
	e.start(a)
	for _, k := range []string{"k1", "k2", "k3", "greeting"} {
		if v := e.cli(a, "fact", "get", k); !strings.HasPrefix(v, "v-"+k) && !(k == "greeting" && v == "hello world") {
			t.Fatalf("after kill: %s = %q", k, v)
		}
	}
	_, errOut, err = e.run(cliBin, "--home", a, "fact", "get", "missing")
	if err == nil || !strings.Contains(errOut, "no value") {
		t.Fatalf("get missing: %v %q", err, errOut)
	}
}
