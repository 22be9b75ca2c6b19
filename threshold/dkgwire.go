package threshold

import (
	"encoding/binary"
	"errors"
	"fmt"

	"go.dedis.ch/kyber/v3"
	"go.dedis.ch/kyber/v3/share"
	dkg "go.dedis.ch/kyber/v3/share/dkg/pedersen"
	vss "go.dedis.ch/kyber/v3/share/vss/pedersen"
)

// DKG wire format. Every message is
//
//	version (1 byte, =1) | kind (1 byte) | from (uint16 BE, sender index) | body
//
// and bytes(x) below means uint32 BE length ‖ x, with length at most
// maxDKGField. Decoding is strict: unknown versions or kinds, over-long
// fields and trailing bytes are rejected. Bodies, by kind:
//
//	1 deal (sender = dealer, addressed to one participant):
//	  bytes(dh_key) bytes(dh_signature) bytes(nonce) bytes(ciphertext) bytes(signature)
//	2 response (sender = verifier, broadcast):
//	  dealer (uint16) bytes(session_id) status (1 byte: 1 approval, 0 complaint) bytes(signature)
//	3 justification (sender = dealer, broadcast):
//	  verifier (uint16) bytes(session_id) bytes(signature)
//	  bytes(deal_session_id) share_index (uint16) bytes(share_scalar)
//	  deal_t (uint16) count (uint16) count × bytes(commitment point)
//
// These are kyber v3.1.0 share/dkg/pedersen's Deal, Response and
// Justification with their nested vss structures, field for field. Deals
// are encrypted to their recipient (ephemeral DH + AES-GCM inside kyber) and
// everything is Schnorr-signed by its author's long-term key, so messages
// may travel over any transport, including a public broadcast.

const (
	dkgWireVersion byte = 1
	maxDKGField         = 1 << 20
)

// DKGMessageKind says which DKG phase a message belongs to.
type DKGMessageKind uint8

// DKG message kinds.
const (
	DKGDeal          DKGMessageKind = 1
	DKGResponse      DKGMessageKind = 2
	DKGJustification DKGMessageKind = 3
)

func (k DKGMessageKind) String() string {
	switch k {
	case DKGDeal:
		return "deal"
	case DKGResponse:
		return "response"
	case DKGJustification:
		return "justification"
	default:
		return fmt.Sprintf("kind(%d)", uint8(k))
	}
}

type wireWriter struct{ buf []byte }

func (w *wireWriter) u8(v byte) { w.buf = append(w.buf, v) }
func (w *wireWriter) u16(v int) { w.buf = binary.BigEndian.AppendUint16(w.buf, uint16(v)) }
func (w *wireWriter) bytes(b []byte) {
	w.buf = binary.BigEndian.AppendUint32(w.buf, uint32(len(b)))
	w.buf = append(w.buf, b...)
}

type wireReader struct {
	buf []byte
	err error
}

var errShort = errors.New("message truncated")

func (r *wireReader) u8() byte {
	if r.err != nil || len(r.buf) < 1 {
		r.fail(errShort)
		return 0
	}
	v := r.buf[0]
	r.buf = r.buf[1:]
	return v
}

func (r *wireReader) u16() int {
	if r.err != nil || len(r.buf) < 2 {
		r.fail(errShort)
		return 0
	}
	v := binary.BigEndian.Uint16(r.buf)
	r.buf = r.buf[2:]
	return int(v)
}

func (r *wireReader) bytes() []byte {
	if r.err != nil || len(r.buf) < 4 {
		r.fail(errShort)
		return nil
	}
	n := binary.BigEndian.Uint32(r.buf)
	if n > maxDKGField {
		r.fail(fmt.Errorf("field of %d bytes exceeds %d", n, maxDKGField))
		return nil
	}
	if uint32(len(r.buf)-4) < n {
		r.fail(errShort)
		return nil
	}
	v := append([]byte(nil), r.buf[4:4+n]...)
	r.buf = r.buf[4+n:]
	return v
}

func (r *wireReader) fail(err error) {
	if r.err == nil {
		r.err = err
	}
}

func (r *wireReader) done() error {
	if r.err == nil && len(r.buf) != 0 {
		r.err = fmt.Errorf("%d trailing bytes", len(r.buf))
	}
	return r.err
}

// dkgWire is one decoded message: exactly one of deal, resp, just is set.
type dkgWire struct {
	kind DKGMessageKind
	from int
	deal *dkg.Deal
	resp *dkg.Response
	just *dkg.Justification
}

func encodeDeal(d *dkg.Deal) []byte {
	w := &wireWriter{}
	w.u8(dkgWireVersion)
	w.u8(byte(DKGDeal))
	w.u16(int(d.Index))
	w.bytes(d.Deal.DHKey)
	w.bytes(d.Deal.Signature)
	w.bytes(d.Deal.Nonce)
	w.bytes(d.Deal.Cipher)
	w.bytes(d.Signature)
	return w.buf
}

func encodeResponse(r *dkg.Response) []byte {
	w := &wireWriter{}
	w.u8(dkgWireVersion)
	w.u8(byte(DKGResponse))
	w.u16(int(r.Response.Index))
	w.u16(int(r.Index))
	w.bytes(r.Response.SessionID)
	if r.Response.Status == vss.StatusApproval {
		w.u8(1)
	} else {
		w.u8(0)
	}
	w.bytes(r.Response.Signature)
	return w.buf
}

func encodeJustification(j *dkg.Justification) ([]byte, error) {
	w := &wireWriter{}
	w.u8(dkgWireVersion)
	w.u8(byte(DKGJustification))
	w.u16(int(j.Index))
	vj := j.Justification
	w.u16(int(vj.Index))
	w.bytes(vj.SessionID)
	w.bytes(vj.Signature)
	d := vj.Deal
	w.bytes(d.SessionID)
	w.u16(d.SecShare.I)
	sb, err := d.SecShare.V.MarshalBinary()
	if err != nil {
		return nil, err
	}
	w.bytes(sb)
	w.u16(int(d.T))
	w.u16(len(d.Commitments))
	for _, c := range d.Commitments {
		cb, err := c.MarshalBinary()
		if err != nil {
			return nil, err
		}
		w.bytes(cb)
	}
	return w.buf, nil
}

// decodeDKGMessage parses one message. Points and scalars inside a
// justification are decoded with the backend's strict decoders.
func decodeDKGMessage(b Backend, data []byte) (*dkgWire, error) {
	r := &wireReader{buf: data}
	if v := r.u8(); r.err == nil && v != dkgWireVersion {
		return nil, fmt.Errorf("version %d", v)
	}
	m := &dkgWire{kind: DKGMessageKind(r.u8()), from: r.u16()}
	if r.err != nil {
		return nil, r.err
	}
	switch m.kind {
	case DKGDeal:
		ed := &vss.EncryptedDeal{DHKey: r.bytes(), Signature: r.bytes(), Nonce: r.bytes(), Cipher: r.bytes()}
		m.deal = &dkg.Deal{Index: uint32(m.from), Deal: ed, Signature: r.bytes()}
	case DKGResponse:
		dealer := r.u16()
		vr := &vss.Response{Index: uint32(m.from), SessionID: r.bytes()}
		switch r.u8() {
		case 0:
			vr.Status = vss.StatusComplaint
		case 1:
			vr.Status = vss.StatusApproval
		default:
			r.fail(errors.New("bad response status"))
		}
		vr.Signature = r.bytes()
		m.resp = &dkg.Response{Index: uint32(dealer), Response: vr}
	case DKGJustification:
		vj := &vss.Justification{Index: uint32(r.u16()), SessionID: r.bytes(), Signature: r.bytes()}
		deal := &vss.Deal{SessionID: r.bytes()}
		idx := r.u16()
		sb := r.bytes()
		deal.T = uint32(r.u16())
		count := r.u16()
		var commits []kyber.Point
		for k := 0; k < count && r.err == nil; k++ {
			cb := r.bytes()
			if r.err != nil {
				break
			}
			p, err := b.DecodeKeyPoint(cb)
			if err != nil {
				r.fail(fmt.Errorf("commitment %d: %w", k, err))
				break
			}
			commits = append(commits, p)
		}
		if r.err == nil {
			v, err := b.DecodeScalar(sb)
			if err != nil {
				r.fail(fmt.Errorf("share scalar: %w", err))
			} else {
				deal.SecShare = &share.PriShare{I: idx, V: v}
			}
		}
		deal.Commitments = commits
		vj.Deal = deal
		m.just = &dkg.Justification{Index: uint32(m.from), Justification: vj}
	default:
		return nil, fmt.Errorf("unknown kind %d", m.kind)
	}
	if err := r.done(); err != nil {
		return nil, err
	}
	return m, nil
}

// DKGMessageInfo returns the kind and sender index of an encoded DKG
// message without validating its body, so a transport can route or log it.
func DKGMessageInfo(data []byte) (kind DKGMessageKind, from int, err error) {
	if len(data) < 4 || data[0] != dkgWireVersion {
		return 0, -1, fmt.Errorf("%w: bad header", ErrBadDKGMessage)
	}
	return DKGMessageKind(data[1]), int(binary.BigEndian.Uint16(data[2:])), nil
}
