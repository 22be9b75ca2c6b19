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

// ReshareDKGConfig describes one participant of a resharing DKG: the
// holders of an existing key's shares (the dealers) deal new shares of the
// same secret to a new group, which may add members and drop others.
type ReshareDKGConfig struct {
	// Backend is the curve; nil means NewBN256().
	Backend Backend
	// Key is this participant's long-term DKG key for the run; its public
	// part is among NewNodes.
	Key *DKGKey
	// OldKey is the key being reshared (its commitments prove each dealer's
	// share).
	OldKey *GroupKey
	// Share is this participant's share of OldKey when it deals, else nil.
	Share *Share
	// Dealers has one entry per share of OldKey, by old share index: the
	// DKG public key of the holder that deals that share, or nil for a
	// share whose holder does not take part. At least OldKey.Threshold()
	// entries are set, and every dealer is also among NewNodes (a dealer
	// stays in the group).
	Dealers [][]byte
	// NewNodes are the DKG public keys of the new group, in new index
	// order; this participant is among them.
	NewNodes [][]byte
	// Threshold is the new t, 2 <= t <= len(NewNodes).
	Threshold int
	// Rand supplies every random choice (polynomial, ephemeral keys, nonces).
	Rand io.Reader
}

// ReshareDKG is one participant of a resharing run (kyber
// share/dkg/pedersen in resharing mode), a pure message-driven state
// machine like DKG: Start and Step return the messages to send. Message
// indexes follow kyber: a deal or justification names its dealer by old
// share index, a response names its verifier by new index, and
// DKGMessage.To is a new index.
//
// Unlike a fresh DKG, the run waits for no timeout: the set of dealers is
// fixed in advance (the hub names it in its start frame), and a
// participant is done when the deal of every named dealer is certified by
// every member of the new group. All honest participants then hold shares
// of one new polynomial whose constant term is the old secret: the new
// group key has the old group public key and new commitments. The result
// interpolates the deals of the first OldKey.Threshold() dealers (by old
// index), so any t_old honest dealers suffice and every participant picks
// the same ones.
type ReshareDKG struct {
	backend  Backend
	oldKey   *GroupKey
	oldIndex int // this participant's old share index, or NoParticipant
	index    int // new index
	n, t     int
	dealers  []int // old indexes of the dealers, ascending
	isDealer map[int]bool
	gen      *dkg.DistKeyGenerator

	started   bool
	haveDeal  map[int]bool
	justified map[int]*vss.Deal
	seen      map[[32]byte]bool
	pending   []*dkgWire
	maxPend   int

	key   *GroupKey
	share *Share
}

// NewReshareDKG validates cfg and creates the participant.
func NewReshareDKG(cfg ReshareDKGConfig) (d *ReshareDKG, err error) {
	b := cfg.Backend
	if b == nil {
		b = NewBN256()
	}
	if cfg.Key == nil || cfg.Rand == nil || cfg.OldKey == nil {
		return nil, fmt.Errorf("%w: Key, OldKey and Rand are required", ErrBadDKGConfig)
	}
	if cfg.Key.backend.ID() != b.ID() || cfg.OldKey.backend.ID() != b.ID() {
		return nil, fmt.Errorf("%w: keys and config use different curves", ErrBackendMismatch)
	}
	n, t := len(cfg.NewNodes), cfg.Threshold
	if err := checkParams(t, n); err != nil || t < 2 {
		return nil, fmt.Errorf("%w: new threshold %d with %d new members", ErrBadDKGConfig, t, n)
	}
	oldN, oldT := cfg.OldKey.Signers(), cfg.OldKey.Threshold()
	if len(cfg.Dealers) != oldN {
		return nil, fmt.Errorf("%w: %d dealer slots for a key of %d shares", ErrBadDKGConfig, len(cfg.Dealers), oldN)
	}
	g := b.KeyGroup()
	decode := func(what string, raw []byte) (kyber.Point, error) {
		p, err := b.DecodeKeyPoint(raw)
		if err != nil {
			return nil, fmt.Errorf("%w: %s: %w", ErrBadDKGConfig, what, err)
		}
		if isNull(g, p) {
			return nil, fmt.Errorf("%w: %s is the identity", ErrBadDKGConfig, what)
		}
		return p, nil
	}
	newPubs := make([]kyber.Point, n)
	newAt := make(map[string]int, n)
	self := -1
	for i, raw := range cfg.NewNodes {
		p, err := decode(fmt.Sprintf("new member %d", i), raw)
		if err != nil {
			return nil, err
		}
		if _, dup := newAt[string(raw)]; dup {
			return nil, fmt.Errorf("%w: new member %d repeats an earlier key", ErrBadDKGConfig, i)
		}
		newAt[string(raw)] = i
		newPubs[i] = p
		if p.Equal(cfg.Key.public) {
			self = i
		}
	}
	if self < 0 {
		return nil, fmt.Errorf("%w: Key is not among NewNodes", ErrBadDKGConfig)
	}
	oldPubs := make([]kyber.Point, oldN)
	var dealers []int
	oldIndex := NoParticipant
	for k, raw := range cfg.Dealers {
		if raw == nil {
			// A share whose holder takes no part: a stand-in key nobody
			// deals with (deals naming it are refused before kyber sees
			// them).
			oldPubs[k] = standInKey(g, k)
			continue
		}
		p, err := decode(fmt.Sprintf("dealer %d", k), raw)
		if err != nil {
			return nil, err
		}
		if _, ok := newAt[string(raw)]; !ok {
			return nil, fmt.Errorf("%w: dealer %d is not among the new members", ErrBadDKGConfig, k)
		}
		oldPubs[k] = p
		dealers = append(dealers, k)
		if p.Equal(cfg.Key.public) {
			oldIndex = k
		}
	}
	if len(dealers) < oldT {
		return nil, fmt.Errorf("%w: %d dealers, the old key needs %d", ErrBadDKGConfig, len(dealers), oldT)
	}
	seenDealer := make(map[string]bool, len(dealers))
	for _, k := range dealers {
		if seenDealer[string(cfg.Dealers[k])] {
			return nil, fmt.Errorf("%w: dealer %d repeats an earlier dealer's key", ErrBadDKGConfig, k)
		}
		seenDealer[string(cfg.Dealers[k])] = true
	}
	var dshare *dkg.DistKeyShare
	if oldIndex != NoParticipant {
		if cfg.Share == nil || cfg.Share.Index() != oldIndex || !cfg.Share.Matches(cfg.OldKey) {
			return nil, fmt.Errorf("%w: this participant deals share %d but does not hold it", ErrBadDKGConfig, oldIndex)
		}
		dshare = &dkg.DistKeyShare{Commits: cfg.OldKey.commits, Share: &share.PriShare{I: oldIndex, V: cfg.Share.pri.V}}
	}

	defer catchStream(&err)
	defer catchLibraryPanic(&err, "create resharing DKG")
	c := &dkg.Config{
		Suite:          b.DKGSuite(Stream(cfg.Rand)),
		Longterm:       cfg.Key.secret,
		OldNodes:       oldPubs,
		NewNodes:       newPubs,
		Threshold:      t,
		OldThreshold:   oldT,
		Reader:         panicReader{cfg.Rand},
		UserReaderOnly: true,
	}
	if dshare != nil {
		c.Share = dshare
	} else {
		c.PublicCoeffs = cfg.OldKey.commits
	}
	gen, err := dkg.NewDistKeyHandler(c)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadDKGConfig, err)
	}
	isDealer := make(map[int]bool, len(dealers))
	for _, k := range dealers {
		isDealer[k] = true
	}
	return &ReshareDKG{
		backend: b, oldKey: cfg.OldKey, oldIndex: oldIndex, index: self, n: n, t: t,
		dealers: dealers, isDealer: isDealer, gen: gen,
		haveDeal: make(map[int]bool), justified: make(map[int]*vss.Deal),
		seen: make(map[[32]byte]bool), maxPend: 4 * (n + oldN) * (n + oldN),
	}, nil
}

// standInKey is the long-term key that fills the slot of an old share
// whose holder takes no part. Its discrete logarithm is public, which is
// harmless: a deal for slot k must commit to the old public share k, and
// only the holder of share k can make one that verifies; besides, the
// session refuses deals from slots it did not name.
func standInKey(g kyber.Group, k int) kyber.Point {
	h := sha256.Sum256(fmt.Appendf(nil, "aura/reshare/stand-in/%d", k))
	s := g.Scalar().SetBytes(h[:])
	return g.Point().Mul(s, nil)
}

// Index is this participant's new index.
func (d *ReshareDKG) Index() int { return d.index }

// Dealers are the old indexes of the dealers, ascending.
func (d *ReshareDKG) Dealers() []int { return slices.Clone(d.dealers) }

// Start returns this participant's deals (one per other new member,
// ordered by recipient; none when it does not deal) and the response to
// its own deal. Calling it again returns nothing.
func (d *ReshareDKG) Start() (out []DKGMessage, err error) {
	if d.started {
		return nil, nil
	}
	defer catchStream(&err)
	defer catchLibraryPanic(&err, "make resharing deals")
	deals, err := d.gen.Deals()
	if err != nil {
		return nil, fmt.Errorf("make deals: %w", err)
	}
	d.started = true
	to := make([]int, 0, len(deals))
	for i := range deals {
		to = append(to, i)
	}
	slices.Sort(to)
	for _, i := range to {
		if i == d.index {
			// A dealer that stays answers its own deal like any other, so
			// that every member sees a response from every member.
			resp, err := d.gen.ProcessDeal(deals[i])
			if err != nil {
				return nil, fmt.Errorf("own deal: %w", err)
			}
			d.haveDeal[d.oldIndex] = true
			out = append(out, DKGMessage{To: Broadcast, Data: encodeResponse(resp)})
			continue
		}
		out = append(out, DKGMessage{To: i, Data: encodeDeal(deals[i])})
	}
	more, err := d.drain()
	return append(out, more...), err
}

// Step feeds one received message and returns the messages to send in
// reply. An error (wrapping ErrBadDKGMessage) means the message was
// rejected; the driver may log it and carry on. This participant's own
// messages echoed back are ignored.
func (d *ReshareDKG) Step(data []byte) (out []DKGMessage, err error) {
	m, err := decodeDKGMessage(d.backend, data)
	if err != nil {
		return nil, fmt.Errorf("%w: decode: %w", ErrBadDKGMessage, err)
	}
	switch m.kind {
	case DKGDeal, DKGJustification:
		if !d.isDealer[m.from] {
			return nil, fmt.Errorf("%w: %s from share %d, which does not deal", ErrBadDKGMessage, m.kind, m.from)
		}
		if m.from == d.oldIndex {
			return nil, nil
		}
	case DKGResponse:
		if m.from >= d.n {
			return nil, fmt.Errorf("%w: response from member %d of %d", ErrBadDKGMessage, m.from, d.n)
		}
		if m.from == d.index {
			return nil, nil
		}
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

func (d *ReshareDKG) process(m *dkgWire) (out []DKGMessage, held bool, err error) {
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
		if !d.isDealer[dealer] {
			return nil, false, fmt.Errorf("response about share %d, which does not deal", dealer)
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

func (d *ReshareDKG) hasComplaint(dealer, verifier int) bool {
	v, ok := d.gen.Verifiers()[uint32(dealer)]
	if !ok {
		return false
	}
	r, ok := v.Responses()[uint32(verifier)]
	return ok && r.Status == vss.StatusComplaint
}

func (d *ReshareDKG) hold(m *dkgWire) error {
	if len(d.pending) >= d.maxPend {
		return fmt.Errorf("too many early messages held (%d)", len(d.pending))
	}
	d.pending = append(d.pending, m)
	return nil
}

func (d *ReshareDKG) drain() ([]DKGMessage, error) {
	var out []DKGMessage
	for progress := true; progress; {
		progress = false
		queue := d.pending
		d.pending = nil
		for _, m := range queue {
			msgs, held, err := d.process(m)
			if held {
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

// Uncertified lists the dealers (old indexes) whose deal is not yet
// certified by every new member, ascending.
func (d *ReshareDKG) Uncertified() []int {
	var missing []int
	vs := d.gen.Verifiers()
	for _, k := range d.dealers {
		v := vs[uint32(k)]
		if v == nil || !v.DealCertified() || len(v.MissingResponses()) > 0 {
			missing = append(missing, k)
			continue
		}
		deal := v.Deal()
		if deal == nil || int(deal.T) != d.t || len(deal.Commitments) != d.t {
			missing = append(missing, k)
		}
	}
	return missing
}

// Done reports whether every named dealer's deal is certified by every
// new member.
func (d *ReshareDKG) Done() bool { return d.started && len(d.Uncertified()) == 0 }

// Result returns the new group key (same group public key as OldKey, new
// commitments, t and n of the new group) and this participant's new share.
// It returns ErrDKGNotDone until Done.
func (d *ReshareDKG) Result() (key *GroupKey, s *Share, err error) {
	if d.key != nil {
		return d.key, d.share, nil
	}
	if !d.Done() {
		return nil, nil, ErrDKGNotDone
	}
	defer catchLibraryPanic(&err, "compute resharing result")
	g := d.backend.KeyGroup()
	base := g.Point().Base()
	use := d.dealers[:d.oldKey.Threshold()]
	xs := make([]kyber.Scalar, len(use))
	for i, k := range use {
		xs[i] = g.Scalar().SetInt64(int64(k + 1))
	}
	sum := g.Scalar().Zero()
	commits := make([]kyber.Point, d.t)
	for c := range commits {
		commits[c] = g.Point().Null()
	}
	vs := d.gen.Verifiers()
	for i, k := range use {
		deal := vs[uint32(k)].Deal()
		if jd, ok := d.justified[k]; ok {
			deal = jd
		}
		if deal.SecShare == nil || deal.SecShare.I != d.index ||
			!share.NewPubPoly(g, base, deal.Commitments).Check(deal.SecShare) {
			return nil, nil, fmt.Errorf("resharing result: the share from dealer %d does not match its commitments", k)
		}
		// Lagrange coefficient of x_i at 0 over the chosen dealers.
		lambda := g.Scalar().One()
		for j := range xs {
			if j == i {
				continue
			}
			num := xs[j]
			den := g.Scalar().Sub(xs[j], xs[i])
			lambda.Mul(lambda, g.Scalar().Div(num, den))
		}
		sum.Add(sum, g.Scalar().Mul(lambda, deal.SecShare.V))
		for c, cm := range deal.Commitments {
			commits[c].Add(commits[c], g.Point().Mul(lambda, cm))
		}
	}
	if !commits[0].Equal(d.oldKey.commits[0]) {
		return nil, nil, errors.New("resharing result: the new key's public point differs from the old key's")
	}
	key, err = newGroupKey(d.backend, d.n, commits)
	if err != nil {
		return nil, nil, fmt.Errorf("resharing result: %w", err)
	}
	s = &Share{backend: d.backend, pri: &share.PriShare{I: d.index, V: sum}}
	if !s.Matches(key) {
		return nil, nil, fmt.Errorf("resharing result: share %d does not match the new public polynomial", d.index)
	}
	d.key, d.share = key, s
	return key, s, nil
}
