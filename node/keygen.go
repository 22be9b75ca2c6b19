package node

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"

	"aura/crdt"
	"aura/threshold"
)

// DKGProtocol carries a distributed key generation among the account's
// devices. The device that runs `aura-cli threshold keygen` is the hub: it
// opens one stream to every other participant and relays the DKG's
// messages (they are end-to-end encrypted and signed by the threshold
// package, so the hub learns no share).
const DKGProtocol = protocol.ID("/aura/dkg/1")

// Frame types of /aura/dkg/1.
const (
	dkgInit   = 1 // hub → participant: session, threshold, participants
	dkgPub    = 2 // participant → hub: its fresh DKG public key
	dkgStart  = 3 // hub → participant: every DKG public key, in index order
	dkgMsg    = 4 // either way: a DKG message (To: recipient index or Broadcast)
	dkgResult = 5 // participant → hub: the group key it computed
	dkgFinal  = 6 // hub → participant: everyone agrees; keep the share
	dkgAbort  = 7 // either way: give up (Error says why)
)

type dkgFrame struct {
	Type         uint8    `cbor:"1,keyasint"`
	Session      [16]byte `cbor:"2,keyasint"`
	Threshold    int      `cbor:"3,keyasint,omitempty"`
	Participants [][]byte `cbor:"4,keyasint,omitempty"` // device ids (32 bytes)
	Pubs         [][]byte `cbor:"5,keyasint,omitempty"`
	To           int      `cbor:"6,keyasint,omitempty"`
	From         int      `cbor:"7,keyasint,omitempty"`
	Data         []byte   `cbor:"8,keyasint,omitempty"`
	Error        string   `cbor:"9,keyasint,omitempty"`
}

const maxDKGFrame = 1 << 20

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
	members := n.Members()
	nn := len(members)
	if err := thresholdRange(m, nn); err != nil {
		return nil, err
	}
	self := -1
	for i, d := range members {
		if d == n.device {
			self = i
		}
	}
	if self < 0 {
		return nil, fmt.Errorf("%w: this device is not a member", ErrKeygen)
	}
	var key *threshold.GroupKey
	var share *threshold.Share
	if nn == 1 || m == 1 {
		k, shares, err := threshold.Deal(threshold.NewBN256(), rand.Reader, 1, 1)
		if err != nil {
			return nil, err
		}
		key, share = k, shares[0]
	} else {
		var err error
		key, share, err = n.runHub(ctx, members, self, m)
		if err != nil {
			return nil, err
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

type hubIn struct {
	from int
	f    *dkgFrame
	err  error
}

// runHub drives the session as its hub.
func (n *Node) runHub(ctx context.Context, members []crdt.DeviceID, self, m int) (*threshold.GroupKey, *threshold.Share, error) {
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	var session [16]byte
	_, _ = rand.Read(session[:])
	parts := make([][]byte, len(members))
	for i, d := range members {
		parts[i] = append([]byte(nil), d[:]...)
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
	in := make(chan hubIn, 64)
	for i, d := range members {
		if i == self {
			continue
		}
		p := PeerID(d)
		s, err := n.host.NewStream(network.WithAllowLimitedConn(ctx, "dkg"), p, DKGProtocol)
		if err != nil {
			return nil, nil, fmt.Errorf("%w: device %s is not reachable (all devices must be online): %v", ErrKeygen, d.Short(), err)
		}
		n.dkg.add(s)
		streams[i] = s
		writers[i] = bufio.NewWriter(s)
		if err := sendFrame(writers[i], &dkgFrame{Type: dkgInit, Session: session, Threshold: m, Participants: parts}); err != nil {
			return nil, nil, fmt.Errorf("%w: %s: %v", ErrKeygen, d.Short(), err)
		}
		go func(i int, s network.Stream) {
			r := bufio.NewReader(s)
			for {
				var f dkgFrame
				err := readMsg(r, &f, maxDKGFrame)
				select {
				case in <- hubIn{from: i, f: &f, err: err}:
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
	abort := func(err error) (*threshold.GroupKey, *threshold.Share, error) {
		for i, w := range writers {
			if w != nil {
				_ = sendFrame(w, &dkgFrame{Type: dkgAbort, Session: session, Error: err.Error()})
				_ = streams[i].Reset()
			}
		}
		return nil, nil, err
	}
	next := func() (hubIn, error) {
		select {
		case x := <-in:
			if x.err != nil {
				return x, fmt.Errorf("%w: device %s: %v", ErrKeygen, members[x.from].Short(), x.err)
			}
			if x.f.Type == dkgAbort {
				return x, fmt.Errorf("%w: device %s gave up: %s", ErrKeygen, members[x.from].Short(), x.f.Error)
			}
			return x, nil
		case <-ctx.Done():
			return hubIn{}, fmt.Errorf("%w: timed out: %v", ErrKeygen, ctx.Err())
		}
	}
	// Collect public keys.
	dk, err := threshold.NewDKGKey(threshold.NewBN256(), rand.Reader)
	if err != nil {
		return abort(err)
	}
	pubs := make([][]byte, len(members))
	pubs[self] = dk.Public()
	for got := 1; got < len(members); {
		x, err := next()
		if err != nil {
			return abort(err)
		}
		if x.f.Type == dkgPub && pubs[x.from] == nil {
			pubs[x.from] = x.f.Data
			got++
		}
	}
	for i, w := range writers {
		if w != nil {
			if err := sendFrame(w, &dkgFrame{Type: dkgStart, Session: session, Pubs: pubs}); err != nil {
				return abort(fmt.Errorf("%w: %s: %v", ErrKeygen, members[i].Short(), err))
			}
		}
	}
	d, err := threshold.NewDKG(threshold.DKGConfig{Index: self, Key: dk, Participants: pubs, Threshold: m, Rand: rand.Reader})
	if err != nil {
		return abort(err)
	}
	route := func(from int, msgs []threshold.DKGMessage) []threshold.DKGMessage {
		var local []threshold.DKGMessage
		for _, msg := range msgs {
			for i, w := range writers {
				if i == from || (msg.To != threshold.Broadcast && msg.To != i) {
					continue
				}
				if i == self {
					local = append(local, msg)
					continue
				}
				_ = sendFrame(w, &dkgFrame{Type: dkgMsg, Session: session, To: msg.To, From: from, Data: msg.Data})
			}
		}
		return local
	}
	step := func(msgs []threshold.DKGMessage) {
		queue := msgs
		for len(queue) > 0 {
			msg := queue[0]
			queue = queue[1:]
			out, err := d.Step(msg.Data)
			if err != nil {
				n.log.Debug("dkg step", "err", err)
				continue
			}
			queue = append(queue, route(self, out)...)
		}
	}
	out, err := d.Start()
	if err != nil {
		return abort(err)
	}
	step(route(self, out))
	results := map[int][]byte{}
	timeout := time.NewTimer(20 * time.Second)
	defer timeout.Stop()
	for !(d.Done() && len(results) == len(members)-1) {
		select {
		case <-timeout.C:
			d.Timeout()
			if !d.Done() {
				return abort(fmt.Errorf("%w: not enough deals certified in time", ErrKeygen))
			}
			continue
		default:
		}
		var x hubIn
		select {
		case x = <-in:
		case <-timeout.C:
			d.Timeout()
			continue
		case <-ctx.Done():
			return abort(fmt.Errorf("%w: timed out", ErrKeygen))
		}
		if x.err != nil {
			return abort(fmt.Errorf("%w: device %s: %v", ErrKeygen, members[x.from].Short(), x.err))
		}
		switch x.f.Type {
		case dkgMsg:
			step(route(x.from, []threshold.DKGMessage{{To: x.f.To, Data: x.f.Data}}))
		case dkgResult:
			results[x.from] = x.f.Data
		case dkgAbort:
			return abort(fmt.Errorf("%w: device %s gave up: %s", ErrKeygen, members[x.from].Short(), x.f.Error))
		}
	}
	key, share, err := d.Result()
	if err != nil {
		return abort(err)
	}
	for i, r := range results {
		if !bytes.Equal(r, key.Bytes()) {
			return abort(fmt.Errorf("%w: device %s computed a different group key", ErrKeygen, members[i].Short()))
		}
	}
	for i, w := range writers {
		if w != nil {
			if err := sendFrame(w, &dkgFrame{Type: dkgFinal, Session: session, Data: key.Bytes()}); err != nil {
				return abort(fmt.Errorf("%w: %s: %v", ErrKeygen, members[i].Short(), err))
			}
		}
	}
	// Wait for each participant to acknowledge it kept its share.
	acked := map[int]bool{}
	for len(acked) < len(members)-1 {
		x, err := next()
		if acked[x.from] {
			continue // its stream ends after the acknowledgement
		}
		if err != nil {
			return nil, nil, err
		}
		if x.f.Type == dkgFinal {
			acked[x.from] = true
		}
	}
	return key, share, nil
}

func sendFrame(w *bufio.Writer, f *dkgFrame) error {
	if err := writeMsg(w, f); err != nil {
		return err
	}
	return w.Flush()
}

// handleDKG is a participant's side of a session.
func (n *Node) handleDKG(s network.Stream) {
	n.dkg.add(s)
	defer n.dkg.remove(s)
	defer s.Close()
	_ = s.SetDeadline(time.Now().Add(90 * time.Second))
	r := bufio.NewReader(s)
	w := bufio.NewWriter(s)
	hub := s.Conn().RemotePeer()
	fail := func(err error) {
		n.log.Warn("key generation", "hub", hub, "err", err)
		_ = sendFrame(w, &dkgFrame{Type: dkgAbort, Error: err.Error()})
		_ = s.Reset()
	}
	var init dkgFrame
	if err := readMsg(r, &init, maxDKGFrame); err != nil || init.Type != dkgInit {
		_ = s.Reset()
		return
	}
	self := -1
	members := make([]crdt.DeviceID, len(init.Participants))
	for i, p := range init.Participants {
		copy(members[i][:], p)
		if members[i] == n.device {
			self = i
		}
	}
	if self < 0 {
		fail(errors.New("this device is not among the participants"))
		return
	}
	dk, err := threshold.NewDKGKey(threshold.NewBN256(), rand.Reader)
	if err != nil {
		fail(err)
		return
	}
	if err := sendFrame(w, &dkgFrame{Type: dkgPub, Session: init.Session, Data: dk.Public()}); err != nil {
		return
	}
	var start dkgFrame
	if err := readMsg(r, &start, maxDKGFrame); err != nil || start.Type != dkgStart {
		_ = s.Reset()
		return
	}
	d, err := threshold.NewDKG(threshold.DKGConfig{Index: self, Key: dk, Participants: start.Pubs, Threshold: init.Threshold, Rand: rand.Reader})
	if err != nil {
		fail(err)
		return
	}
	send := func(msgs []threshold.DKGMessage) error {
		for _, m := range msgs {
			if err := sendFrame(w, &dkgFrame{Type: dkgMsg, Session: init.Session, To: m.To, From: self, Data: m.Data}); err != nil {
				return err
			}
		}
		return nil
	}
	out, err := d.Start()
	if err != nil {
		fail(err)
		return
	}
	if send(out) != nil {
		return
	}
	reported := false
	for {
		if d.Done() && !reported {
			key, _, err := d.Result()
			if err != nil {
				fail(err)
				return
			}
			if sendFrame(w, &dkgFrame{Type: dkgResult, Session: init.Session, Data: key.Bytes()}) != nil {
				return
			}
			reported = true
		}
		var f dkgFrame
		if err := readMsg(r, &f, maxDKGFrame); err != nil {
			return
		}
		switch f.Type {
		case dkgMsg:
			out, err := d.Step(f.Data)
			if err != nil {
				n.log.Debug("dkg step", "err", err)
				continue
			}
			if send(out) != nil {
				return
			}
		case dkgFinal:
			key, share, err := d.Result()
			if err != nil || !bytes.Equal(key.Bytes(), f.Data) {
				fail(fmt.Errorf("group key differs from the hub's"))
				return
			}
			if err := n.saveShare(share); err != nil {
				fail(err)
				return
			}
			n.mu.Lock()
			n.rep.SetShare(share)
			n.mu.Unlock()
			n.log.Info("threshold share kept", "index", share.Index()+1, "threshold", init.Threshold, "devices", len(members))
			_ = sendFrame(w, &dkgFrame{Type: dkgFinal, Session: init.Session})
			_ = s.CloseWrite()
			buf := make([]byte, 1)
			_, _ = s.Read(buf)
			return
		case dkgAbort:
			n.log.Warn("key generation aborted by the hub", "reason", f.Error)
			return
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

var _ = peer.ID("")
