package node

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/protocol"

	"aura/crdt"
	"aura/maintenance"
	"aura/threshold"
)

// ReshareProtocol carries a resharing session (threshold.ReshareHub and
// threshold.ReshareParticipant): the admin's device is the hub and opens
// one stream to every other device of the account; frames are uvarint
// length ‖ threshold.ReshareFrame bytes, as on /aura/dkg/1. Which devices
// are invited, with which shares and threshold, is decided by
// maintenance.PlanReshare; the session decides the rest. This file only
// moves frames, seals shares and publishes the new group key.
const ReshareProtocol = protocol.ID("/aura/reshare/1")

// PendingShareFile holds a share received by a resharing this device
// took part in, until a group key fact names its key (then it replaces
// ShareFile). A hub that fails after this device acknowledged leaves the
// old share in place.
const PendingShareFile = "threshold.share.next"

// ErrReshare wraps failures of a resharing session (a kind of key
// generation failure: the API answers them as it answers ErrKeygen).
var ErrReshare = fmt.Errorf("resharing failed: %w", ErrKeygen)

// ReshareStatus is the progress of this device's latest resharing, as
// `threshold status` shows it.
type ReshareStatus struct {
	State    string    `json:"state"` // waiting, running, done, failed
	Detail   string    `json:"detail,omitempty"`
	Started  time.Time `json:"started"`
	Updated  time.Time `json:"updated"`
	Hub      bool      `json:"hub"`
	Devices  []string  `json:"devices,omitempty"` // the new group, once known
	KeyEpoch uint64    `json:"key_epoch,omitempty"`
	Auto     bool      `json:"auto,omitempty"` // started by a removal
}

// reshareState is the node's resharing bookkeeping: the status shown to
// the operator, the shares this device holds for some group key (its
// sealed share, a pending one), and the automatic resharing after a
// removal.
type reshareState struct {
	mu      sync.Mutex
	status  *ReshareStatus
	auto    bool // an automatic resharing loop runs
	keyRaw  []byte
	pending *threshold.Share
	loaded  bool
	known   []*threshold.Share
}

func (n *Node) setReshareStatus(fn func(s *ReshareStatus)) {
	n.rs.mu.Lock()
	defer n.rs.mu.Unlock()
	if n.rs.status == nil {
		n.rs.status = &ReshareStatus{Started: time.Now()}
	}
	fn(n.rs.status)
	n.rs.status.Updated = time.Now()
}

// ReshareProgress returns the latest resharing's status (nil: none ran).
func (n *Node) ReshareProgress() *ReshareStatus {
	n.rs.mu.Lock()
	defer n.rs.mu.Unlock()
	if n.rs.status == nil {
		return nil
	}
	s := *n.rs.status
	return &s
}

// Reshare moves the account's devices to new shares of the same group key
// (admin only): every current device is invited; those online take part;
// with fewer than the key's M share holders among them it fails and
// changes nothing. m is the new threshold (0: keep the key's).
func (n *Node) Reshare(ctx context.Context, m int) (*GroupKeyInfo, error) {
	n.dkg.mu.Lock()
	if n.dkg.busy {
		n.dkg.mu.Unlock()
		return nil, fmt.Errorf("%w: a key generation or resharing is already running on this device", ErrReshare)
	}
	n.dkg.busy = true
	n.dkg.mu.Unlock()
	defer func() { n.dkg.mu.Lock(); n.dkg.busy = false; n.dkg.mu.Unlock() }()

	if n.Account().IsZero() {
		return nil, ErrNoAccount
	}
	if err := n.requireAdmin("reshare the threshold key"); err != nil {
		return nil, err
	}
	n.setReshareStatus(func(s *ReshareStatus) {
		*s = ReshareStatus{State: "running", Detail: "inviting devices", Started: time.Now(), Hub: true, Auto: s.Auto && s.State == "waiting"}
	})
	var key *threshold.GroupKey
	var sh *threshold.Share
	var ids [][]byte
	for attempt := 1; ; attempt++ {
		var err error
		key, sh, ids, err = n.reshareAttempt(ctx, m)
		if err == nil {
			break
		}
		retry := maintenance.RetrySession(err, attempt)
		if code := ErrorCode(err); code != "" {
			outcome := "not retried"
			if retry {
				outcome = fmt.Sprintf("retrying under the new epoch (%d/%d)", attempt, maintenance.SessionRetries)
			} else if code == CodeStaleEpoch {
				outcome = fmt.Sprintf("gave up after %d retries", maintenance.SessionRetries)
			}
			n.sessions.note(SessionAbort{Session: "reshare", Reason: err.Error(), Code: code, Retry: outcome, At: time.Now()})
			n.log.Warn("resharing aborted", "err", err, "outcome", outcome)
		}
		if !retry {
			err = sessionHint(err)
			n.setReshareStatus(func(s *ReshareStatus) { s.State, s.Detail = "failed", err.Error() })
			return nil, err
		}
	}
	if err := n.saveShare(sh); err != nil {
		return nil, err
	}
	devices := make([]crdt.DeviceID, len(ids))
	for i, id := range ids {
		copy(devices[i][:], id)
	}
	n.mu.Lock()
	n.rememberShareLocked(sh)
	n.rep.SetShare(sh)
	out, err := n.rep.PublishGroupKey(key, devices)
	n.mu.Unlock()
	if err != nil {
		return nil, err
	}
	n.handle(out)
	info := &GroupKeyInfo{Threshold: uint64(key.Threshold()), HasShare: true, ShareIndex: sh.Index() + 1}
	for _, d := range devices {
		info.Participants = append(info.Participants, d.String())
	}
	if s := n.Status(); s.GroupKey != nil {
		info.KeyEpoch = s.GroupKey.KeyEpoch
	}
	n.setReshareStatus(func(s *ReshareStatus) {
		s.State, s.Detail, s.Devices, s.KeyEpoch = "done", fmt.Sprintf("%d of %d", key.Threshold(), key.Signers()), info.Participants, info.KeyEpoch
	})
	n.log.Info("threshold key reshared", "key_epoch", info.KeyEpoch, "threshold", key.Threshold(), "devices", key.Signers())
	return info, nil
}

// reshareAttempt runs one resharing under the current scope: it refuses
// to start when maintenance.CheckSession fails for the invited devices,
// and the hub aborts it when the check fails while it runs (the identity
// epoch moved) until its final is out.
func (n *Node) reshareAttempt(ctx context.Context, m int) (*threshold.GroupKey, *threshold.Share, [][]byte, error) {
	n.mu.Lock()
	st := n.rep.State()
	plan, err := maintenance.PlanReshare(st, m)
	share := n.rep.Share()
	scope := maintenance.ScopeOf(st)
	if err == nil {
		err = maintenance.CheckSession(st, scope, plan.Devices)
		if err != nil {
			err = fmt.Errorf("%w: %w", ErrReshare, err)
		}
	}
	n.mu.Unlock()
	switch {
	case errors.Is(err, maintenance.ErrNoGroupKey):
		return nil, nil, nil, errorf(ErrNotFound, "no threshold key to reshare: run `aura-cli threshold keygen --threshold M` first")
	case errors.Is(err, maintenance.ErrReshareThreshold):
		return nil, nil, nil, errorf(ErrBadRequest, "%w", err)
	case err != nil:
		return nil, nil, nil, err
	}
	self := slices.Index(plan.Devices, n.device)
	if self < 0 {
		return nil, nil, nil, fmt.Errorf("%w: this device is not a member", ErrReshare)
	}
	return n.runReshareHub(ctx, plan, self, share, scope)
}

// runReshareHub moves frames between streams and the threshold.ReshareHub.
// A device whose stream cannot be opened is reported broken at once: the
// session leaves it out.
func (n *Node) runReshareHub(ctx context.Context, plan *maintenance.ReshareRequest, self int, share *threshold.Share, scope maintenance.Scope) (*threshold.GroupKey, *threshold.Share, [][]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, dkgStreamDeadline)
	defer cancel()
	var session [16]byte
	if _, err := rand.Read(session[:]); err != nil {
		return nil, nil, nil, fmt.Errorf("%w: %w", ErrReshare, err)
	}
	parts := make([][]byte, len(plan.Devices))
	for i, d := range plan.Devices {
		parts[i] = append([]byte(nil), d[:]...)
	}
	hub, err := threshold.NewReshareHub(threshold.ReshareHubConfig{Session: session, Participants: parts, Self: self,
		OldKey: plan.OldKey, Holders: plan.Holders, Share: share, Threshold: plan.Threshold, Rand: rand.Reader})
	if err != nil {
		return nil, nil, nil, n.reshareError(plan.Devices, err)
	}
	streams := make([]network.Stream, len(parts))
	writers := make([]*bufio.Writer, len(parts))
	openErr := make([]error, len(parts))
	var wg sync.WaitGroup
	for i, d := range plan.Devices {
		if i == self {
			continue
		}
		wg.Add(1)
		go func(i int, d crdt.DeviceID) {
			defer wg.Done()
			octx, ocancel := context.WithTimeout(ctx, 5*time.Second)
			defer ocancel()
			s, err := n.host.NewStream(network.WithAllowLimitedConn(octx, "reshare"), PeerID(d), ReshareProtocol)
			if err != nil {
				openErr[i] = err
				return
			}
			streams[i] = s
		}(i, d)
	}
	wg.Wait()
	defer func() {
		for _, s := range streams {
			if s != nil {
				n.dkg.remove(s)
				_ = s.Close()
			}
		}
	}()
	in := make(chan hubIn, 64)
	for i, s := range streams {
		if s == nil {
			continue
		}
		n.dkg.add(s)
		writers[i] = bufio.NewWriter(s)
		go func(i int, s network.Stream) {
			r := bufio.NewReader(s)
			for {
				f, err := readFrame(r)
				select {
				case in <- hubIn{from: i, frame: f, err: err}:
				case <-ctx.Done():
					return
				}
				if err != nil {
					return
				}
			}
		}(i, s)
	}
	stop := context.AfterFunc(ctx, func() {
		for _, s := range streams {
			if s != nil {
				_ = s.Reset()
			}
		}
	})
	defer stop()
	now := func() int64 { return time.Now().UnixMilli() }
	var carry func(out threshold.KeygenOutput) threshold.KeygenOutput
	carry = func(out threshold.KeygenOutput) threshold.KeygenOutput {
		for _, err := range out.Rejected {
			n.log.Debug("reshare step", "err", err)
		}
		for _, snd := range out.Send {
			w := writers[snd.To]
			if w == nil {
				continue
			}
			if err := writeFrame(w, snd.Frame); err != nil && out.Err == nil {
				writers[snd.To] = nil
				more := carry(hub.Broken(now(), snd.To, err))
				if more.Done != nil || more.Err != nil {
					return more
				}
			}
		}
		return out
	}
	out := carry(hub.Start(now()))
	for i, err := range openErr {
		if err != nil && out.Done == nil && out.Err == nil {
			out = carry(hub.Broken(now(), i, fmt.Errorf("not reachable: %w", err)))
		}
	}
	ticker := time.NewTicker(dkgTick)
	defer ticker.Stop()
	started := false
	for out.Done == nil && out.Err == nil {
		if !hub.FinalSent() {
			if err := n.checkSession(scope, plan.Devices); err != nil {
				out = carry(hub.Abort(now(), err))
				break
			}
		}
		if !started && len(hub.Members()) > 0 {
			started = true
			members := hub.Members()
			n.setReshareStatus(func(s *ReshareStatus) {
				s.Detail = fmt.Sprintf("dealing new shares to %d devices", len(members))
				s.Devices = nil
				for _, i := range members {
					s.Devices = append(s.Devices, plan.Devices[i].String())
				}
			})
		}
		select {
		case x := <-in:
			if x.err != nil {
				out = carry(hub.Broken(now(), x.from, x.err))
			} else {
				out = carry(hub.Step(now(), x.from, x.frame))
			}
		case <-ticker.C:
			out = carry(hub.Tick(now()))
		case <-ctx.Done():
			out = carry(hub.Abort(now(), fmt.Errorf("%w", ctx.Err())))
		}
	}
	if out.Err != nil {
		for _, s := range streams {
			if s != nil {
				_ = s.Reset()
			}
		}
		return nil, nil, nil, n.reshareError(plan.Devices, out.Err)
	}
	return out.Done.Key, out.Done.Share, out.Done.Participants, nil
}

// reshareError renders a session's error for the operator.
func (n *Node) reshareError(devices []crdt.DeviceID, err error) error {
	hint := "check that the devices are online, then run `aura-cli threshold reshare` again"
	switch {
	case errors.Is(err, threshold.ErrReshareQuorum):
		hint = "bring more devices holding a share online (see `aura-cli account devices`), then run it again; the key is unchanged"
	case errors.Is(err, threshold.ErrReshareThreshold):
		return errorf(ErrBadRequest, "%w (choose --threshold within what the devices online allow)", err)
	case errors.Is(err, threshold.ErrKeygenDisagree):
		hint = "that device may be faulty or compromised: check it, or remove it, then run it again"
	}
	var ke *threshold.KeygenError
	if errors.As(err, &ke) && ke.Participant >= 0 && ke.Participant < len(devices) {
		return fmt.Errorf("%w: device %s: %w (%s)", ErrReshare, devices[ke.Participant].Short(), ke.Err, hint)
	}
	return fmt.Errorf("%w: %w (%s)", ErrReshare, err, hint)
}

// handleReshare is a participant's side: frames between the hub's stream
// and a threshold.ReshareParticipant; the new share is sealed as pending
// and used once a group key fact names its key.
func (n *Node) handleReshare(s network.Stream) {
	n.dkg.add(s)
	defer n.dkg.remove(s)
	defer s.Close()
	_ = s.SetDeadline(time.Now().Add(dkgStreamDeadline))
	hubPeer := s.Conn().RemotePeer()
	hubDev, err := crdt.DeviceIDFromPeerIDBytes([]byte(hubPeer))
	n.mu.Lock()
	st := n.rep.State()
	admin := err == nil && st.Holds(hubDev, crdt.CapAdmin, st.Epoch)
	share := n.rep.Share()
	n.mu.Unlock()
	if !admin {
		n.log.Warn("resharing refused: the hub is not the account's admin", "hub", hubPeer)
		_ = s.Reset()
		return
	}
	now := func() int64 { return time.Now().UnixMilli() }
	p, err := threshold.NewReshareParticipant(threshold.ReshareParticipantConfig{
		Self: append([]byte(nil), n.device[:]...), Share: share, Rand: rand.Reader}, now())
	if err != nil {
		_ = s.Reset()
		return
	}
	n.setReshareStatus(func(s *ReshareStatus) {
		*s = ReshareStatus{State: "running", Detail: "taking part (hub " + hubDev.Short() + ")", Started: time.Now()}
	})
	w := bufio.NewWriter(s)
	in := make(chan hubIn, 16)
	done := make(chan struct{})
	defer close(done)
	go func() {
		r := bufio.NewReader(s)
		for {
			f, err := readFrame(r)
			select {
			case in <- hubIn{frame: f, err: err}:
			case <-done:
				return
			}
			if err != nil {
				return
			}
		}
	}()
	ticker := time.NewTicker(dkgTick)
	defer ticker.Stop()
	var out threshold.KeygenOutput
	kept := false
	for {
		// The participant's side of the session gate, as for keygen: no
		// part in a session with a device lacking the protocol or
		// readiness, until it keeps its share; the epoch is the hub's to
		// watch (this state may still be catching up with the hub's).
		if ids := p.Participants(); ids != nil && !kept && out.Keep == nil && out.Err == nil && out.Done == nil {
			parts := make([]crdt.DeviceID, len(ids))
			for i, b := range ids {
				copy(parts[i][:], b)
			}
			n.mu.Lock()
			st := n.rep.State()
			err := maintenance.CheckSession(st, maintenance.ScopeOf(st), parts)
			n.mu.Unlock()
			if err != nil {
				out = p.Abort(now(), err)
			}
		}
		for _, err := range out.Rejected {
			n.log.Debug("reshare step", "err", err)
		}
		for _, snd := range out.Send {
			if err := writeFrame(w, snd.Frame); err != nil && out.Err == nil {
				out = p.Broken(now(), err)
				break
			}
		}
		if out.Keep != nil {
			sh := out.Keep.Share
			if err := n.savePendingShare(sh); err != nil {
				out = p.Abort(now(), fmt.Errorf("seal the share: %w", err))
				continue
			}
			n.log.Info("new threshold share kept (used once the new key is published)", "index", sh.Index()+1,
				"threshold", out.Keep.Key.Threshold(), "devices", len(out.Keep.Participants))
			kept = true
			out = p.Kept(now())
			continue
		}
		if out.Err != nil {
			n.log.Warn("resharing", "hub", hubPeer, "err", out.Err)
			n.setReshareStatus(func(s *ReshareStatus) { s.State, s.Detail = "failed", out.Err.Error() })
			_ = s.Reset()
			return
		}
		if out.Done != nil {
			n.setReshareStatus(func(s *ReshareStatus) {
				s.State, s.Detail = "done", fmt.Sprintf("share #%d of %d-of-%d", out.Done.Share.Index()+1, out.Done.Key.Threshold(), out.Done.Key.Signers())
			})
			_ = s.CloseWrite()
			select {
			case <-in:
			case <-time.After(10 * time.Second):
			}
			return
		}
		select {
		case x := <-in:
			if x.err != nil {
				out = p.Broken(now(), x.err)
			} else {
				out = p.Step(now(), x.frame)
			}
		case <-ticker.C:
			out = p.Tick(now())
		}
	}
}

// savePendingShare seals a share received by a resharing beside the
// current one.
func (n *Node) savePendingShare(sh *threshold.Share) error {
	pass, err := n.sealKey()
	if err != nil {
		return err
	}
	sealed, err := threshold.SealShareWorkFactor(sh, pass, 10)
	if err != nil {
		return err
	}
	if err := writeFileAtomic(filepath.Join(n.home, PendingShareFile), sealed, 0o600); err != nil {
		return err
	}
	n.mu.Lock()
	n.rememberShareLocked(sh)
	n.rs.pending = sh
	n.rs.keyRaw = nil // look again: the key fact may already be here
	n.adoptShareLocked()
	n.mu.Unlock()
	return nil
}

// rememberShareLocked adds sh to the shares this device holds.
func (n *Node) rememberShareLocked(sh *threshold.Share) {
	for _, k := range n.rs.known {
		if k == sh {
			return
		}
	}
	n.rs.known = append(n.rs.known, sh)
}

// adoptShareLocked makes the replica vote with the share that belongs to
// the current group key fact (this device at its index), or with none: a
// share of an earlier key makes only bad partials after a resharing.
// A pending share that the current key names replaces the sealed one on
// disk. n.mu is held.
func (n *Node) adoptShareLocked() {
	st := n.rep.State()
	gk := st.GroupKey()
	if gk == nil || bytes.Equal(gk.PublicKey, n.rs.keyRaw) {
		return
	}
	n.rs.keyRaw = append([]byte(nil), gk.PublicKey...)
	if !n.rs.loaded {
		n.rs.loaded = true
		if sh := n.loadPendingShare(); sh != nil {
			n.rs.pending = sh
			n.rememberShareLocked(sh)
		}
	}
	if cur := n.rep.Share(); cur != nil {
		n.rememberShareLocked(cur)
	}
	pick := maintenance.ShareFor(st, n.device, n.rs.known)
	if pick != n.rep.Share() {
		if pick == nil {
			n.log.Info("this device's share does not belong to the current group key: it no longer votes", "key_epoch", gk.KeyEpoch)
		} else {
			n.log.Info("using the threshold share of the current group key", "key_epoch", gk.KeyEpoch, "index", pick.Index()+1)
		}
		n.rep.SetShare(pick)
	}
	if pick != nil && pick == n.rs.pending {
		if err := os.Rename(filepath.Join(n.home, PendingShareFile), filepath.Join(n.home, ShareFile)); err != nil {
			n.log.Warn("keep the new threshold share", "err", err)
		}
		n.rs.pending = nil
	}
}

func (n *Node) loadPendingShare() *threshold.Share {
	sealed, err := os.ReadFile(filepath.Join(n.home, PendingShareFile))
	if err != nil {
		return nil
	}
	pass, err := os.ReadFile(filepath.Join(n.home, SealFile))
	if err != nil {
		return nil
	}
	sh, err := threshold.OpenShare(sealed, pass)
	if err != nil {
		n.log.Warn("pending threshold share not loaded", "err", err)
		return nil
	}
	return sh
}

// reshareRoutes serves /v1/threshold/reshare.
func (n *Node) reshareRoutes(mux *http.ServeMux) {
	mux.HandleFunc("POST /v1/threshold/reshare", func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			Threshold int `json:"threshold"`
		}
		if !decode(w, r, &req) {
			return
		}
		info, err := n.Reshare(r.Context(), req.Threshold)
		reply(w, info, err)
	})
	mux.HandleFunc("GET /v1/threshold/reshare", func(w http.ResponseWriter, r *http.Request) {
		s := n.ReshareProgress()
		if s == nil {
			reply(w, nil, errorf(ErrNotFound, "no resharing has run on this device"))
			return
		}
		reply(w, s, nil)
	})
}

// Reshare runs a resharing (admin only); threshold 0 keeps the key's M.
func (c *Client) Reshare(ctx context.Context, threshold int) (GroupKeyInfo, error) {
	var g GroupKeyInfo
	return g, c.do(ctx, "POST", "/v1/threshold/reshare", map[string]int{"threshold": threshold}, &g)
}

// ReshareStatus is this device's latest resharing.
func (c *Client) ReshareStatus(ctx context.Context) (ReshareStatus, error) {
	var s ReshareStatus
	return s, c.do(ctx, "GET", "/v1/threshold/reshare", nil, &s)
}
