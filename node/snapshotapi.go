package node

import (
	"encoding/json"
	"net/http"
	"time"

	"aura/maintenance"
)

func (n *Node) maintenanceRoutes(mux *http.ServeMux) {
	mux.HandleFunc("POST /v1/snapshots", func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			Force bool `json:"force"`
		}
		if !decode(w, r, &req) {
			return
		}
		info, err := n.ProposeChecked(req.Force)
		reply(w, info, err)
	})
	mux.HandleFunc("GET /v1/snapshots", func(w http.ResponseWriter, r *http.Request) {
		s := n.Snapshots()
		if s == nil {
			s = []SnapshotInfo{}
		}
		reply(w, s, nil)
	})
	mux.HandleFunc("GET /v1/snapshots/{id}", func(w http.ResponseWriter, r *http.Request) {
		info, err := n.Snapshot(r.PathValue("id"))
		reply(w, info, err)
	})
	mux.HandleFunc("POST /v1/restore", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/x-ndjson")
		enc := json.NewEncoder(w)
		fl, _ := w.(http.Flusher)
		last := time.Time{}
		var req struct {
			WaitMS int64 `json:"wait_ms"`
		}
		_ = json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<10)).Decode(&req)
		ctx := withPeerWait(r.Context(), time.Duration(req.WaitMS)*time.Millisecond)
		res, err := n.Restore(ctx, func(done, total int64) {
			if time.Since(last) < 100*time.Millisecond && done < total {
				return
			}
			last = time.Now()
			_ = enc.Encode(map[string]int64{"done": done, "total": total})
			if fl != nil {
				fl.Flush()
			}
		})
		if err != nil {
			_ = enc.Encode(map[string]string{"error": err.Error()})
			return
		}
		_ = enc.Encode(res)
	})
	mux.HandleFunc("POST /v1/threshold/keygen", func(w http.ResponseWriter, r *http.Request) {
		var req struct{ Threshold int }
		if !decode(w, r, &req) {
			return
		}
		info, err := n.Keygen(r.Context(), req.Threshold)
		reply(w, info, err)
	})
	mux.HandleFunc("GET /v1/threshold", func(w http.ResponseWriter, r *http.Request) {
		s := n.Status()
		if s.GroupKey == nil {
			reply(w, nil, errorf(ErrNotFound, "%w", maintenance.ErrNoGroupKey))
			return
		}
		reply(w, s.GroupKey, nil)
	})
}
