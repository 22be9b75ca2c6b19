package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The first hour of an operator, with the real binaries: each test is
// what a user meets following README.

func newEnv(t *testing.T) *env {
	nodeBin, cliBin := bins(t)
	return &env{t: t, nodeBin: nodeBin, cliBin: cliBin}
}

// runNode runs `aura-node ARGS` to its end (a startup that must fail).
func (e *env) runNode(args ...string) (stderr string, code int) {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, e.nodeBin, args...)
	var o, ee bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &ee
	err := cmd.Run()
	if ctx.Err() != nil {
		e.t.Fatalf("aura-node %s did not exit: %s", strings.Join(args, " "), ee.String())
	}
	code = 0
	if x, ok := err.(*exec.ExitError); ok {
		code = x.ExitCode()
	} else if err != nil {
		e.t.Fatal(err)
	}
	return ee.String(), code
}

// mustFailStart asserts a clean startup failure: exit 1, one line naming
// the cause, no goroutine dump.
func (e *env) mustFailStart(home, want string) {
	e.t.Helper()
	stderr, code := e.runNode("run", "--home", home)
	if code != 1 || !strings.Contains(stderr, want) || strings.Contains(stderr, "goroutine") || strings.Contains(stderr, "panic") {
		e.t.Fatalf("aura-node run on %s: exit %d, stderr %q; want exit 1 and %q", home, code, stderr, want)
	}
	if lines := strings.Count(strings.TrimSpace(stderr), "\n") + 1; lines != 1 {
		e.t.Fatalf("startup failure printed %d lines, want 1: %q", lines, stderr)
	}
}

// initLoopback initialises a home on 127.0.0.1 with a fixed free port (so
// the port stays across restarts) and metrics off.
func (e *env) initLoopback(home string, port int) {
	e.t.Helper()
	_, errOut, err := e.run(e.nodeBin, "init", "--home", home, "--listen", "/ip4/127.0.0.1/tcp/"+itoa(port), "--no-mdns", "--metrics", "off", "--no-port-map")
	if err != nil {
		e.t.Fatalf("aura-node init: %v\n%s", err, errOut)
	}
}

func itoa(i int) string { return strconv.Itoa(i) }

// freeTCPPort returns a port free on 127.0.0.1 now.
func freeTCPPort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

func (e *env) fail(home string, args ...string) string {
	e.t.Helper()
	_, errOut, err := e.run(e.cliBin, append([]string{"--home", home}, args...)...)
	if err == nil {
		e.t.Fatalf("aura-cli %s succeeded, want a failure", strings.Join(args, " "))
	}
	return errOut
}

func (e *env) stop(cmd *exec.Cmd) {
	_ = cmd.Process.Signal(os.Interrupt)
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(15 * time.Second):
		_ = cmd.Process.Kill()
		<-done
	}
}

func (e *env) waitFor(what string, d time.Duration, ok func() bool) {
	e.t.Helper()
	deadline := time.Now().Add(d)
	for !ok() {
		if time.Now().After(deadline) {
			e.t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func (e *env) get(home, key string) (string, bool) {
	out, _, err := e.run(e.cliBin, "--home", home, "fact", "get", key)
	return out, err == nil
}

// lastLine is an invite code (the last line of `account invite`).
func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}

func TestStartupFailuresExitCleanly(t *testing.T) {
	e := newEnv(t)
	dir := t.TempDir()
	a := filepath.Join(dir, "a")
	e.initLoopback(a, freeTCPPort(t))
	e.start(a)

	// A second node on the same home.
	e.mustFailStart(a, "another aura-node is running on "+a+" (pid ")

	// A listen port another process holds (SO_REUSEPORT would share it).
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	busy := ln.Addr().(*net.TCPAddr).Port
	b := filepath.Join(dir, "b")
	e.initLoopback(b, busy)
	e.mustFailStart(b, "listen address /ip4/127.0.0.1/tcp/"+itoa(busy)+" is in use by another process")
	if _, err := os.Stat(filepath.Join(b, "aura.sock")); !os.IsNotExist(err) {
		t.Fatalf("a failed start left its socket behind: %v", err)
	}

	// A metrics address in use.
	c := filepath.Join(dir, "c")
	if _, errOut, err := e.run(e.nodeBin, "init", "--home", c, "--listen", "/ip4/127.0.0.1/tcp/0", "--no-mdns", "--no-port-map", "--metrics", ln.Addr().String()); err != nil {
		t.Fatalf("init: %v %s", err, errOut)
	}
	e.mustFailStart(c, "metrics address "+ln.Addr().String()+" is in use: set [metrics] address in "+filepath.Join(c, "config.toml")+" to a free host:port, or 'off'")

	// init refuses what could never run.
	if stderr, code := e.runNode("init", "--home", filepath.Join(dir, "d"), "--metrics", "127.0.0.1:99999"); code != 1 || !strings.Contains(stderr, "port 99999 is not a number from 0 to 65535") {
		t.Fatalf("init --metrics 127.0.0.1:99999: exit %d %q", code, stderr)
	}
	if stderr, code := e.runNode("init", "--home", filepath.Join(dir, "d"), "--listen", "/ip4/127.0.0.1/tcp/70000"); code != 1 || !strings.Contains(stderr, "listen") {
		t.Fatalf("init --listen tcp/70000: exit %d %q", code, stderr)
	}

	// A device key others can read is refused, as ssh does.
	f := filepath.Join(dir, "f")
	e.initLoopback(f, 0)
	if err := os.Chmod(filepath.Join(f, "device.key"), 0o644); err != nil {
		t.Fatal(err)
	}
	e.mustFailStart(f, "is accessible by others (mode 0644): run `chmod 600")
	_ = os.Chmod(filepath.Join(f, "device.key"), 0o600)

	// TOML errors name the line and the key.
	cfg, _ := os.ReadFile(filepath.Join(f, "config.toml"))
	if !bytes.HasSuffix(cfg, []byte("\n")) {
		t.Fatal("config.toml does not end with a newline")
	}
	bad := strings.Replace(string(cfg), "[log]\n", "[log]\nlevl = 'debug'\n", 1)
	_ = os.WriteFile(filepath.Join(f, "config.toml"), []byte(bad), 0o600)
	line := strings.Count(bad[:strings.Index(bad, "levl")], "\n") + 1
	e.mustFailStart(f, filepath.Join(f, "config.toml")+":"+itoa(line)+": unknown key log.levl")
	bad = strings.Replace(string(cfg), "interval = '30s'\n", "interval = 'soon'\n", 1)
	_ = os.WriteFile(filepath.Join(f, "config.toml"), []byte(bad), 0o600)
	e.mustFailStart(f, `invalid duration "soon" (key sync.interval)`)
}

func TestSeveralNodesWithDefaultPorts(t *testing.T) {
	e := newEnv(t)
	dir := t.TempDir()
	homes := []string{filepath.Join(dir, "n1"), filepath.Join(dir, "n2")}
	var ports []string
	for _, h := range homes {
		// Default listen and metrics ports; only discovery and port
		// mapping are off, so nothing leaves this machine.
		_, errOut, err := e.run(e.nodeBin, "init", "--home", h, "--no-mdns", "--no-port-map")
		if err != nil {
			t.Fatalf("init %s: %v %s", h, err, errOut)
		}
		cfg, _ := os.ReadFile(filepath.Join(h, "config.toml"))
		m := regexp.MustCompile(`/tcp/(\d+)`).FindSubmatch(cfg)
		if m == nil {
			t.Fatalf("no tcp listen port in %s", cfg)
		}
		ports = append(ports, string(m[1]))
		if len(ports) == 2 && !strings.Contains(errOut, "is in use") {
			t.Fatalf("second init did not say it moved the ports: %q", errOut)
		}
		e.start(h)
	}
	if ports[0] == ports[1] {
		t.Fatalf("both nodes got port %s", ports[0])
	}
	e.cli(homes[0], "account", "create")
	code := lastLine(e.cli(homes[0], "account", "invite"))
	e.cli(homes[1], "account", "join", code)
	e.cli(homes[1], "fact", "put", "from-n2", "hi")
	e.waitFor("n2's write on n1", 30*time.Second, func() bool { v, ok := e.get(homes[0], "from-n2"); return ok && v == "hi" })
}

func TestVersion(t *testing.T) {
	e := newEnv(t)
	for _, args := range [][]string{{e.nodeBin, "--version"}, {e.cliBin, "--version"}, {e.cliBin, "version"}} {
		out, errOut, err := e.run(args[0], args[1:]...)
		if err != nil {
			t.Fatalf("%v: %v %s", args, err, errOut)
		}
		for _, want := range []string{"version    0.1.0", "commit", "go         go1.", "protocols  aura/1", "/aura/sync/1"} {
			if !strings.Contains(out, want) {
				t.Fatalf("%v lacks %q:\n%s", args, want, out)
			}
		}
	}
	out, _, _ := e.run(e.cliBin, "version", "--json")
	var v struct {
		Version   string   `json:"version"`
		Protocols []string `json:"protocols"`
	}
	if err := json.Unmarshal([]byte(out), &v); err != nil || v.Version == "" || len(v.Protocols) == 0 {
		t.Fatalf("version --json: %v %q", err, out)
	}
}

// A device that joined reaches the other devices at once, also when its
// inviter goes offline right after the join.
func TestJoinerReachesAccountWithoutInviter(t *testing.T) {
	e := newEnv(t)
	dir := t.TempDir()
	a, b, c := filepath.Join(dir, "a"), filepath.Join(dir, "b"), filepath.Join(dir, "c")
	for _, h := range []string{a, b, c} {
		e.initLoopback(h, freeTCPPort(t))
	}
	na := e.start(a)
	var st struct {
		Addrs []string `json:"addrs"`
	}
	_ = json.Unmarshal([]byte(e.cli(a, "--json", "status")), &st)
	// c dials a (its bootstrap) before any invite is open: a refuses it,
	// which leaves c with a dial backoff for a; its join must not fail.
	cfg := filepath.Join(c, "config.toml")
	b0, _ := os.ReadFile(cfg)
	_ = os.WriteFile(cfg, bytes.Replace(b0, []byte("bootstrap = []"), []byte("bootstrap = ['"+st.Addrs[0]+"']"), 1), 0o600)
	e.start(b)
	e.start(c)
	time.Sleep(time.Second)
	e.cli(a, "account", "create")
	e.cli(b, "account", "join", lastLine(e.cli(a, "account", "invite")))
	e.cli(c, "account", "join", lastLine(e.cli(a, "account", "invite")))
	e.stop(na) // the inviter goes right after the join
	e.cli(c, "fact", "put", "from-c", "reached b")
	e.waitFor("c's write on b without the inviter", 30*time.Second, func() bool { v, ok := e.get(b, "from-c"); return ok && v == "reached b" })
}

// peers connect brings two devices whose addresses changed back together
// and remembers the address across a restart.
func TestPeersConnect(t *testing.T) {
	e := newEnv(t)
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a"), filepath.Join(dir, "b")
	pa, pb := freeTCPPort(t), freeTCPPort(t)
	e.initLoopback(a, pa)
	e.initLoopback(b, pb)
	na, nb := e.start(a), e.start(b)
	e.cli(a, "account", "create")
	e.cli(b, "account", "join", lastLine(e.cli(a, "account", "invite")))
	e.stop(na)
	e.stop(nb)
	// Both come back on new ports: neither finds the other by itself.
	pa2, pb2 := freeTCPPort(t), freeTCPPort(t)
	rewritePort(t, a, pa, pa2)
	rewritePort(t, b, pb, pb2)
	na = e.start(a)
	e.start(b)
	var st struct {
		Device string   `json:"device"`
		Addrs  []string `json:"addrs"`
		Peers  int      `json:"peers"`
	}
	_ = json.Unmarshal([]byte(e.cli(b, "--json", "status")), &st)
	if len(st.Addrs) == 0 {
		t.Fatal("status lists no address")
	}
	// restore says why it cannot start, within its timeout.
	start := time.Now()
	if out := e.fail(a, "--timeout", "4s", "restore"); !strings.Contains(out, "no device of the account is reachable; 1 device known: ") || !strings.Contains(out, "(last seen 20") {
		t.Fatalf("restore with no device reachable: %q", out)
	} else if time.Since(start) > 10*time.Second {
		t.Fatalf("restore took %s to give up with --timeout 4s", time.Since(start))
	}
	if out := e.fail(a, "peers", "connect", "/ip4/127.0.0.1/tcp/1/p2p/12D3KooWDGGPz5dmMCVuSXbFb6TJtSEWWi85BpzULvqjp3XaLh2m"); !strings.Contains(out, "is not a device of this account") {
		t.Fatalf("connect to a stranger: %q", out)
	}
	out := e.cli(a, "peers", "connect", st.Addrs[0])
	if !strings.Contains(out, "connected to") || !strings.Contains(out, "address remembered") {
		t.Fatalf("peers connect: %q", out)
	}
	if pl := e.cli(a, "peers"); !strings.Contains(pl, "NAME") || strings.Contains(pl, "true") {
		t.Fatalf("peers table: %q", pl)
	}
	// a restarts on its port: it redials b's remembered address itself.
	e.stop(na)
	e.start(a)
	e.waitFor("a reconnecting to b after a restart", 30*time.Second, func() bool {
		var s struct {
			Peers int `json:"peers"`
		}
		_ = json.Unmarshal([]byte(e.cli(a, "--json", "status")), &s)
		return s.Peers == 1
	})
}

func rewritePort(t *testing.T, home string, from, to int) {
	t.Helper()
	p := filepath.Join(home, "config.toml")
	b, _ := os.ReadFile(p)
	b = bytes.ReplaceAll(b, []byte("/tcp/"+itoa(from)+"'"), []byte("/tcp/"+itoa(to)+"'"))
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// Values are bytes: a file, stdin, back out exactly; keys are UTF-8; the
// limit is named; control characters never reach the terminal raw.
func TestValuesAndOutput(t *testing.T) {
	e := newEnv(t)
	dir := t.TempDir()
	a := filepath.Join(dir, "a")
	e.initLoopback(a, 0)
	e.start(a)
	e.cli(a, "account", "create")

	blob := []byte{0, 1, 2, 0xff, 0xfe, '\n', 0x1b, '[', '3', '1', 'm', 0x80}
	in := filepath.Join(dir, "in.bin")
	_ = os.WriteFile(in, blob, 0o600)
	e.cli(a, "fact", "put", "bin", "--file", in)
	if out, ok := e.get(a, "bin"); !ok || out != string(blob) {
		t.Fatalf("fact get bin = %q, want the file's bytes %q", out, blob)
	}
	cmd := exec.Command(e.cliBin, "--home", a, "fact", "put", "stdin", "-")
	cmd.Stdin = bytes.NewReader(blob)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("put from stdin: %v %s", err, out)
	}
	if out, ok := e.get(a, "stdin"); !ok || out != string(blob) {
		t.Fatalf("fact get stdin = %q", out)
	}
	if out := e.fail(a, "fact", "put", "bad\xffkey", "v"); !strings.Contains(out, "not valid UTF-8") {
		t.Fatalf("invalid key: %q", out)
	}
	big := filepath.Join(dir, "big")
	_ = os.WriteFile(big, bytes.Repeat([]byte("x"), 70_000), 0o600)
	if out := e.fail(a, "fact", "put", "big", "--file", big); !strings.Contains(out, "65280") || strings.Contains(out, "sign fact") {
		t.Fatalf("too large from a file: %q", out)
	}
	if out := e.fail(a, "fact", "put", "big", strings.Repeat("y", 65_300)); !strings.Contains(out, "value of 65300 bytes is too large") || !strings.Contains(out, "at most") || strings.Contains(out, "sign fact") {
		t.Fatalf("too large: %q", out)
	}
	if h := e.cli(a, "fact", "put", "--help"); !strings.Contains(h, "65280 bytes") {
		t.Fatalf("fact put --help does not state the limit:\n%s", h)
	}

	evil := "k\x1b[2J\x07"
	for _, args := range [][]string{{"fact", "put", evil, "v\x1b[31m"}, {"fact", "list"}} {
		out := e.cli(a, args...)
		if strings.ContainsAny(out, "\x1b\x07") {
			t.Fatalf("%v printed control characters raw: %q", args, out)
		}
	}
	if out := e.fail(a, "fact", "get", evil+"-missing"); strings.ContainsAny(out, "\x1b\x07") || strings.Contains(out, "not found:") {
		t.Fatalf("error output: %q", out)
	}
	var fs []struct {
		Key   string `json:"key"`
		Value string `json:"value"`
	}
	if err := json.Unmarshal([]byte(e.cli(a, "fact", "list", "--json")), &fs); err != nil {
		t.Fatal(err)
	}
	found := false
	for _, f := range fs {
		found = found || (f.Key == evil && f.Value == "v\x1b[31m")
	}
	if !found {
		t.Fatalf("--json is not exact: %+v", fs)
	}
}

// Writes behind the fence are read back at once; propose refuses without
// M key holders unless forced; the rough edges of issue 9.
func TestFenceReadsAndRoughEdges(t *testing.T) {
	e := newEnv(t)
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a"), filepath.Join(dir, "b")
	e.initLoopback(a, freeTCPPort(t))
	e.initLoopback(b, freeTCPPort(t))

	// A home never initialised.
	if out := e.fail(filepath.Join(dir, "nothing"), "status"); !strings.Contains(out, "run `aura-node init --home") {
		t.Fatalf("uninitialised home: %q", out)
	}
	e.start(a)
	nb := e.start(b)
	e.cli(a, "account", "create")
	if out := e.cli(a, "threshold", "status"); !strings.Contains(out, "no threshold key yet") {
		t.Fatalf("threshold status before keygen: %q", out)
	}
	if out := e.fail(a, "account", "invite", "--expires", "-5m"); !strings.Contains(out, "--expires -5m: want a positive duration") {
		t.Fatalf("invite --expires -5m: %q", out)
	}
	inv := e.cli(a, "account", "invite")
	if !regexp.MustCompile(`valid until \d{4}-\d\d-\d\d \d\d:\d\d:\d\d [A-Z]+`).MatchString(inv) {
		t.Fatalf("invite time without its zone: %q", inv)
	}
	e.cli(b, "account", "join", lastLine(inv))
	e.waitFor("b knowing it is a member", 20*time.Second, func() bool {
		var s struct {
			Devices []string `json:"devices"`
		}
		_ = json.Unmarshal([]byte(e.cli(b, "--json", "status")), &s)
		return len(s.Devices) == 2
	})
	if out := e.fail(b, "threshold", "keygen", "--threshold", "2"); !strings.Contains(out, "only the account's admin may run a key generation") {
		t.Fatalf("keygen by a non-admin: %q", out)
	}
	for _, m := range []string{"0", "3"} {
		if out := e.fail(a, "threshold", "keygen", "--threshold", m); !strings.Contains(out, "--threshold "+m+" is out of range") {
			t.Fatalf("keygen --threshold %s: %q", m, out)
		}
	}
	if out := e.fail(a, "account", "create", "--threshold", "0"); !strings.Contains(out, "--threshold 0 is out of range") && !strings.Contains(out, "already belongs") {
		t.Fatalf("create --threshold 0: %q", out)
	}
	e.cli(a, "threshold", "keygen", "--threshold", "2")
	e.cli(a, "fact", "put", "before", "committed")

	e.stop(nb)
	e.waitFor("a noticing b is gone", 20*time.Second, func() bool {
		var s struct {
			Peers int `json:"peers"`
		}
		_ = json.Unmarshal([]byte(e.cli(a, "--json", "status")), &s)
		return s.Peers == 0
	})
	if out := e.fail(a, "snapshot", "propose"); !strings.Contains(out, "1 of 2 needed key holders online") || strings.Contains(out, "unavailable:") {
		t.Fatalf("propose without a quorum: %q", out)
	}
	prop := e.cli(a, "--json", "snapshot", "propose", "--force")
	var info struct {
		ID string `json:"id"`
	}
	if err := json.Unmarshal([]byte(prop), &info); err != nil || info.ID == "" {
		t.Fatalf("propose --force: %v %q", err, prop)
	}
	if out := e.cli(a, "fact", "put", "during", "fenced"); !strings.Contains(out, "buffered behind the writer fence") {
		t.Fatalf("write during the round: %q", out)
	}
	if v, ok := e.get(a, "during"); !ok || v != "fenced" {
		t.Fatalf("read your write behind the fence: %q %v", v, ok)
	}
	var fs []struct {
		Key     string `json:"key"`
		Pending bool   `json:"pending"`
	}
	_ = json.Unmarshal([]byte(e.cli(a, "fact", "list", "--json")), &fs)
	if len(fs) == 0 || fs[len(fs)-1].Key != "during" || !fs[len(fs)-1].Pending {
		t.Fatalf("fact list --json lacks the pending write: %+v", fs)
	}
	if out := e.cli(a, "fact", "list"); !strings.Contains(out, "pending") {
		t.Fatalf("fact list does not mark the pending write: %q", out)
	}
	if out := e.cli(a, "snapshot", "show", info.ID[:8]); strings.Contains(out, "{") || !strings.Contains(out, "status") || !strings.Contains(out, "open") {
		t.Fatalf("snapshot show: %q", out)
	}
	if out := e.fail(a, "snapshot", "show", "ffffffff"); strings.Contains(out, "not found:") || !strings.Contains(out, "no snapshot") {
		t.Fatalf("snapshot show of an unknown id: %q", out)
	}
	if out := e.cli(a, "status"); !regexp.MustCompile(`fence\s+up for \w+ until \d{4}-\d\d-\d\d \d\d:\d\d:\d\d [A-Z]+`).MatchString(out) {
		t.Fatalf("status fence line: %q", out)
	}

	// The simulator and the demo refuse out-of-range sizes like any command.
	if _, errOut, err := e.run(e.cliBin, "sim", "--nodes", "0"); err == nil || !strings.Contains(errOut, "--nodes 0") {
		t.Fatalf("sim --nodes 0: %v %q", err, errOut)
	} else if x, ok := err.(*exec.ExitError); !ok || x.ExitCode() != 1 {
		t.Fatalf("sim --nodes 0 exit: %v", err)
	}
	if _, errOut, _ := e.run(e.cliBin, "sim", "--help"); !strings.Contains(errOut, "--nodes") {
		t.Fatalf("sim --help: %q", errOut)
	}
	if stderr, code := e.runNode("demo", "--nodes", "0"); code != 1 || !strings.Contains(stderr, "--nodes 0") {
		t.Fatalf("demo --nodes 0: %d %q", code, stderr)
	}
}
