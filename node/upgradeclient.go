package node

import (
	"context"
	"encoding/json"
	"io"
	"net/url"
)

// Upgrade calls of the control API client (routes in upgradeapi.go).

// StoreArtifact uploads an artifact's bytes for platform (GOOS/GOARCH).
func (c *Client) StoreArtifact(ctx context.Context, r io.Reader, platform string) (ArtifactInfo, error) {
	var a ArtifactInfo
	resp, err := c.raw(ctx, "POST", "/v1/upgrades/artifacts?platform="+url.QueryEscape(platform), r)
	if err != nil {
		return a, err
	}
	defer resp.Body.Close()
	return a, json.NewDecoder(resp.Body).Decode(&a)
}

// PublishUpgrade appends the upgrade's metadata.
func (c *Client) PublishUpgrade(ctx context.Context, req PublishRequest) (UpgradeInfo, error) {
	var u UpgradeInfo
	return u, c.do(ctx, "POST", "/v1/upgrades", req, &u)
}

// Upgrades is `upgrade status`.
func (c *Client) Upgrades(ctx context.Context) (UpgradeStatus, error) {
	var s UpgradeStatus
	return s, c.do(ctx, "GET", "/v1/upgrades", nil, &s)
}

// ApproveUpgrade consents to an upgrade on a manual device.
func (c *Client) ApproveUpgrade(ctx context.Context, id string) (UpgradeInfo, error) {
	var u UpgradeInfo
	return u, c.do(ctx, "POST", "/v1/upgrades/"+url.PathEscape(id)+"/approve", struct{}{}, &u)
}

// CancelUpgrade cancels an upgrade before its fence.
func (c *Client) CancelUpgrade(ctx context.Context, id, reason string) (UpgradeInfo, error) {
	var u UpgradeInfo
	return u, c.do(ctx, "POST", "/v1/upgrades/"+url.PathEscape(id)+"/cancel", map[string]string{"reason": reason}, &u)
}
