package node

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
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

// DKGProtocol carries a distributed key generation among the account's
// devices. The device that runs `aura-cli threshold keygen` is the hub: it
// opens one stream to every other participant and relays the DKG's
// messages (they are end-to-end encrypted and signed by the threshold
// package, so the hub learns no share).
const DKGProtocol = protocol.ID("/aura/dkg/1")

// maxDKGFrame bounds one /aura/dkg/1 frame (threshold.KeygenFrame).
const maxDKGFrame = threshold.MaxKeygenFrame

// Deadlines of a key generation; the sessions enforce them from ticks.
const (
	dkgTick = 200 * time.Millisecond
	// dkgStreamDeadline is a safety net beyond the sessions' own deadlines
	// (the hub's: 60 s, longer for a large DKG, at most 77.5 s up to 30
	// devices; 90 s for a participant).
	dkgStreamDeadline = 95 * time.Second
)

// dkgSessions tracks the streams of running sessions so Close can end them.
type dkgSessions struct {
	mu      sync.Mutex
	streams map[network.Stream]bool
	busy    bool
}

func (d *dkgSessions) add(s network.Stream) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.streams == nil {
		d.streams = map[network.Stream]bool{}
	}
	d.streams[s] = true
}

func (d *dkgSessions) remove(s network.Stream) {
	d.mu.Lock()
	defer d.mu.Unlock()
	delete(d.streams, s)
}

func (d *dkgSessions) closeAll() {
	d.mu.Lock()
	defer d.mu.Unlock()
	for s := range d.streams {
		_ = s.Reset()
	}
}

// ErrKeygen wraps failures of a key generation.
var ErrKeygen = errors.New("key generation failed")

// Keygen runs a DKG for an M-of-N group key among every current device of
// the account (all must be connected), then publishes the group key.
func (n *Node) Keygen(ctx context.Context, m int) (*GroupKeyInfo, error) {
	n.dkg.mu.Lock()
	if n.dkg.busy {
		n.dkg.mu.Unlock()
		return nil, fmt.Errorf("%w: a key generation is already running on this device", ErrKeygen)
	}
	n.dkg.busy = true
	n.dkg.mu.Unlock()
	defer func() { n.dkg.mu.Lock(); n.dkg.busy = false; n.dkg.mu.Unlock() }()

	if n.Account().IsZero() {
		return nil, ErrNoAccount
	}
	if err := n.requireAdmin("run a key generation (it re-keys the account)"); err != nil {
		return nil, err
	}
	var members []crdt.DeviceID
	var key *threshold.GroupKey
	var share *threshold.Share
	for attempt := 1; ; attempt++ {
		var err error
		members, key, share, err = n.keygenAttempt(ctx, m)
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
			n.sessions.note(SessionAbort{Session: "keygen", Reason: err.Error(), Code: code, Retry: outcome, At: time.Now()})
			n.log.Warn("key generation aborted", "err", err, "outcome", outcome)
		}
		if !retry {
			return nil, sessionHint(err)
		}
	}
	if err := n.saveShare(share); err != nil {
		return nil, err
	}
	n.mu.Lock()
	n.rep.SetShare(share)
	out, err := n.rep.PublishGroupKey(key, members)
	n.mu.Unlock()
	if err != nil {
		return nil, err
	}
	n.handle(out)
	info := &GroupKeyInfo{Threshold: uint64(m), HasShare: true, ShareIndex: share.Index() + 1}
	for _, d := range members {
		info.Participants = append(info.Participants, d.String())
	}
	if s := n.Status(); s.GroupKey != nil {
		info.KeyEpoch = s.GroupKey.KeyEpoch
	}
	return info, nil
}

// keygenAttempt runs one key generation session among the current
// members, under the current scope: it refuses to start when
// maintenance.CheckSession fails (a member lacking the protocol or
// readiness), and the hub aborts it when the check fails while it runs
// (the identity epoch moved).
func (n *Node) keygenAttempt(ctx context.Context, m int) ([]crdt.DeviceID, *threshold.GroupKey, *threshold.Share, error) {
	n.mu.Lock()
	st := n.rep.State()
	members, scope := st.MemberList(), maintenance.ScopeOf(st)
	err := maintenance.CheckSession(st, scope, members)
	n.mu.Unlock()
	if err != nil {
		return nil, nil, nil, fmt.Errorf("%w: %w", ErrKeygen, err)
	}
	nn := len(members)
	if err := thresholdRange(m, nn); err != nil {
		return nil, nil, nil, err
	}
	self := slices.Index(members, n.device)
	if self < 0 {
		return nil, nil, nil, fmt.Errorf("%w: this device is not a member", ErrKeygen)
	}
	if nn == 1 || m == 1 {
		k, shares, err := threshold.Deal(threshold.NewBN256(), rand.Reader, 1, 1)
		if err != nil {
			return nil, nil, nil, err
		}
		return members, k, shares[0], nil
	}
	key, share, err := n.runHub(ctx, members, self, m, scope)
	return members, key, share, err
}

// checkSession is maintenance.CheckSession on the live state.
func (n *Node) checkSession(scope maintenance.Scope, participants []crdt.DeviceID) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	return maintenance.CheckSession(n.rep.State(), scope, participants)
}

type hubIn struct {
	from  int
	frame []byte
	err   error
}

// runHub drives the session as its hub: it opens a stream to every other
// participant and moves frames between the streams and the
// threshold.KeygenHub, which decides everything else.
func (n *Node) runHub(ctx context.Context, members []crdt.DeviceID, self, m int, scope maintenance.Scope) (*threshold.GroupKey, *threshold.Share, error) {
	ctx, cancel := context.WithTimeout(ctx, dkgStreamDeadline)
	defer cancel()
	var session [16]byte
	if _, err := rand.Read(session[:]); err != nil {
		return nil, nil, fmt.Errorf("%w: %w", ErrKeygen, err)
	}
	parts := make([][]byte, len(members))
	for i, d := range members {
		parts[i] = append([]byte(nil), d[:]...)
	}
	hub, err := threshold.NewKeygenHub(threshold.KeygenHubConfig{Session: session, Participants: parts,
		Self: self, Threshold: m, Rand: rand.Reader})
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %w", ErrKeygen, err)
	}
	streams := make([]network.Stream, len(members))
	writers := make([]*bufio.Writer, len(members))
	defer func() {
		for _, s := range streams {
			if s != nil {
				n.dkg.remove(s)
				_ = s.Close()
			}
		}
	}()
	for i, d := range members {
		if i == self {
			continue
		}
		s, err := n.host.NewStream(network.WithAllowLimitedConn(ctx, "dkg"), PeerID(d), DKGProtocol)
		if err != nil {
			for _, s := range streams {
				if s != nil {
					_ = s.Reset()
				}
			}
			return nil, nil, fmt.Errorf("%w: device %s is not reachable (all devices must be online): %v", ErrKeygen, d.Short(), err)
		}
		n.dkg.add(s)
		streams[i] = s
		writers[i] = bufio.NewWriter(s)
	}
	in := make(chan hubIn, 64)
	for i, s := range streams {
		if s == nil {
			continue
		}
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
	// carry sends what the session asked for; a failed write is fed back
	// as a broken channel, whose output is carried in turn.
	var carry func(out threshold.KeygenOutput) threshold.KeygenOutput
	carry = func(out threshold.KeygenOutput) threshold.KeygenOutput {
		for _, err := range out.Rejected {
			n.log.Debug("dkg step", "err", err)
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
	failed := func(err error) (*threshold.GroupKey, *threshold.Share, error) {
		for _, s := range streams {
			if s != nil {
				_ = s.Reset()
			}
		}
		return nil, nil, keygenError(members, err)
	}
	out := carry(hub.Start(now()))
	ticker := time.NewTicker(dkgTick)
	defer ticker.Stop()
	// gate aborts the session when its check fails (the epoch moved, a
	// participant lost readiness), until the final is out: from then on
	// participants keep shares, and the key is published as generated.
	gate := func() bool {
		if hub.FinalSent() {
			return false
		}
		if err := n.checkSession(scope, members); err != nil {
			out = carry(hub.Abort(now(), err))
			return true
		}
		return false
	}
	for out.Done == nil && out.Err == nil {
		if gate() {
			break
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
		return failed(out.Err)
	}
	return out.Done.Key, out.Done.Share, nil
}

// keygenError renders a session's error for the operator: the device it
// names, what happened, and what to do.
func keygenError(members []crdt.DeviceID, err error) error {
	hint := "check that every device is online, then run it again"
	switch {
	case errors.Is(err, threshold.ErrKeygenDisagree):
		hint = "that device may be faulty or compromised: check it, or remove it from the account, then run it again"
	case errors.Is(err, threshold.ErrKeygenProtocol):
		hint = "check that every device runs a compatible version, then run it again"
	case errors.Is(err, threshold.ErrKeygenAborted):
		hint = "see that device's log for why, then run it again"
	}
	var ke *threshold.KeygenError
	if errors.As(err, &ke) && ke.Participant >= 0 && ke.Participant < len(members) {
		return fmt.Errorf("%w: device %s: %w (%s)", ErrKeygen, members[ke.Participant].Short(), ke.Err, hint)
	}
	return fmt.Errorf("%w: %w (%s)", ErrKeygen, err, hint)
}

// readFrame reads one length-prefixed frame (uvarint length, then the
// bytes), as writeMsg writes them.
func readFrame(r *bufio.Reader) ([]byte, error) {
	l, err := binary.ReadUvarint(r)
	if err != nil {
		return nil, err
	}
	if l > maxDKGFrame {
		return nil, fmt.Errorf("frame of %d bytes over the limit of %d", l, maxDKGFrame)
	}
	b := make([]byte, l)
	if _, err := io.ReadFull(r, b); err != nil {
		return nil, err
	}
	return b, nil
}

func writeFrame(w *bufio.Writer, frame []byte) error {
	var hdr [binary.MaxVarintLen64]byte
	k := binary.PutUvarint(hdr[:], uint64(len(frame)))
	if _, err := w.Write(hdr[:k]); err != nil {
		return err
	}
	if _, err := w.Write(frame); err != nil {
		return err
	}
	return w.Flush()
}

// handleDKG is a participant's side of a session: it moves frames between
// the hub's stream and a threshold.KeygenParticipant, and seals the share
// when the session says so.
func (n *Node) handleDKG(s network.Stream) {
	n.dkg.add(s)
	defer n.dkg.remove(s)
	defer s.Close()
	_ = s.SetDeadline(time.Now().Add(dkgStreamDeadline))
	hubPeer := s.Conn().RemotePeer()
	now := func() int64 { return time.Now().UnixMilli() }
	p, err := threshold.NewKeygenParticipant(threshold.KeygenParticipantConfig{
		Self: append([]byte(nil), n.device[:]...), Rand: rand.Reader}, now())
	if err != nil {
		n.log.Warn("key generation", "hub", hubPeer, "err", err)
		_ = s.Reset()
		return
	}
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
		// The participant's side of the session gate: it takes no part in
		// a session with a participant lacking the protocol or readiness
		// (its own state's view), until it keeps its share. The epoch is
		// the hub's to watch: this device's state may still be catching up
		// with membership the hub already holds, which is no reason to
		// abort.
		if ids := p.Participants(); ids != nil && !kept && out.Keep == nil && out.Err == nil && out.Done == nil {
			parts := make([]crdt.DeviceID, 0, len(ids))
			for _, b := range ids {
				var d crdt.DeviceID
				copy(d[:], b)
				parts = append(parts, d)
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
			n.log.Debug("dkg step", "err", err)
		}
		for _, snd := range out.Send {
			if err := writeFrame(w, snd.Frame); err != nil && out.Err == nil {
				out = p.Broken(now(), err)
				break
			}
		}
		if out.Keep != nil {
			sh := out.Keep.Share
			if err := n.saveShare(sh); err != nil {
				out = p.Abort(now(), fmt.Errorf("seal the share: %w", err))
				continue
			}
			n.mu.Lock()
			n.rep.SetShare(sh)
			n.mu.Unlock()
			n.log.Info("threshold share kept", "index", sh.Index()+1, "threshold", p.Threshold(), "devices", len(p.Participants()))
			kept = true
			out = p.Kept(now())
			continue
		}
		if out.Err != nil {
			n.log.Warn("key generation", "hub", hubPeer, "err", out.Err)
			_ = s.Reset()
			return
		}
		if out.Done != nil {
			// Let the hub read the acknowledgement before the stream goes.
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

// saveShare seals the share under the key file in home and writes it.
func (n *Node) saveShare(sh *threshold.Share) error {
	pass, err := n.sealKey()
	if err != nil {
		return err
	}
	sealed, err := threshold.SealShareWorkFactor(sh, pass, 10)
	if err != nil {
		return err
	}
	return writeFileAtomic(filepath.Join(n.home, ShareFile), sealed, 0o600)
}

// sealKey returns the random passphrase in HOME/share.seal, creating it.
func (n *Node) sealKey() ([]byte, error) {
	path := filepath.Join(n.home, SealFile)
	b, err := os.ReadFile(path)
	if err == nil && len(b) >= 32 {
		return b, nil
	}
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	k := make([]byte, 32)
	if _, err := rand.Read(k); err != nil {
		return nil, err
	}
	buf := []byte(fmt.Sprintf("%x", k))
	if err := writeFileAtomic(path, buf, 0o600); err != nil {
		return nil, err
	}
	return buf, nil
}

// loadShare opens the sealed share at start, if there is one.
func (n *Node) loadShare() error {
	sealed, err := os.ReadFile(filepath.Join(n.home, ShareFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	pass, err := os.ReadFile(filepath.Join(n.home, SealFile))
	if err != nil {
		return fmt.Errorf("share key %s: %w", SealFile, err)
	}
	sh, err := threshold.OpenShare(sealed, pass)
	if err != nil {
		return err
	}
	n.rep.SetShare(sh)
	return nil
}
