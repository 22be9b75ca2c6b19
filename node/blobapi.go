package node

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strconv"
	"time"

	"github.com/ipfs/go-cid"

	"aura/blobstore"
	"aura/crdt"
)

// Account blobs (DESIGN §8 `aura-cli blob put|get|list|rm`): the bytes live
// in the blobstore, pinned on the devices that put or fetched them; the
// journal records BlobStored and BlobTombstoned. A removed blob stays on
// disk until the next completed snapshot covers its tombstone; then every
// device's blob plan unpins it and the blob GC frees the space.

// BlobInfo describes an account blob.
type BlobInfo struct {
	CID      string `json:"cid"`
	Name     string `json:"name,omitempty"`
	Size     uint64 `json:"size"`
	Status   string `json:"status"` // live, removed
	Held     bool   `json:"held"`   // every block is in this device's store
	ID       string `json:"id,omitempty"`
	Buffered bool   `json:"buffered,omitempty"` // the fact waits behind the writer fence
	Peers    int    `json:"peers,omitempty"`    // peers asked (get)
	Fetched  int64  `json:"fetched,omitempty"`  // bytes fetched (get)
}

// BlobStoreInfo are the figures of this device's blob store.
type BlobStoreInfo struct {
	Blocks      int    `json:"blocks"`
	Bytes       int64  `json:"bytes"`
	Pins        int    `json:"pins"`
	GCRuns      uint64 `json:"gc_runs"`
	LastGCFreed int64  `json:"last_gc_bytes_freed"`
	Freed       int64  `json:"bytes_freed"` // by every blob GC since the node started
}

// BlobList is `aura-cli blob list`.
type BlobList struct {
	Blobs []BlobInfo    `json:"blobs"`
	Store BlobStoreInfo `json:"store"`
}

// ParseBlobCID parses a blob CID as printed by `blob put`.
func ParseBlobCID(s string) (cid.Cid, error) {
	c, err := cid.Decode(s)
	if err != nil {
		return cid.Undef, errorf(ErrBadRequest, "%q is not a CID: %v", s, err)
	}
	return c, nil
}

// blobRefLocked returns a copy of the state's record of a blob (nil if
// none); n.mu is held. A copy, because the fold updates the record in
// place once the lock is released.
func (n *Node) blobRefLocked(c cid.Cid) *crdt.BlobRef {
	ref := n.rep.State().Blobs[crdt.BlobKey(c.Bytes())]
	if ref == nil {
		return nil
	}
	cp := *ref
	return &cp
}

func (n *Node) blobInfo(c cid.Cid, ref *crdt.BlobRef) BlobInfo {
	bi := BlobInfo{CID: c.String(), Status: "live"}
	if ref != nil {
		bi.Name, bi.Size = ref.Name, ref.Size
		if ref.Tombstone != 0 {
			bi.Status = "removed"
		}
	}
	bi.Held, _ = n.blobs.Has(context.Background(), c)
	return bi
}

// PutBlob stores the bytes of r (pinned) and appends BlobStored. It works
// offline; behind a writer fence the fact is buffered.
func (n *Node) PutBlob(ctx context.Context, r io.Reader, name string) (*BlobInfo, error) {
	if n.Account().IsZero() {
		return nil, ErrNoAccount
	}
	if err := n.space.writable(); err != nil {
		return nil, err
	}
	c, size, err := n.blobs.PutPinned(ctx, r)
	if err != nil {
		return nil, fmt.Errorf("store blob: %w", err)
	}
	n.mu.Lock()
	ref := n.blobRefLocked(c)
	n.mu.Unlock()
	if ref != nil && ref.Tombstone != 0 {
		// Tombstones are for good: the next snapshot would delete it again.
		return nil, errorf(ErrBadRequest, "blob %s was removed from the account and cannot be stored again", c)
	}
	id, err := n.write(&crdt.BlobStored{CID: c.Bytes(), Size: uint64(size), Name: name})
	if err != nil {
		if ref == nil {
			_ = n.blobs.Unpin(c)
		}
		return nil, err
	}
	bi := BlobInfo{CID: c.String(), Name: name, Size: uint64(size), Status: "live", Held: true, Buffered: id == crdt.FactID{}}
	if !bi.Buffered {
		bi.ID = id.String()
	}
	return &bi, nil
}

// FetchBlob makes a live account blob complete locally, fetching what it
// lacks from the connected devices (several at once, resumable), and pins
// it. progress sees the bytes held and the total.
func (n *Node) FetchBlob(ctx context.Context, c cid.Cid, progress func(done, total int64)) (*BlobInfo, error) {
	if n.Account().IsZero() {
		return nil, ErrNoAccount
	}
	n.mu.Lock()
	ref := n.blobRefLocked(c)
	n.mu.Unlock()
	if ref == nil {
		return nil, errorf(ErrNotFound, "no blob %s in the account (see `aura-cli blob list`)", c)
	}
	if ref.Tombstone != 0 {
		return nil, errorf(ErrNotFound, "blob %s was removed from the account", c)
	}
	// Pinned first: a partial fetch is kept for the next try.
	if err := n.blobs.Pin(c); err != nil {
		return nil, err
	}
	bi := n.blobInfo(c, ref)
	if bi.Held {
		if progress != nil {
			progress(int64(ref.Size), int64(ref.Size))
		}
		return &bi, nil
	}
	if err := n.space.writable(); err != nil {
		return nil, err
	}
	peers := n.connectedKnown()
	if len(peers) == 0 {
		return nil, errorf(ErrUnavailable, "blob %s is not held here and no device of the account is connected to fetch it from", c)
	}
	st, err := n.blobs.Fetch(ctx, c, peers, progress)
	if err != nil {
		if errors.Is(err, blobstore.ErrNoPeers) {
			return nil, errorf(ErrUnavailable, "fetch blob %s: %w (try again when a device holding it is online)", c, err)
		}
		return nil, fmt.Errorf("fetch blob %s: %w", c, err)
	}
	bi.Held, bi.Peers, bi.Fetched = true, len(peers), st.Bytes
	return &bi, nil
}

// OpenBlob opens a blob held locally.
func (n *Node) OpenBlob(ctx context.Context, c cid.Cid) (*blobstore.Reader, error) {
	r, err := n.blobs.Open(ctx, c)
	if errors.Is(err, blobstore.ErrIncomplete) {
		return nil, errorf(ErrNotFound, "blob %s is not held here: fetch it with `aura-cli blob get %s`", c, c)
	}
	return r, err
}

// Blobs lists the account's blobs (live first, then removed ones, each by
// name then CID) and this device's blob store figures.
func (n *Node) Blobs() (*BlobList, error) {
	type entry struct {
		c   cid.Cid
		ref crdt.BlobRef
	}
	var es []entry
	n.mu.Lock()
	for k, ref := range n.rep.State().Blobs {
		raw, err := crdt.BlobKeyCID(k)
		if err != nil {
			continue
		}
		c, err := cid.Cast(raw)
		if err != nil {
			continue
		}
		es = append(es, entry{c, *ref})
	}
	n.mu.Unlock()
	out := &BlobList{Blobs: []BlobInfo{}}
	for _, e := range es {
		out.Blobs = append(out.Blobs, n.blobInfo(e.c, &e.ref))
	}
	sort.Slice(out.Blobs, func(i, j int) bool {
		a, b := out.Blobs[i], out.Blobs[j]
		if a.Status != b.Status {
			return a.Status == "live"
		}
		if a.Name != b.Name {
			return a.Name < b.Name
		}
		return a.CID < b.CID
	})
	info, err := n.BlobStoreStats()
	out.Store = info
	return out, err
}

// BlobStoreStats are the figures of this device's blob store.
func (n *Node) BlobStoreStats() (BlobStoreInfo, error) {
	st, err := n.blobs.Stats()
	n.bgc.mu.Lock()
	info := BlobStoreInfo{Blocks: st.Blocks, Bytes: st.Bytes, Pins: st.Pins, GCRuns: n.bgc.runs,
		LastGCFreed: n.bgc.last.BytesFreed, Freed: n.bgc.freed}
	n.bgc.mu.Unlock()
	return info, err
}

// RemoveBlob appends BlobTombstoned for a live blob. The bytes stay on
// every device until the next completed snapshot covers the tombstone.
func (n *Node) RemoveBlob(c cid.Cid) (*BlobInfo, error) {
	if n.Account().IsZero() {
		return nil, ErrNoAccount
	}
	n.mu.Lock()
	ref := n.blobRefLocked(c)
	n.mu.Unlock()
	if ref == nil {
		return nil, errorf(ErrNotFound, "no blob %s in the account (see `aura-cli blob list`)", c)
	}
	if ref.Tombstone != 0 {
		return nil, errorf(ErrNotFound, "blob %s is already removed", c)
	}
	id, err := n.write(&crdt.BlobTombstoned{CID: c.Bytes()})
	if err != nil {
		return nil, err
	}
	bi := n.blobInfo(c, ref)
	bi.Status, bi.Buffered = "removed", id == crdt.FactID{}
	if !bi.Buffered {
		bi.ID = id.String()
	}
	return &bi, nil
}

// blobRoutes mounts the blob API:
//
//	POST   /v1/blobs?name=N       body: the bytes → BlobInfo
//	GET    /v1/blobs              → BlobList
//	POST   /v1/blobs/{cid}/fetch  → NDJSON {"done","total"} lines, then BlobInfo (or {"error","code"})
//	GET    /v1/blobs/{cid}/data   → the bytes (application/octet-stream)
//	DELETE /v1/blobs/{cid}        → BlobInfo
func (n *Node) blobRoutes(mux *http.ServeMux) {
	mux.HandleFunc("POST /v1/blobs", func(w http.ResponseWriter, r *http.Request) {
		bi, err := n.PutBlob(r.Context(), r.Body, r.URL.Query().Get("name"))
		reply(w, bi, err)
	})
	mux.HandleFunc("GET /v1/blobs", func(w http.ResponseWriter, r *http.Request) {
		l, err := n.Blobs()
		reply(w, l, err)
	})
	mux.HandleFunc("POST /v1/blobs/{cid}/fetch", func(w http.ResponseWriter, r *http.Request) {
		c, err := ParseBlobCID(r.PathValue("cid"))
		if err != nil {
			reply(w, nil, err)
			return
		}
		w.Header().Set("Content-Type", "application/x-ndjson")
		enc := json.NewEncoder(w)
		fl, _ := w.(http.Flusher)
		last := time.Time{}
		bi, err := n.FetchBlob(r.Context(), c, func(done, total int64) {
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
			_ = enc.Encode(map[string]any{"error": err.Error(), "code": statusOf(err)})
			return
		}
		_ = enc.Encode(bi)
	})
	mux.HandleFunc("GET /v1/blobs/{cid}/data", func(w http.ResponseWriter, r *http.Request) {
		c, err := ParseBlobCID(r.PathValue("cid"))
		if err != nil {
			reply(w, nil, err)
			return
		}
		rd, err := n.OpenBlob(r.Context(), c)
		if err != nil {
			reply(w, nil, err)
			return
		}
		defer rd.Close()
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Header().Set("Content-Length", strconv.FormatInt(rd.Size(), 10))
		if _, err := rd.WriteTo(w); err != nil && r.Context().Err() == nil {
			n.log.Warn("serve blob", "cid", c, "err", err)
		}
	})
	mux.HandleFunc("DELETE /v1/blobs/{cid}", func(w http.ResponseWriter, r *http.Request) {
		c, err := ParseBlobCID(r.PathValue("cid"))
		if err != nil {
			reply(w, nil, err)
			return
		}
		bi, err := n.RemoveBlob(c)
		reply(w, bi, err)
	})
}
