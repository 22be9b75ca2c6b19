package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"aura/node"
)

// adminExit is the exit status of each admin replacement failure
// (node.AdminError.Code); others exit 1.
var adminExit = map[string]int{
	node.AdminCodeNotMember:        20,
	node.AdminCodeAlreadyAdmin:     21,
	node.AdminCodeNotEnough:        22,
	node.AdminCodeApprovedOther:    23,
	node.AdminCodeLost:             24,
	node.AdminCodeExpired:          25,
	node.AdminCodeStaleEpoch:       26,
	node.AdminCodeNotAdmin:         27,
	node.AdminCodeNoGroupKey:       28,
	node.AdminCodeAwaitingOperator: 29,
	node.AdminCodeProtocol:         30,
}

// adminFailed prints an admin failure and returns its exit status.
func adminFailed(a *app, cmd *cobra.Command, err error) error {
	var ae *node.AdminError
	if !errors.As(err, &ae) || adminExit[ae.Code] == 0 {
		return err
	}
	if a.json {
		_ = a.out(cmd, map[string]string{"error": ae.Message, "code": ae.Code}, nil)
	}
	fmt.Fprintln(os.Stderr, "aura-cli:", esc(strings.ReplaceAll(ae.Message, "\n", "; ")))
	return exitCode(adminExit[ae.Code])
}

func adminCmd(a *app) *cobra.Command {
	c := &cobra.Command{Use: "admin", Short: "Replace the account's admin (threshold-signed)"}
	var next string
	var approve bool
	replace := &cobra.Command{
		Use:   "replace --new DEVICE [--approve]",
		Short: "Replace the admin by DEVICE with the signatures of M devices",
		Long: "Without --approve: asks every device to sign the replacement of the current admin\n" +
			"by DEVICE (a member) from the next identity epoch, approves it here, and waits until\n" +
			"M devices signed and AdminReplaced is appended, or the request expires (nothing is\n" +
			"appended then). With --approve: this device signs the request for DEVICE (now, or\n" +
			"when it arrives). A device also approves by itself when [admin] auto_approve_after\n" +
			"is set and the admin has been unreachable that long.\n\n" +
			"Exit status: 20 not a member, 21 already admin, 22 not enough approvals, 23 this\n" +
			"device approved another replacement, 24 a competing replacement won, 25 expired,\n" +
			"26 the identity epoch moved (retry), 27 not the admin any more, 28 no threshold key,\n" +
			"29 awaiting the operator, 30 protocol not supported.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if next == "" {
				return errors.New("--new DEVICE is required (a device id from `aura-cli account devices` or `aura-cli status`)")
			}
			ctx, cancel := a.ctx(cmd)
			defer cancel()
			info, err := a.client().ReplaceAdmin(ctx, node.AdminReplaceRequest{New: next, Approve: approve})
			if err != nil {
				return adminFailed(a, cmd, err)
			}
			return a.out(cmd, info, func(w io.Writer) {
				switch info.Status {
				case "replaced":
					fmt.Fprintf(w, "admin replaced: %s is admin from identity epoch %d (was %s; %d of %d approvals)\n",
						info.New, info.ActivationEpoch, info.Previous, info.Votes, info.Threshold)
				case "approved":
					fmt.Fprintf(w, "approved: this device signed the replacement of the admin by %s\n", info.New)
				default:
					fmt.Fprintf(w, "approval recorded for %s: %s\n", info.New, info.Detail)
				}
			})
		},
	}
	replace.Flags().StringVar(&next, "new", "", "the device to become admin")
	replace.Flags().BoolVar(&approve, "approve", false, "sign a replacement request for --new instead of making one")
	status := &cobra.Command{
		Use: "status", Short: "The admin, the overrides kept, and replacement requests", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, cancel := a.ctx(cmd)
			defer cancel()
			s, err := a.client().AdminStatus(ctx)
			if err != nil {
				return adminFailed(a, cmd, err)
			}
			return a.out(cmd, s, func(w io.Writer) {
				fmt.Fprintf(w, "admin: %s\n", s.Admin)
				for _, o := range s.Overrides {
					fmt.Fprintf(w, "override: %s replaced by %s from epoch %d\n", o.Previous, o.New, o.ActivationEpoch)
				}
				for _, r := range s.Rounds {
					fmt.Fprintf(w, "request %s: %s → %s at epoch %d, %d/%d votes, %s", r.ID[:8], shortID(r.Previous), shortID(r.New),
						r.ActivationEpoch, r.Votes, r.Threshold, r.Status)
					if r.Reason != "" && !r.Voted {
						fmt.Fprintf(w, " (this device: %s)", r.Reason)
					}
					fmt.Fprintln(w)
				}
			})
		},
	}
	c.AddCommand(replace, status)
	return c
}
