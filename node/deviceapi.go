package node

import (
	"context"
	"net/http"
)

// The device routes: what this device publishes about itself.

func (n *Node) deviceRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET /v1/device", func(w http.ResponseWriter, r *http.Request) { reply(w, n.DeviceInfo(), nil) })
	mux.HandleFunc("POST /v1/device/policy", func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			Policy string `json:"policy"`
		}
		if !decode(w, r, &req) {
			return
		}
		info, err := n.SetUpgradePolicy(req.Policy)
		reply(w, info, err)
	})
}

// Device reports what the node publishes about itself.
func (c *Client) Device(ctx context.Context) (DeviceInfo, error) {
	var d DeviceInfo
	return d, c.do(ctx, "GET", "/v1/device", nil, &d)
}

// SetUpgradePolicy sets the node's upgrade policy (manual or auto).
func (c *Client) SetUpgradePolicy(ctx context.Context, policy string) (DeviceInfo, error) {
	var d DeviceInfo
	return d, c.do(ctx, "POST", "/v1/device/policy", map[string]string{"policy": policy}, &d)
}
