// Package runbooks holds the operator runbooks (docs/runbooks/*.md) and the
// test that executes them. Each page's command block is generated from its
// script (scripts/NAME.txt, a github.com/rogpeppe/go-internal/testscript
// script): the script is the one source, the page shows it. The test
// builds the real aura-node and aura-cli, runs every script against real
// `aura-node run` processes on 127.0.0.1 (mDNS, port mapping and metrics
// off), and fails when a command's output no longer matches what the
// script expects, or when a page's block differs from its script's
// rendering (`go test ./docs/runbooks -update` rewrites the blocks).
package runbooks

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/rogpeppe/go-internal/testscript"
)

var update = flag.Bool("update", false, "rewrite the pages' generated command blocks from the scripts")

var binDir string

func TestMain(m *testing.M) {
	flag.Parse()
	dir, err := os.MkdirTemp("", "aura-runbook-bins")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binDir = dir
	for _, pkg := range []string{"aura/cmd/aura-node", "aura/cmd/aura-cli"} {
		if out, err := exec.Command("go", "build", "-o", dir, pkg).CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "go build %s: %v\n%s", pkg, err, out)
			os.RemoveAll(dir)
			os.Exit(1)
		}
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// TestRunbooks runs every script with the real binaries.
func TestRunbooks(t *testing.T) {
	testscript.Run(t, testscript.Params{
		Dir:                 "scripts",
		RequireExplicitExec: true,
		RequireUniqueNames:  true,
		Deadline:            time.Now().Add(8 * time.Minute),
		Setup: func(e *testscript.Env) error {
			e.Setenv("PATH", binDir+string(os.PathListSeparator)+e.Getenv("PATH"))
			e.Setenv("AURA_HOME", filepath.Join(e.WorkDir, "no-home-given"))
			e.Setenv("NO_COLOR", "1")
			return nil
		},
		Cmds: map[string]func(ts *testscript.TestScript, neg bool, args []string){
			"waitfor":  cmdWaitfor,
			"setjson":  cmdSetjson,
			"truncate": cmdTruncate,
		},
	})
}

// waitfor [-match REGEXP] [-timeout D] CMD ARGS...: runs the command until
// it exits 0 (and its stdout matches), as an operator repeats a command
// until the mesh has caught up. The last run's stdout stays for `stdout`.
func cmdWaitfor(ts *testscript.TestScript, neg bool, args []string) {
	if neg {
		ts.Fatalf("unsupported: ! waitfor")
	}
	timeout := 45 * time.Second
	var match *regexp.Regexp
	for len(args) > 1 && strings.HasPrefix(args[0], "-") {
		switch args[0] {
		case "-match":
			match = regexp.MustCompile(args[1])
		case "-timeout":
			d, err := time.ParseDuration(args[1])
			ts.Check(err)
			timeout = d
		default:
			ts.Fatalf("waitfor: unknown flag %s", args[0])
		}
		args = args[2:]
	}
	if len(args) == 0 {
		ts.Fatalf("usage: waitfor [-match RE] [-timeout D] CMD ARGS...")
	}
	deadline := time.Now().Add(timeout)
	var last string
	for {
		var out, errb bytes.Buffer
		cmd := exec.Command(lookPath(ts, args[0]), args[1:]...)
		cmd.Dir = ts.MkAbs(".")
		cmd.Env = environ(ts)
		cmd.Stdout, cmd.Stderr = &out, &errb
		err := cmd.Run()
		if err == nil && (match == nil || match.Match(out.Bytes())) {
			fmt.Fprint(ts.Stdout(), out.String())
			return
		}
		last = fmt.Sprintf("err=%v\nstdout:\n%s\nstderr:\n%s", err, out.String(), errb.String())
		if time.Now().After(deadline) {
			ts.Fatalf("waitfor %s: not after %v; last run: %s", strings.Join(args, " "), timeout, last)
		}
		time.Sleep(150 * time.Millisecond)
	}
}

// lookPath finds a command on the script's PATH (exec.Command would
// search the test process's own).
func lookPath(ts *testscript.TestScript, name string) string {
	if strings.Contains(name, "/") {
		return name
	}
	for _, dir := range filepath.SplitList(ts.Getenv("PATH")) {
		p := filepath.Join(dir, name)
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0 {
			return p
		}
	}
	return name
}

// environ is the script's environment for commands run by custom commands.
func environ(ts *testscript.TestScript) []string {
	var env []string
	for _, k := range []string{"PATH", "AURA_HOME", "HOME", "TMPDIR", "WORK", "NO_COLOR"} {
		env = append(env, k+"="+ts.Getenv(k))
	}
	return env
}

// setjson VAR FIELD: sets VAR to the string FIELD of the JSON document the
// previous command printed (the operator's `VAR=$(... --json | jq -r .FIELD)`).
func cmdSetjson(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 2 {
		ts.Fatalf("usage: setjson VAR FIELD")
	}
	var doc map[string]any
	if err := json.Unmarshal([]byte(ts.ReadFile("stdout")), &doc); err != nil {
		ts.Fatalf("setjson: previous stdout is not JSON: %v", err)
	}
	v, ok := doc[args[1]]
	if !ok {
		ts.Fatalf("setjson: no field %q in %v", args[1], doc)
	}
	ts.Setenv(args[0], fmt.Sprint(v))
}

// truncate FILE SIZE: cuts a file short (the damaged-store runbook).
func cmdTruncate(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 2 {
		ts.Fatalf("usage: truncate FILE SIZE")
	}
	var n int64
	_, err := fmt.Sscan(args[1], &n)
	ts.Check(err)
	ts.Check(os.Truncate(ts.MkAbs(args[0]), n))
}
