package main

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"
)

// devicesCmd is `aura-cli account devices`.
func devicesCmd(a *app) *cobra.Command {
	return &cobra.Command{
		Use: "devices", Short: "List the account's devices: capabilities, epochs, last seen, who holds a share", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, cancel := a.ctx(cmd)
			defer cancel()
			ds, err := a.client().Devices(ctx)
			if err != nil {
				return err
			}
			return a.out(cmd, ds, func(w io.Writer) {
				tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "DEVICE\tNAME\tCAPABILITIES\tADDED\tLAST SEEN\tSHARE")
				for _, d := range ds {
					id := d.ID
					if d.Self {
						id += " (this)"
					}
					added := fmt.Sprintf("epoch %d", d.AddedEpoch)
					if d.RemovedEpoch != 0 {
						added += fmt.Sprintf(", removed at %d", d.RemovedEpoch)
					}
					seen := "never"
					switch {
					case d.Self:
						seen = "now"
					case d.Connected:
						seen = "connected"
					case d.LastSeen != nil:
						seen = d.LastSeen.Local().Format(timeFmt)
					}
					share := "-"
					if d.HoldsShare {
						share = fmt.Sprintf("#%d", d.ShareIndex)
					}
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", id, esc(d.Name), strings.Join(d.Capabilities, ","), added, seen, share)
				}
				tw.Flush()
			})
		},
	}
}

// removeCmd is `aura-cli account remove DEVICE`.
func removeCmd(a *app) *cobra.Command {
	var m int64
	c := &cobra.Command{
		Use:   "remove DEVICE",
		Short: "Remove a device (admin only): its later facts are refused, it is cut off, the key is reshared",
		Long: "Removes DEVICE (its id, a unique part of it, or its name; see `aura-cli account devices`)\n" +
			"from the account. From the new identity epoch on every device refuses the facts it\n" +
			"signs and drops its connections; its earlier facts stay valid. The threshold key is\n" +
			"then reshared among the remaining devices as soon as M share holders are online,\n" +
			"with --threshold M (default: the key's current M).",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if m < 0 || m == 1 {
				return thresholdError(m, 2, 0)
			}
			ctx, cancel := a.ctx(cmd)
			defer cancel()
			res, err := a.client().RemoveDevice(ctx, args[0], int(m))
			if err != nil {
				return err
			}
			return a.out(cmd, res, func(w io.Writer) {
				name := ""
				if res.Name != "" {
					name = " (" + esc(res.Name) + ")"
				}
				fmt.Fprintf(w, "removed device %s%s at identity epoch %d\nresharing: %s\n", res.Device, name, res.Epoch, res.Reshare)
			})
		},
	}
	c.Flags().Int64Var(&m, "threshold", 0, "M of the reshared key (default: keep the current M)")
	return c
}
