package main

import (
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"aura/node"
)

// upgradeCmd is `aura-cli upgrade publish|approve|cancel|status` (DESIGN
// §8): OTA upgrades. The rules live in the maintenance package; the node
// fetches, verifies and declares readiness, and activates hard forks.
func upgradeCmd(a *app) *cobra.Command {
	c := &cobra.Command{Use: "upgrade", Short: "OTA upgrades: publish, approve, cancel, status"}
	c.AddCommand(upgradePublishCmd(a), upgradeApproveCmd(a), upgradeCancelCmd(a), upgradeStatusCmd(a))
	return c
}

func upgradePublishCmd(a *app) *cobra.Command {
	var req node.PublishRequest
	var artifacts, platforms []string
	c := &cobra.Command{
		Use:   "publish --package ID --version SEMVER --artifact FILE [--platform OS/ARCH]... --kind soft|hard [--fence EPOCH] [--min-ready N] [--expires DURATION]",
		Short: "Store the artifacts as blobs and publish the upgrade's metadata (capability upgrade_publish)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if len(artifacts) == 0 {
				return fmt.Errorf("upgrade publish: give at least one --artifact FILE")
			}
			if len(platforms) == 0 {
				platforms = []string{runtime.GOOS + "/" + runtime.GOARCH}
			}
			if len(platforms) != len(artifacts) {
				return fmt.Errorf("upgrade publish: %d --artifact for %d --platform: give one platform per artifact, in the same order", len(artifacts), len(platforms))
			}
			if req.Kind != "soft" && req.Kind != "hard" {
				return fmt.Errorf("upgrade publish: --kind must be soft or hard")
			}
			if req.Expires != "" {
				if _, err := positiveDuration("--expires", req.Expires); err != nil {
					return err
				}
			}
			ctx, cancel := a.ctx(cmd)
			defer cancel()
			cl := a.client()
			for i, path := range artifacts {
				f, err := os.Open(path)
				if err != nil {
					return fmt.Errorf("upgrade publish: %w", err)
				}
				art, err := cl.StoreArtifact(ctx, f, platforms[i])
				f.Close()
				if err != nil {
					return fmt.Errorf("upgrade publish: store %s: %w", path, err)
				}
				req.Artifacts = append(req.Artifacts, art)
			}
			u, err := cl.PublishUpgrade(ctx, req)
			if err != nil {
				return err
			}
			return a.out(cmd, u, func(w io.Writer) {
				fmt.Fprintf(w, "published %s %s (%s", u.Package, u.Version, u.Kind)
				if u.Kind == "hard" {
					fmt.Fprintf(w, ", fence %d, min-ready %d", u.Fence, u.MinReady)
				}
				fmt.Fprintf(w, ")\n%s\n", u.ID)
			})
		},
	}
	f := c.Flags()
	f.StringVar(&req.Package, "package", "", "package name ([a-z0-9._-])")
	f.StringVar(&req.Version, "version", "", "semantic version of the package")
	f.StringArrayVar(&artifacts, "artifact", nil, "artifact file (repeat with --platform)")
	f.StringArrayVar(&platforms, "platform", nil, "OS/ARCH of the artifact at the same position (default: this machine's)")
	f.StringVar(&req.Kind, "kind", "", "soft (no cutover) or hard (activation at the fence)")
	f.Uint64Var(&req.Fence, "fence", 0, "hard: identity epoch the fork activates at (default: the current one)")
	f.Uint64Var(&req.MinReady, "min-ready", 0, "hard: ready devices needed (default: every device)")
	f.StringVar(&req.Expires, "expires", "", "devices stop acting on it after this long (default 720h)")
	f.StringVar(&req.Protocol, "protocol", "", "account protocol version the upgrade brings (sessions require it once activated)")
	_ = c.MarkFlagRequired("package")
	_ = c.MarkFlagRequired("version")
	_ = c.MarkFlagRequired("kind")
	return c
}

func upgradeApproveCmd(a *app) *cobra.Command {
	return &cobra.Command{
		Use: "approve ID", Short: "Consent to an upgrade on this device (manual policy): readiness follows its verified artifact", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, cancel := a.ctx(cmd)
			defer cancel()
			u, err := a.client().ApproveUpgrade(ctx, args[0])
			if err != nil {
				return err
			}
			return a.out(cmd, u, func(w io.Writer) {
				fmt.Fprintf(w, "approved %s %s on this device (%s)\n", u.Package, u.Version, u.Local.State)
			})
		},
	}
}

func upgradeCancelCmd(a *app) *cobra.Command {
	var reason string
	c := &cobra.Command{
		Use: "cancel ID", Short: "Cancel an upgrade before its fence", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, cancel := a.ctx(cmd)
			defer cancel()
			u, err := a.client().CancelUpgrade(ctx, args[0], reason)
			if err != nil {
				return err
			}
			return a.out(cmd, u, func(w io.Writer) { fmt.Fprintf(w, "cancelled %s %s\n", u.Package, u.Version) })
		},
	}
	c.Flags().StringVar(&reason, "reason", "", "why (recorded in the fact)")
	return c
}

func upgradeStatusCmd(a *app) *cobra.Command {
	return &cobra.Command{
		Use: "status", Short: "Upgrades, their phase and fence, and per device policy, protocols and readiness", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, cancel := a.ctx(cmd)
			defer cancel()
			s, err := a.client().Upgrades(ctx)
			if err != nil {
				return err
			}
			return a.out(cmd, s, func(w io.Writer) {
				fmt.Fprintf(w, "device %s (%s, policy %s, protocols %s), identity epoch %d\n", shortID(s.Device), s.Platform, s.Policy, strings.Join(s.Supported, ","), s.IdentityEpoch)
				if len(s.Upgrades) == 0 {
					fmt.Fprintln(w, "no upgrades")
					return
				}
				for _, u := range s.Upgrades {
					fmt.Fprintf(w, "\n%s %s  %s  %s", u.Package, u.Version, u.Kind, u.Phase)
					if u.Kind == "hard" {
						fmt.Fprintf(w, "  fence %d  ready %d/%d", u.Fence, u.Ready, u.MinReady)
					}
					fmt.Fprintf(w, "\n  id %s\n  here: %s", u.ID, u.Local.State)
					if u.Local.Error != "" {
						fmt.Fprintf(w, " (%s: %s)", u.Local.ErrorKind, esc(u.Local.Error))
					}
					fmt.Fprintln(w)
					if u.Waiting != "" {
						fmt.Fprintf(w, "  waiting: %s\n", esc(u.Waiting))
					}
					tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
					fmt.Fprintln(tw, "  DEVICE\tNAME\tPOLICY\tPROTOCOLS\tREADY")
					for _, d := range u.Devices {
						ready := "no"
						if d.Ready {
							ready = "yes"
						} else if d.Self && d.Verified {
							ready = "verified"
						}
						fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\n", shortID(d.Device), esc(d.Name), d.Policy, strings.Join(d.Supported, ","), ready)
					}
					tw.Flush()
				}
			})
		},
	}
}
