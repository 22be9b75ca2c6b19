package main

import (
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"aura/node"
)

func deviceCmd(a *app) *cobra.Command {
	c := &cobra.Command{
		Use: "device", Short: "What this device publishes about itself (protocols, upgrade policy)", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, cancel := a.ctx(cmd)
			defer cancel()
			d, err := a.client().Device(ctx)
			if err != nil {
				return err
			}
			return a.out(cmd, d, func(w io.Writer) { printDevice(w, d) })
		},
	}
	policy := &cobra.Command{
		Use:   "policy manual|auto",
		Short: "Set this device's upgrade policy and publish it in its device metadata",
		Long: "manual: this device declares readiness for an upgrade only after `aura-cli upgrade approve`;\n" +
			"auto: as soon as it fetched and checked the artifact. The policy is published to the\n" +
			"account (DeviceMetadata) and kept across restarts; editing upgrade.policy in the config\n" +
			"file overrides it again at the next start.",
		Args:      cobra.ExactArgs(1),
		ValidArgs: []string{"manual", "auto"},
		RunE: func(cmd *cobra.Command, args []string) error {
			p := strings.ToLower(args[0])
			if p != "manual" && p != "auto" {
				return fmt.Errorf("%q is not an upgrade policy: use manual or auto", args[0])
			}
			ctx, cancel := a.ctx(cmd)
			defer cancel()
			d, err := a.client().SetUpgradePolicy(ctx, p)
			if err != nil {
				return err
			}
			return a.out(cmd, d, func(w io.Writer) { printDevice(w, d) })
		},
	}
	c.AddCommand(policy)
	return c
}

func printDevice(w io.Writer, d node.DeviceInfo) {
	state := "published"
	if !d.Published {
		state = "not yet in the account's state"
	}
	fmt.Fprintf(w, "upgrade policy  %s\nprotocols       %s\nmetadata        %s\n", d.Policy, strings.Join(d.Protocols, ", "), state)
}
