package main

import (
	"bytes"
	"crypto/rand"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// tmpfs mounts a small tmpfs (the test runs as root, as CI does) and
// unmounts it at the end.
func tmpfs(t *testing.T, size string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "mnt")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size, "tmpfs", dir).CombinedOutput(); err != nil {
		t.Fatalf("mount a %s tmpfs (the disk tests need root): %v %s", size, err, out)
	}
	t.Cleanup(func() { _ = exec.Command("umount", "-l", dir).Run() })
	return dir
}

func setStorage(t *testing.T, home, minFree, ballast string) {
	t.Helper()
	p := filepath.Join(home, "config.toml")
	b, _ := os.ReadFile(p)
	s := string(b)
	for _, kv := range [][2]string{{"min_free_mb", minFree}, {"ballast_mb", ballast}} {
		i := strings.Index(s, kv[0]+" = ")
		j := strings.Index(s[i:], "\n")
		s = s[:i] + kv[0] + " = " + kv[1] + s[i+j:]
	}
	if err := os.WriteFile(p, []byte(s), 0o600); err != nil {
		t.Fatal(err)
	}
}

// A node on a small disk refuses writes before the disk is full, keeps
// answering reads and status, and takes writes again by itself once
// space is freed; nothing acknowledged is lost.
func TestFullDiskRefusesWritesAndRecovers(t *testing.T) {
	e := newEnv(t)
	mnt := tmpfs(t, "8m")
	home := filepath.Join(mnt, "h")
	e.initLoopback(home, 0)
	setStorage(t, home, "3", "1")
	filler := filepath.Join(mnt, "filler")
	_ = os.WriteFile(filler, make([]byte, 2<<20), 0o600) // what the operator frees later
	node := e.start(home)
	e.cli(home, "account", "create")
	val := make([]byte, 40_000)
	_, _ = rand.Read(val)
	vf := filepath.Join(t.TempDir(), "v")
	_ = os.WriteFile(vf, val, 0o600)
	var acked []string
	refused := ""
	for i := 0; i < 400 && refused == ""; i++ {
		k := "k" + itoa(i)
		if _, errOut, err := e.run(e.cliBin, "--home", home, "fact", "put", k, "--file", vf); err != nil {
			refused = errOut
		} else {
			acked = append(acked, k)
		}
	}
	if !strings.Contains(refused, "disk nearly full: ") || !strings.Contains(refused, "writes are refused until space is freed") {
		t.Fatalf("after %d writes: %q, want the disk-full refusal", len(acked), refused)
	}
	if st := e.cli(home, "status"); !strings.Contains(st, "FULL") {
		t.Fatalf("status does not show the full disk:\n%s", st)
	}
	if v, ok := e.get(home, acked[len(acked)-1]); !ok || v != string(val) {
		t.Fatal("reads stopped with the disk full")
	}
	_ = os.Remove(filler)
	e.waitFor("writes to resume after space was freed", 20*time.Second, func() bool {
		_, _, err := e.run(e.cliBin, "--home", home, "fact", "put", "after", "freed")
		return err == nil
	})
	e.stop(node)
	e.start(home)
	for _, k := range append(acked, "after") {
		if _, ok := e.get(home, k); !ok {
			t.Fatalf("acknowledged write %s lost", k)
		}
	}
}

// With the guard off, Pebble meets the full disk itself: the node stops
// with the reason, non-zero, within seconds, and comes back with every
// acknowledged write once space is freed.
func TestStorageFatalStopsTheNode(t *testing.T) {
	e := newEnv(t)
	mnt := tmpfs(t, "8m")
	home := filepath.Join(mnt, "h")
	e.initLoopback(home, 0)
	setStorage(t, home, "-1", "-1")
	cmd := exec.Command(e.nodeBin, "run", "--home", home)
	var stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stderr, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() { _ = cmd.Process.Kill() })
	e.waitFor("the node", 20*time.Second, func() bool { _, _, err := e.run(e.cliBin, "--home", home, "status"); return err == nil })
	e.cli(home, "account", "create")
	val := make([]byte, 40_000)
	vf := filepath.Join(t.TempDir(), "v")
	_ = os.WriteFile(vf, val, 0o600)
	var acked []string
	var failedAt time.Time
	for i := 0; i < 400; i++ {
		k := "k" + itoa(i)
		if _, _, err := e.run(e.cliBin, "--home", home, "--timeout", "5s", "fact", "put", k, "--file", vf); err != nil {
			failedAt = time.Now()
			break
		}
		acked = append(acked, k)
	}
	if failedAt.IsZero() {
		t.Fatal("the disk never filled")
	}
	select {
	case err := <-exited:
		x, ok := err.(*exec.ExitError)
		if !ok || x.ExitCode() == 0 {
			t.Fatalf("node exit: %v", err)
		}
		if !strings.Contains(stderr.String(), "fatal storage error") || !strings.Contains(stderr.String(), "no space left on device") || strings.Contains(stderr.String(), "goroutine ") {
			t.Fatalf("node output:\n%s", stderr.String())
		}
		if d := time.Since(failedAt); d > 10*time.Second {
			t.Fatalf("the node took %s to stop", d)
		}
	case <-time.After(15 * time.Second):
		t.Fatalf("the node is still running after a fatal storage error:\n%s", stderr.String())
	}
	// Make room (the tmpfs grows), restart: every acknowledged write is there.
	if out, err := exec.Command("mount", "-o", "remount,size=64m", mnt).CombinedOutput(); err != nil {
		t.Fatalf("remount: %v %s", err, out)
	}
	e.start(home)
	for _, k := range acked {
		if _, ok := e.get(home, k); !ok {
			t.Fatalf("acknowledged write %s lost after the fatal error", k)
		}
	}
}
