package node

import (
	"bytes"
	"context"
	"fmt"
	"time"

	"aura/crdt"
	"aura/maintenance"
)

// demoUpgrade is the demo's OTA step: a soft upgrade that auto devices
// take at once, then a hard fork needing every device, held back by the
// last one (manual policy) until its operator approves; then the publisher
// activates it and the session gate admits everyone.
func demoUpgrade(ctx context.Context, say func(string, ...any), nodes []*Node, o DemoOptions) error {
	holdout := nodes[len(nodes)-1]
	for _, n := range nodes[:len(nodes)-1] {
		if _, err := n.SetUpgradePolicy(crdt.PolicyAuto); err != nil {
			return err
		}
	}
	say("OTA: every device but node%d declares upgrade policy auto; node%d stays manual", len(nodes), len(nodes))
	find := func(n *Node, id string) UpgradeInfo {
		for _, u := range n.Upgrades().Upgrades {
			if u.ID == id {
				return u
			}
		}
		return UpgradeInfo{}
	}
	publish := func(req PublishRequest, data []byte) (*UpgradeInfo, error) {
		a, err := nodes[0].StoreArtifact(ctx, bytes.NewReader(data), nodes[0].upgradeCfg().Platform)
		if err != nil {
			return nil, err
		}
		req.Artifacts = []ArtifactInfo{*a}
		return nodes[0].PublishUpgrade(ctx, req)
	}
	soft, err := publish(PublishRequest{Package: "aura-tools", Version: "1.1.0", Kind: crdt.UpgradeSoft}, []byte("aura-tools 1.1.0 build"))
	if err != nil {
		return err
	}
	say("node1 published soft upgrade aura-tools 1.1.0 (%s): artifact %d bytes, sha256 %s", short(soft.ID), soft.Artifacts[0].Size, short(soft.Artifacts[0].SHA256))
	if err := converge(ctx, o.Timeout, nodes, func() bool { return find(nodes[0], soft.ID).Ready == len(nodes)-1 }); err != nil {
		return fmt.Errorf("soft upgrade readiness: %w", err)
	}
	say("  each auto device fetched it from peers by CID, checked size and hash, and declared readiness; no cutover (soft)")

	hard, err := publish(PublishRequest{Package: "aura-node", Version: "2.0.0", Kind: crdt.UpgradeHard, Expires: "1h"}, []byte("aura-node 2.0.0 build"))
	if err != nil {
		return err
	}
	say("node1 published hard fork aura-node 2.0.0 (%s): fence identity epoch %d, min-ready %d", short(hard.ID), hard.Fence, hard.MinReady)
	if err := converge(ctx, o.Timeout, nodes, func() bool {
		return find(nodes[0], hard.ID).Ready == len(nodes)-1 && find(holdout, hard.ID).Local.State == "verified"
	}); err != nil {
		return fmt.Errorf("hard fork readiness: %w", err)
	}
	time.Sleep(500 * time.Millisecond)
	u := find(nodes[0], hard.ID)
	say("  %d of %d ready; node%d verified the artifact but waits for approval; not activated: %s", u.Ready, u.MinReady, len(nodes), u.Waiting)
	id, err := crdt.ParseUpgradeName(hard.ID)
	if err != nil {
		return err
	}
	if _, err := holdout.ApproveUpgrade(id); err != nil {
		return err
	}
	say("node%d's operator ran `aura-cli upgrade approve %s`", len(nodes), short(hard.ID))
	if err := converge(ctx, o.Timeout, nodes, func() bool {
		for _, n := range nodes {
			if find(n, hard.ID).Phase != maintenance.PhaseActivated.String() {
				return false
			}
		}
		return true
	}); err != nil {
		return fmt.Errorf("hard fork activation: %w", err)
	}
	say("  node1 (the publisher) wrote UpgradeActivated; every device has aura-node 2.0.0 in force and every one is ready for it")
	return nil
}
