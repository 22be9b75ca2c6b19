package crdt

import (
	"crypto/ed25519"
	"fmt"
)

// Writer makes the facts of one device: it numbers them 1, 2, 3 … with no
// gaps and keeps the Lamport clock ahead of every fact the device has seen.
// It is not safe for concurrent use; the node serialises writes.
type Writer struct {
	key     ed25519.PrivateKey
	account AccountID
	seq     uint64
	lamport uint64
}

// NewWriter resumes a device's writer after seq facts and Lamport time
// lamport (both 0 for a new device).
func NewWriter(key ed25519.PrivateKey, account AccountID, seq, lamport uint64) *Writer {
	return &Writer{key: key, account: account, seq: seq, lamport: lamport}
}

// Device is the writer's device id.
func (w *Writer) Device() DeviceID { return DeviceIDFromKey(w.key.Public().(ed25519.PublicKey)) }

// Account is the account the writer writes to.
func (w *Writer) Account() AccountID { return w.account }

// SetAccount binds the writer to an account (after genesis or join).
func (w *Writer) SetAccount(a AccountID) { w.account = a }

// Seq is the seq of the last fact written.
func (w *Writer) Seq() uint64 { return w.seq }

// Lamport is the writer's Lamport clock.
func (w *Writer) Lamport() uint64 { return w.lamport }

// Observe moves the Lamport clock past a fact seen from anyone.
func (w *Writer) Observe(lamport uint64) {
	if lamport > w.lamport {
		w.lamport = lamport
	}
}

// Write signs the next fact at identity epoch epoch. The seq and clock
// advance only when signing succeeds.
func (w *Writer) Write(epoch uint64, body Body) (*Fact, error) {
	f, err := NewFact(w.key, w.account, w.seq+1, epoch, w.lamport+1, body)
	if err != nil {
		return nil, fmt.Errorf("write %s: %w", body.Kind(), err)
	}
	w.seq++
	w.lamport++
	return f, nil
}

// Unwrite gives back the last seq (the fact was refused before anyone saw
// it, e.g. by the local guard).
func (w *Writer) Unwrite() {
	if w.seq > 0 {
		w.seq--
	}
}

// Genesis writes a genesis fact founding a new account and binds the writer
// to it.
func (w *Writer) Genesis(name string, threshold uint64, nonce [16]byte) (*Fact, error) {
	w.account = AccountIDFor(w.Device(), nonce)
	if w.seq != 0 {
		return nil, fmt.Errorf("genesis: device already wrote %d facts", w.seq)
	}
	return w.Write(1, &Genesis{Name: name, Threshold: threshold, Nonce: nonce})
}

// ObserveOwn moves the writer past a fact of its own device that came back
// from elsewhere (a restore, a wiped home that rejoined), so that the next
// write does not reuse its seq and equivocate.
func (w *Writer) ObserveOwn(seq, lamport uint64) {
	if seq > w.seq {
		w.seq = seq
	}
	w.Observe(lamport)
}
