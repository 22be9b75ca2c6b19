// Command aura-cli drives a running aura-node over its control socket
// ($AURA_HOME/aura.sock). Every command takes --home and --json; failures
// exit non-zero with the reason on stderr.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unicode"

	"github.com/spf13/cobra"

	"aura/node"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	c := root()
	err := c.ExecuteContext(ctx)
	stop()
	if err != nil {
		var code exitCode
		if errors.As(err, &code) {
			os.Exit(int(code)) // the command already said why
		}
		jsonError(c, err)
		fmt.Fprintln(os.Stderr, "aura-cli:", esc(strings.ReplaceAll(err.Error(), "\n", "; ")))
		os.Exit(1)
	}
}

// jsonError prints, with --json, a failure the node gave a code (a session
// refused or aborted: node.ErrorCode) as one JSON document on stdout, for
// scripts; the reason goes to stderr all the same.
func jsonError(c *cobra.Command, err error) {
	var ae *node.APIError
	if on, _ := c.PersistentFlags().GetBool("json"); !on || !errors.As(err, &ae) || ae.Code == "" {
		return
	}
	b, _ := json.Marshal(map[string]string{"error": ae.Message, "code": ae.Code})
	fmt.Println(string(b))
}

type app struct {
	home    string
	json    bool
	timeout time.Duration
}

func (a *app) homeDir() string {
	if a.home != "" {
		return a.home
	}
	return node.DefaultHome()
}

func (a *app) client() *node.Client { return node.NewClient(a.homeDir()) }

func (a *app) ctx(cmd *cobra.Command) (context.Context, context.CancelFunc) {
	return context.WithTimeout(cmd.Context(), a.timeout)
}

// out prints v as JSON with --json, else calls human.
func (a *app) out(cmd *cobra.Command, v any, human func(w io.Writer)) error {
	w := cmd.OutOrStdout()
	if a.json {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(v)
	}
	human(w)
	return nil
}

// offline marks commands that need no running node.
const offline = "offline"

func root() *cobra.Command {
	a := &app{}
	c := &cobra.Command{
		Use:           "aura-cli",
		Short:         "Drive a running aura-node",
		SilenceUsage:  true,
		SilenceErrors: true,
		Version:       node.Version,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			for c := cmd; c != nil; c = c.Parent() {
				if c.Annotations[offline] != "" || c.Name() == "help" || c.Name() == "completion" {
					return nil
				}
			}
			if a.timeout <= 0 {
				return fmt.Errorf("--timeout %s: want a positive duration", a.timeout)
			}
			h := a.homeDir()
			if _, err := os.Stat(filepath.Join(h, node.ConfigFile)); errors.Is(err, os.ErrNotExist) {
				return fmt.Errorf("%s is not an aura home (no %s): run `aura-node init --home %s`, then `aura-node run --home %s`", h, node.ConfigFile, h, h)
			}
			return nil
		},
	}
	c.SetVersionTemplate("aura-cli\n" + node.Build().String())
	c.PersistentFlags().StringVar(&a.home, "home", "", "node directory (default $AURA_HOME, else ~/.aura)")
	c.PersistentFlags().BoolVar(&a.json, "json", false, "print one JSON document on stdout")
	c.PersistentFlags().DurationVar(&a.timeout, "timeout", 2*time.Minute, "give up after this long")
	c.AddCommand(statusCmd(a), peersCmd(a), factCmd(a), accountCmd(a), thresholdCmd(a), snapshotCmd(a), restoreCmd(a), blobCmd(a), cacheCmd(a), deviceCmd(a), versionCmd(a), simCmd(), backupCmd(a), upgradeCmd(a))
	c.AddCommand(adminCmd(a))
	linkRunbooks(c)
	return c
}

func versionCmd(a *app) *cobra.Command {
	return &cobra.Command{
		Use: "version", Short: "Version, commit, Go version and the protocol versions this binary supports", Args: cobra.NoArgs,
		Annotations: map[string]string{offline: "yes"},
		RunE: func(cmd *cobra.Command, _ []string) error {
			b := node.Build()
			return a.out(cmd, b, func(w io.Writer) { fmt.Fprint(w, "aura-cli\n"+b.String()) })
		},
	}
}

func shortID(s string) string {
	if len(s) > 8 {
		return s[len(s)-8:]
	}
	return s
}

// esc makes s safe for a terminal: printable text stays as it is; a string
// with control or invalid bytes is shown quoted with Go escapes (%q), so
// keys and values never drive the terminal.
func esc(s string) string {
	for _, r := range s {
		if r == unicode.ReplacementChar || (!unicode.IsPrint(r) && r != ' ') {
			return strconv.Quote(s)
		}
	}
	return s
}

// timeFmt is how times are shown: local time with its zone.
const timeFmt = "2006-01-02 15:04:05 MST"

// thresholdError is the one message for an M outside its range.
func thresholdError(m int64, lo, hi int) error {
	if hi > 0 {
		return fmt.Errorf("--threshold %d is out of range: M must be from %d to %d", m, lo, hi)
	}
	return fmt.Errorf("--threshold %d is out of range: M must be at least %d", m, lo)
}

// positiveDuration parses an optional duration flag ("" is 0: the
// default) and refuses zero or negative values.
func positiveDuration(flag, s string) (time.Duration, error) {
	if s == "" {
		return 0, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("%s %s: want a positive duration such as 30m or 2h", flag, s)
	}
	return d, nil
}
