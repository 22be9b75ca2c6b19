package main

import (
	"fmt"
	"io"

	"github.com/spf13/cobra"
)

func accountCmd(a *app) *cobra.Command {
	c := &cobra.Command{Use: "account", Short: "Create, invite, join"}
	var m int64
	var name string
	create := &cobra.Command{
		Use: "create", Short: "Found an account with this device as admin", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if m < 1 {
				return thresholdError(m, 1, 0)
			}
			ctx, cancel := a.ctx(cmd)
			defer cancel()
			acct, err := a.client().CreateAccount(ctx, name, uint64(m))
			if err != nil {
				return err
			}
			return a.out(cmd, map[string]string{"account": acct}, func(w io.Writer) {
				fmt.Fprintf(w, "created account %s\n", acct)
			})
		},
	}
	create.Flags().Int64Var(&m, "threshold", 1, "M of the M-of-N snapshot key (at least 1)")
	create.Flags().StringVar(&name, "name", "", "account name")
	var ttl string
	invite := &cobra.Command{
		Use: "invite", Short: "Print a one-time invite code (last line)", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			d, err := positiveDuration("--expires", ttl)
			if err != nil {
				return err
			}
			ctx, cancel := a.ctx(cmd)
			defer cancel()
			code, exp, err := a.client().Invite(ctx, d)
			if err != nil {
				return err
			}
			return a.out(cmd, map[string]any{"code": code, "expires": exp}, func(w io.Writer) {
				fmt.Fprintf(w, "one-time invite, valid until %s; on the new device run `aura-cli account join CODE` with:\n%s\n", exp.Local().Format(timeFmt), code)
			})
		},
	}
	invite.Flags().StringVar(&ttl, "expires", "", "how long the code stays valid, e.g. 30m (default: the config's invite.ttl, 15m)")
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
	c.AddCommand(create, invite, join, devicesCmd(a), removeCmd(a))
	return c
}
