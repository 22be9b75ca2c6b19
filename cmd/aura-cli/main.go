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
	"sort"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/mattn/go-isatty"
	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"

	"aura/node"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := root().ExecuteContext(ctx)
	stop()
	if err != nil {
		var code exitCode
		if errors.As(err, &code) {
			os.Exit(int(code)) // the command already said why
		}
		fmt.Fprintln(os.Stderr, "aura-cli:", err)
		os.Exit(1)
	}
}

type app struct {
	home    string
	json    bool
	timeout time.Duration
}

func (a *app) client() *node.Client {
	h := a.home
	if h == "" {
		h = node.DefaultHome()
	}
	return node.NewClient(h)
}

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

func root() *cobra.Command {
	a := &app{}
	c := &cobra.Command{
		Use:           "aura-cli",
		Short:         "Drive a running aura-node",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	c.PersistentFlags().StringVar(&a.home, "home", "", "node directory (default $AURA_HOME, else ~/.aura)")
	c.PersistentFlags().BoolVar(&a.json, "json", false, "print one JSON document on stdout")
	c.PersistentFlags().DurationVar(&a.timeout, "timeout", 2*time.Minute, "give up after this long")
	c.AddCommand(statusCmd(a), peersCmd(a), factCmd(a), accountCmd(a), thresholdCmd(a), snapshotCmd(a), restoreCmd(a), simCmd())
	return c
}

func statusCmd(a *app) *cobra.Command {
	return &cobra.Command{
		Use: "status", Short: "Device, account, peers, journal, epochs, snapshots, fence, GC", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, cancel := a.ctx(cmd)
			defer cancel()
			s, err := a.client().Status(ctx)
			if err != nil {
				return err
			}
			return a.out(cmd, s, func(w io.Writer) {
				tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
				p := func(k, format string, args ...any) { fmt.Fprintf(tw, "%s\t%s\n", k, fmt.Sprintf(format, args...)) }
				p("device", "%s (%s)", s.Device, s.Name)
				if s.Account == "" {
					p("account", "none (run `aura-cli account create` or `aura-cli account join CODE`)")
				} else {
					role := "member"
					if s.Admin {
						role = "admin"
					}
					p("account", "%s (%s, %d devices)", s.Account, role, len(s.Devices))
				}
				p("peers", "%d connected devices", s.Peers)
				p("journal", "%d facts, %d bytes (%d pending, %d pruned)", s.Journal.Facts, s.Journal.Bytes, s.Journal.Pending, s.Journal.PrunedFacts)
				p("epochs", "identity %d, snapshot %d", s.IdentityEpoch, s.SnapshotEpoch)
				p("state digest", "%s", s.StateDigest)
				var vv []string
				for k, v := range s.VersionVector {
					vv = append(vv, fmt.Sprintf("%s:%d", shortID(k), v))
				}
				sort.Strings(vv)
				p("version vector", "%s", strings.Join(vv, " "))
				if s.NewestSnapshot != nil {
					p("newest snapshot", "%s epoch %d, %d facts, blob %s", s.NewestSnapshot.ID[:8], s.NewestSnapshot.Epoch, s.NewestSnapshot.Facts, s.NewestSnapshot.BlobCID)
				} else {
					p("newest snapshot", "none")
				}
				if s.Fence != nil {
					p("fence", "up for %s until %s (%d writes buffered)", s.Fence.Proposal[:8], s.Fence.Deadline.Format(time.TimeOnly), s.Fence.Buffered)
				} else {
					p("fence", "down")
				}
				if g := s.LastGC; g != nil {
					p("last GC", "pruned %d facts (%d bytes): %d→%d facts, %d→%d bytes", g.PrunedFacts, g.PrunedBytes, g.FactsBefore, g.FactsAfter, g.BytesBefore, g.BytesAfter)
				} else {
					p("last GC", "none")
				}
				if g := s.GroupKey; g != nil {
					share := "no share here"
					if g.HasShare {
						share = fmt.Sprintf("share #%d here", g.ShareIndex)
					}
					p("threshold key", "epoch %d, %d of %d (%s)", g.KeyEpoch, g.Threshold, len(g.Participants), share)
				} else {
					p("threshold key", "none (run `aura-cli threshold keygen --threshold M`)")
				}
				p("evidence", "%d equivocations", s.Evidence)
				tw.Flush()
			})
		},
	}
}

func shortID(s string) string {
	if len(s) > 8 {
		return s[len(s)-8:]
	}
	return s
}

func peersCmd(a *app) *cobra.Command {
	return &cobra.Command{
		Use: "peers", Short: "Connected peers and how (direct, relayed)", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, cancel := a.ctx(cmd)
			defer cancel()
			ps, err := a.client().Peers(ctx)
			if err != nil {
				return err
			}
			if ps == nil {
				ps = []node.PeerInfo{}
			}
			return a.out(cmd, ps, func(w io.Writer) {
				if len(ps) == 0 {
					fmt.Fprintln(w, "no peers connected")
					return
				}
				tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
				fmt.Fprintln(tw, "PEER\tDEVICE\tVIA\tADDRESS")
				for _, p := range ps {
					fmt.Fprintf(tw, "%s\t%t\t%s\t%s\n", p.Peer, p.Device, p.Via, strings.Join(p.Addrs, ","))
				}
				tw.Flush()
			})
		},
	}
}

func factCmd(a *app) *cobra.Command {
	c := &cobra.Command{Use: "fact", Short: "Application facts"}
	put := &cobra.Command{
		Use: "put KEY VALUE", Short: "Write a key", Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, cancel := a.ctx(cmd)
			defer cancel()
			r, err := a.client().Put(ctx, args[0], args[1])
			if err != nil {
				return err
			}
			return a.out(cmd, r, func(w io.Writer) {
				if r.Buffered {
					fmt.Fprintf(w, "%s buffered behind the writer fence (commits when the snapshot round ends)\n", r.Key)
				} else {
					fmt.Fprintf(w, "%s written as %s\n", r.Key, r.ID)
				}
			})
		},
	}
	get := &cobra.Command{
		Use: "get KEY", Short: "Print a key's value alone", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, cancel := a.ctx(cmd)
			defer cancel()
			v, err := a.client().Get(ctx, args[0])
			if err != nil {
				return err
			}
			return a.out(cmd, map[string]string{"key": args[0], "value": v}, func(w io.Writer) { fmt.Fprintln(w, v) })
		},
	}
	var tail int
	list := &cobra.Command{
		Use: "list", Short: "List journal facts in causal order", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, cancel := a.ctx(cmd)
			defer cancel()
			fs, err := a.client().Facts(ctx, tail)
			if err != nil {
				return err
			}
			if fs == nil {
				fs = []node.FactInfo{}
			}
			return a.out(cmd, fs, func(w io.Writer) {
				tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
				fmt.Fprintln(tw, "LAMPORT\tAUTHOR\tSEQ\tKIND\tDETAIL")
				for _, f := range fs {
					d := ""
					if f.Key != "" {
						d = f.Key + "=" + strconv.Quote(f.Value)
					}
					fmt.Fprintf(tw, "%d\t%s\t%d\t%s\t%s\n", f.Lamport, shortID(f.Author), f.Seq, f.Kind, d)
				}
				tw.Flush()
			})
		},
	}
	list.Flags().IntVar(&tail, "tail", 0, "only the last N facts")
	c.AddCommand(put, get, list)
	return c
}

func accountCmd(a *app) *cobra.Command {
	c := &cobra.Command{Use: "account", Short: "Create, invite, join"}
	var m uint64
	var name string
	create := &cobra.Command{
		Use: "create", Short: "Found an account with this device as admin", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, cancel := a.ctx(cmd)
			defer cancel()
			acct, err := a.client().CreateAccount(ctx, name, m)
			if err != nil {
				return err
			}
			return a.out(cmd, map[string]string{"account": acct}, func(w io.Writer) {
				fmt.Fprintf(w, "created account %s\n", acct)
			})
		},
	}
	create.Flags().Uint64Var(&m, "threshold", 0, "M of the M-of-N snapshot key (default 1)")
	create.Flags().StringVar(&name, "name", "", "account name")
	var ttl time.Duration
	invite := &cobra.Command{
		Use: "invite", Short: "Print a one-time invite code (last line)", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, cancel := a.ctx(cmd)
			defer cancel()
			code, exp, err := a.client().Invite(ctx, ttl)
			if err != nil {
				return err
			}
			return a.out(cmd, map[string]any{"code": code, "expires": exp}, func(w io.Writer) {
				fmt.Fprintf(w, "one-time invite, valid until %s; on the new device run `aura-cli account join CODE` with:\n%s\n", exp.Format(time.DateTime), code)
			})
		},
	}
	invite.Flags().DurationVar(&ttl, "expires", 0, "how long the code stays valid (default: the config's invite.ttl, 15m)")
	join := &cobra.Command{
		Use: "join CODE", Short: "Join the account of an invite code", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, cancel := a.ctx(cmd)
			defer cancel()
			acct, err := a.client().Join(ctx, args[0])
			if err != nil {
				return err
			}
			return a.out(cmd, map[string]string{"account": acct}, func(w io.Writer) {
				fmt.Fprintf(w, "joined account %s\n", acct)
			})
		},
	}
	c.AddCommand(create, invite, join)
	return c
}

func thresholdCmd(a *app) *cobra.Command {
	c := &cobra.Command{Use: "threshold", Short: "The account's M-of-N threshold key"}
	var m int
	keygen := &cobra.Command{
		Use: "keygen", Short: "Run a distributed key generation among the current devices", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if m == 0 {
				return fmt.Errorf("--threshold M is required")
			}
			ctx, cancel := a.ctx(cmd)
			defer cancel()
			g, err := a.client().Keygen(ctx, m)
			if err != nil {
				return err
			}
			return a.out(cmd, g, func(w io.Writer) {
				fmt.Fprintf(w, "group key epoch %d: %d of %d devices; this device holds share #%d\n", g.KeyEpoch, g.Threshold, len(g.Participants), g.ShareIndex)
			})
		},
	}
	keygen.Flags().IntVar(&m, "threshold", 0, "M: signatures needed (2 ≤ M ≤ devices)")
	status := &cobra.Command{
		Use: "status", Short: "Show the group key", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, cancel := a.ctx(cmd)
			defer cancel()
			g, err := a.client().Threshold(ctx)
			if err != nil {
				return err
			}
			return a.out(cmd, g, func(w io.Writer) {
				fmt.Fprintf(w, "key epoch %d: %d of %d\n", g.KeyEpoch, g.Threshold, len(g.Participants))
				for i, p := range g.Participants {
					fmt.Fprintf(w, "  #%d %s\n", i+1, p)
				}
				if g.HasShare {
					fmt.Fprintf(w, "this device holds share #%d\n", g.ShareIndex)
				} else {
					fmt.Fprintln(w, "this device holds no share")
				}
			})
		},
	}
	c.AddCommand(keygen, status)
	return c
}

func snapshotCmd(a *app) *cobra.Command {
	c := &cobra.Command{Use: "snapshot", Short: "Threshold-signed snapshots"}
	propose := &cobra.Command{
		Use: "propose", Short: "Start a snapshot round on this device", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, cancel := a.ctx(cmd)
			defer cancel()
			s, err := a.client().Propose(ctx)
			if err != nil {
				return err
			}
			return a.out(cmd, s, func(w io.Writer) {
				fmt.Fprintf(w, "proposed snapshot %s of %d facts at epoch %d (digest %s); waiting for votes\n", s.ID, s.Facts, s.Epoch, s.StateDigest)
			})
		},
	}
	list := &cobra.Command{
		Use: "list", Short: "List snapshot rounds", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, cancel := a.ctx(cmd)
			defer cancel()
			ss, err := a.client().Snapshots(ctx)
			if err != nil {
				return err
			}
			return a.out(cmd, ss, func(w io.Writer) {
				if len(ss) == 0 {
					fmt.Fprintln(w, "no snapshots")
					return
				}
				tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
				fmt.Fprintln(tw, "ID\tSTATUS\tEPOCH\tFACTS\tVOTES\tBLOB")
				for _, s := range ss {
					fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%s\n", s.ID, s.Status, s.Epoch, s.Facts, s.Votes, s.BlobCID)
				}
				tw.Flush()
			})
		},
	}
	show := &cobra.Command{
		Use: "show ID", Short: "Show one snapshot", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, cancel := a.ctx(cmd)
			defer cancel()
			s, err := a.client().Snapshot(ctx, args[0])
			if err != nil {
				return err
			}
			return a.out(cmd, s, func(w io.Writer) {
				b, _ := json.MarshalIndent(s, "", "  ")
				fmt.Fprintln(w, string(b))
			})
		},
	}
	c.AddCommand(propose, list, show)
	return c
}

func restoreCmd(a *app) *cobra.Command {
	return &cobra.Command{
		Use: "restore", Short: "Rebuild this node from the newest snapshot held by any peer", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, cancel := a.ctx(cmd)
			defer cancel()
			var bar *progressbar.ProgressBar
			tty := !a.json && isatty.IsTerminal(os.Stderr.Fd())
			progress := func(done, total int64) {
				if !tty || total <= 0 {
					return
				}
				if bar == nil {
					bar = progressbar.DefaultBytes(total, "fetching snapshot")
				}
				_ = bar.Set64(done)
			}
			r, err := a.client().Restore(ctx, progress)
			if bar != nil {
				_ = bar.Finish()
			}
			if err != nil {
				return err
			}
			return a.out(cmd, r, func(w io.Writer) {
				peers := "peers"
				if r.Peers == 1 {
					peers = "peer"
				}
				fmt.Fprintf(w, "restored from snapshot %s (epoch %d, %d facts, %d bytes from %d %s); journal now holds %d facts\n",
					r.Snapshot.ID, r.Snapshot.Epoch, r.Snapshot.Facts, r.Bytes, r.Peers, peers, r.Facts)
			})
		},
	}
}
