package main

import (
	"fmt"
	"io"

	"github.com/spf13/cobra"
)

// reshareCmd is `aura-cli threshold reshare [--threshold M]`.
func reshareCmd(a *app) *cobra.Command {
	var m int64
	c := &cobra.Command{
		Use:   "reshare [--threshold M]",
		Short: "Move the devices to new shares of the same group key (admin only; M share holders online suffice)",
		Long: "Runs a resharing among the account's current devices: those online get new shares of\n" +
			"the same group key (snapshots signed before still verify), and old shares, such as a\n" +
			"removed device's, become useless. It needs the key's M share holders online; devices\n" +
			"that joined after the key generation get a share too. --threshold sets the new M\n" +
			"(default: the current one).",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if m < 0 || m == 1 {
				return thresholdError(m, 2, 0)
			}
			ctx, cancel := a.ctx(cmd)
			defer cancel()
			g, err := a.client().Reshare(ctx, int(m))
			if err != nil {
				return err
			}
			return a.out(cmd, g, func(w io.Writer) {
				fmt.Fprintf(w, "group key reshared at key epoch %d: %d of %d devices; this device holds share #%d\n", g.KeyEpoch, g.Threshold, len(g.Participants), g.ShareIndex)
			})
		},
	}
	c.Flags().Int64Var(&m, "threshold", 0, "M of the reshared key (2 ≤ M ≤ devices; default: keep the current M)")
	return c
}

// printReshareProgress adds the latest resharing to `threshold status`.
func printReshareProgress(a *app, cmd *cobra.Command, w io.Writer) {
	ctx, cancel := a.ctx(cmd)
	defer cancel()
	s, err := a.client().ReshareStatus(ctx)
	if err != nil {
		return // none ran on this device (or the node is gone): nothing to add
	}
	how := "resharing"
	if s.Auto {
		how = "resharing after a removal"
	}
	fmt.Fprintf(w, "%s: %s (%s), since %s\n", how, s.State, esc(s.Detail), s.Started.Local().Format(timeFmt))
}
