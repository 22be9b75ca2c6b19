// Command aura-node runs an aura device: `aura-node init` writes a config
// and a device key, `aura-node run` (or plain `aura-node`) serves until
// SIGINT/SIGTERM, `aura-node demo` runs a narrated local mesh.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"aura/node"
)

func main() {
	if err := root().Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "aura-node:", oneLine(err))
		os.Exit(1)
	}
}

// oneLine renders an error on one line (joined errors are separated by
// "; ") with control characters escaped.
func oneLine(err error) string {
	s := strings.ReplaceAll(strings.TrimSpace(err.Error()), "\n", "; ")
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return '?'
		}
		return r
	}, s)
}

// shutdownGrace bounds a clean shutdown after SIGINT/SIGTERM.
const shutdownGrace = 8 * time.Second

func root() *cobra.Command {
	var home string
	homeOf := func() string {
		if home != "" {
			return home
		}
		return node.DefaultHome()
	}
	run := func(cmd *cobra.Command, _ []string) error {
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		defer stop()
		n, err := node.New(ctx, node.Options{Home: homeOf()})
		if err != nil {
			return err
		}
		fmt.Fprintf(cmd.OutOrStdout(), "aura-node %s running as %s (home %s)\n", node.Version, n.Device(), n.Home())
		select {
		case <-ctx.Done():
		case err := <-n.Fatal():
			// Fail-stop: the store cannot go on. Nothing the failing call
			// did was acknowledged; exit so a supervisor restarts the node.
			return fmt.Errorf("%w; exiting (fix the cause, then start the node again)", err)
		}
		fmt.Fprintln(cmd.OutOrStdout(), "shutting down")
		done := make(chan error, 1)
		go func() { done <- n.Close() }()
		select {
		case err := <-done:
			return err
		case err := <-n.Fatal():
			return fmt.Errorf("%w during shutdown", err)
		case <-time.After(shutdownGrace):
			// A call hangs (a stuck peer, a stuck disk): every write that was
			// acknowledged is already durable, so stopping is safe.
			return fmt.Errorf("shutdown did not finish within %s; stopped anyway (acknowledged writes are durable)", shutdownGrace)
		}
	}
	c := &cobra.Command{
		Use:           "aura-node",
		Short:         "Run an aura device (peer-to-peer journal with maintenance)",
		SilenceUsage:  true,
		SilenceErrors: true,
		Args:          cobra.NoArgs,
		RunE:          run,
		Version:       node.Version,
	}
	c.SetVersionTemplate("aura-node\n" + node.Build().String())
	c.PersistentFlags().StringVar(&home, "home", "", "node directory (default $AURA_HOME, else ~/.aura)")

	var listen []string
	var noMDNS, noPortMap, force bool
	var metrics string
	initCmd := &cobra.Command{
		Use:   "init",
		Short: "Write a config and a device key; print the device id",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			notice := func(s string) { fmt.Fprintln(cmd.ErrOrStderr(), "aura-node init:", s) }
			id, err := node.Init(homeOf(), node.InitOptions{Listen: listen, NoMDNS: noMDNS, NoPortMap: noPortMap, Metrics: metrics, Force: force, Notice: notice})
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "initialised %s\n", homeOf())
			fmt.Fprintln(cmd.OutOrStdout(), id)
			return nil
		},
	}
	initCmd.Flags().StringArrayVar(&listen, "listen", nil, "multiaddr to listen on (repeatable)")
	initCmd.Flags().BoolVar(&noMDNS, "no-mdns", false, "turn off mDNS discovery")
	initCmd.Flags().BoolVar(&noPortMap, "no-port-map", false, "turn off NAT port mapping")
	initCmd.Flags().StringVar(&metrics, "metrics", "", "metrics address host:port, or \"off\" (default 127.0.0.1:9401)")
	initCmd.Flags().BoolVar(&force, "force", false, "overwrite an existing config (the key is kept)")

	runCmd := &cobra.Command{Use: "run", Short: "Serve until SIGINT/SIGTERM", Args: cobra.NoArgs, RunE: run}

	var nodes int
	demo := &cobra.Command{
		Use:   "demo",
		Short: "Run a narrated local mesh on loopback",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if nodes < 2 || nodes > 16 {
				return fmt.Errorf("--nodes %d: the demo runs from 2 to 16 nodes", nodes)
			}
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			err := node.RunDemo(ctx, cmd.OutOrStdout(), node.DemoOptions{Nodes: nodes})
			if errors.Is(err, context.Canceled) {
				return errors.New("interrupted")
			}
			return err
		},
	}
	demo.Flags().IntVar(&nodes, "nodes", 3, "number of nodes")
	var repairTimeout time.Duration
	var repairPeers []string
	repair := &cobra.Command{
		Use:   "repair",
		Short: "Move a damaged store aside and rebuild this device from its peers",
		Long: "Moves HOME/data aside (to data.damaged-TIME, never deleted), keeps the device key,\n" +
			"config, threshold share and account, and rebuilds the journal from the account's\n" +
			"other devices: restore from the newest snapshot, then sync. This device's own\n" +
			"writes still readable in the damaged store are replayed; the ones neither the\n" +
			"peers nor the damaged store have are named. The node must be stopped; start it\n" +
			"again with `aura-node run` afterwards.\n\nRunbook: docs/runbooks/repair.md",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if repairTimeout <= 0 {
				return fmt.Errorf("--timeout %s: want a positive duration", repairTimeout)
			}
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			w := cmd.OutOrStdout()
			r, err := node.Repair(ctx, homeOf(), node.RepairOptions{Timeout: repairTimeout, Peers: repairPeers, Log: w})
			if err != nil {
				return err
			}
			how := "by sync"
			if r.Restored {
				how = "from the newest snapshot and sync"
			}
			fmt.Fprintf(w, "rebuilt account %s %s: the journal holds %d facts\n", r.Account, how, r.Facts)
			switch {
			case r.Unreadable:
				fmt.Fprintf(w, "this device's own writes up to seq %d are held by peers; any later ones are lost with the damaged store (kept at %s)\n", r.Recovered, r.MovedTo)
			case len(r.MissingOwn) > 0:
				fmt.Fprintf(w, "this device's own writes with seq %v had not reached any peer and could not be read back: they are lost (the damaged store is kept at %s)\n", r.MissingOwn, r.MovedTo)
			default:
				fmt.Fprintf(w, "every own write of this device found in the damaged store (seq 1..%d) is back (%d the peers lacked were replayed from it)\n", r.OwnSeqs, r.Replayed)
			}
			fmt.Fprintf(w, "start the node: aura-node run --home %s\n", homeOf())
			return nil
		},
	}
	repair.Flags().DurationVar(&repairTimeout, "timeout", 2*time.Minute, "how long to wait for the account's devices")
	repair.Flags().StringArrayVar(&repairPeers, "peer", nil, "multiaddr (with /p2p/) of a device of the account to rebuild from (repeatable)")
	c.AddCommand(initCmd, runCmd, demo, repair)
	return c
}
