package main

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"filippo.io/age"

	"aura/crdt"
	"aura/node"
)

// Backups with the real binaries: export, the real age tool, restore into
// a fresh home that joins and converges, every failure with its own exit
// code and the target home untouched, and kill -9 during an export.

type nodeStatus struct {
	Account        string            `json:"account"`
	StateDigest    string            `json:"state_digest"`
	VersionVector  map[string]uint64 `json:"version_vector"`
	Devices        []string          `json:"devices"`
	NewestSnapshot *struct {
		ID          string `json:"id"`
		HeldLocally bool   `json:"held_locally"`
	} `json:"newest_snapshot"`
}

func (e *env) status(home string) nodeStatus {
	e.t.Helper()
	var s nodeStatus
	if err := json.Unmarshal([]byte(e.cli(home, "--json", "status")), &s); err != nil {
		e.t.Fatal(err)
	}
	return s
}

// ageTool is the age command-line tool; CI installs it (.ci/run).
func ageTool(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("age")
	if err != nil {
		t.Fatal("the age command-line tool is not installed (the backup tests check that `age -d` reads our files): `apt-get install -y age`")
	}
	return p
}

// keyPair writes an age identity file and returns it with its recipient.
func keyPair(t *testing.T, dir string) (identityFile, recipient string, id *age.X25519Identity) {
	t.Helper()
	id, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}
	identityFile = filepath.Join(dir, "key-"+id.Recipient().String()[4:12]+".txt")
	if err := os.WriteFile(identityFile, []byte(id.String()+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return identityFile, id.Recipient().String(), id
}

// singleNodeWithSnapshot starts a one-device account with a completed
// snapshot and a tail after it.
func (e *env) singleNodeWithSnapshot(home string) *exec.Cmd {
	e.t.Helper()
	e.initLoopback(home, freeTCPPort(e.t))
	cmd := e.start(home)
	e.cli(home, "account", "create", "--threshold", "1")
	e.cli(home, "threshold", "keygen", "--threshold", "1")
	for i := 0; i < 5; i++ {
		e.cli(home, "fact", "put", fmt.Sprintf("before/%d", i), "under the snapshot")
	}
	e.cli(home, "snapshot", "propose")
	e.waitFor("the snapshot held locally", 20*time.Second, func() bool {
		s := e.status(home)
		return s.NewestSnapshot != nil && s.NewestSnapshot.HeldLocally
	})
	for i := 0; i < 3; i++ {
		e.cli(home, "fact", "put", fmt.Sprintf("after/%d", i), "in the tail")
	}
	return cmd
}

// restoreCode runs `backup restore` and returns its exit code and stderr.
func (e *env) restoreCode(home string, args ...string) (int, string) {
	e.t.Helper()
	_, errOut, err := e.run(e.cliBin, append([]string{"--home", home, "backup", "restore"}, args...)...)
	var x *exec.ExitError
	if err == nil {
		return 0, errOut
	}
	if !errors.As(err, &x) {
		e.t.Fatal(err)
	}
	return x.ExitCode(), errOut
}

// homeFiles maps every file under dir to its mode and sha256.
func homeFiles(t *testing.T, dir string) map[string]string {
	t.Helper()
	m := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		if d.IsDir() {
			m[rel+"/"] = fi.Mode().String()
			return nil
		}
		if !fi.Mode().IsRegular() || rel == "node.log" {
			return nil // the socket; the log of a running node
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(b)
		m[rel] = fi.Mode().String() + " " + hex.EncodeToString(sum[:])
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func sameFiles(t *testing.T, what string, before, after map[string]string) {
	t.Helper()
	for k, v := range before {
		if after[k] != v {
			t.Errorf("%s changed %s: %q → %q", what, k, v, after[k])
		}
	}
	for k := range after {
		if _, ok := before[k]; !ok {
			t.Errorf("%s left %s behind", what, k)
		}
	}
}

// plainEntries decrypts a backup and returns its TAR entries in order.
func plainEntries(t *testing.T, file string, id age.Identity) (names []string, bodies map[string][]byte) {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r, err := age.Decrypt(f, id)
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(r)
	bodies = map[string][]byte{}
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(tr)
		names = append(names, h.Name)
		bodies[h.Name] = b
	}
	return names, bodies
}

// rewrap writes entries (in order) as a TAR encrypted to r: a backup with
// valid encryption whose content the test chose.
func rewrap(t *testing.T, file string, r age.Recipient, names []string, bodies map[string][]byte) {
	t.Helper()
	f, err := os.Create(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	w, err := age.Encrypt(f, r)
	if err != nil {
		t.Fatal(err)
	}
	tw := tar.NewWriter(w)
	for _, n := range names {
		if err := tw.WriteHeader(&tar.Header{Name: n, Mode: 0o600, Size: int64(len(bodies[n])), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		_, _ = tw.Write(bodies[n])
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
}

// remanifest recomputes the manifest's hashes (what a forger holding the
// recipient's public key can do).
func remanifest(t *testing.T, bodies map[string][]byte) {
	t.Helper()
	var m node.BackupManifest
	if err := json.Unmarshal(bodies["manifest.json"], &m); err != nil {
		t.Fatal(err)
	}
	for i, en := range m.Entries {
		sum := sha256.Sum256(bodies[en.Name])
		m.Entries[i].Size, m.Entries[i].SHA256 = int64(len(bodies[en.Name])), hex.EncodeToString(sum[:])
	}
	// Restore checks the blob through the state digest the manifest names.
	m.Snapshot.StateDigest = crdt.DigestOf(bodies["snapshot.blob"]).String()
	b, _ := json.Marshal(&m)
	bodies["manifest.json"] = b
}

func TestBackupRestoreFailures(t *testing.T) {
	e := newEnv(t)
	ageBin := ageTool(t)
	dir := t.TempDir()
	a := filepath.Join(dir, "a")
	e.singleNodeWithSnapshot(a)
	idFile, recip, id := keyPair(t, dir)
	otherID, _, _ := keyPair(t, dir)
	good := filepath.Join(dir, "good.age")
	e.cli(a, "backup", "export", "--out", good, "--recipient", recip)
	pass := filepath.Join(dir, "pass")
	_ = os.WriteFile(pass, []byte("correct horse battery staple\n"), 0o600)
	wrongPass := filepath.Join(dir, "wrong-pass")
	_ = os.WriteFile(wrongPass, []byte("wrong horse\n"), 0o600)
	goodPass := filepath.Join(dir, "good-pass.age")
	e.cli(a, "backup", "export", "--out", goodPass, "--passphrase-file", pass)

	// An ordinary age file holding a TAR, manifest last.
	list, err := exec.Command("sh", "-c", fmt.Sprintf("%q -d -i %q %q | tar t", ageBin, idFile, good)).CombinedOutput()
	if err != nil {
		t.Fatalf("age -d | tar t: %v\n%s", err, list)
	}
	entries := strings.Fields(string(list))
	if len(entries) < 4 || entries[0] != "snapshot.blob" || entries[1] != "completed.fact" || entries[len(entries)-1] != "manifest.json" {
		t.Fatalf("tar t lists %q", entries)
	}
	names, bodies := plainEntries(t, good, id)
	var m node.BackupManifest
	if err := json.Unmarshal(bodies["manifest.json"], &m); err != nil || m.Facts != len(names)-3 || m.Account == "" || m.Device == "" || m.Software == "" || len(m.Protocols) == 0 {
		t.Fatalf("manifest %v %+v", err, m)
	}
	fi, _ := os.Stat(good)
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("backup mode %v, want 0600", fi.Mode())
	}

	raw, _ := os.ReadFile(good)
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	hdr, err := age.ExtractHeader(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	corrupt := append([]byte(nil), raw...)
	corrupt[len(hdr)+16+100] ^= 0x40
	tamperedFact := func() string {
		b := cloneBodies(bodies)
		b["facts/000001.fact"] = append([]byte(nil), b["facts/000001.fact"]...)
		b["facts/000001.fact"][len(b["facts/000001.fact"])-1] ^= 1
		p := filepath.Join(dir, "tampered-fact.age")
		rewrap(t, p, id.Recipient(), names, b)
		return p
	}()
	badDigest := func() string {
		b := cloneBodies(bodies)
		blob := append([]byte(nil), b["snapshot.blob"]...)
		blob[len(blob)/2] ^= 1
		b["snapshot.blob"] = blob
		remanifest(t, b)
		p := filepath.Join(dir, "bad-digest.age")
		rewrap(t, p, id.Recipient(), names, b)
		return p
	}()
	alteredBlob := func() string {
		b := cloneBodies(bodies)
		blob := append([]byte(nil), b["snapshot.blob"]...)
		blob[len(blob)/2] ^= 1
		b["snapshot.blob"] = blob
		p := filepath.Join(dir, "altered-blob.age")
		rewrap(t, p, id.Recipient(), names, b)
		return p
	}()
	notState := func() string {
		b := cloneBodies(bodies)
		b["snapshot.blob"] = bytes.Repeat([]byte{0xff}, len(b["snapshot.blob"]))
		p := filepath.Join(dir, "not-state.age")
		rewrap(t, p, id.Recipient(), names, b)
		return p
	}()
	badSig := func() string {
		// A re-signed completion (the exporting device's own key) whose
		// threshold signature is off by one bit: every fact signature and
		// manifest hash checks out, only the account's signature fails.
		key, err := node.LoadKey(a)
		if err != nil {
			t.Fatal(err)
		}
		f, err := crdt.DecodeVerifiedFact(bodies["completed.fact"])
		if err != nil {
			t.Fatal(err)
		}
		body, _ := f.DecodeBody()
		c := body.(*crdt.SnapshotCompleted)
		c.ThresholdSignature = append([]byte(nil), c.ThresholdSignature...)
		c.ThresholdSignature[len(c.ThresholdSignature)-1] ^= 1
		nf, err := crdt.NewFact(key, f.Account, f.Seq, f.Epoch, f.Lamport, c)
		if err != nil {
			t.Fatal(err)
		}
		b := cloneBodies(bodies)
		b["completed.fact"] = nf.Bytes()
		remanifest(t, b)
		p := filepath.Join(dir, "bad-sig.age")
		rewrap(t, p, id.Recipient(), names, b)
		return p
	}()

	target := filepath.Join(dir, "target")
	e.initLoopback(target, freeTCPPort(t))
	cases := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"wrong identity", []string{good, "--identity", otherID}, 10, "none of the given identities can decrypt"},
		{"wrong passphrase", []string{goodPass, "--passphrase-file", wrongPass}, 10, "wrong passphrase"},
		{"passphrase for a recipient file", []string{good, "--passphrase-file", pass}, 10, "pass --identity"},
		{"truncated mid-chunk", []string{write("trunc.age", raw[:len(raw)-1000]), "--identity", idFile}, 11, "truncated"},
		{"truncated at a chunk boundary", []string{write("trunc-chunk.age", raw[:len(hdr)+16]), "--identity", idFile}, 11, "truncated"},
		{"truncated header", []string{write("trunc-hdr.age", raw[:len(hdr)/2]), "--identity", idFile}, 11, "truncated"},
		{"corrupted body", []string{write("corrupt.age", corrupt), "--identity", idFile}, 12, "corrupted"},
		{"not an age file", []string{write("garbage.age", bytes.Repeat([]byte("not age\n"), 100)), "--identity", idFile}, 12, "not an age-encrypted backup"},
		{"tampered fact", []string{tamperedFact, "--identity", idFile}, 13, "facts/000001.fact: sha256"},
		{"tampered blob", []string{alteredBlob, "--identity", idFile}, 13, "snapshot.blob: state digest"},
		{"blob replaced by non-state bytes", []string{notState, "--identity", idFile}, 13, "snapshot.blob is not a snapshot state"},
		{"tampered blob, manifest recomputed", []string{badDigest, "--identity", idFile}, 14, "does not verify"},
		{"bad threshold signature", []string{badSig, "--identity", idFile}, 14, "threshold signature"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := homeFiles(t, target)
			code, stderr := e.restoreCode(target, tc.args...)
			if code != tc.code || !strings.Contains(stderr, tc.want) || strings.Count(strings.TrimSpace(stderr), "\n") > 0 {
				t.Fatalf("exit %d, stderr %q; want exit %d and %q on one line", code, stderr, tc.code, tc.want)
			}
			sameFiles(t, tc.name, before, homeFiles(t, target))
		})
	}

	// A node running in the target: refused (15), nothing changed.
	running := filepath.Join(dir, "running")
	e.initLoopback(running, freeTCPPort(t))
	nr := e.start(running)
	before := homeFiles(t, running)
	if code, stderr := e.restoreCode(running, good, "--identity", idFile); code != 15 || !strings.Contains(stderr, "another aura-node is running") {
		t.Fatalf("restore into a running home: exit %d %q", code, stderr)
	}
	sameFiles(t, "restore into a running home", before, homeFiles(t, running))
	e.stop(nr)
	// A home that already holds a journal: refused (16).
	before = homeFiles(t, running)
	if code, stderr := e.restoreCode(running, good, "--identity", idFile); code != 16 || !strings.Contains(stderr, "already holds a journal") {
		t.Fatalf("restore into a used home: exit %d %q", code, stderr)
	}
	sameFiles(t, "restore into a used home", before, homeFiles(t, running))

	// After all that, the good files restore (identity and passphrase).
	if code, stderr := e.restoreCode(target, good, "--identity", idFile); code != 0 {
		t.Fatalf("restore: exit %d %s", code, stderr)
	}
	p2 := filepath.Join(dir, "target2")
	e.initLoopback(p2, freeTCPPort(t))
	if code, stderr := e.restoreCode(p2, goodPass, "--passphrase-file", pass); code != 0 {
		t.Fatalf("restore with a passphrase: exit %d %s", code, stderr)
	}
}

func cloneBodies(m map[string][]byte) map[string][]byte {
	out := make(map[string][]byte, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// A backup of one device restores into a fresh home, which joins the mesh,
// syncs what came after the backup, and ends with the others' digest.
func TestBackupRoundTripJoinsMesh(t *testing.T) {
	e := newEnv(t)
	ageTool(t)
	dir := t.TempDir()
	a, b, c := filepath.Join(dir, "a"), filepath.Join(dir, "b"), filepath.Join(dir, "c")
	e.initLoopback(a, freeTCPPort(t))
	e.initLoopback(b, freeTCPPort(t))
	e.start(a)
	e.start(b)
	e.cli(a, "account", "create")
	e.cli(b, "account", "join", lastLine(e.cli(a, "account", "invite")))
	e.waitFor("both devices known on both", 20*time.Second, func() bool {
		return len(e.status(a).Devices) == 2 && len(e.status(b).Devices) == 2
	})
	e.cli(a, "threshold", "keygen", "--threshold", "2")
	for i := 0; i < 5; i++ {
		e.cli(a, "fact", "put", fmt.Sprintf("a/%d", i), "from a")
		e.cli(b, "fact", "put", fmt.Sprintf("b/%d", i), "from b")
	}
	e.waitFor("a and b converged", 30*time.Second, func() bool { return e.status(a).StateDigest == e.status(b).StateDigest })
	e.cli(a, "snapshot", "propose")
	e.waitFor("b holds the completed snapshot", 30*time.Second, func() bool {
		s := e.status(b)
		return s.NewestSnapshot != nil && s.NewestSnapshot.HeldLocally
	})
	e.cli(b, "fact", "put", "tail/b", "after the snapshot")
	idFile, recip, _ := keyPair(t, dir)
	file := filepath.Join(dir, "b.age")
	var ex node.ExportResult
	if err := json.Unmarshal([]byte(e.cli(b, "--json", "backup", "export", "--out", file, "--recipient", recip)), &ex); err != nil || ex.Manifest.Facts == 0 {
		t.Fatalf("export --json: %v %+v", err, ex)
	}
	// Written after the backup: c must get it by sync.
	e.cli(a, "fact", "put", "later/a", "after the backup")

	e.initLoopback(c, freeTCPPort(t))
	var res node.BackupRestoreResult
	if err := json.Unmarshal([]byte(e.cli(c, "--json", "backup", "restore", file, "--identity", idFile)), &res); err != nil {
		t.Fatal(err)
	}
	if res.Member || res.Account != e.status(a).Account || res.Facts != ex.Manifest.Facts || res.Added == 0 {
		t.Fatalf("restore result %+v", res)
	}
	e.start(c)
	if v, ok := e.get(c, "tail/b"); !ok || v != "after the snapshot" {
		t.Fatalf("restored node reads tail/b = %q %v before any sync", v, ok)
	}
	e.cli(c, "account", "join", lastLine(e.cli(a, "account", "invite")))
	e.cli(c, "fact", "put", "c/1", "from the restored device")
	e.waitFor("a, b and c converged", 60*time.Second, func() bool {
		sa, sb, sc := e.status(a), e.status(b), e.status(c)
		return sa.StateDigest == sb.StateDigest && sb.StateDigest == sc.StateDigest && len(sc.Devices) == 3 &&
			fmt.Sprint(sa.VersionVector) == fmt.Sprint(sc.VersionVector)
	})
	if v, ok := e.get(c, "later/a"); !ok || v != "after the backup" {
		t.Fatalf("c reads later/a = %q %v", v, ok)
	}
}

// kill -9 of the CLI during an export never leaves a partial FILE; the
// next export writes a complete one.
func TestBackupExportKill9(t *testing.T) {
	e := newEnv(t)
	ageBin := ageTool(t)
	dir := t.TempDir()
	a := filepath.Join(dir, "a")
	e.initLoopback(a, freeTCPPort(t))
	e.start(a)
	e.cli(a, "account", "create", "--threshold", "1")
	e.cli(a, "threshold", "keygen", "--threshold", "1")
	// A snapshot of ~24 MB, so the export takes a while.
	cl := node.NewClient(a)
	defer cl.Close()
	val := bytes.Repeat([]byte("0123456789abcdef"), 3800)
	for i := 0; i < 400; i++ {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_, err := cl.Put(ctx, fmt.Sprintf("big/%04d", i), append(val, byte(i)))
		cancel()
		if err != nil {
			t.Fatal(err)
		}
	}
	e.cli(a, "snapshot", "propose")
	e.waitFor("the snapshot held locally", 60*time.Second, func() bool {
		s := e.status(a)
		return s.NewestSnapshot != nil && s.NewestSnapshot.HeldLocally
	})
	idFile, recip, _ := keyPair(t, dir)
	out := filepath.Join(dir, "out", "backup.age")
	_ = os.MkdirAll(filepath.Dir(out), 0o700)
	killed := 0
	for try := 0; try < 20 && killed < 3; try++ {
		cmd := exec.Command(e.cliBin, "--home", a, "backup", "export", "--out", out, "--recipient", recip)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		// Kill it once its temporary file holds some of the backup.
		deadline := time.Now().Add(20 * time.Second)
		for time.Now().Before(deadline) {
			if tmps, _ := filepath.Glob(filepath.Join(filepath.Dir(out), ".backup.age.tmp-*")); len(tmps) > 0 {
				if fi, err := os.Stat(tmps[0]); err == nil && fi.Size() > 1<<20 {
					break
				}
			}
			time.Sleep(time.Millisecond)
		}
		_ = cmd.Process.Signal(syscall.SIGKILL)
		err := cmd.Wait()
		if _, statErr := os.Stat(out); statErr == nil {
			if err == nil || cmd.ProcessState.ExitCode() == 0 {
				t.Fatalf("the export finished before the kill (try %d); it must be killed midway", try)
			}
			t.Fatalf("kill -9 during the export left %s behind", out)
		}
		killed++
	}
	if killed == 0 {
		t.Fatal("never killed an export midway")
	}
	e.cli(a, "backup", "export", "--out", out, "--recipient", recip)
	if b, err := exec.Command("sh", "-c", fmt.Sprintf("%q -d -i %q %q | tar t", ageBin, idFile, out)).CombinedOutput(); err != nil || !strings.Contains(string(b), "manifest.json") {
		t.Fatalf("export after the kills: %v %s", err, b)
	}
}
