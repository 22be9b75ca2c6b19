package node

import (
	"encoding/hex"
	"errors"
	"sort"
	"sync"
	"time"

	"aura/crdt"
	"aura/maintenance"
)

// The operator's view of epoch-scoped sessions (maintenance/session.go):
// the last session of this device that aborted, and the devices of the
// account that cannot take part in sessions now, each with the reason.

// SessionAbort is a maintenance session of this device that aborted.
type SessionAbort struct {
	Session  string    `json:"session"` // snapshot or keygen
	Proposal string    `json:"proposal,omitempty"`
	Reason   string    `json:"reason"`
	Code     string    `json:"code"`    // ErrorCode of the cause
	Retry    string    `json:"outcome"` // retried under the new epoch, or why not
	At       time.Time `json:"at"`
}

// IncompatibleDevice is a device of the account that cannot take part in
// maintenance sessions now (maintenance.Incompatible).
type IncompatibleDevice struct {
	Device    string   `json:"device"`
	Name      string   `json:"name,omitempty"`
	Reason    string   `json:"reason"`
	Code      string   `json:"code"`
	Protocols []string `json:"supported_protocols"`
}

// sessionLog keeps the aborts for Status.
type sessionLog struct {
	mu     sync.Mutex
	last   *SessionAbort
	aborts int
}

func (l *sessionLog) note(a SessionAbort) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.last, l.aborts = &a, l.aborts+1
}

func (l *sessionLog) read() (*SessionAbort, int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.last == nil {
		return nil, l.aborts
	}
	a := *l.last
	return &a, l.aborts
}

// noteSnapshotAbort records an EventSessionAborted of the snapshot round.
func (n *Node) noteSnapshotAbort(e maintenance.Event) {
	a := SessionAbort{Session: "snapshot", Reason: e.Detail, Code: ErrorCode(e.Err), Retry: e.Detail, At: time.Now()}
	if e.Err != nil {
		a.Reason = e.Err.Error()
	}
	if e.Proposal != ([16]byte{}) {
		a.Proposal = hex.EncodeToString(e.Proposal[:])
	}
	n.sessions.note(a)
}

// Error codes of the session failures, for --json and the API's answers.
const (
	CodeStaleEpoch          = "stale_epoch"
	CodeUnsupportedProtocol = "unsupported_protocol"
	CodeNotReady            = "not_ready"
)

// ErrorCode names the kind of a session failure ("" for other errors).
func ErrorCode(err error) string {
	switch {
	case err == nil:
		return ""
	case errors.Is(err, maintenance.ErrStaleEpoch):
		return CodeStaleEpoch
	case errors.Is(err, maintenance.ErrUnsupportedProtocol):
		return CodeUnsupportedProtocol
	case errors.Is(err, maintenance.ErrNotReady):
		return CodeNotReady
	}
	return ""
}

// incompatibleLocked lists the members that cannot take part in sessions
// now, by id; n.mu is held.
func (n *Node) incompatibleLocked() []IncompatibleDevice {
	st := n.rep.State()
	var out []IncompatibleDevice
	for _, d := range st.MemberList() {
		err := maintenance.Incompatible(st, d)
		if err == nil {
			continue
		}
		inc := IncompatibleDevice{Device: d.String(), Reason: err.Error(), Code: ErrorCode(err), Protocols: []string{}}
		if m := st.Devices[d]; m != nil {
			inc.Name = m.Name
			for p := range m.Protocols {
				inc.Protocols = append(inc.Protocols, p)
			}
			sort.Strings(inc.Protocols)
		} else if mem := st.Members[d]; mem != nil {
			inc.Name = mem.Name
		}
		out = append(out, inc)
	}
	return out
}

// incompatibility maps the account's devices that cannot take part in
// sessions to the reason (for Peers).
func (n *Node) incompatibility() map[crdt.DeviceID]IncompatibleDevice {
	n.mu.Lock()
	defer n.mu.Unlock()
	m := map[crdt.DeviceID]IncompatibleDevice{}
	st := n.rep.State()
	for _, d := range st.MemberList() {
		if err := maintenance.Incompatible(st, d); err != nil {
			m[d] = IncompatibleDevice{Device: d.String(), Reason: err.Error(), Code: ErrorCode(err)}
		}
	}
	return m
}
