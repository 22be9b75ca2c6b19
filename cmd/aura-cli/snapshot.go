package main

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/mattn/go-isatty"
	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"

	"aura/node"
)

func thresholdCmd(a *app) *cobra.Command {
	c := &cobra.Command{Use: "threshold", Short: "The account's M-of-N threshold key"}
	var m int64
	keygen := &cobra.Command{
		Use:   "keygen --threshold M",
		Short: "Run a distributed key generation among the current devices (admin only)",
		Long: "Runs a distributed key generation among all current devices of the account (all\n" +
			"must be online): each gets a share of a new M-of-N group key, and snapshots from\n" +
			"then on need M of them. It re-keys the account, so only the admin may run it.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if !cmd.Flags().Changed("threshold") {
				return errors.New("--threshold M is required")
			}
			if m < 1 {
				return thresholdError(m, 1, 0)
			}
			ctx, cancel := a.ctx(cmd)
			defer cancel()
			g, err := a.client().Keygen(ctx, int(m))
			if err != nil {
				return err
			}
			return a.out(cmd, g, func(w io.Writer) {
				fmt.Fprintf(w, "group key epoch %d: %d of %d devices; this device holds share #%d\n", g.KeyEpoch, g.Threshold, len(g.Participants), g.ShareIndex)
			})
		},
	}
	keygen.Flags().Int64Var(&m, "threshold", 0, "M: signatures needed (2 ≤ M ≤ devices; 1 with a single device)")
	status := &cobra.Command{
		Use: "status", Short: "Show the group key", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, cancel := a.ctx(cmd)
			defer cancel()
			g, err := a.client().Threshold(ctx)
			var ae *node.APIError
			if errors.As(err, &ae) && ae.Status == http.StatusNotFound {
				return a.out(cmd, map[string]any{"has_key": false}, func(w io.Writer) {
					fmt.Fprintln(w, "no threshold key yet: run `aura-cli threshold keygen --threshold M` with all devices online")
				})
			}
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
				printReshareProgress(a, cmd, w)
			})
		},
	}
	c.AddCommand(keygen, status, reshareCmd(a))
	return c
}

func snapshotCmd(a *app) *cobra.Command {
	c := &cobra.Command{Use: "snapshot", Short: "Threshold-signed snapshots"}
	var force bool
	propose := &cobra.Command{
		Use:   "propose",
		Short: "Start a snapshot round on this device",
		Long: "Raises this device's writer fence and proposes a snapshot of its journal; M key\n" +
			"holders must vote. It refuses when fewer than M key holders are online (the round\n" +
			"could only be abandoned); --force starts it anyway.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, cancel := a.ctx(cmd)
			defer cancel()
			s, err := a.client().Propose(ctx, force)
			if err != nil {
				return err
			}
			return a.out(cmd, s, func(w io.Writer) {
				fmt.Fprintf(w, "proposed snapshot %s of %d facts at epoch %d (digest %s); waiting for votes\n", s.ID, s.Facts, s.Epoch, s.StateDigest)
			})
		},
	}
	propose.Flags().BoolVar(&force, "force", false, "start even when fewer than M key holders are online")
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
		Use: "show ID", Short: "Show one snapshot (a prefix of its id is enough)", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, cancel := a.ctx(cmd)
			defer cancel()
			s, err := a.client().Snapshot(ctx, args[0])
			if err != nil {
				return err
			}
			return a.out(cmd, s, func(w io.Writer) { printSnapshot(w, s) })
		},
	}
	c.AddCommand(propose, list, show)
	return c
}

func printSnapshot(w io.Writer, s node.SnapshotInfo) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	p := func(k, format string, args ...any) { fmt.Fprintf(tw, "%s\t%s\n", k, fmt.Sprintf(format, args...)) }
	p("snapshot", "%s", s.ID)
	p("status", "%s", s.Status)
	p("epoch", "%d", s.Epoch)
	p("facts", "%d under the frontier", s.Facts)
	p("state digest", "%s", s.StateDigest)
	if s.Proposer != "" {
		p("proposer", "%s", s.Proposer)
	}
	if s.Status != "completed" {
		p("votes", "%d", s.Votes)
	}
	if s.BlobCID != "" {
		held := "not held here"
		if s.HeldLocally {
			held = "held here"
		}
		p("blob", "%s (%d bytes, %s)", s.BlobCID, s.BlobSize, held)
	}
	if len(s.Participants) > 0 {
		p("signed by", "%s", strings.Join(s.Participants, ", "))
	}
	if len(s.Frontier) > 0 {
		var vv []string
		for k, v := range s.Frontier {
			vv = append(vv, fmt.Sprintf("%s:%d", shortID(k), v))
		}
		sort.Strings(vv)
		p("frontier", "%s", strings.Join(vv, " "))
	}
	tw.Flush()
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
				if r.UpToDate {
					fmt.Fprintf(w, "already up to date: no device offers a snapshot newer than %s (epoch %d); journal holds %d facts\n", r.Snapshot.ID, r.Snapshot.Epoch, r.Facts)
					return
				}
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
