package node

import (
	"context"
	"errors"
	"fmt"
)

// demoAdmin is the admin replacement part of RunDemo: node3's operator
// approves in advance, node2 asks the account to replace the admin node1
// by itself, the two partials recover the threshold signature, and every
// device then refuses node1's admin acts and takes node2's.
func demoAdmin(ctx context.Context, say func(string, ...any), nodes []*Node, o DemoOptions) error {
	if len(nodes) < 3 {
		return nil
	}
	old, next, approver := nodes[0], nodes[1], nodes[2]
	if _, err := approver.ReplaceAdmin(ctx, AdminReplaceRequest{New: next.Device().String(), Approve: true}); err != nil {
		return fmt.Errorf("admin approve: %w", err)
	}
	say("admin replacement: node3's operator approves replacing the admin by node2 (`aura-cli admin replace --new %s --approve`)", short(next.Device().String()))
	info, err := next.ReplaceAdmin(ctx, AdminReplaceRequest{New: next.Device().String()})
	if err != nil {
		return fmt.Errorf("admin replace: %w", err)
	}
	say("node2 asked (`aura-cli admin replace --new SELF`): %d of %d partial signatures over (account, node1, node2, epoch %d) recovered the group signature; AdminReplaced appended",
		info.Votes, info.Threshold, info.ActivationEpoch)
	if err := converge(ctx, o.Timeout, nodes, func() bool {
		for _, n := range nodes {
			if s, err := n.AdminStatus(); err != nil || s.Admin != next.Device().String() || len(s.Overrides) != 1 {
				return false
			}
		}
		return true
	}); err != nil {
		return fmt.Errorf("the replacement did not spread: %w", err)
	}
	say("every node holds the override under maintenance:admin_override: node2 is admin from identity epoch %d", info.ActivationEpoch)
	if _, _, err := old.Invite(0); !errors.Is(err, ErrNotAdmin) {
		return fmt.Errorf("the replaced admin could still invite (%v)", err)
	}
	say("node1's admin acts from that epoch on are refused (its invite: %q); its earlier ones, every admission it made, stay valid", ErrNotAdmin.Error())
	if _, _, err := next.Invite(0); err != nil {
		return fmt.Errorf("the new admin cannot invite: %w", err)
	}
	say("node2, the new admin, issues invites")
	return nil
}
