package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestHelpNamesRunbooks: `aura-cli <command> --help` names the runbook of
// its task, and every page named exists.
func TestHelpNamesRunbooks(t *testing.T) {
	for cmd, page := range runbookOf {
		if _, err := os.Stat(filepath.Join("..", "..", RunbookDir, page)); err != nil {
			t.Errorf("%s names runbook %s: %v", cmd, page, err)
		}
	}
	for _, args := range [][]string{{"snapshot", "propose", "--help"}, {"backup", "restore", "--help"}, {"account", "--help"}, {"blob", "rm", "--help"}, {"account", "remove", "--help"}} {
		c := root()
		var out bytes.Buffer
		c.SetOut(&out)
		c.SetArgs(args)
		if err := c.Execute(); err != nil {
			t.Fatalf("%v: %v", args, err)
		}
		page := runbookOf[args[0]]
		if p, ok := runbookOf[args[0]+" "+args[1]]; ok {
			page = p
		}
		want := "Runbook: " + RunbookDir + page
		if !strings.Contains(out.String(), want) {
			t.Errorf("aura-cli %s: help lacks %q:\n%s", strings.Join(args, " "), want, out.String())
		}
	}
}
