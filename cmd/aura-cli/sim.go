package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"aura/sim"
)

// exitCode carries a command's own exit status (sim: 1 = an invariant
// failed or bad usage) up to main, which exits with it silently.
type exitCode int

func (e exitCode) Error() string { return fmt.Sprintf("exit status %d", int(e)) }

// simCmd is `aura-cli sim`: the deterministic simulator. It parses its own
// flags (sim.Main) so that `aura-cli sim --help` lists the fault syntax.
func simCmd() *cobra.Command {
	return &cobra.Command{
		Use:                "sim [--nodes N] [--seed S] [--seeds K] [--faults SPEC] [--events E] [--duration D] [--trace FILE]",
		Short:              "Run the deterministic simulator (the real protocol cores under injected faults)",
		DisableFlagParsing: true,
		Annotations:        map[string]string{offline: "yes"},
		RunE: func(c *cobra.Command, args []string) error {
			if code := sim.Main(args, c.OutOrStdout(), c.ErrOrStderr()); code != 0 {
				return exitCode(code)
			}
			return nil
		},
	}
}
