package crdt

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"fmt"

	"github.com/fxamacker/cbor/v2"
)

// MaxFactSize is the largest encoded fact accepted anywhere (gossip, sync,
// ingest, decoding): 64 KiB. Larger payloads belong in blobs.
const MaxFactSize = 64 << 10

// EnvelopeOverhead bounds what a fact's envelope (account, author, seq,
// epoch, Lamport time, kind, signature and their CBOR heads) adds to its
// body; MaxBodySize is thus the largest body that always signs.
const (
	EnvelopeOverhead = 256
	MaxBodySize      = MaxFactSize - EnvelopeOverhead
)

// CheckBodySize refuses an encoded body of n bytes that cannot fit a fact.
func CheckBodySize(k Kind, n int) error {
	if n > MaxBodySize {
		return fmt.Errorf("%s body of %d bytes: %w (a body holds at most %d bytes)", k, n, ErrTooLarge, MaxBodySize)
	}
	return nil
}

// FormatVersion is the envelope format written and accepted.
const FormatVersion = 1

// Sentinel errors of fact decoding and verification. Callers branch on them
// with errors.Is.
var (
	ErrMalformed    = errors.New("malformed fact")
	ErrNotCanonical = errors.New("fact encoding is not canonical")
	ErrUnknownKind  = errors.New("unknown fact kind")
	ErrTooLarge     = errors.New("fact exceeds size limit")
	ErrBadSignature = errors.New("bad fact signature")
)

// sigDomain separates fact signatures from every other use of a device key.
const sigDomain = "aura/fact/v1\x00"

// Fact is one signed entry of the journal (DESIGN §3).
type Fact struct {
	Account AccountID
	Author  DeviceID
	Seq     uint64 // 1, 2, 3 … per author, no gaps
	Epoch   uint64 // the author's identity epoch when it wrote the fact
	Lamport uint64
	Kind    Kind
	Body    []byte // canonical CBOR of the kind's body type
	Sig     []byte // ed25519 over SigningBytes

	raw      []byte // canonical bytes, set by Sign and Decode
	id       FactID
	verified verifyMark // signature already checked (verify.go)
	parsed   parsedBody // body decoded by DecodeFact (body.go)
}

type wireFact struct {
	_       struct{} `cbor:",toarray"`
	V       uint64
	Account AccountID
	Author  DeviceID
	Seq     uint64
	Epoch   uint64
	Lamport uint64
	Kind    Kind
	Body    []byte
	Sig     []byte
}

type wireUnsigned struct {
	_       struct{} `cbor:",toarray"`
	V       uint64
	Account AccountID
	Author  DeviceID
	Seq     uint64
	Epoch   uint64
	Lamport uint64
	Kind    Kind
	Body    []byte
}

var (
	encMode cbor.EncMode
	decMode cbor.DecMode
)

func init() {
	var err error
	encMode, err = cbor.CoreDetEncOptions().EncMode()
	if err != nil {
		panic(err)
	}
	decMode, err = cbor.DecOptions{
		DupMapKey:        cbor.DupMapKeyEnforcedAPF,
		IndefLength:      cbor.IndefLengthForbidden,
		TagsMd:           cbor.TagsForbidden,
		MaxArrayElements: 1 << 20,
		MaxMapPairs:      1 << 20,
		MaxNestedLevels:  16,
		UTF8:             cbor.UTF8RejectInvalid,
	}.DecMode()
	if err != nil {
		panic(err)
	}
}

// Marshal encodes v in the canonical (core deterministic) CBOR used everywhere
// in the journal.
func Marshal(v any) ([]byte, error) { return encMode.Marshal(v) }

// Unmarshal decodes canonical CBOR strictly: the bytes must re-encode to
// themselves, else ErrNotCanonical.
func Unmarshal(b []byte, v any) error {
	if err := decMode.Unmarshal(b, v); err != nil {
		return fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	again, err := encMode.Marshal(v)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	if !bytes.Equal(again, b) {
		return ErrNotCanonical
	}
	return nil
}

// SigningBytes is what the author signs: a domain tag and the canonical
// encoding of every envelope field but the signature.
func (f *Fact) SigningBytes() []byte {
	b, err := encMode.Marshal(wireUnsigned{V: FormatVersion, Account: f.Account, Author: f.Author,
		Seq: f.Seq, Epoch: f.Epoch, Lamport: f.Lamport, Kind: f.Kind, Body: f.Body})
	if err != nil {
		panic(fmt.Sprintf("encode fact: %v", err)) // only plain types: cannot fail
	}
	return append([]byte(sigDomain), b...)
}

// Sign signs the fact with the author's key and fixes its bytes and id. The
// author field is set from the key.
func (f *Fact) Sign(key ed25519.PrivateKey) error {
	f.Author = DeviceIDFromKey(key.Public().(ed25519.PublicKey))
	if !f.Kind.Known() {
		return fmt.Errorf("sign fact: %w %d", ErrUnknownKind, f.Kind)
	}
	f.Sig = ed25519.Sign(key, f.SigningBytes())
	raw, err := encMode.Marshal(f.wire())
	if err != nil {
		return fmt.Errorf("sign fact: %w", err)
	}
	if len(raw) > MaxFactSize {
		return fmt.Errorf("sign fact of %d bytes: %w (%d)", len(raw), ErrTooLarge, MaxFactSize)
	}
	f.raw, f.id = raw, FactIDOf(raw)
	f.markVerified()
	return nil
}

func (f *Fact) wire() wireFact {
	return wireFact{V: FormatVersion, Account: f.Account, Author: f.Author, Seq: f.Seq, Epoch: f.Epoch,
		Lamport: f.Lamport, Kind: f.Kind, Body: f.Body, Sig: f.Sig}
}

// Bytes returns the canonical encoding. The slice must not be modified.
func (f *Fact) Bytes() []byte { return f.raw }

// ID returns the fact's content id.
func (f *Fact) ID() FactID { return f.id }

// Size is the encoded size in bytes.
func (f *Fact) Size() int { return len(f.raw) }

// Verify checks the author's signature.
func (f *Fact) Verify() error {
	if !checkSig(f.Author, f.SigningBytes(), f.Sig) {
		return f.badSig()
	}
	return nil
}

// DecodeFact parses canonical fact bytes without checking the signature (so
// that callers can verify in parallel). It rejects oversized input, malformed
// or non-canonical bytes, unknown kinds and bodies that do not decode
// canonically into the kind's body type. The decoded body is kept with the
// fact, so the state's guard check and fold do not decode it again.
//
// The envelope is read by a strict canonical parser (parseEnvelope) that
// accepts exactly the canonical encodings; any input it refuses goes
// through the general decoder, which names the error. Both give the same
// verdict on every input (FuzzDecodeFact checks it).
func DecodeFact(b []byte) (*Fact, error) {
	if len(b) > MaxFactSize {
		return nil, fmt.Errorf("decode fact of %d bytes: %w (%d)", len(b), ErrTooLarge, MaxFactSize)
	}
	f, ok := parseEnvelope(b)
	if !ok {
		var err error
		if f, err = decodeEnvelope(b); err != nil {
			return nil, err
		}
	}
	var body Body
	if f.Kind == KindPut && decodePutInto(f.Body, &f.parsed.put) {
		body = &f.parsed.put
	} else {
		var err error
		if body, err = decodeBody(f.Kind, f.Body); err != nil {
			return nil, fmt.Errorf("decode fact body (%s): %w", f.Kind, err)
		}
	}
	f.parsed.set(f, body)
	return f, nil
}

// decodeEnvelope is the general decoder of an envelope: full CBOR decoding,
// then a re-encoding that must give the input back.
func decodeEnvelope(b []byte) (*Fact, error) {
	var w wireFact
	if err := decMode.Unmarshal(b, &w); err != nil {
		return nil, fmt.Errorf("decode fact: %w: %v", ErrMalformed, err)
	}
	if w.V != FormatVersion {
		return nil, fmt.Errorf("decode fact: %w: format version %d", ErrMalformed, w.V)
	}
	if !w.Kind.Known() {
		return nil, fmt.Errorf("decode fact: %w %d", ErrUnknownKind, w.Kind)
	}
	if w.Seq == 0 {
		return nil, fmt.Errorf("decode fact: %w: seq 0", ErrMalformed)
	}
	if len(w.Sig) != ed25519.SignatureSize {
		return nil, fmt.Errorf("decode fact: %w: signature of %d bytes, want %d", ErrBadSignature, len(w.Sig), ed25519.SignatureSize)
	}
	f := &Fact{Account: w.Account, Author: w.Author, Seq: w.Seq, Epoch: w.Epoch, Lamport: w.Lamport,
		Kind: w.Kind, Body: w.Body, Sig: w.Sig}
	again, err := encMode.Marshal(f.wire())
	if err != nil || !bytes.Equal(again, b) {
		return nil, fmt.Errorf("decode fact: %w", ErrNotCanonical)
	}
	f.raw = again
	f.id = FactIDOf(again)
	return f, nil
}

// parseEnvelope reads a canonical envelope [V, Account, Author, Seq, Epoch,
// Lamport, Kind, Body, Sig] in one pass: shortest-form heads only, exact
// lengths for the ids and the signature, a known kind, seq ≥ 1, nothing
// after the signature. It reports false for anything else (decodeEnvelope
// then names the fault). Body and Sig are copies, never views of b.
func parseEnvelope(b []byte) (*Fact, bool) {
	if len(b) < 1 || b[0] != 0x80|9 {
		return nil, false
	}
	r := cborReader{b: b, i: 1}
	var f Fact
	if v, ok := r.uint(); !ok || v != FormatVersion {
		return nil, false
	}
	acc, ok := r.bytes()
	if !ok || len(acc) != len(f.Account) {
		return nil, false
	}
	author, ok := r.bytes()
	if !ok || len(author) != len(f.Author) {
		return nil, false
	}
	copy(f.Account[:], acc)
	copy(f.Author[:], author)
	var seq, epoch, lamport, kind uint64
	for _, p := range [...]*uint64{&seq, &epoch, &lamport, &kind} {
		if *p, ok = r.uint(); !ok {
			return nil, false
		}
	}
	if seq == 0 || kind > 0xff || !Kind(kind).Known() {
		return nil, false
	}
	body, ok := r.bytes()
	if !ok {
		return nil, false
	}
	sig, ok := r.bytes()
	if !ok || len(sig) != ed25519.SignatureSize || r.i != len(b) {
		return nil, false
	}
	f.Seq, f.Epoch, f.Lamport, f.Kind = seq, epoch, lamport, Kind(kind)
	own := make([]byte, len(b)+len(body)+len(sig))
	f.raw = own[:len(b):len(b)]
	copy(f.raw, b)
	f.Body = own[len(b) : len(b)+len(body) : len(b)+len(body)]
	copy(f.Body, body)
	f.Sig = own[len(b)+len(body):]
	copy(f.Sig, sig)
	f.id = FactIDOf(f.raw)
	return &f, true
}

// DecodeVerifiedFact decodes and checks the signature.
func DecodeVerifiedFact(b []byte) (*Fact, error) {
	f, err := DecodeFact(b)
	if err != nil {
		return nil, err
	}
	if err := f.VerifyOnce(); err != nil { // marks it: Ingest will not check again
		return nil, err
	}
	return f, nil
}

// DecodeBody decodes the typed body of the fact (a pointer to the kind's
// body struct, e.g. *Put for KindPut). The result is the caller's own.
func (f *Fact) DecodeBody() (any, error) { return decodeBody(f.Kind, f.Body) }

// parsedBody is the body DecodeFact decoded, kept for the state's check and
// fold. It is shared by everything that folds this Fact (in the simulator,
// many states fold one Fact), so it is only read, never modified.
type parsedBody struct {
	kind Kind
	of   []byte // the body bytes it was decoded from: a view of raw
	body Body
	put  Put // body's storage when it is a Put (the commonest kind)
}

// set records body as the decoding of f's current body bytes.
func (p *parsedBody) set(f *Fact, body Body) {
	end := len(f.raw) - ed25519.SignatureSize - 2 // the signature and its 2-byte head end the envelope
	if end < len(f.Body) || end > len(f.raw) || !bytes.Equal(f.raw[end-len(f.Body):end], f.Body) {
		return
	}
	p.kind, p.of, p.body = f.Kind, f.raw[end-len(f.Body):end], body
}

// trust records that f's body bytes are known canonical (read back from
// the store, where only checked facts are written), so decodedBody decodes
// them without the re-encoding check.
func (p *parsedBody) trust(f *Fact) {
	p.set(f, nil)
}

// decodedBody is the body of f for reading only: the one DecodeFact kept
// when the fact's kind and body bytes are unchanged since, else a fresh
// decoding (without the canonical re-encoding when the bytes are known
// canonical: trust). Callers must not modify it.
func (f *Fact) decodedBody() (any, error) {
	p := &f.parsed
	if p.of == nil || p.kind != f.Kind || !bytes.Equal(p.of, f.Body) {
		return decodeBody(f.Kind, f.Body)
	}
	if p.body != nil {
		return p.body, nil
	}
	body := newBody(f.Kind)
	if body == nil {
		return nil, ErrUnknownKind
	}
	if err := decMode.Unmarshal(f.Body, body); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	return body, nil
}

// NewFact builds and signs a fact with a typed body.
func NewFact(key ed25519.PrivateKey, account AccountID, seq, epoch, lamport uint64, body Body) (*Fact, error) {
	b, err := Marshal(body)
	if err != nil {
		return nil, fmt.Errorf("encode %s body: %w", body.Kind(), err)
	}
	f := &Fact{Account: account, Seq: seq, Epoch: epoch, Lamport: lamport, Kind: body.Kind(), Body: b}
	if err := f.Sign(key); err != nil {
		return nil, err
	}
	return f, nil
}
