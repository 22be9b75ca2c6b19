package threshold

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"slices"

	"go.dedis.ch/kyber/v3"
	"go.dedis.ch/kyber/v3/share"
	dkg "go.dedis.ch/kyber/v3/share/dkg/pedersen"
	vss "go.dedis.ch/kyber/v3/share/vss/pedersen"
)

// DKGKey is a participant's long-term DKG key pair: a scalar x and the
// KeyGroup point x·B (a bn256 G2 point, 128 bytes). kyber's pedersen DKG
// runs in the key group of the threshold key and signs and encrypts with
// long-term keys of that same group, so these cannot be the device's
// ed25519 key; a device generates one (NewDKGKey with crypto/rand), keeps
// the private part sealed next to its share, and publishes Public() (for
// example in its membership fact) before a DKG starts.
//
// Encoding of the private key (Bytes / ParseDKGKey):
//
//	version (1 byte, =1) | backend ID (1) | scalar (32 bytes BE for bn256)
type DKGKey struct {
	backend Backend
	secret  kyber.Scalar
	public  kyber.Point
}

// NewDKGKey draws a long-term DKG key from rand.
func NewDKGKey(b Backend, rand io.Reader) (k *DKGKey, err error) {
	if b == nil {
		b = NewBN256()
	}
	defer catchStream(&err)
	g := b.KeyGroup()
	x := g.Scalar().Pick(Stream(rand))
	return &DKGKey{backend: b, secret: x, public: g.Point().Mul(x, nil)}, nil
}

// ParseDKGKey decodes DKGKey.Bytes output.
func ParseDKGKey(data []byte) (*DKGKey, error) {
	if len(data) < 2 || data[0] != dkgKeyVersion {
		return nil, fmt.Errorf("DKG key header: %w", ErrBadDKGConfig)
	}
	b, err := BackendByID(data[1])
	if err != nil {
		return nil, fmt.Errorf("DKG key: %w", err)
	}
	x, err := b.DecodeScalar(data[2:])
	if err != nil {
		return nil, fmt.Errorf("DKG key scalar: %w: %w", ErrBadDKGConfig, err)
	}
	return &DKGKey{backend: b, secret: x, public: b.KeyGroup().Point().Mul(x, nil)}, nil
}

// Bytes returns the (secret) encoding of the key pair.
func (k *DKGKey) Bytes() []byte {
	sb, err := k.secret.MarshalBinary()
	if err != nil {
		panic("threshold: marshal scalar: " + err.Error())
	}
	return append([]byte{dkgKeyVersion, k.backend.ID()}, sb...)
}

// Public returns the encoded public key, the form that goes into
// DKGConfig.Participants.
func (k *DKGKey) Public() []byte {
	pb, err := k.public.MarshalBinary()
	if err != nil {
		panic("threshold: marshal point: " + err.Error())
	}
	return pb
}

// DKGConfig describes one participant of a distributed key generation.
type DKGConfig struct {
	// Backend is the curve; nil means NewBN256().
	Backend Backend
	// Index is this participant's position in Participants; it becomes the
	// signer index of the resulting share.
	Index int
	// Key is this participant's long-term key; Key.Public() must equal
	// Participants[Index].
	Key *DKGKey
	// Participants are the long-term public keys of all n participants, in
	// index order, identical on every participant.
	Participants [][]byte
	// Threshold is t, the number of partials needed to sign; 2 <= t <= n.
	Threshold int
	// Rand supplies every random choice of this participant (its secret
	// polynomial, ephemeral encryption keys, Schnorr nonces). With a
	// deterministic reader and the same inputs in the same order, the run is
	// reproduced byte for byte. Never reuse a seed across runs in production.
	Rand io.Reader
}

// Broadcast is the DKGMessage.To of a message for every other participant.
const Broadcast = -1

// DKGMessage is an outgoing DKG message.
type DKGMessage struct {
	// To is the recipient's index, or Broadcast for all other participants.
	To int
	// Data is the encoded message (see the wire format in dkgwire.go); it
	// names its sender, so the recipient needs nothing else.
	Data []byte
}

// DKG is one participant of a Pedersen distributed key generation (kyber
// share/dkg/pedersen, fresh-key mode), as a pure message-driven state
// machine in the style of etcd's raft: Start and Step return the messages to
// send; the driver delivers them in any order, over any transport. It never
// reads the clock: the driver calls Timeout when its deadline passes.
//
// Protocol: every participant sends one encrypted deal to each other
// participant (Start); each deal is answered by a response broadcast to all
// (approval, or complaint if the share does not match the dealer's
// commitments); a dealer answers complaints about its deal with a broadcast
// justification. The run is complete when every deal is certified by every
// participant (Done without Timeout: all honest participants then hold the
// same group key), or, after Timeout, when at least t deals are certified.
//
// Messages that arrive before what they refer to (a response before its deal,
// a justification before its complaint) are held and replayed. Exact
// duplicates are ignored. A DKG is not safe for concurrent use.
type DKG struct {
	backend Backend
	index   int
	n, t    int
	gen     *dkg.DistKeyGenerator

	started  bool
	timedOut bool
	haveDeal map[int]bool // dealers whose deal this participant holds
	// justified holds, by dealer, the deal from an accepted justification of
	// this participant's own complaint: the share to use instead of the bad one.
	justified map[int]*vss.Deal
	seen      map[[32]byte]bool
	pending   []*dkgWire
	maxPend   int

	key   *GroupKey
	share *Share
}

// NewDKG validates cfg and creates the participant. It sends nothing; call Start.
func NewDKG(cfg DKGConfig) (d *DKG, err error) {
	b := cfg.Backend
	if b == nil {
		b = NewBN256()
	}
	n, t := len(cfg.Participants), cfg.Threshold
	if err := checkParams(t, n); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadDKGConfig, err)
	}
	if t < 2 {
		return nil, fmt.Errorf("%w: the DKG needs t >= 2, got %d", ErrBadDKGConfig, t)
	}
	if cfg.Index < 0 || cfg.Index >= n {
		return nil, fmt.Errorf("%w: index %d with %d participants", ErrBadDKGConfig, cfg.Index, n)
	}
	if cfg.Key == nil || cfg.Rand == nil {
		return nil, fmt.Errorf("%w: Key and Rand are required", ErrBadDKGConfig)
	}
	if cfg.Key.backend.ID() != b.ID() {
		return nil, fmt.Errorf("%w: DKG key is %s, config is %s", ErrBackendMismatch, cfg.Key.backend.Name(), b.Name())
	}
	pubs := make([]kyber.Point, n)
	dup := make(map[string]bool, n)
	for i, raw := range cfg.Participants {
		p, err := b.DecodeKeyPoint(raw)
		if err != nil {
			return nil, fmt.Errorf("%w: participant %d public key: %w", ErrBadDKGConfig, i, err)
		}
		if isNull(b.KeyGroup(), p) {
			return nil, fmt.Errorf("%w: participant %d public key is the identity", ErrBadDKGConfig, i)
		}
		if dup[string(raw)] {
			return nil, fmt.Errorf("%w: participant %d public key repeats an earlier one", ErrBadDKGConfig, i)
		}
		dup[string(raw)] = true
		pubs[i] = p
	}
	if !pubs[cfg.Index].Equal(cfg.Key.public) {
		return nil, fmt.Errorf("%w: Key does not match Participants[%d]", ErrBadDKGConfig, cfg.Index)
	}

	defer catchStream(&err)
	defer catchLibraryPanic(&err, "create DKG")
	gen, err := dkg.NewDistKeyHandler(&dkg.Config{
		Suite:          b.DKGSuite(Stream(cfg.Rand)),
		Longterm:       cfg.Key.secret,
		NewNodes:       pubs,
		Threshold:      t,
		Reader:         panicReader{cfg.Rand},
		UserReaderOnly: true,
	})
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadDKGConfig, err)
	}
	return &DKG{
		backend:   b,
		index:     cfg.Index,
		n:         n,
		t:         t,
		gen:       gen,
		haveDeal:  make(map[int]bool, n),
		justified: make(map[int]*vss.Deal),
		seen:      make(map[[32]byte]bool),
		maxPend:   4 * n * n,
	}, nil
}

// Index returns this participant's index.
func (d *DKG) Index() int { return d.index }

// Start returns this participant's deals, one per other participant,
// ordered by recipient. Calling it again returns nothing.
func (d *DKG) Start() (out []DKGMessage, err error) {
	if d.started {
		return nil, nil
	}
	defer catchStream(&err)
	defer catchLibraryPanic(&err, "make deals")
	deals, err := d.gen.Deals()
	if err != nil {
		return nil, fmt.Errorf("make deals: %w", err)
	}
	d.started = true
	d.haveDeal[d.index] = true
	to := make([]int, 0, len(deals))
	for i := range deals {
		to = append(to, i)
	}
	slices.Sort(to)
	for _, i := range to {
		out = append(out, DKGMessage{To: i, Data: encodeDeal(deals[i])})
	}
	more, err := d.drain()
	return append(out, more...), err
}

// Step feeds one received message and returns the messages to send in
// reply. An error (wrapping ErrBadDKGMessage) means the message was
// rejected; the driver may log it and carry on. (A rejected justification
// does change the state: it disqualifies its dealer.) A participant's own
// messages echoed back are ignored.
func (d *DKG) Step(data []byte) (out []DKGMessage, err error) {
	m, err := decodeDKGMessage(d.backend, data)
	if err != nil {
		return nil, fmt.Errorf("%w: decode: %w", ErrBadDKGMessage, err)
	}
	if m.from >= d.n {
		return nil, fmt.Errorf("%w: %s from participant %d of %d", ErrBadDKGMessage, m.kind, m.from, d.n)
	}
	if m.from == d.index {
		return nil, nil
	}
	h := sha256.Sum256(data)
	if d.seen[h] {
		return nil, nil
	}
	defer catchStream(&err)
	defer catchLibraryPanic(&err, "process "+m.kind.String())
	out, held, err := d.process(m)
	if err != nil {
		return nil, fmt.Errorf("%w: %s from %d: %w", ErrBadDKGMessage, m.kind, m.from, err)
	}
	d.seen[h] = true
	if held {
		return nil, nil
	}
	more, err := d.drain()
	return append(out, more...), err
}

// process applies one decoded message. held reports that it was queued for
// later because what it refers to has not arrived.
func (d *DKG) process(m *dkgWire) (out []DKGMessage, held bool, err error) {
	switch m.kind {
	case DKGDeal:
		if d.haveDeal[m.from] {
			return nil, false, errors.New("second deal from the same dealer")
		}
		resp, err := d.gen.ProcessDeal(m.deal)
		if err != nil {
			return nil, false, err
		}
		d.haveDeal[m.from] = true
		return []DKGMessage{{To: Broadcast, Data: encodeResponse(resp)}}, false, nil

	case DKGResponse:
		dealer := int(m.resp.Index)
		if dealer >= d.n {
			return nil, false, fmt.Errorf("response about dealer %d of %d", dealer, d.n)
		}
		if !d.haveDeal[dealer] {
			return nil, true, d.hold(m)
		}
		j, err := d.gen.ProcessResponse(m.resp)
		if err != nil {
			return nil, false, err
		}
		if j == nil {
			return nil, false, nil
		}
		data, err := encodeJustification(j)
		if err != nil {
			return nil, false, err
		}
		return []DKGMessage{{To: Broadcast, Data: data}}, false, nil

	case DKGJustification:
		verifier := int(m.just.Justification.Index)
		if !d.haveDeal[m.from] || !d.hasComplaint(m.from, verifier) {
			return nil, true, d.hold(m)
		}
		if err := d.gen.ProcessJustification(m.just); err != nil {
			return nil, false, err
		}
		if verifier == d.index {
			d.justified[m.from] = m.just.Justification.Deal
		}
		return nil, false, nil
	}
	return nil, false, fmt.Errorf("unknown kind %d", m.kind)
}

// hasComplaint reports whether a complaint by verifier about dealer's deal
// has been recorded.
func (d *DKG) hasComplaint(dealer, verifier int) bool {
	v, ok := d.gen.Verifiers()[uint32(dealer)]
	if !ok {
		return false
	}
	r, ok := v.Responses()[uint32(verifier)]
	return ok && r.Status == vss.StatusComplaint
}

func (d *DKG) hold(m *dkgWire) error {
	if len(d.pending) >= d.maxPend {
		return fmt.Errorf("too many early messages held (%d)", len(d.pending))
	}
	d.pending = append(d.pending, m)
	return nil
}

// drain replays held messages until none makes progress. Held messages that
// turn out invalid are dropped silently: their sender was already
// acknowledged when they were held.
func (d *DKG) drain() ([]DKGMessage, error) {
	var out []DKGMessage
	for progress := true; progress; {
		progress = false
		queue := d.pending
		d.pending = nil
		for _, m := range queue {
			msgs, held, err := d.process(m)
			if held {
				// process re-queued it; nothing changed.
				continue
			}
			progress = true
			if err == nil {
				out = append(out, msgs...)
			}
		}
	}
	return out, nil
}

// Timeout tells the participant that the driver's deadline has passed:
// missing responses stop blocking certification, and the run can finish
// with any t certified deals. Participants that time out at different
// moments may certify different sets of deals (kyber's pedersen DKG assumes
// synchrony), so drivers should compare the resulting group keys, e.g. by
// publishing them, before using them.
func (d *DKG) Timeout() {
	if !d.timedOut {
		d.timedOut = true
		d.gen.SetTimeout()
	}
}

// Done reports whether the run has finished: every deal certified (or, after
// Timeout, every deal that can be), with at least t of them qualified.
func (d *DKG) Done() bool {
	if !d.started {
		return false
	}
	if !d.gen.Certified() && !d.timedOut {
		return false
	}
	return len(d.Qualified()) >= d.t
}

// Qualified returns the indexes of the dealers whose deals count, sorted:
// deals certified by kyber's rules whose polynomial has exactly t
// coefficients. (kyber v3.1.0 lets a dealer pick its own degree; such a deal
// would make the sum of polynomials fail, so this package excludes it. Every
// honest participant sees the same commitments for a deal, so they all
// exclude the same deals.) The group key is the sum of these polynomials.
func (d *DKG) Qualified() []int {
	var q []int
	vs := d.gen.Verifiers()
	for j := 0; j < d.n; j++ {
		v := vs[uint32(j)]
		if v == nil || !v.DealCertified() {
			continue
		}
		deal := v.Deal()
		if deal == nil || int(deal.T) != d.t || len(deal.Commitments) != d.t {
			continue
		}
		q = append(q, j)
	}
	return q
}

// Result returns the group key and this participant's share. It returns
// ErrDKGNotDone until Done reports true.
//
// The result is computed here rather than by kyber's DistKeyShare, for two
// reasons: the degree filter of Qualified, and justified complaints. When
// this participant complained about its share and the dealer's
// justification (carrying the correct share, checked against the
// commitments) was accepted, kyber v3.1.0 keeps the first, bad share; this
// package uses the justified one.
func (d *DKG) Result() (key *GroupKey, s *Share, err error) {
	if d.key != nil {
		return d.key, d.share, nil
	}
	if !d.Done() {
		return nil, nil, ErrDKGNotDone
	}
	defer catchLibraryPanic(&err, "compute result")
	g := d.backend.KeyGroup()
	base := g.Point().Base()
	sum := g.Scalar().Zero()
	commits := make([]kyber.Point, d.t)
	for k := range commits {
		commits[k] = g.Point().Null()
	}
	vs := d.gen.Verifiers()
	for _, j := range d.Qualified() {
		deal := vs[uint32(j)].Deal()
		if jd, ok := d.justified[j]; ok {
			deal = jd
		}
		if deal.SecShare == nil || deal.SecShare.I != d.index ||
			!share.NewPubPoly(g, base, deal.Commitments).Check(deal.SecShare) {
			return nil, nil, fmt.Errorf("DKG result: the share from dealer %d does not match its commitments", j)
		}
		sum.Add(sum, deal.SecShare.V)
		for k, c := range deal.Commitments {
			commits[k].Add(commits[k], c)
		}
	}
	key, err = newGroupKey(d.backend, d.n, commits)
	if err != nil {
		return nil, nil, fmt.Errorf("DKG result: %w", err)
	}
	s = &Share{backend: d.backend, pri: &share.PriShare{I: d.index, V: sum}}
	if !s.Matches(key) {
		return nil, nil, fmt.Errorf("DKG result: share %d does not match the public polynomial", d.index)
	}
	d.key, d.share = key, s
	return key, s, nil
}

// panicReader hands kyber a reader whose failures surface as streamFailure
// panics (kyber's util/random panics with a bare string otherwise).
type panicReader struct{ r io.Reader }

func (p panicReader) Read(b []byte) (int, error) {
	n, err := io.ReadFull(p.r, b)
	if err != nil {
		panic(streamFailure{err: err})
	}
	return n, nil
}

// catchLibraryPanic turns a panic inside kyber (which trusts some inputs it
// is handed) into an error, so a hostile message cannot crash the driver.
// Stream failures are left to catchStream.
func catchLibraryPanic(errp *error, what string) {
	if r := recover(); r != nil {
		if f, ok := r.(streamFailure); ok {
			panic(f)
		}
		*errp = fmt.Errorf("%s: library panic: %v", what, r)
	}
}
