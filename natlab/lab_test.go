//go:build natlab

package natlab

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"aura/node"
)

// ---- binaries ----

var (
	buildOnce sync.Once
	binDir    string
	buildErr  error
)

// bins builds aura-node and aura-cli with the natlab tag.
func bins(t *testing.T) (nodeBin, cliBin string) {
	t.Helper()
	buildOnce.Do(func() {
		if binDir, buildErr = os.MkdirTemp("", "aura-natlab-bins"); buildErr != nil {
			return
		}
		out, err := exec.Command("go", "build", "-tags", "natlab", "-o", binDir, "aura/cmd/aura-node", "aura/cmd/aura-cli").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build -tags natlab: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return filepath.Join(binDir, "aura-node"), filepath.Join(binDir, "aura-cli")
}

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		_ = os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// ---- topology ----

// nsPrefix names every namespace of this process's labs; preClean removes
// those of runs whose process is gone.
var nsPrefix = "auranat"

func must(t *testing.T, args ...string) {
	t.Helper()
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

var staleNS = regexp.MustCompile(`^` + nsPrefix + `(\d+)[a-z]+-[a-z]+$`)

// preClean removes the namespaces (and the processes in them) of lab runs
// whose test process is gone: a run killed before its cleanup.
func preClean(t *testing.T) {
	out, err := exec.Command("ip", "netns", "list").Output()
	if err != nil {
		t.Fatalf("ip netns list: %v (the NAT lab needs iproute2 and root)", err)
	}
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		m := staleNS.FindStringSubmatch(f[0])
		if m == nil {
			continue
		}
		if pid, _ := strconv.Atoi(m[1]); pid == os.Getpid() || syscall.Kill(pid, 0) == nil {
			continue
		}
		killNS(f[0])
		_ = exec.Command("ip", "netns", "del", f[0]).Run()
		t.Logf("removed stale lab namespace %s", f[0])
	}
}

// killNS kills the processes left in a lab namespace, by pid.
func killNS(ns string) {
	out, _ := exec.Command("ip", "netns", "pids", ns).Output()
	for _, s := range strings.Fields(string(out)) {
		if pid, err := strconv.Atoi(s); err == nil && pid > 1 {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}

// lab is one topology:
//
//	pub 10.99.0.10 ─┐
//	ra  10.99.0.21 ─┼─ br0 (ns inet): the lab's internet, 10.99.0.0/24
//	rb  10.99.0.22 ─┘
//	ha  10.1.0.2 ── lan 10.1.0.1 (ra, MASQUERADE)
//	hb  10.2.0.2 ── lan 10.2.0.1 (rb, MASQUERADE, --random-fully when symmetric)
type lab struct {
	t         *testing.T
	name      string
	dir       string
	symmetric bool
	nodeBin   string
	cliBin    string
	mu        sync.Mutex
	devs      []*dev
}

func (l *lab) ns(short string) string {
	return fmt.Sprintf("%s%d%s-%s", nsPrefix, os.Getpid(), l.name, short)
}

var namespaces = []string{"inet", "pub", "ra", "rb", "ha", "hb"}

func newLab(t *testing.T, name string, symmetric bool) *lab {
	if os.Geteuid() != 0 {
		t.Fatal("the NAT lab needs root (network namespaces, iptables): run it as root, as CI does")
	}
	for _, tool := range []string{"ip", "iptables"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("the NAT lab needs %s: apt-get install -y iptables iproute2", tool)
		}
	}
	nodeBin, cliBin := bins(t)
	l := &lab{t: t, name: name, dir: t.TempDir(), symmetric: symmetric, nodeBin: nodeBin, cliBin: cliBin}
	t.Cleanup(l.teardown)
	for _, n := range namespaces {
		must(t, "ip", "netns", "add", l.ns(n))
		must(t, "ip", "-n", l.ns(n), "link", "set", "lo", "up")
	}
	inet := l.ns("inet")
	must(t, "ip", "-n", inet, "link", "add", "br0", "type", "bridge")
	must(t, "ip", "-n", inet, "link", "set", "br0", "up")
	for _, w := range []struct{ ns, addr string }{{"pub", "10.99.0.10"}, {"ra", "10.99.0.21"}, {"rb", "10.99.0.22"}} {
		must(t, "ip", "-n", inet, "link", "add", "v-"+w.ns, "type", "veth", "peer", "name", "wan", "netns", l.ns(w.ns))
		must(t, "ip", "-n", inet, "link", "set", "v-"+w.ns, "master", "br0", "up")
		must(t, "ip", "-n", l.ns(w.ns), "addr", "add", w.addr+"/24", "dev", "wan")
		must(t, "ip", "-n", l.ns(w.ns), "link", "set", "wan", "up")
	}
	for _, h := range []struct {
		router, home, net string
		random            bool
	}{{"ra", "ha", "10.1.0", false}, {"rb", "hb", "10.2.0", symmetric}} {
		r, hm := l.ns(h.router), l.ns(h.home)
		must(t, "ip", "-n", r, "link", "add", "lan", "type", "veth", "peer", "name", "eth0", "netns", hm)
		must(t, "ip", "-n", r, "addr", "add", h.net+".1/24", "dev", "lan")
		must(t, "ip", "-n", r, "link", "set", "lan", "up")
		must(t, "ip", "-n", hm, "addr", "add", h.net+".2/24", "dev", "eth0")
		must(t, "ip", "-n", hm, "link", "set", "eth0", "up")
		must(t, "ip", "-n", hm, "route", "add", "default", "via", h.net+".1")
		must(t, "ip", "netns", "exec", r, "sysctl", "-qw", "net.ipv4.ip_forward=1")
		masq := []string{"ip", "netns", "exec", r, "iptables", "-t", "nat", "-A", "POSTROUTING", "-o", "wan", "-j", "MASQUERADE"}
		if h.random {
			masq = append(masq, "--random-fully") // a new random port per mapping: symmetric NAT
		}
		must(t, masq...)
		// A home router's firewall: out from the LAN, back in only what answers.
		ipt := func(args ...string) { must(t, append([]string{"ip", "netns", "exec", r, "iptables"}, args...)...) }
		ipt("-P", "FORWARD", "DROP")
		ipt("-A", "FORWARD", "-i", "lan", "-o", "wan", "-j", "ACCEPT")
		ipt("-A", "FORWARD", "-i", "wan", "-o", "lan", "-m", "conntrack", "--ctstate", "ESTABLISHED,RELATED", "-j", "ACCEPT")
		ipt("-A", "INPUT", "-i", "wan", "-m", "conntrack", "--ctstate", "ESTABLISHED,RELATED", "-j", "ACCEPT")
		ipt("-A", "INPUT", "-i", "wan", "-j", "DROP")
	}
	return l
}

func (l *lab) teardown() {
	l.mu.Lock()
	devs := l.devs
	l.mu.Unlock()
	for _, d := range devs {
		d.stop(syscall.SIGKILL)
	}
	for i := len(namespaces) - 1; i >= 0; i-- {
		ns := l.ns(namespaces[i])
		killNS(ns)
		if out, err := exec.Command("ip", "netns", "del", ns).CombinedOutput(); err != nil && !strings.Contains(string(out), "No such file") {
			l.t.Logf("ip netns del %s: %v %s", ns, err, out)
		}
	}
	// NATLAB_LOGS=DIR keeps every node's log (DIR/LAB-DEVICE.log).
	if keep := os.Getenv("NATLAB_LOGS"); keep != "" {
		for _, d := range devs {
			if b, err := os.ReadFile(d.logPath()); err == nil {
				_ = os.WriteFile(filepath.Join(keep, l.name+"-"+d.name+".log"), b, 0o644)
			}
		}
	}
	if l.t.Failed() {
		for _, d := range devs {
			b, _ := os.ReadFile(d.logPath())
			lines := strings.Split(strings.TrimSpace(string(b)), "\n")
			l.t.Logf("---- %s log (last 40 lines) ----\n%s", d.name, strings.Join(lines[max(0, len(lines)-40):], "\n"))
		}
	}
}

// ---- devices ----

type dev struct {
	l      *lab
	name   string
	ns     string
	home   string
	peer   string // libp2p peer id
	mu     sync.Mutex
	cmd    *exec.Cmd
	done   chan struct{}
	logf   *os.File
	client *http.Client
}

func (l *lab) config(name string) node.Config {
	c := node.DefaultConfig()
	c.Name = name
	c.Listen = []string{"/ip4/0.0.0.0/tcp/4401", "/ip4/0.0.0.0/udp/4401/quic-v1"}
	c.Discovery.MDNS = new(bool)
	c.NAT.PortMap = new(bool)
	c.Metrics.Address = "off"
	c.Log.Format = "json"
	// Anti-entropy every 10 s on average (30 s by default) bounds how long
	// a write missed by gossip waits; the lab reports every slow delivery.
	c.Sync.Interval = node.Duration(10 * time.Second)
	if lvl := os.Getenv("NATLAB_LOG_LEVEL"); lvl != "" {
		c.Log.Level = lvl // debug, info…
	}
	return c
}

// device initialises a home in the lab's directory that runs in namespace ns.
func (l *lab) device(name, ns string, cfg node.Config) *dev {
	l.t.Helper()
	d := &dev{l: l, name: name, ns: l.ns(ns), home: filepath.Join(l.dir, name)}
	if out, err := exec.Command(l.nodeBin, "init", "--home", d.home, "--listen", "/ip4/0.0.0.0/tcp/4401", "--no-mdns", "--no-port-map", "--metrics", "off").CombinedOutput(); err != nil {
		l.t.Fatalf("aura-node init %s: %v\n%s", name, err, out)
	}
	d.setConfig(cfg)
	sock := filepath.Join(d.home, node.SocketFile)
	d.client = &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var dl net.Dialer
		return dl.DialContext(ctx, "unix", sock)
	}}}
	l.mu.Lock()
	l.devs = append(l.devs, d)
	l.mu.Unlock()
	return d
}

func (d *dev) setConfig(cfg node.Config) {
	if err := os.WriteFile(filepath.Join(d.home, node.ConfigFile), cfg.Render(), 0o600); err != nil {
		d.l.t.Fatal(err)
	}
}

func (d *dev) logPath() string { return filepath.Join(d.home, "node.log") }

// start runs aura-node in the device's namespace and waits for its socket.
func (d *dev) start() time.Time {
	t := d.l.t
	t.Helper()
	logf, err := os.OpenFile(d.logPath(), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	// ip netns exec execs aura-node: the pid is the node's.
	cmd := exec.Command("ip", "netns", "exec", d.ns, d.l.nodeBin, "run", "--home", d.home)
	cmd.Stdout, cmd.Stderr = logf, logf
	began := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	d.mu.Lock()
	d.cmd, d.done, d.logf = cmd, done, logf
	d.mu.Unlock()
	d.l.waitFor(d.name+" up", 20*time.Second, func() bool {
		_, err := d.try("status")
		return err == nil
	})
	if d.peer == "" {
		var st node.Status
		d.json(&st, "status")
		for _, a := range st.Addrs {
			if i := strings.LastIndex(a, "/p2p/"); i >= 0 {
				d.peer = a[i+len("/p2p/"):]
				break
			}
		}
	}
	return began
}

// stop ends the node with sig (SIGTERM: a clean shutdown; SIGKILL: a crash).
func (d *dev) stop(sig syscall.Signal) {
	d.mu.Lock()
	cmd, done, logf := d.cmd, d.done, d.logf
	d.cmd = nil
	d.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(sig)
	select {
	case <-done:
	case <-time.After(15 * time.Second):
		_ = cmd.Process.Kill()
		<-done
	}
	_ = logf.Close()
}

func (d *dev) try(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, d.l.cliBin, append([]string{"--home", d.home}, args...)...)
	cmd.Env = append(os.Environ(), "AURA_HOME=/nonexistent-aura-home")
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	if err := cmd.Run(); err != nil {
		return o.String(), fmt.Errorf("aura-cli %s on %s: %v: %s", strings.Join(args, " "), d.name, err, strings.TrimSpace(e.String()))
	}
	return o.String(), nil
}

func (d *dev) cli(args ...string) string {
	d.l.t.Helper()
	out, err := d.try(args...)
	if err != nil {
		d.l.t.Fatal(err)
	}
	return out
}

func (d *dev) json(v any, args ...string) {
	d.l.t.Helper()
	if err := json.Unmarshal([]byte(d.cli(append([]string{"--json"}, args...)...)), v); err != nil {
		d.l.t.Fatalf("aura-cli --json %s on %s: %v", strings.Join(args, " "), d.name, err)
	}
}

// api calls a control API endpoint of the natlab build.
func (d *dev) api(path string, in, out any) error {
	b, _ := json.Marshal(in)
	resp, err := d.client.Post("http://aura"+path, "application/json", bytes.NewReader(b))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		var e struct{ Error string }
		_ = json.NewDecoder(resp.Body).Decode(&e)
		return fmt.Errorf("%s on %s: %s", path, d.name, e.Error)
	}
	return json.NewDecoder(resp.Body).Decode(out)
}

// addrs are the device's multiaddrs on the lab's internet, with /p2p/.
func (d *dev) addrs(ip string) []string {
	return []string{"/ip4/" + ip + "/tcp/4401/p2p/" + d.peer, "/ip4/" + ip + "/udp/4401/quic-v1/p2p/" + d.peer}
}

// peers is `aura-cli peers --json`.
func (d *dev) peers() []node.PeerInfo {
	out, err := d.try("--json", "peers")
	if err != nil {
		return nil
	}
	var ps []node.PeerInfo
	_ = json.Unmarshal([]byte(out), &ps)
	return ps
}

// path is how d is connected to o now ("" when it is not).
func (d *dev) path(o *dev) (node.PeerInfo, bool) {
	for _, p := range d.peers() {
		if p.Peer == o.peer {
			return p, true
		}
	}
	return node.PeerInfo{}, false
}

// logEvent is one JSON log line of a node.
type logEvent struct {
	Time time.Time `json:"time"`
	Msg  string    `json:"msg"`
	Peer string    `json:"peer"`
	Path string    `json:"path"`
}

// firstLog is the first log line after since matching msg (and, when
// set, peer and path).
func (d *dev) firstLog(since time.Time, msg, peer, path string) (logEvent, bool) {
	f, err := os.Open(d.logPath())
	if err != nil {
		return logEvent{}, false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var e logEvent
		if json.Unmarshal(sc.Bytes(), &e) != nil || e.Msg != msg || e.Time.Before(since) {
			continue
		}
		if (peer == "" || e.Peer == peer) && (path == "" || e.Path == path) {
			return e, true
		}
	}
	return logEvent{}, false
}

func (l *lab) waitFor(what string, d time.Duration, ok func() bool) time.Duration {
	l.t.Helper()
	start := time.Now()
	for !ok() {
		if time.Since(start) > d {
			l.t.Fatalf("%s: timed out waiting %s for %s", l.name, d, what)
		}
		time.Sleep(100 * time.Millisecond)
	}
	return time.Since(start)
}

// replicated writes key on from and waits until to reads it; it returns
// how long that took.
func (l *lab) replicated(from, to *dev, key, value string, within time.Duration) time.Duration {
	l.t.Helper()
	start := time.Now()
	from.cli("fact", "put", key, value)
	l.waitFor(fmt.Sprintf("%s=%s written on %s to reach %s", key, value, from.name, to.name), within, func() bool {
		out, err := to.try("fact", "get", key)
		return err == nil && strings.TrimSpace(out) == value
	})
	return time.Since(start)
}

// ---- the scenario shared by both labs ----

// account brings up pub (the account's relay) and the two homes behind
// NAT, joins them, and waits for relay reservations and a link between the
// homes. It returns the devices and the time both homes were members.
func (l *lab) account() (pub, ha, hb *dev, joined time.Time) {
	t := l.t
	pc := l.config("pub")
	pc.Relay.Service = true
	pc.NAT.Reachability = node.ReachPublic
	pub = l.device("pub", "pub", pc)
	pub.start()
	pub.cli("account", "create")
	home := func(name string) node.Config {
		c := l.config(name)
		c.Bootstrap = pub.addrs("10.99.0.10")
		c.Relay.Static = pub.addrs("10.99.0.10") // its TCP and its QUIC address: one relay
		c.NAT.Reachability = node.ReachPrivate
		return c
	}
	ha, hb = l.device("ha", "ha", home("ha")), l.device("hb", "hb", home("hb"))
	ha.start()
	hb.start()
	joinedAt := map[*dev]time.Time{}
	for _, h := range []*dev{ha, hb} {
		code := strings.TrimSpace(pub.cli("account", "invite"))
		code = code[strings.LastIndex(code, "\n")+1:]
		js := time.Now()
		h.cli("account", "join", code)
		joinedAt[h] = time.Now()
		t.Logf("%s: %s joined in %s", l.name, h.name, time.Since(js).Round(time.Millisecond))
	}
	joined = time.Now()
	for _, h := range []*dev{ha, hb} {
		l.waitFor(h.name+"'s relay reservation", 90*time.Second, func() bool { _, ok := h.firstLog(time.Time{}, "relay reservation", "", ""); return ok })
		e, _ := h.firstLog(time.Time{}, "relay reservation", "", "")
		t.Logf("%s: TIMING relay reservation of %s: %s after its join", l.name, h.name, e.Time.Sub(joinedAt[h]).Round(time.Millisecond))
	}
	var relayed logEvent
	l.waitFor("a relayed link between the homes", 60*time.Second, func() bool {
		if e, ok := ha.firstLog(joined, "device connected", hb.peer, "relayed"); ok {
			relayed = e
			return true
		}
		if e, ok := hb.firstLog(joined, "device connected", ha.peer, "relayed"); ok {
			relayed = e
			return true
		}
		return false
	})
	t.Logf("%s: TIMING relayed link ha-hb: %s after both joined", l.name, relayed.Time.Sub(joined).Round(time.Millisecond))
	return pub, ha, hb, joined
}

// fetch measures a 10 MB blob fetch by to from from (alone), and the path.
func (l *lab) fetch(from, to *dev, seed uint64) node.LabFetchResult {
	l.t.Helper()
	var put struct {
		CID  string `json:"cid"`
		Size int64  `json:"size"`
	}
	if err := from.api("/v1/natlab/blob", node.LabBlobRequest{Size: 10 << 20, Seed: seed}, &put); err != nil {
		l.t.Fatal(err)
	}
	var res node.LabFetchResult
	if err := to.api("/v1/natlab/fetch", node.LabFetchRequest{CID: put.CID, Peer: from.peer}, &res); err != nil {
		l.t.Fatal(err)
	}
	if res.Bytes < 10<<20 {
		l.t.Fatalf("fetch of %s moved %d bytes, want 10 MiB", put.CID, res.Bytes)
	}
	l.t.Logf("%s: THROUGHPUT 10 MiB blob %s -> %s over %s/%s: %.2fs, %.1f MB/s", l.name, from.name, to.name, res.ViaStart, res.ViaEnd,
		res.Seconds, float64(res.Bytes)/res.Seconds/1e6)
	return res
}

// (a) Both homes behind endpoint-independent NAT (MASQUERADE): they join,
// link through the relay, get a direct connection by hole punching,
// replicate both ways, and go on after the public device is killed; (c,
// light) the public device comes back and finds both.
func TestLabHolePunch(t *testing.T) {
	preClean(t)
	t.Parallel()
	l := newLab(t, "e", false)
	pub, ha, hb, joined := l.account()

	var direct logEvent
	l.waitFor("a direct connection between the homes (hole punching)", 90*time.Second, func() bool {
		if e, ok := ha.firstLog(joined, "device connected", hb.peer, "direct"); ok {
			direct = e
			return true
		}
		if e, ok := hb.firstLog(joined, "device connected", ha.peer, "direct"); ok {
			direct = e
			return true
		}
		return false
	})
	t.Logf("%s: TIMING direct connection ha-hb: %s after both joined", l.name, direct.Time.Sub(joined).Round(time.Millisecond))
	l.waitFor("peers to say direct", 10*time.Second, func() bool { p, ok := ha.path(hb); return ok && p.Via == "direct" })
	if p, _ := ha.path(hb); !strings.Contains(p.Paths[0].Addr, "10.99.0.22") {
		t.Fatalf("ha's direct path to hb is %+v, want hb's NAT address 10.99.0.22", p.Paths)
	}
	// The relayed connection goes once the direct one carries the streams.
	l.waitFor("the relayed connection retired", 45*time.Second, func() bool {
		p, ok := ha.path(hb)
		return ok && len(p.Paths) > 0 && !strings.Contains(fmt.Sprint(p.Paths), "relayed")
	})

	t.Logf("%s: ha->hb %s, hb->ha %s", l.name,
		l.replicated(ha, hb, "a/1", "from ha", 20*time.Second).Round(time.Millisecond),
		l.replicated(hb, ha, "a/2", "from hb", 20*time.Second).Round(time.Millisecond))
	if r := l.fetch(hb, ha, 1); r.ViaStart != "direct" || r.ViaEnd != "direct" {
		t.Fatalf("the direct fetch went %s/%s", r.ViaStart, r.ViaEnd)
	}

	pub.stop(syscall.SIGKILL)
	killed := time.Now()
	d3, d4 := l.replicated(ha, hb, "a/3", "no pub", 30*time.Second), l.replicated(hb, ha, "a/4", "still no pub", 30*time.Second)
	t.Logf("%s: without pub: ha->hb %s, hb->ha %s", l.name, d3.Round(time.Millisecond), d4.Round(time.Millisecond))
	if max(d3, d4) > 5*time.Second {
		t.Logf("%s: WARNING: a write after pub was killed came by anti-entropy, not gossip (%s)", l.name, max(d3, d4).Round(time.Millisecond))
	}
	if p, ok := ha.path(hb); !ok || p.Via != "direct" {
		t.Fatalf("after pub was killed ha-hb is %+v", p)
	}
	// Replication keeps going for a while without the relay.
	time.Sleep(time.Until(killed.Add(15 * time.Second)))
	l.replicated(ha, hb, "a/5", "later", 30*time.Second)

	pub.start()
	d := l.waitFor("pub to find both homes again", 60*time.Second, func() bool {
		_, a := pub.path(ha)
		_, b := pub.path(hb)
		return a && b
	})
	t.Logf("%s: TIMING pub restarted: both homes connected after %s", l.name, d.Round(time.Millisecond))
	l.replicated(ha, pub, "a/6", "pub is back", 30*time.Second)
}

// (b) One home behind a symmetric NAT: hole punching cannot work, the
// homes replicate through the account's relay continuously past libp2p's
// default circuit limits (2 minutes, 128 KiB) on one circuit; (c) the
// relay restarts and the homes reconnect through it.
func TestLabSymmetricNAT(t *testing.T) {
	preClean(t)
	t.Parallel()
	l := newLab(t, "s", true)
	pub, ha, hb, _ := l.account()
	l.waitFor("peers to show the relayed link", 15*time.Second, func() bool { p, ok := ha.path(hb); return ok && p.Via == "relayed" })
	p, _ := ha.path(hb)
	circuit := p.Paths[0]
	if !circuit.Limited || !strings.Contains(circuit.Addr, "p2p-circuit") {
		t.Fatalf("ha-hb path %+v, want a limited circuit", circuit)
	}
	l.replicated(ha, hb, "s/0", "through the relay", 20*time.Second)
	if r := l.fetch(hb, ha, 2); r.ViaStart != "relayed" || r.ViaEnd != "relayed" {
		t.Fatalf("the relayed fetch went %s/%s", r.ViaStart, r.ViaEnd)
	}

	// Writes both ways every 2 s, 8 KiB each, for more than 2 minutes:
	// each must arrive within 15 s.
	value := strings.Repeat("x", 8<<10)
	start := time.Now()
	var sent int
	var worst time.Duration
	for i := 0; time.Since(start) < 130*time.Second; i++ {
		from, to := ha, hb
		if i%2 == 1 {
			from, to = hb, ha
		}
		d := l.replicated(from, to, fmt.Sprintf("s/%d", i+1), fmt.Sprintf("%d:%s", i, value), 15*time.Second)
		worst = max(worst, d)
		sent += len(value)
		time.Sleep(time.Until(start.Add(time.Duration(i+1) * 2 * time.Second)))
	}
	p, ok := ha.path(hb)
	if !ok || p.Via != "relayed" {
		t.Fatalf("after the writes ha-hb is %+v", p)
	}
	same := false
	for _, q := range p.Paths {
		same = same || q.Opened.Equal(circuit.Opened) && q.Addr == circuit.Addr
	}
	if !same {
		t.Fatalf("the circuit opened %s did not last: paths now %+v", circuit.Opened, p.Paths)
	}
	t.Logf("%s: one circuit (opened %s ago) carried a 10 MiB blob and %d KiB of facts in %s, slowest fact %s",
		l.name, time.Since(circuit.Opened).Round(time.Second), sent>>10, time.Since(start).Round(time.Second), worst.Round(time.Millisecond))

	// (c) The relay restarts.
	pub.stop(syscall.SIGTERM)
	restarted := pub.start()
	for _, h := range []*dev{ha, hb} {
		l.waitFor(h.name+"'s new reservation", 90*time.Second, func() bool {
			_, ok := h.firstLog(restarted, "relay reservation", "", "")
			return ok
		})
		e, _ := h.firstLog(restarted, "relay reservation", "", "")
		t.Logf("%s: TIMING relay restarted: %s reserved again after %s", l.name, h.name, e.Time.Sub(restarted).Round(time.Millisecond))
	}
	d := l.waitFor("the homes to link again through the relay", 90*time.Second, func() bool { p, ok := ha.path(hb); return ok && p.Via == "relayed" })
	t.Logf("%s: TIMING relay restarted: ha-hb linked again %s after the reservations", l.name, d.Round(time.Millisecond))
	l.replicated(hb, ha, "s/after", "relay restarted", 30*time.Second)
	l.replicated(ha, hb, "s/after2", "relay restarted", 30*time.Second)
}
