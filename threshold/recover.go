package threshold

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"slices"

	"go.dedis.ch/kyber/v3"
	"go.dedis.ch/kyber/v3/share"
)

// Collector gathers partial signatures on one message and recovers the group
// signature from them. Add does the structural checks (length, index,
// duplicate) before any curve work and decodes the point; Recover does the
// cryptography:
//
//  1. Fast path: Lagrange-interpolate (share.RecoverCommit) the first t
//     usable partials in arrival order, and verify the resulting group
//     signature once. Honest partials cost t scalar multiplications in the
//     signature group and one pairing check, instead of t pairing checks.
//  2. If that signature does not verify, find the bad partials: a
//     deterministic random-linear-combination batch check over the
//     candidates (one pairing check per subset, with coefficients derived
//     by hashing the message and all candidate partials, Fiat–Shamir style),
//     bisected until every bad partial is isolated and checked on its own.
//     Bad partials are dropped and their signers named; replacements are
//     drawn from the remaining partials and checked the same way.
//  3. Interpolate t partials known to be good and verify the group signature.
//
// Every signer reported bad sent a partial that does not decode or that
// failed an exact single-partial check; the returned signature always passed
// the group verification. A Collector is
// not safe for concurrent use.
type Collector struct {
	v   *Verifier
	msg []byte
	hm  kyber.Point // H(msg), computed on first use

	entries map[int]*entry
	order   []int // signer indexes of held partials, in arrival order
	bad     map[int]bool

	sig     []byte // last recovered signature
	signers []int  // signers interpolated into sig
}

type entryState uint8

const (
	unchecked entryState = iota
	good
)

type entry struct {
	raw   []byte
	point kyber.Point
	state entryState
}

// NewCollector starts collecting partials on msg.
func (v *Verifier) NewCollector(msg []byte) *Collector {
	return &Collector{
		v:       v,
		msg:     append([]byte(nil), msg...),
		entries: make(map[int]*entry),
		bad:     make(map[int]bool),
	}
}

// Add takes one partial. It returns ErrBadPartial (wrong length, or a point
// that does not decode), ErrBadIndex or ErrDuplicateSigner; the first three
// checks involve no curve work. A partial whose point does not decode names
// its signer as bad. A later partial from a signer whose earlier partial was
// proven bad replaces it; otherwise the first partial of a signer stays.
func (c *Collector) Add(partial []byte) error {
	i, err := PartialIndex(c.v.key, partial)
	if err != nil {
		return err
	}
	if e, ok := c.entries[i]; ok {
		return fmt.Errorf("partial from signer %d (first one kept, identical=%t): %w",
			i, bytes.Equal(e.raw, partial), ErrDuplicateSigner)
	}
	p, err := decodeSig(c.v.key.backend, partial[2:])
	if err != nil {
		c.bad[i] = true
		return fmt.Errorf("partial from signer %d: %w: %w", i, ErrBadPartial, err)
	}
	delete(c.bad, i)
	c.entries[i] = &entry{raw: append([]byte(nil), partial...), point: p}
	c.order = append(c.order, i)
	return nil
}

// Len returns the number of partials held that are not known to be bad.
func (c *Collector) Len() int { return len(c.order) }

// Bad returns the signers whose partials were proven bad, sorted.
func (c *Collector) Bad() []int {
	out := make([]int, 0, len(c.bad))
	for i := range c.bad {
		out = append(out, i)
	}
	slices.Sort(out)
	return out
}

// Signers returns the signers whose partials the last successful Recover
// interpolated, in ascending order (nil before one succeeds).
func (c *Collector) Signers() []int { return slices.Clone(c.signers) }

// Recover returns the group signature and the signers proven bad so far
// (sorted). With fewer than t usable partials it returns ErrNotEnoughPartials
// (and the bad signers); add more partials and call it again. Once a
// signature is recovered, later calls return it: a BLS group signature is
// unique, whichever t partials produced it.
func (c *Collector) Recover() (sig []byte, bad []int, err error) {
	if c.sig != nil {
		return slices.Clone(c.sig), c.Bad(), nil
	}
	t := c.v.key.t
	if len(c.order) < t {
		return nil, c.Bad(), fmt.Errorf("have %d usable partials, need %d: %w", len(c.order), t, ErrNotEnoughPartials)
	}
	if c.hm == nil {
		c.hm = c.v.key.backend.HashToSig(c.msg)
	}

	// Fast path: the first t partials, whatever their state.
	if sig, ok := c.tryInterpolate(c.order[:t]); ok {
		return sig, c.Bad(), nil
	}

	// Slow path: isolate bad partials, refill from the rest.
	for {
		var goodSet, next []int
		for _, i := range c.order {
			if c.entries[i].state == good {
				goodSet = append(goodSet, i)
			} else if len(goodSet)+len(next) < t {
				next = append(next, i)
			}
		}
		if len(goodSet) >= t {
			if sig, ok := c.tryInterpolate(goodSet[:t]); ok {
				return sig, c.Bad(), nil
			}
			// Only a batch false positive (probability 2^-128) lands here:
			// check the t partials one by one and try again.
			found := false
			for _, i := range goodSet[:t] {
				if c.v.verifyPoint(i, c.entries[i].point, c.hm) != nil {
					c.markBad(i)
					found = true
				}
			}
			if !found {
				// t individually valid partials always interpolate to the
				// group signature; this means key and shares disagree.
				return nil, c.Bad(), fmt.Errorf("%d verified partials interpolate to an invalid signature: %w",
					t, ErrBadGroupSignature)
			}
			continue
		}
		if len(goodSet)+len(next) < t {
			return nil, c.Bad(), fmt.Errorf("have %d valid partials and %d unchecked, need %d: %w",
				len(goodSet), len(next), t, ErrNotEnoughPartials)
		}
		c.checkBatch(next)
	}
}

// tryInterpolate recovers the signature from the given signers' partials and
// verifies it against the group key.
func (c *Collector) tryInterpolate(signers []int) ([]byte, bool) {
	key := c.v.key
	pubs := make([]*share.PubShare, len(signers))
	for k, i := range signers {
		pubs[k] = &share.PubShare{I: i, V: c.entries[i].point}
	}
	p, err := share.RecoverCommit(key.backend.SigGroup(), pubs, key.t, key.n)
	if err != nil || isNull(key.backend.SigGroup(), p) {
		return nil, false
	}
	if !key.backend.PairingCheck(p, c.hm, key.commits[0]) {
		return nil, false
	}
	sig, err := p.MarshalBinary()
	if err != nil {
		return nil, false
	}
	c.sig = sig
	c.signers = slices.Sorted(slices.Values(signers))
	return slices.Clone(sig), true
}

// batchDomain separates the batch-coefficient hash from other hashes.
const batchDomain = "aura/threshold/batch/v1"

// checkBatch classifies every signer in set as good or bad. Each signer i
// gets a 128-bit nonzero coefficient r_i = H(seed ‖ i) where the seed hashes
// the message point and every (index, partial) of the set, so no partial
// can be chosen after its coefficient is known. A subset S passes when
// e(Σ r_i σ_i, B) == e(H(m), Σ r_i X_i). A failing subset is bisected; by
// bilinearity, when S fails and its left half passes, the right half fails,
// so only one half is checked per level. A single-element check is exactly
// the partial's own BLS check (r_i is invertible), so "bad" is never a
// probabilistic verdict; "good" for a multi-element subset is wrong with
// probability at most 2^-128, and step 3's final verification still guards
// the result.
func (c *Collector) checkBatch(set []int) {
	b := c.v.key.backend
	sg, kg := b.SigGroup(), b.KeyGroup()

	sorted := slices.Sorted(slices.Values(set))
	h := sha256.New()
	h.Write([]byte(batchDomain))
	hmb, _ := c.hm.MarshalBinary()
	h.Write(hmb)
	for _, i := range sorted {
		var ib [2]byte
		binary.BigEndian.PutUint16(ib[:], uint16(i))
		h.Write(ib[:])
		h.Write(c.entries[i].raw)
	}
	seed := h.Sum(nil)

	// Weighted points, computed once; subsets are sums of these.
	ws := make(map[int]kyber.Point, len(set))
	wp := make(map[int]kyber.Point, len(set))
	for _, i := range set {
		r := batchCoefficient(kg, seed, i)
		ws[i] = sg.Point().Mul(r, c.entries[i].point)
		wp[i] = kg.Point().Mul(r, c.v.publicShare(i))
	}
	check := func(s []int) bool {
		sum := sg.Point().Null()
		pub := kg.Point().Null()
		for _, i := range s {
			sum.Add(sum, ws[i])
			pub.Add(pub, wp[i])
		}
		return b.PairingCheck(sum, c.hm, pub)
	}
	var bisect func(s []int, knownBad bool)
	bisect = func(s []int, knownBad bool) {
		if !knownBad && check(s) {
			for _, i := range s {
				c.entries[i].state = good
			}
			return
		}
		if len(s) == 1 {
			c.markBad(s[0])
			return
		}
		mid := len(s) / 2
		left, right := s[:mid], s[mid:]
		if check(left) {
			for _, i := range left {
				c.entries[i].state = good
			}
			bisect(right, true)
			return
		}
		bisect(left, true)
		bisect(right, false)
	}
	bisect(set, false)
}

func (c *Collector) markBad(i int) {
	c.bad[i] = true
	delete(c.entries, i)
	c.order = slices.DeleteFunc(c.order, func(j int) bool { return j == i })
}

// batchCoefficient derives r_i: 128 bits of SHA-256(seed ‖ i), never zero.
func batchCoefficient(g kyber.Group, seed []byte, i int) kyber.Scalar {
	h := sha256.New()
	h.Write(seed)
	var ib [2]byte
	binary.BigEndian.PutUint16(ib[:], uint16(i))
	h.Write(ib[:])
	d := h.Sum(nil)
	var buf [16]byte
	copy(buf[:], d[:16])
	buf[15] |= 1 // nonzero, hence invertible modulo the prime group order
	return g.Scalar().SetBytes(buf[:])
}

// Recover is the one-shot form of Collector: it adds every partial (skipping
// malformed ones, out-of-range indexes and later duplicates, and naming the
// signers of undecodable points as bad) and recovers the group signature.
func Recover(v *Verifier, msg []byte, partials [][]byte) (sig []byte, bad []int, err error) {
	c := v.NewCollector(msg)
	for _, p := range partials {
		// Add only fails on partials it rejects; they are skipped here.
		_ = c.Add(p)
	}
	return c.Recover()
}
