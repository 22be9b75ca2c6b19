package node

import (
	"errors"
	"fmt"
	"unicode/utf8"

	"aura/crdt"
)

// MaxKeySize is the longest application key accepted.
const MaxKeySize = 1024

// Value is an application key's value as this device reads it: the
// committed state, or a write of its own still buffered behind the writer
// fence (Pending), which it reads back at once.
type Value struct {
	Bytes   []byte
	Pending bool
}

// checkKey refuses keys that cannot round-trip: empty, too long, or not
// valid UTF-8 (JSON and terminals would silently replace such bytes).
func checkKey(key string) error {
	switch {
	case key == "":
		return errorf(ErrBadRequest, "empty key")
	case !utf8.ValidString(key):
		return errorf(ErrBadRequest, "key %q is not valid UTF-8", key)
	case len(key) > MaxKeySize:
		return errorf(ErrBadRequest, "key of %d bytes is longer than the limit of %d bytes", len(key), MaxKeySize)
	}
	return nil
}

// tooLarge rewrites the core's size refusal in the user's terms.
func tooLarge(err error, key string, value []byte) error {
	if !errors.Is(err, crdt.ErrTooLarge) {
		return err
	}
	return errorf(ErrTooLarge, "value of %d bytes is too large: one fact holds at most %d bytes of key and value (store larger data with `aura-cli blob put`)",
		len(value), crdt.MaxBodySize-len(key)-16)
}

// ErrTooLarge: a write over the per-fact limit.
var ErrTooLarge = errors.New("too large")

// Read returns key's value as this device sees it: its own buffered
// writes (newest last) over the committed state.
func (n *Node) Read(key string) (Value, bool, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	pend, err := n.rep.Pending()
	if err != nil {
		return Value{}, false, fmt.Errorf("read buffered writes: %w", err)
	}
	for i := len(pend) - 1; i >= 0; i-- {
		switch b := pend[i].(type) {
		case *crdt.Put:
			if b.Key == key {
				return Value{Bytes: append([]byte(nil), b.Value...), Pending: true}, true, nil
			}
		case *crdt.Delete:
			if b.Key == key {
				return Value{Pending: true}, false, nil
			}
		}
	}
	v, ok := n.rep.State().Value(key)
	return Value{Bytes: append([]byte(nil), v...)}, ok, nil
}

// pendingFacts lists the writes buffered behind the fence as FactInfo
// marked pending (no id, seq or Lamport time yet: they get them when the
// fence drops).
func (n *Node) pendingFacts() ([]FactInfo, error) {
	n.mu.Lock()
	pend, err := n.rep.Pending()
	n.mu.Unlock()
	if err != nil {
		return nil, fmt.Errorf("read buffered writes: %w", err)
	}
	out := make([]FactInfo, 0, len(pend))
	for _, b := range pend {
		fi := FactInfo{Author: n.device.String(), Kind: b.Kind().String(), Pending: true}
		fi.setBody(b)
		out = append(out, fi)
	}
	return out, nil
}

// setBody fills the key and value of application facts.
func (fi *FactInfo) setBody(b any) {
	switch v := b.(type) {
	case *crdt.Put:
		fi.Key = v.Key
		fi.ValueBytes = v.Value
		if utf8.Valid(v.Value) {
			fi.Value = string(v.Value)
		}
	case *crdt.Delete:
		fi.Key = v.Key
	}
}

// MaxFactBody is the per-fact limit a user meets: a fact's key and value
// (with a few bytes of encoding) hold at most this many bytes.
const MaxFactBody = crdt.MaxBodySize
