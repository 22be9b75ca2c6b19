package node

import (
	"context"
	"encoding/json"
	"time"
)

// Client calls of the snapshot, restore and threshold routes.

// Propose starts a snapshot round (force: even when fewer than M key
// holders are online).
func (c *Client) Propose(ctx context.Context, force bool) (SnapshotInfo, error) {
	var s SnapshotInfo
	return s, c.do(ctx, "POST", "/v1/snapshots", map[string]bool{"force": force}, &s)
}

// Snapshots lists snapshots.
func (c *Client) Snapshots(ctx context.Context) ([]SnapshotInfo, error) {
	var s []SnapshotInfo
	return s, c.do(ctx, "GET", "/v1/snapshots", nil, &s)
}

// Snapshot shows one snapshot.
func (c *Client) Snapshot(ctx context.Context, id string) (SnapshotInfo, error) {
	var s SnapshotInfo
	return s, c.do(ctx, "GET", "/v1/snapshots/"+id, nil, &s)
}

// Restore restores the node from the newest snapshot; progress sees the
// bytes fetched.
func (c *Client) Restore(ctx context.Context, progress func(done, total int64)) (RestoreResult, error) {
	var r RestoreResult
	// The node waits for a reachable device at most until shortly before
	// this call gives up, so it can still say why.
	var wait int64
	if dl, ok := ctx.Deadline(); ok {
		wait = max(time.Until(dl).Milliseconds()*9/10, time.Until(dl).Milliseconds()-2000, 1)
	}
	err := c.streamLines(ctx, "POST", "/v1/restore", map[string]int64{"wait_ms": wait}, func(m json.RawMessage) {
		var p struct{ Done, Total int64 }
		if json.Unmarshal(m, &p) == nil && progress != nil {
			progress(p.Done, p.Total)
		}
	}, &r)
	return r, err
}

// Keygen runs a DKG among the account's devices.
func (c *Client) Keygen(ctx context.Context, threshold int) (GroupKeyInfo, error) {
	var g GroupKeyInfo
	return g, c.do(ctx, "POST", "/v1/threshold/keygen", map[string]int{"Threshold": threshold}, &g)
}

// Threshold shows the account's group key.
func (c *Client) Threshold(ctx context.Context) (GroupKeyInfo, error) {
	var g GroupKeyInfo
	return g, c.do(ctx, "GET", "/v1/threshold", nil, &g)
}
