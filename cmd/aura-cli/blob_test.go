package main

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"

	"aura/blobstore/unixfs"
	"aura/node"
)

// blobEnv runs in-process nodes with their control sockets and drives
// them with the blob commands, exactly as aura-cli would (the command
// tree is built here because main.go's root is edited elsewhere).
type blobEnv struct {
	t     *testing.T
	nodes []*node.Node
}

func startInProcess(t *testing.T, home string) *node.Node {
	t.Helper()
	cfg := node.TestConfig()
	cfg.Name = filepath.Base(home)
	if _, err := node.Init(home, node.InitOptions{Config: &cfg}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	n, err := node.New(ctx, node.Options{Home: home, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	return n
}

// cli runs `aura-cli --home HOME args...` in-process and returns stdout,
// stderr and the error.
func (e *blobEnv) cli(i int, stdin []byte, args ...string) (string, string, error) {
	a := &app{}
	root := &cobra.Command{Use: "aura-cli", SilenceUsage: true, SilenceErrors: true}
	root.PersistentFlags().StringVar(&a.home, "home", "", "")
	root.PersistentFlags().BoolVar(&a.json, "json", false, "")
	root.PersistentFlags().DurationVar(&a.timeout, "timeout", time.Minute, "")
	root.AddCommand(blobCmd(a))
	var out, errb bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&errb)
	root.SetIn(bytes.NewReader(stdin))
	root.SetArgs(append([]string{"--home", e.nodes[i].Home()}, args...))
	err := root.ExecuteContext(context.Background())
	return out.String(), errb.String(), err
}

func (e *blobEnv) must(i int, args ...string) string {
	e.t.Helper()
	out, errOut, err := e.cli(i, nil, args...)
	if err != nil {
		e.t.Fatalf("aura-cli %s: %v\nstdout: %s\nstderr: %s", strings.Join(args, " "), err, out, errOut)
	}
	return out
}

func (e *blobEnv) list(i int) node.BlobList {
	e.t.Helper()
	var l node.BlobList
	if err := json.Unmarshal([]byte(e.must(i, "--json", "blob", "list")), &l); err != nil {
		e.t.Fatal(err)
	}
	return l
}

func (e *blobEnv) status(i int, cid string) string {
	for _, b := range e.list(i).Blobs {
		if b.CID == cid {
			return b.Status
		}
	}
	return ""
}

func waitUntil(t *testing.T, d time.Duration, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestBlobCommands: put prints the product CID, get fetches from the other
// device (to --out, and to stdout when piped: the bytes alone), list and rm
// report in text and --json, errors exit non-zero with a reason, and after
// the next snapshot both devices' blob stores give the space back.
func TestBlobCommands(t *testing.T) {
	if testing.Short() {
		t.Skip("two in-process nodes")
	}
	dir := t.TempDir()
	e := &blobEnv{t: t}
	for _, h := range []string{"a", "b"} {
		e.nodes = append(e.nodes, startInProcess(t, filepath.Join(dir, h)))
	}
	a, b := e.nodes[0], e.nodes[1]
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
	if _, err := a.Keygen(ctx, 2); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, 20*time.Second, "shares on both", func() bool {
		sa, sb := a.Status(), b.Status()
		return sa.GroupKey != nil && sa.GroupKey.HasShare && sb.GroupKey != nil && sb.GroupKey.HasShare
	})

	// put
	data := make([]byte, 3<<20+77) // four leaves and a root
	rng := rand.New(rand.NewPCG(7, 7))
	for i := range data {
		data[i] = byte(rng.Uint32())
	}
	file := filepath.Join(dir, "photo.raw")
	if err := os.WriteFile(file, data, 0o600); err != nil {
		t.Fatal(err)
	}
	cid := strings.TrimSpace(e.must(0, "blob", "put", file))
	if want := unixfs.Sum(data).String(); cid != want {
		t.Fatalf("blob put printed %q, want the CID %s", cid, want)
	}
	var put node.BlobInfo
	if err := json.Unmarshal([]byte(e.must(0, "--json", "blob", "put", "--name", "again", file)), &put); err != nil || put.CID != cid || put.Size != uint64(len(data)) {
		t.Fatalf("blob put --json: %v %+v", err, put)
	}
	out, _, err := e.cli(0, []byte("from stdin"), "blob", "put", "-")
	if err != nil || strings.TrimSpace(out) != unixfs.Sum([]byte("from stdin")).String() {
		t.Fatalf("blob put -: %q %v", out, err)
	}
	waitUntil(t, 20*time.Second, "BlobStored on b", func() bool { return e.status(1, cid) == "live" })

	// get: from a's store to b, then to stdout (piped: no progress bar).
	dst := filepath.Join(dir, "copy.raw")
	if out := e.must(1, "blob", "get", cid, "--out", dst); !strings.Contains(out, "wrote 3145805 bytes") {
		t.Fatalf("blob get --out said %q", out)
	}
	if got, err := os.ReadFile(dst); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("fetched copy differs: %v", err)
	}
	stdout, stderr, err := e.cli(1, nil, "blob", "get", cid)
	if err != nil || stdout != string(data) || stderr != "" {
		t.Fatalf("blob get to stdout: %v, %d bytes, stderr %q", err, len(stdout), stderr)
	}
	var got node.BlobInfo
	if err := json.Unmarshal([]byte(e.must(1, "--json", "blob", "get", cid, "--out", dst)), &got); err != nil || !got.Held || got.CID != cid {
		t.Fatalf("blob get --json: %v %+v", err, got)
	}
	if _, stderr, err := e.cli(1, nil, "--json", "blob", "get", cid); err == nil || !strings.Contains(err.Error(), "--out") {
		t.Fatalf("blob get --json without --out: %v %q", err, stderr)
	}
	if _, _, err := e.cli(1, nil, "blob", "get", "bafkqaaa"); err == nil || !strings.Contains(err.Error(), "no blob") {
		t.Fatalf("blob get of an unknown CID: %v", err)
	}
	if _, _, err := e.cli(1, nil, "blob", "get", "not-a-cid"); err == nil || !strings.Contains(err.Error(), "not a CID") {
		t.Fatalf("blob get of garbage: %v", err)
	}

	// list
	text := e.must(1, "blob", "list")
	if !strings.Contains(text, cid) || !strings.Contains(text, "photo.raw") && !strings.Contains(text, "again") || !strings.Contains(text, "blob store:") {
		t.Fatalf("blob list:\n%s", text)
	}
	before := []node.BlobStoreInfo{e.list(0).Store, e.list(1).Store}

	// rm, then a snapshot frees the space on both devices.
	if out := e.must(1, "blob", "rm", cid); !strings.Contains(out, "removed "+cid) {
		t.Fatalf("blob rm said %q", out)
	}
	if _, _, err := e.cli(1, nil, "blob", "rm", cid); err == nil || !strings.Contains(err.Error(), "already removed") {
		t.Fatalf("second rm: %v", err)
	}
	waitUntil(t, 20*time.Second, "the tombstone on a", func() bool { return e.status(0, cid) == "removed" })
	if !strings.Contains(e.must(0, "blob", "list"), "removed") {
		t.Fatal("blob list does not show the removal")
	}
	if _, err := a.Propose(); err != nil {
		t.Fatal(err)
	}
	for i := range e.nodes {
		var after node.BlobStoreInfo
		waitUntil(t, 30*time.Second, "the space back", func() bool {
			after = e.list(i).Store
			return after.Freed >= int64(len(data)) && after.Bytes < before[i].Bytes-int64(len(data))+64<<10
		})
		t.Logf("device %d: blob store %d → %d bytes (%d → %d blocks)", i, before[i].Bytes, after.Bytes, before[i].Blocks, after.Blocks)
	}
}
