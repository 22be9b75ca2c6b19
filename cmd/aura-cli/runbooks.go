package main

import (
	"strings"

	"github.com/spf13/cobra"
)

// RunbookDir is where the operator runbooks live in the source tree (and
// in a release archive).
const RunbookDir = "docs/runbooks/"

// runbookOf names the runbook page for each command's task, by its path
// under aura-cli; subcommands share their parent's unless named. A page missing from docs/runbooks fails
// TestHelpNamesRunbooks.
var runbookOf = map[string]string{
	"account":         "account.md",
	"account remove":  "remove.md",
	"account devices": "remove.md",
	"fact":            "account.md",
	"status":          "account.md",
	"snapshot":        "snapshot.md",
	"threshold":       "snapshot.md",
	"restore":         "restore.md",
	"blob":            "blobs.md",
	"backup":          "backup.md",
	"peers":           "nat.md",
	"admin":           "admin.md",
	"upgrade":         "upgrade.md",
	"device":          "upgrade.md",
}

// linkRunbooks appends "Runbook: docs/runbooks/PAGE" to the help of every
// command whose task has a runbook.
func linkRunbooks(root *cobra.Command) {
	var walk func(c *cobra.Command, page string)
	walk = func(c *cobra.Command, page string) {
		if page != "" {
			long := c.Long
			if long == "" {
				long = c.Short
			}
			if !strings.Contains(long, RunbookDir) {
				c.Long = strings.TrimRight(long, "\n") + "\n\nRunbook: " + RunbookDir + page
			}
		}
		for _, sub := range c.Commands() {
			p := page
			path := strings.TrimPrefix(sub.CommandPath(), root.Name()+" ")
			if named, ok := runbookOf[path]; ok {
				p = named
			}
			walk(sub, p)
		}
	}
	walk(root, "")
}
