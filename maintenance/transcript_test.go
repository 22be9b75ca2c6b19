package maintenance

import (
	"crypto/ed25519"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"

	"aura/crdt"
	"aura/threshold"
)

// Transcript tests in the style of etcd raft's interaction scripts: each
// testdata/replica/*.txt is a scenario of commands (one per line, then
// "----" and the expected output: every Output each replica returned),
// so the contract both drivers honour is pinned in text. Run with
// -rewrite to regenerate the expected output after an intended change.
//
// Commands:
//
//	new N M                  an account of N devices with an M-of-N dealt key
//	write DEV KEY VALUE      an application write
//	propose DEV              a snapshot proposal
//	tick MS                  advance the clock, tick every device that is up
//	down DEV / up DEV        cut a device off / bring it back (up syncs it)
//	sync DEV                 anti-entropy between DEV and every device up
//	crash DEV                reopen the device's replica over its storage
//	restore DEV              restore from what the core names (RestoreTarget)
//	state DEV                digest, fence, buffer, base, newest snapshot
//	admit N                  the admin d0 admits a new device (key N): the identity epoch moves
//	meta DEV PROTO...        DEV publishes DeviceMetadata with those protocols
//	activate DEV...          d0 publishes and activates a hard fork; the DEVs declare readiness first
//
// Deliveries run to quiescence after every command; outputs print in the
// order they were returned.

var rewrite = flag.Bool("rewrite", false, "rewrite the expected output of transcript tests")

type tdev struct {
	key   ed25519.PrivateKey
	store crdt.Store
	meta  *MemMeta
	blobs *MemBlobs
	rep   *Replica
	share *threshold.Share
	down  bool
}

type transcript struct {
	t    *testing.T
	devs []*tdev
	now  int64
	out  *strings.Builder
}

func (x *transcript) name(id crdt.DeviceID) string {
	for i, d := range x.devs {
		if d.rep.Device() == id {
			return fmt.Sprintf("d%d", i)
		}
	}
	return id.Short()
}

func (x *transcript) open(d *tdev) {
	r, err := Open(Config{Key: d.key, Store: d.store, Meta: d.meta, Blobs: d.blobs, SnapshotTimeout: 10_000, Watermark: -1})
	if err != nil {
		x.t.Fatal(err)
	}
	if d.share != nil {
		r.SetShare(d.share)
	}
	d.rep = r
}

// print writes one Output of device i's call.
func (x *transcript) print(i int, call string, o Output) {
	var parts []string
	for _, f := range o.Publish {
		parts = append(parts, fmt.Sprintf("publish %s %s#%d", f.Kind, x.name(f.Author), f.Seq))
	}
	for _, e := range o.Events {
		s := e.Kind.String()
		if e.Device != (crdt.DeviceID{}) {
			s += " " + x.name(e.Device)
		}
		if e.Err != nil {
			s += " err=" + e.Err.Error()
		}
		parts = append(parts, "event "+s)
	}
	if o.Proposed != ([16]byte{}) {
		parts = append(parts, "proposed")
	}
	if o.Restore != nil {
		parts = append(parts, fmt.Sprintf("restore snapshot of %d facts from %s", o.Restore.Completion.Snapshot.Frontier.Total(), x.name(o.Restore.From)))
	}
	if o.Collected != nil {
		parts = append(parts, fmt.Sprintf("collected %d→%d facts", o.Collected.FactsBefore, o.Collected.FactsAfter))
	}
	if o.Blobs != nil {
		parts = append(parts, fmt.Sprintf("blobs keep=%d release=%d delete=%d", len(o.Blobs.Keep), len(o.Blobs.Release), len(o.Blobs.Delete)))
	}
	if len(parts) == 0 {
		return
	}
	fmt.Fprintf(x.out, "d%d %s: %s\n", i, call, strings.Join(parts, "; "))
}

// deliver hands published facts to every other device that is up, and
// their reactions onward, until quiet.
func (x *transcript) deliver(from int, o Output) {
	type msg struct {
		from  int
		facts []*crdt.Fact
	}
	queue := []msg{{from, o.Publish}}
	for len(queue) > 0 {
		m := queue[0]
		queue = queue[1:]
		if len(m.facts) == 0 || x.devs[m.from].down {
			continue
		}
		for i, d := range x.devs {
			if i == m.from || d.down {
				continue
			}
			_, o, err := d.rep.Receive(x.now, m.facts)
			if err != nil {
				fmt.Fprintf(x.out, "d%d receive: error %v\n", i, err)
				continue
			}
			x.print(i, fmt.Sprintf("receive from d%d", m.from), o)
			if len(o.Publish) > 0 {
				queue = append(queue, msg{i, o.Publish})
			}
		}
	}
}

// syncFacts hands every fact from holds to to (an anti-entropy session
// that found to lacking all of them).
func (x *transcript) syncFacts(from *tdev, fi int, to *tdev, ti int) {
	var fs []*crdt.Fact
	_ = from.store.All(func(f *crdt.Fact) error { fs = append(fs, f); return nil })
	crdt.SortCausal(fs)
	_, out, err := to.rep.Receive(x.now, fs)
	if err != nil {
		fmt.Fprintf(x.out, "d%d sync from d%d: error %v\n", ti, fi, err)
		return
	}
	x.print(ti, fmt.Sprintf("sync from d%d", fi), out)
	x.deliver(ti, out)
}

// writeAs writes body as device i (facts without a method of their own).
func (x *transcript) writeAs(i int, d *tdev, body crdt.Body) {
	o, err := d.rep.Write(x.now, body)
	if err != nil {
		fmt.Fprintf(x.out, "d%d %s: error %v\n", i, body.Kind(), err)
		return
	}
	x.print(i, body.Kind().String(), o)
	x.deliver(i, o)
}

func (x *transcript) dev(s string) (int, *tdev) {
	i, err := strconv.Atoi(strings.TrimPrefix(s, "d"))
	if err != nil || i < 0 || i >= len(x.devs) {
		x.t.Fatalf("no device %q", s)
	}
	return i, x.devs[i]
}

func (x *transcript) run(line string) {
	f := strings.Fields(line)
	switch f[0] {
	case "new":
		n, _ := strconv.Atoi(f[1])
		m, _ := strconv.Atoi(f[2])
		c := newCluster(x.t, n, m) // the same account, keys and shares as the harness
		x.now = c.now
		for i := 0; i < n; i++ {
			d := &tdev{key: c.keys[i], blobs: c.blobs[i], store: c.reps[i].Store(), meta: c.reps[i].cfg.Meta.(*MemMeta), rep: c.reps[i], share: c.reps[i].Share()}
			x.devs = append(x.devs, d)
		}
		fmt.Fprintf(x.out, "account of %d devices, %d-of-%d key\n", n, m, n)
	case "write":
		i, d := x.dev(f[1])
		o, err := d.rep.Write(x.now, &crdt.Put{Key: f[2], Value: []byte(f[3])})
		if err != nil {
			fmt.Fprintf(x.out, "d%d write: error %v\n", i, err)
			return
		}
		x.print(i, "write", o)
		x.deliver(i, o)
	case "propose":
		i, d := x.dev(f[1])
		o, err := d.rep.Propose(x.now)
		if err != nil {
			fmt.Fprintf(x.out, "d%d propose: error %v\n", i, err)
			return
		}
		x.print(i, "propose", o)
		x.deliver(i, o)
	case "tick":
		ms, _ := strconv.ParseInt(f[1], 10, 64)
		x.now += ms
		for i, d := range x.devs {
			if d.down {
				continue
			}
			o := d.rep.Tick(x.now)
			x.print(i, "tick", o)
			x.deliver(i, o)
		}
	case "down":
		_, d := x.dev(f[1])
		d.down = true
	case "up", "sync":
		i, d := x.dev(f[1])
		d.down = false
		// Anti-entropy both ways: every fact the others hold, then every
		// fact it holds to them.
		for j, o := range x.devs {
			if j == i || o.down {
				continue
			}
			x.syncFacts(o, j, d, i)
			x.syncFacts(d, i, o, j)
		}
	case "crash":
		i, d := x.dev(f[1])
		x.open(d)
		fmt.Fprintf(x.out, "d%d reopened: buffered=%d\n", i, d.rep.Buffered())
	case "restore":
		i, d := x.dev(f[1])
		var offers []Offer
		for j, o := range x.devs {
			if j != i && !o.down {
				if c := o.rep.NewestSnapshot(); c != nil {
					offers = append(offers, Offer{From: o.rep.Device(), Completion: c})
				}
			}
		}
		req := d.rep.RestoreTarget(offers)
		if req == nil {
			fmt.Fprintf(x.out, "d%d restore: nothing to restore\n", i)
			return
		}
		var blob []byte
		for _, o := range x.devs {
			if b, err := o.blobs.Get(req.BlobCID); err == nil {
				blob = b
				break
			}
		}
		o, err := d.rep.Restore(x.now, &req.Completion, blob)
		if err != nil {
			fmt.Fprintf(x.out, "d%d restore: error %v\n", i, err)
			return
		}
		x.print(i, "restore", o)
		x.deliver(i, o)
	case "state":
		i, d := x.dev(f[1])
		st := d.rep.State()
		fence := "down"
		if _, _, open := d.rep.Fence(); open {
			fence = "up"
		}
		newest := "none"
		if c := st.NewestSnapshot(); c != nil {
			newest = fmt.Sprintf("%d facts", c.Snapshot.Frontier.Total())
		}
		base := "none"
		if _, snap := d.rep.Base(); snap != nil {
			base = fmt.Sprintf("%d facts", snap.Frontier.Total())
		}
		var keys []string
		for k := range st.KV {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		var kv []string
		for _, k := range keys {
			v, _ := st.Value(k)
			kv = append(kv, k+"="+string(v))
		}
		fmt.Fprintf(x.out, "d%d: digest %s fence %s buffered %d base %s newest %s journal %d facts kv [%s]\n",
			i, st.Digest().String()[:12], fence, d.rep.Buffered(), base, newest, d.store.Stats().Facts, strings.Join(kv, " "))
	case "admit":
		n, _ := strconv.Atoi(f[1])
		k := key(n)
		o, err := x.devs[0].rep.AddDevice(crdt.DeviceIDFromKey(k.Public().(ed25519.PublicKey)), "new", nil)
		if err != nil {
			fmt.Fprintf(x.out, "d0 admit: error %v\n", err)
			return
		}
		x.print(0, "admit", o)
		x.deliver(0, o)
		fmt.Fprintf(x.out, "identity epoch %d\n", x.devs[0].rep.State().Epoch)
	case "meta":
		i, d := x.dev(f[1])
		x.writeAs(i, d, &crdt.DeviceMetadata{SupportedProtocols: f[2:]})
	case "activate":
		epoch := x.devs[0].rep.State().Epoch
		m := &crdt.UpgradeMetadata{Package: "aura-node", Version: "2.0.0", UpgradeKind: "hard", ActivationFence: epoch, MinReady: 1,
			Artifacts: []crdt.UpgradeArtifact{{Platform: "none/none", SHA256: crdt.Hash{1}, Size: 1, CID: []byte{1}}}}
		m.ID = crdt.UpgradeIDOf(m)
		pkg := m.ID
		x.writeAs(0, x.devs[0], m)
		for _, name := range f[1:] {
			i, d := x.dev(name)
			x.writeAs(i, d, &crdt.UpgradeReady{Upgrade: pkg})
		}
		x.writeAs(0, x.devs[0], &crdt.UpgradeActivated{Upgrade: pkg, ToVersion: "2.0.0", ActivationFence: epoch})
	default:
		x.t.Fatalf("unknown command %q", line)
	}
}

func TestTranscripts(t *testing.T) {
	files, _ := filepath.Glob("testdata/replica/*.txt")
	if len(files) == 0 {
		t.Fatal("no transcripts under testdata/replica")
	}
	for _, path := range files {
		t.Run(filepath.Base(path), func(t *testing.T) {
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			x := &transcript{t: t}
			var rewritten strings.Builder
			blocks := strings.Split(string(b), "\n\n")
			for _, blk := range blocks {
				blk = strings.TrimSpace(blk)
				if blk == "" {
					continue
				}
				cmd, want, _ := strings.Cut(blk, "\n----\n")
				cmd = strings.TrimSuffix(cmd, "\n----")
				var got strings.Builder
				x.out = &got
				for _, line := range strings.Split(cmd, "\n") {
					if line = strings.TrimSpace(line); line != "" && !strings.HasPrefix(line, "#") {
						x.run(line)
					}
				}
				if rewritten.Len() > 0 {
					rewritten.WriteString("\n")
				}
				fmt.Fprintf(&rewritten, "%s\n----\n%s\n", cmd, strings.TrimRight(got.String(), "\n"))
				if !*rewrite && strings.TrimSpace(got.String()) != strings.TrimSpace(want) {
					t.Errorf("%s: after\n%s\ngot:\n%s\nwant:\n%s", path, cmd, got.String(), want)
				}
			}
			if *rewrite {
				if err := os.WriteFile(path, []byte(rewritten.String()), 0o644); err != nil {
					t.Fatal(err)
				}
			}
		})
	}
}
