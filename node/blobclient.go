package node

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
)

// Blob calls of the control API client (routes in blobapi.go).

// PutBlob stores the bytes of r as an account blob (BlobStored).
func (c *Client) PutBlob(ctx context.Context, r io.Reader, name string) (BlobInfo, error) {
	var bi BlobInfo
	path := "/v1/blobs"
	if name != "" {
		path += "?name=" + url.QueryEscape(name)
	}
	resp, err := c.raw(ctx, "POST", path, r)
	if err != nil {
		return bi, err
	}
	defer resp.Body.Close()
	return bi, json.NewDecoder(resp.Body).Decode(&bi)
}

// Blobs lists the account's blobs and this device's blob store figures.
func (c *Client) Blobs(ctx context.Context) (BlobList, error) {
	var l BlobList
	return l, c.do(ctx, "GET", "/v1/blobs", nil, &l)
}

// FetchBlob makes the blob complete on the node (fetching from its peers if
// needed); progress sees the bytes held and the total.
func (c *Client) FetchBlob(ctx context.Context, id string, progress func(done, total int64)) (BlobInfo, error) {
	var bi BlobInfo
	resp, err := c.open(ctx, "POST", "/v1/blobs/"+url.PathEscape(id)+"/fetch", struct{}{})
	if err != nil {
		return bi, err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		var m struct {
			Done, Total *int64
			Error       string
			Code        int // the HTTP status the error maps to
			CID         string
		}
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			return bi, fmt.Errorf("node answered %q: %w", sc.Text(), err)
		}
		switch {
		case m.Error != "":
			if m.Code == 0 {
				m.Code = http.StatusInternalServerError
			}
			return bi, &APIError{Status: m.Code, Message: m.Error}
		case m.Done != nil && m.Total != nil:
			if progress != nil {
				progress(*m.Done, *m.Total)
			}
		case m.CID != "":
			return bi, json.Unmarshal(sc.Bytes(), &bi)
		}
	}
	if err := sc.Err(); err != nil {
		return bi, err
	}
	return bi, errors.New("node closed the answer early")
}

// OpenBlob reads a blob the node holds; size is its length.
func (c *Client) OpenBlob(ctx context.Context, id string) (rc io.ReadCloser, size int64, err error) {
	resp, err := c.raw(ctx, "GET", "/v1/blobs/"+url.PathEscape(id)+"/data", nil)
	if err != nil {
		return nil, 0, err
	}
	size, _ = strconv.ParseInt(resp.Header.Get("Content-Length"), 10, 64)
	return resp.Body, size, nil
}

// RemoveBlob tombstones a blob (BlobTombstoned).
func (c *Client) RemoveBlob(ctx context.Context, id string) (BlobInfo, error) {
	var bi BlobInfo
	return bi, c.do(ctx, "DELETE", "/v1/blobs/"+url.PathEscape(id), nil, &bi)
}

// raw sends body as is (not JSON) and checks the status like open.
func (c *Client) raw(ctx context.Context, method, path string, body io.Reader) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, "http://aura"+path, body)
	if err != nil {
		return nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/octet-stream")
	}
	return c.roundTrip(req)
}
