package node

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"path/filepath"
	"strconv"
	"time"
)

// Client talks to a running node over its control socket.
type Client struct {
	home string
	hc   *http.Client
}

// NewClient returns a client of the node in home.
func NewClient(home string) *Client {
	sock := filepath.Join(home, SocketFile)
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", sock)
		},
	}
	return &Client{home: home, hc: &http.Client{Transport: tr}}
}

// Close releases idle connections.
func (c *Client) Close() { c.hc.CloseIdleConnections() }

// APIError is an error the node answered with.
type APIError struct {
	Status  int
	Message string
	// Code is the kind of a session failure (ErrorCode), "" for others.
	Code string
}

func (e *APIError) Error() string { return e.Message }

func (c *Client) do(ctx context.Context, method, path string, in, out any) error {
	resp, err := c.open(ctx, method, path, in)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if out == nil {
		return nil
	}
	return json.NewDecoder(resp.Body).Decode(out)
}

func (c *Client) open(ctx context.Context, method, path string, in any) (*http.Response, error) {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return nil, err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://aura"+path, body)
	if err != nil {
		return nil, err
	}
	return c.roundTrip(req)
}

// roundTrip sends req and turns a missing node and error answers into
// errors (APIError carries the node's message).
func (c *Client) roundTrip(req *http.Request) (*http.Response, error) {
	resp, err := c.hc.Do(req)
	if err != nil {
		var ne *net.OpError
		if errors.As(err, &ne) && ne.Op == "dial" {
			return nil, fmt.Errorf("no node is running at %s: start it with `aura-node run --home %s`", c.home, c.home)
		}
		return nil, err
	}
	if resp.StatusCode >= 300 {
		defer resp.Body.Close()
		var e struct{ Error, Code string }
		if json.NewDecoder(resp.Body).Decode(&e) != nil || e.Error == "" {
			e.Error = resp.Status
		}
		return nil, &APIError{Status: resp.StatusCode, Message: e.Error, Code: e.Code}
	}
	return resp, nil
}

// Status fetches the node's status.
func (c *Client) Status(ctx context.Context) (Status, error) {
	var s Status
	return s, c.do(ctx, "GET", "/v1/status", nil, &s)
}

// Peers lists connected peers.
func (c *Client) Peers(ctx context.Context) ([]PeerInfo, error) {
	var p []PeerInfo
	return p, c.do(ctx, "GET", "/v1/peers", nil, &p)
}

// PutRequest writes Value (exact bytes; base64 in JSON) under Key.
type PutRequest struct {
	Key   string `json:"key"`
	Value []byte `json:"value"`
}

// PutResult is the answer of Put.
type PutResult struct {
	Key      string `json:"key"`
	ID       string `json:"id,omitempty"`
	Size     int    `json:"size"`
	Buffered bool   `json:"buffered"`
}

// GetResult is the answer of Get: the exact bytes, and whether they are a
// write of this device still buffered behind its writer fence.
type GetResult struct {
	Key     string `json:"key"`
	Value   []byte `json:"value"`
	Pending bool   `json:"pending"`
}

// Put writes an application key.
func (c *Client) Put(ctx context.Context, key string, value []byte) (PutResult, error) {
	var r PutResult
	return r, c.do(ctx, "POST", "/v1/facts", PutRequest{Key: key, Value: value}, &r)
}

// Get reads an application key.
func (c *Client) Get(ctx context.Context, key string) (GetResult, error) {
	var r GetResult
	err := c.do(ctx, "GET", "/v1/facts/"+url.PathEscape(key), nil, &r)
	return r, err
}

// CacheStatus fetches the cache's floors and counters.
func (c *Client) CacheStatus(ctx context.Context) (CacheStatus, error) {
	var s CacheStatus
	return s, c.do(ctx, "GET", "/v1/cache", nil, &s)
}

// InvalidateCache raises the floors of keys at the current epoch.
func (c *Client) InvalidateCache(ctx context.Context, keys []string) (map[string]any, error) {
	var r map[string]any
	return r, c.do(ctx, "POST", "/v1/cache/invalidate", map[string][]string{"keys": keys}, &r)
}

// ConnectPeer dials a device of the account and remembers its address.
func (c *Client) ConnectPeer(ctx context.Context, addr string) (PeerInfo, error) {
	var p PeerInfo
	return p, c.do(ctx, "POST", "/v1/peers/connect", map[string]string{"addr": addr}, &p)
}

// Facts lists journal facts (tail > 0: the last tail).
func (c *Client) Facts(ctx context.Context, tail int) ([]FactInfo, error) {
	var fs []FactInfo
	return fs, c.do(ctx, "GET", "/v1/facts?tail="+strconv.Itoa(tail), nil, &fs)
}

// CreateAccount founds an account.
func (c *Client) CreateAccount(ctx context.Context, name string, threshold uint64) (string, error) {
	var r struct{ Account string }
	err := c.do(ctx, "POST", "/v1/account/create", map[string]any{"Name": name, "Threshold": threshold}, &r)
	return r.Account, err
}

// Invite opens a one-time invite.
func (c *Client) Invite(ctx context.Context, ttl time.Duration) (string, time.Time, error) {
	var r struct {
		Code    string
		Expires time.Time
	}
	in := map[string]string{}
	if ttl > 0 {
		in["TTL"] = ttl.String()
	}
	err := c.do(ctx, "POST", "/v1/account/invite", in, &r)
	return r.Code, r.Expires, err
}

// Join joins the account of an invite code.
func (c *Client) Join(ctx context.Context, code string) (string, error) {
	var r struct{ Account string }
	err := c.do(ctx, "POST", "/v1/account/join", map[string]string{"Code": code}, &r)
	return r.Account, err
}

// streamLines reads an NDJSON answer: every line but the last goes to
// line; the last is decoded into out (or is an error document).
func (c *Client) streamLines(ctx context.Context, method, path string, in any, line func(json.RawMessage), out any) error {
	resp, err := c.open(ctx, method, path, in)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	var last []byte
	for sc.Scan() {
		if last != nil && line != nil {
			line(json.RawMessage(last))
		}
		last = append([]byte(nil), sc.Bytes()...)
	}
	if err := sc.Err(); err != nil {
		return err
	}
	if last == nil {
		return errors.New("node closed the answer early")
	}
	var e struct{ Error string }
	if json.Unmarshal(last, &e) == nil && e.Error != "" {
		return &APIError{Status: 500, Message: e.Error}
	}
	return json.Unmarshal(last, out)
}
