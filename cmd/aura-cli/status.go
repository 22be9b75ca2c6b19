package main

import (
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"aura/node"
)

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
			return a.out(cmd, s, func(w io.Writer) { printStatus(w, s) })
		},
	}
}

func printStatus(w io.Writer, s node.Status) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	p := func(k, format string, args ...any) { fmt.Fprintf(tw, "%s\t%s\n", k, fmt.Sprintf(format, args...)) }
	p("device", "%s (%s)", s.Device, esc(s.Name))
	if s.Account == "" {
		p("account", "none (run `aura-cli account create` or `aura-cli account join CODE`)")
	} else {
		role := "removed: this device is no longer in the account"
		for _, d := range s.Devices {
			if d == s.Device {
				role = "member"
			}
		}
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
		p("fence", "up for %s until %s (%d writes buffered)", s.Fence.Proposal[:8], s.Fence.Deadline.Local().Format(timeFmt), s.Fence.Buffered)
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
	p("protocols", "%s (upgrade policy %s)", strings.Join(s.Protocols, ", "), s.UpgradePolicy)
	if s.RequiredProtocol != "" {
		p("sessions run", "%s", s.RequiredProtocol)
	}
	for _, d := range s.Incompatible {
		p("incompatible", "%s (%s): %s", shortID(d.Device), esc(d.Name), esc(d.Reason))
	}
	if a := s.LastSessionAbort; a != nil {
		p("session aborted", "%s %s at %s: %s (%s); %d aborts since start", a.Session, shortID(a.Proposal), a.At.Local().Format(timeFmt), esc(a.Reason), esc(a.Retry), s.SessionAborts)
	}
	if d := s.Disk; d != nil {
		if d.Full {
			p("disk", "FULL: %d MB free, below %d MB: writes are refused until space is freed", d.FreeBytes>>20, d.MinFree>>20)
		} else {
			p("disk", "%d MB free (writes refused below %d MB)", d.FreeBytes>>20, d.MinFree>>20)
		}
	}
	tw.Flush()
}

func peersCmd(a *app) *cobra.Command {
	c := &cobra.Command{
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
				fmt.Fprintln(tw, "PEER\tNAME\tVIA\tPATHS\tSESSIONS")
				for _, p := range ps {
					name := esc(p.Name)
					if !p.Device {
						name = "(not a device of the account)"
					} else if name == "" {
						name = "-"
					}
					paths := make([]string, 0, len(p.Paths))
					for _, pa := range p.Paths {
						paths = append(paths, pa.Via+" "+pa.Addr)
					}
					if len(paths) == 0 {
						paths = p.Addrs
					}
					sessions := "ok"
					if !p.Device {
						sessions = "-"
					} else if p.Incompatible != "" {
						sessions = "incompatible: " + esc(p.Incompatible)
					}
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", p.Peer, name, p.Via, strings.Join(paths, ", "), sessions)
				}
				tw.Flush()
			})
		},
	}
	connect := &cobra.Command{
		Use:   "connect MULTIADDR",
		Short: "Dial a device of the account now and remember its address",
		Long: "Dials a device of the account at MULTIADDR (ending in /p2p/<peer id>) now, and\n" +
			"remembers the address so the node redials it after restarts, like `ipfs swarm\n" +
			"connect`: two nodes whose ports changed come back together without a config edit.",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, cancel := a.ctx(cmd)
			defer cancel()
			p, err := a.client().ConnectPeer(ctx, args[0])
			if err != nil {
				return err
			}
			return a.out(cmd, p, func(w io.Writer) {
				fmt.Fprintf(w, "connected to %s (%s) via %s; address remembered\n", p.Peer, esc(p.Name), p.Via)
			})
		},
	}
	c.AddCommand(connect)
	return c
}
