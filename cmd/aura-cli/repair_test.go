package main

import (
	"encoding/json"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/cockroachdb/pebble"
)

// copyHome copies a stopped node's home (regular files) to a new place.
func copyHome(t *testing.T, from, to string) {
	t.Helper()
	err := filepath.WalkDir(from, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(from, p)
		dst := filepath.Join(to, rel)
		if d.IsDir() {
			return os.MkdirAll(dst, 0o700)
		}
		if !d.Type().IsRegular() || d.Name() == "aura.sock" {
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		info, _ := d.Info()
		return os.WriteFile(dst, b, info.Mode().Perm())
	})
	if err != nil {
		t.Fatal(err)
	}
}

func largest(t *testing.T, glob string) string {
	t.Helper()
	ms, _ := filepath.Glob(glob)
	if len(ms) == 0 {
		t.Fatalf("no file matches %s", glob)
	}
	sort.Slice(ms, func(i, j int) bool {
		a, _ := os.Stat(ms[i])
		b, _ := os.Stat(ms[j])
		return a.Size() > b.Size()
	})
	return ms[0]
}

func digest(e *env, home string) string {
	var s struct {
		Digest string `json:"state_digest"`
	}
	_ = json.Unmarshal([]byte(e.cli(home, "--json", "status")), &s)
	return s.Digest
}

// Each kind of damage gives a clear error and exit 1 at start; `aura-node
// repair` then rebuilds the device from a peer and it starts with the
// account's state.
func TestDamagedStoreAndRepair(t *testing.T) {
	e := newEnv(t)
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a"), filepath.Join(dir, "b")
	e.initLoopback(a, freeTCPPort(t))
	e.initLoopback(b, freeTCPPort(t))
	na := e.start(a)
	e.start(b)
	e.cli(a, "account", "create")
	e.cli(b, "account", "join", lastLine(e.cli(a, "account", "invite")))
	for i := 0; i < 40; i++ {
		e.cli(a, "fact", "put", "k"+itoa(i), strings.Repeat("v", 500))
	}
	e.waitFor("b to hold a's writes", 30_000_000_000, func() bool { _, ok := e.get(b, "k39"); return ok })
	e.waitFor("a to remember b's address", 30_000_000_000, func() bool {
		bs, _ := os.ReadFile(filepath.Join(a, "peers"))
		return len(bs) > 0
	})
	e.stop(na)
	// Put the journal into sstables, as a long-running node has it.
	db, err := pebble.Open(filepath.Join(a, "data"), &pebble.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Flush(); err != nil {
		t.Fatal(err)
	}
	db.Close()
	want := digest(e, b)

	for _, c := range []struct {
		name   string
		damage func(data string)
		msg    string
	}{
		{"truncated sstable", func(d string) { _ = os.Truncate(largest(t, d+"/*.sst"), 100) }, ".sst"},
		{"overwritten bytes", func(d string) {
			p := largest(t, d+"/*.sst")
			f, _ := os.OpenFile(p, os.O_WRONLY, 0)
			st, _ := f.Stat()
			_, _ = f.WriteAt([]byte(strings.Repeat("\xde\xad\xbe\xef", 64)), st.Size()/3)
			f.Close()
		}, "damaged"},
		{"truncated MANIFEST", func(d string) { _ = os.Truncate(largest(t, d+"/MANIFEST-*"), 20) }, "MANIFEST"},
		{"missing CURRENT", func(d string) { _ = os.Remove(filepath.Join(d, "CURRENT")) }, "CURRENT file is missing"},
	} {
		t.Run(c.name, func(t *testing.T) {
			e := &env{t: t, nodeBin: e.nodeBin, cliBin: e.cliBin}
			h := filepath.Join(t.TempDir(), "a")
			copyHome(t, a, h)
			c.damage(filepath.Join(h, "data"))
			stderr, code := e.runNode("run", "--home", h)
			if code != 1 || !strings.Contains(stderr, c.msg) || !strings.Contains(stderr, "aura-node repair --home "+h) || strings.Contains(stderr, "goroutine ") {
				t.Fatalf("start on a %s: exit %d, %q", c.name, code, stderr)
			}
			out, code := e.runNode("repair", "--home", h, "--timeout", "30s")
			if code != 0 {
				t.Fatalf("repair: exit %d: %s", code, out)
			}
			if m, _ := filepath.Glob(filepath.Join(h, "data.damaged-*")); len(m) != 1 {
				t.Fatalf("the damaged store was not kept aside: %v", m)
			}
			n := e.start(h)
			e.waitFor("the repaired device to converge", 30_000_000_000, func() bool { return digest(e, h) == want })
			if v, ok := e.get(h, "k39"); !ok || v != strings.Repeat("v", 500) {
				t.Fatalf("after repair: k39 = %q %v", v, ok)
			}
			e.stop(n)
		})
	}
}
