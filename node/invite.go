package node

import (
	"bufio"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/peerstore"
	"github.com/libp2p/go-libp2p/core/protocol"
	"github.com/mr-tron/base58/base58"
	"github.com/multiformats/go-multiaddr"

	"aura/crdt"
	"aura/maintenance"
)

// JoinProtocol is the admission protocol: a joiner proves it holds an
// invite's secret without sending it.
const JoinProtocol = protocol.ID("/aura/join/1")

// InvitePrefix starts every invite code.
const InvitePrefix = "aura1"

// Invite errors (the inviter's answer, shown to the joiner).
var (
	ErrInviteExpired = errors.New("invite expired")
	ErrInviteUsed    = errors.New("invite already used")
	ErrInviteUnknown = errors.New("invite unknown to the inviter")
	ErrInviteProof   = errors.New("invite secret does not match")
)

// inviteRecord is what the inviter keeps (durably) about an invite: never
// the secret, only its hash.
type inviteRecord struct {
	Expires int64  `cbor:"1,keyasint"` // unix ms
	Used    bool   `cbor:"2,keyasint"`
	UsedBy  []byte `cbor:"3,keyasint,omitempty"`
	Key     []byte `cbor:"4,keyasint"` // inviteKey(secret): the MAC key
}

// inviteCode is what the code carries.
type inviteCode struct {
	Account crdt.AccountID `cbor:"1,keyasint"`
	Admin   []byte         `cbor:"2,keyasint"` // peer id bytes
	Addrs   []string       `cbor:"3,keyasint"`
	Secret  []byte         `cbor:"4,keyasint"`
}

type joinRequest struct {
	ID   []byte `cbor:"1,keyasint"` // sha2-256 of the secret
	MAC  []byte `cbor:"2,keyasint"`
	Name string `cbor:"3,keyasint,omitempty"`
}

type joinResponse struct {
	Error   string         `cbor:"1,keyasint,omitempty"`
	Account crdt.AccountID `cbor:"2,keyasint"`
	// Peers are the addresses of the account's other devices (bounded by
	// maxJoinPeers), so a joiner reaches them even when the inviter goes
	// offline right after the join.
	Peers []peerRecord `cbor:"3,keyasint,omitempty"`
}

// maxJoinPeers bounds the devices a join answer names, maxJoinReply its
// bytes.
const (
	maxJoinPeers = 64
	maxJoinReply = 64 << 10
)

// inviteID names an invite on the wire; it reveals nothing of the key.
func inviteID(secret []byte) []byte {
	h := sha256.Sum256(append([]byte("aura/invite/id/v1\x00"), secret...))
	return h[:16]
}

// inviteKey is the hash of the secret the inviter keeps: the MAC key.
func inviteKey(secret []byte) []byte {
	h := sha256.Sum256(append([]byte("aura/invite/key/v1\x00"), secret...))
	return h[:]
}

// joinMAC binds the proof to the account, the inviter and the joiner.
func joinMAC(key []byte, account crdt.AccountID, inviter, joiner peer.ID) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte("aura/join/1\x00"))
	m.Write(account[:])
	m.Write([]byte(inviter))
	m.Write([]byte(joiner))
	return m.Sum(nil)
}

// EncodeInvite renders an invite code.
func encodeInvite(c *inviteCode) (string, error) {
	b, err := crdt.Marshal(c)
	if err != nil {
		return "", err
	}
	return InvitePrefix + base58.Encode(b), nil
}

func decodeInvite(s string) (*inviteCode, error) {
	s = strings.TrimSpace(s)
	if !strings.HasPrefix(s, InvitePrefix) {
		return nil, errorf(ErrBadRequest, "not an aura invite code (it starts with %q)", InvitePrefix)
	}
	b, err := base58.Decode(s[len(InvitePrefix):])
	if err != nil {
		return nil, errorf(ErrBadRequest, "invite code is damaged: %v", err)
	}
	var c inviteCode
	if err := crdt.Unmarshal(b, &c); err != nil || len(c.Secret) != 32 || c.Account.IsZero() {
		return nil, errorf(ErrBadRequest, "invite code is damaged")
	}
	if _, err := peer.IDFromBytes(c.Admin); err != nil {
		return nil, errorf(ErrBadRequest, "invite code names no valid inviter")
	}
	return &c, nil
}

// Invite opens a one-time invite valid for ttl (0: the configured TTL) and
// returns its code.
func (n *Node) Invite(ttl time.Duration) (string, time.Time, error) {
	if ttl <= 0 {
		ttl = time.Duration(n.cfg.Invite.TTL)
	}
	n.mu.Lock()
	st := n.rep.State()
	acct := n.rep.Account()
	isAdmin := st.Holds(n.device, crdt.CapAdmin, st.Epoch)
	n.mu.Unlock()
	if acct.IsZero() {
		return "", time.Time{}, ErrNoAccount
	}
	if !isAdmin {
		return "", time.Time{}, ErrNotAdmin
	}
	secret := make([]byte, 32)
	if _, err := rand.Read(secret); err != nil {
		return "", time.Time{}, err
	}
	expires := time.Now().Add(ttl)
	rec := &inviteRecord{Expires: expires.UnixMilli(), Key: inviteKey(secret)}
	id := hex.EncodeToString(inviteID(secret))
	if err := n.saveInvite(id, rec); err != nil {
		return "", time.Time{}, err
	}
	var addrs []string
	for _, a := range n.host.Addrs() {
		addrs = append(addrs, a.String())
	}
	code, err := encodeInvite(&inviteCode{Account: acct, Admin: []byte(n.host.ID()), Addrs: addrs, Secret: secret})
	return code, expires, err
}

func (n *Node) saveInvite(id string, rec *inviteRecord) error {
	b, err := crdt.Marshal(rec)
	if err != nil {
		return err
	}
	if err := n.nmeta.Put("invite/"+id, b); err != nil {
		return err
	}
	n.mu.Lock()
	n.invites[id] = rec
	n.mu.Unlock()
	return nil
}

// inviteGrace is how long after an invite expired (or was used) the gater
// still admits guests, so that a late or repeated join gets a clear answer
// ("invite expired", "invite already used") instead of a refused
// connection. Guests may only speak the join protocol and are dropped
// after 30 s.
const inviteGrace = 10 * time.Minute

// inviteOpen reports whether guests may connect: an invite is open, or one
// expired or was used within inviteGrace.
func (n *Node) inviteOpen() bool {
	t := now()
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, r := range n.invites {
		if r.Expires > t || (r.Expires+inviteGrace.Milliseconds() > t) {
			return true
		}
	}
	return false
}

// loadRecords reads the node's durable records: invites, the joined
// account, the inviter trusted during a join.
func (n *Node) loadRecords() error {
	err := n.nmeta.Scan("invite/", func(k string, v []byte) error {
		var r inviteRecord
		if crdt.Unmarshal(v, &r) == nil {
			n.invites[strings.TrimPrefix(k, "invite/")] = &r
		}
		return nil
	})
	if err != nil {
		return err
	}
	b, err := n.nmeta.Get("account")
	if err != nil {
		return err
	}
	if len(b) == 16 && n.rep.Account().IsZero() {
		var a crdt.AccountID
		copy(a[:], b)
		if err := n.rep.Join(a); err != nil {
			return err
		}
	}
	if b, _ := n.nmeta.Get("inviter"); len(b) > 0 {
		if p, err := peer.IDFromBytes(b); err == nil {
			n.gater.trust(p, true)
		}
	}
	return nil
}

func (n *Node) saveAccount(a crdt.AccountID) error {
	if err := n.nmeta.Put("account", a[:]); err != nil {
		return err
	}
	return writeAccountFile(n.home, a)
}

const maxJoinMsg = 4 << 10

func writeMsg(w io.Writer, v any) error {
	b, err := crdt.Marshal(v)
	if err != nil {
		return err
	}
	var hdr [binary.MaxVarintLen64]byte
	k := binary.PutUvarint(hdr[:], uint64(len(b)))
	if _, err := w.Write(append(hdr[:k], b...)); err != nil {
		return err
	}
	return nil
}

func readMsg(r *bufio.Reader, v any, limit int) error {
	l, err := binary.ReadUvarint(r)
	if err != nil {
		return err
	}
	if l > uint64(limit) {
		return fmt.Errorf("message of %d bytes over the limit of %d", l, limit)
	}
	b := make([]byte, l)
	if _, err := io.ReadFull(r, b); err != nil {
		return err
	}
	return crdt.Unmarshal(b, v)
}

// handleJoin is the inviter's side of /aura/join/1.
func (n *Node) handleJoin(s network.Stream) {
	defer s.Close()
	_ = s.SetDeadline(time.Now().Add(30 * time.Second))
	joiner := s.Conn().RemotePeer()
	var req joinRequest
	if err := readMsg(bufio.NewReader(s), &req, maxJoinMsg); err != nil {
		_ = s.Reset()
		return
	}
	acct, out, err := n.admit(joiner, &req)
	// DeviceAdded goes out before the answer, so the other devices admit
	// the joiner even if this node goes offline right after.
	n.handle(out)
	resp := joinResponse{Account: acct}
	if err != nil {
		resp.Error = err.Error()
		n.log.Warn("join refused", "peer", joiner, "err", err)
	} else {
		resp.Peers = n.peerRecords(joiner, maxJoinPeers)
		n.log.Info("device joined", "peer", joiner, "name", req.Name)
	}
	_ = writeMsg(s, &resp)
	_ = s.CloseWrite()
	// Let the joiner read the answer before the stream goes.
	buf := make([]byte, 1)
	_, _ = s.Read(buf)
}

// admit checks a join request and admits the device; the driver carries
// out the Output (it publishes DeviceAdded).
func (n *Node) admit(joiner peer.ID, req *joinRequest) (crdt.AccountID, maintenance.Output, error) {
	var none maintenance.Output
	dev, ok := DeviceOf(joiner)
	if !ok {
		return crdt.AccountID{}, none, fmt.Errorf("%w: peer is not an ed25519 device", ErrInviteProof)
	}
	id := hex.EncodeToString(req.ID)
	n.mu.Lock()
	defer n.mu.Unlock()
	acct := n.rep.Account()
	rec := n.invites[id]
	switch {
	case rec == nil:
		return acct, none, ErrInviteUnknown
	case rec.Used:
		return acct, none, ErrInviteUsed
	case now() >= rec.Expires:
		return acct, none, ErrInviteExpired
	}
	if !hmac.Equal(req.MAC, joinMAC(rec.Key, acct, n.host.ID(), joiner)) {
		return acct, none, ErrInviteProof
	}
	rec.Used = true
	rec.UsedBy = []byte(joiner)
	b, _ := crdt.Marshal(rec)
	if err := n.nmeta.Put("invite/"+id, b); err != nil {
		return acct, none, err
	}
	name := req.Name
	if len(name) > 64 {
		name = name[:64]
	}
	out, err := n.rep.AddDevice(dev, name, nil)
	if err != nil {
		return acct, none, err
	}
	n.refreshMembersLocked()
	return acct, out, nil
}

// openJoin dials the inviter and opens the join stream, retrying within
// ctx: a dial that failed before (the joiner tried before the invite was
// open, or the inviter was starting) leaves a dial backoff, which is
// cleared rather than reported.
func (n *Node) openJoin(ctx context.Context, ai peer.AddrInfo) (network.Stream, error) {
	var last error
	for {
		n.clearBackoff(ai.ID)
		if err := n.host.Connect(ctx, ai); err != nil {
			last = errorf(ErrUnavailable, "cannot reach the inviter %s: %v (is its node running and reachable?)", ai.ID, err)
		} else if s, err := n.host.NewStream(ctx, ai.ID, JoinProtocol); err != nil {
			last = errorf(ErrUnavailable, "inviter %s does not accept joins: %v", ai.ID, err)
		} else {
			return s, nil
		}
		select {
		case <-ctx.Done():
			return nil, last
		case <-time.After(time.Second):
		}
	}
}

// Join admits this device to the account of an invite code: it dials the
// inviter, proves the secret, binds the replica to the account, starts
// gossip and syncs with the inviter.
func (n *Node) Join(ctx context.Context, code string) (crdt.AccountID, error) {
	c, err := decodeInvite(code)
	if err != nil {
		return crdt.AccountID{}, err
	}
	if a := n.Account(); !a.IsZero() && !n.restoredGuest(c.Account) {
		return crdt.AccountID{}, fmt.Errorf("%w (%s)", ErrHasAccount, a)
	}
	inviter, _ := peer.IDFromBytes(c.Admin)
	ai := peer.AddrInfo{ID: inviter}
	for _, s := range c.Addrs {
		if a, err := multiaddr.NewMultiaddr(s); err == nil {
			ai.Addrs = append(ai.Addrs, a)
		}
	}
	n.gater.trust(inviter, true)
	n.host.Peerstore().AddAddrs(inviter, ai.Addrs, peerstore.PermanentAddrTTL)
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	fail := func(err error) (crdt.AccountID, error) {
		n.gater.trust(inviter, false)
		return crdt.AccountID{}, err
	}
	s, err := n.openJoin(ctx, ai)
	if err != nil {
		return fail(err)
	}
	defer s.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = s.SetDeadline(dl)
	}
	req := joinRequest{ID: inviteID(c.Secret), MAC: joinMAC(inviteKey(c.Secret), c.Account, inviter, n.host.ID()), Name: n.cfg.Name}
	if err := writeMsg(s, &req); err != nil {
		return fail(errorf(ErrUnavailable, "send join request: %v", err))
	}
	var resp joinResponse
	if err := readMsg(bufio.NewReader(s), &resp, maxJoinReply); err != nil {
		return fail(errorf(ErrUnavailable, "read the inviter's answer: %v", err))
	}
	if resp.Error != "" {
		return fail(fmt.Errorf("%w: %s", ErrInvite, resp.Error))
	}
	if resp.Account != c.Account {
		return fail(fmt.Errorf("%w: inviter answered for account %s, the code names %s", ErrInvite, resp.Account, c.Account))
	}
	if err := n.withLock(func() error {
		if !n.rep.Account().IsZero() {
			return nil // state restored from a backup: keep it
		}
		return n.rep.Join(c.Account)
	}); err != nil {
		return fail(err)
	}
	if err := n.nmeta.Put("inviter", []byte(inviter)); err != nil {
		return c.Account, err
	}
	n.learnPeers(resp.Peers[:min(len(resp.Peers), maxJoinPeers)], true)
	if err := n.saveAccount(c.Account); err != nil {
		return c.Account, err
	}
	if err := n.startGossip(); err != nil {
		return c.Account, err
	}
	if err := n.SyncWith(ctx, inviter); err != nil {
		n.log.Warn("first sync with the inviter failed; gossip and periodic sync will catch up", "err", err)
	}
	n.publishMetadata()
	return c.Account, nil
}
