package threshold

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"slices"
	"testing"

	"go.dedis.ch/kyber/v3"
	"go.dedis.ch/kyber/v3/pairing/bn256"
	"go.dedis.ch/kyber/v3/sign/bls"
	"go.dedis.ch/kyber/v3/sign/tbls"
)

// countingBackend counts the curve work done through it.
type countingBackend struct {
	Backend
	decodes, hashes, pairings int
}

func (c *countingBackend) DecodeSigPoint(b []byte) (kyber.Point, error) {
	c.decodes++
	return c.Backend.DecodeSigPoint(b)
}

func (c *countingBackend) HashToSig(m []byte) kyber.Point {
	c.hashes++
	return c.Backend.HashToSig(m)
}

func (c *countingBackend) PairingCheck(sig, hm, pub kyber.Point) bool {
	c.pairings++
	return c.Backend.PairingCheck(sig, hm, pub)
}

func (c *countingBackend) work() int { return c.decodes + c.hashes + c.pairings }

func mustDeal(t testing.TB, b Backend, seed string, th, n int) (*GroupKey, []*Share) {
	t.Helper()
	key, shares, err := Deal(b, SeededReader([]byte(seed)), th, n)
	if err != nil {
		t.Fatalf("Deal(%d,%d): %v", th, n, err)
	}
	return key, shares
}

func mustSign(t testing.TB, s *Share, msg []byte) []byte {
	t.Helper()
	p, err := SignPartial(s, msg)
	if err != nil {
		t.Fatalf("SignPartial: %v", err)
	}
	return p
}

// forge returns a well-formed partial for signer i that does not verify:
// signer i's index on a signature by a different scalar.
func forge(t testing.TB, b Backend, i int, msg []byte) []byte {
	t.Helper()
	_, other := mustDeal(t, b, fmt.Sprintf("forger-%d", i), 1, i+1)
	return mustSign(t, other[i], msg)
}

func subsets(n, k int) [][]int {
	var out [][]int
	var rec func(start int, cur []int)
	rec = func(start int, cur []int) {
		if len(cur) == k {
			out = append(out, slices.Clone(cur))
			return
		}
		for i := start; i < n; i++ {
			rec(i+1, append(cur, i))
		}
	}
	rec(0, nil)
	return out
}

func TestDealAnyThresholdSubsetRecovers(t *testing.T) {
	key, shares := mustDeal(t, nil, "deal-3-5", 3, 5)
	msg := []byte("aura/snapshot/v1 proposal 1")
	v := NewVerifier(key)
	partials := make([][]byte, len(shares))
	for i, s := range shares {
		if s.Index() != i || !s.Matches(key) {
			t.Fatalf("share %d: index %d, matches %t", i, s.Index(), s.Matches(key))
		}
		partials[i] = mustSign(t, s, msg)
		if err := v.VerifyPartial(msg, partials[i]); err != nil {
			t.Fatalf("VerifyPartial(%d): %v", i, err)
		}
	}
	var first []byte
	for _, set := range subsets(5, 3) {
		var ps [][]byte
		for _, i := range set {
			ps = append(ps, partials[i])
		}
		sig, bad, err := Recover(v, msg, ps)
		if err != nil || len(bad) != 0 {
			t.Fatalf("Recover(%v): bad=%v err=%v", set, bad, err)
		}
		if err := VerifyGroup(key.Bytes(), msg, sig); err != nil {
			t.Fatalf("VerifyGroup(%v): %v", set, err)
		}
		if first == nil {
			first = sig
		} else if !bytes.Equal(first, sig) {
			t.Fatalf("subset %v recovered a different signature", set)
		}
	}
	if err := key.Verify([]byte("another message"), first); !errors.Is(err, ErrBadGroupSignature) {
		t.Fatalf("signature verified on the wrong message: %v", err)
	}
}

func TestTwoOfThreeIsNotEnough(t *testing.T) {
	key, shares := mustDeal(t, nil, "deal-3-5", 3, 5)
	msg := []byte("m")
	for _, set := range subsets(5, 2) {
		ps := [][]byte{mustSign(t, shares[set[0]], msg), mustSign(t, shares[set[1]], msg)}
		_, bad, err := Recover(NewVerifier(key), msg, ps)
		if !errors.Is(err, ErrNotEnoughPartials) || len(bad) != 0 {
			t.Fatalf("Recover(%v): bad=%v err=%v, want ErrNotEnoughPartials", set, bad, err)
		}
	}
}

func TestKyberCompatibility(t *testing.T) {
	key, shares := mustDeal(t, nil, "compat", 3, 5)
	suite := bn256.NewSuite()
	msg := []byte("compat")
	var ps [][]byte
	for _, s := range shares[1:4] {
		p := mustSign(t, s, msg)
		kp, err := tbls.Sign(suite, s.pri, msg)
		if err != nil || !bytes.Equal(kp, p) {
			t.Fatalf("partial differs from tbls.Sign (err %v)", err)
		}
		if err := tbls.Verify(suite, key.poly, msg, p); err != nil {
			t.Fatalf("tbls.Verify: %v", err)
		}
		ps = append(ps, p)
	}
	ours, _, err := Recover(NewVerifier(key), msg, ps)
	if err != nil {
		t.Fatal(err)
	}
	theirs, err := tbls.Recover(suite, key.poly, msg, ps, 3, 5)
	if err != nil || !bytes.Equal(ours, theirs) {
		t.Fatalf("tbls.Recover differs (err %v)", err)
	}
	if err := bls.Verify(suite, key.commits[0], msg, ours); err != nil {
		t.Fatalf("bls.Verify: %v", err)
	}
}

func TestPairingCheckMatchesBLS(t *testing.T) {
	b := NewBN256()
	suite := bn256.NewSuite()
	x, X := bls.NewKeyPair(suite, Stream(SeededReader([]byte("kp"))))
	msg := []byte("pairing")
	sig, _ := bls.Sign(suite, x, msg)
	p, err := b.DecodeSigPoint(sig)
	if err != nil {
		t.Fatal(err)
	}
	if !b.PairingCheck(p, b.HashToSig(msg), X) {
		t.Fatal("PairingCheck rejects a valid signature")
	}
	if b.PairingCheck(p, b.HashToSig([]byte("other")), X) {
		t.Fatal("PairingCheck accepts a wrong message")
	}
	// Identity inputs take the full-pairing path and must not verify.
	id := b.SigGroup().Point().Null()
	if b.PairingCheck(id, b.HashToSig(msg), X) {
		t.Fatal("PairingCheck accepts the identity signature")
	}
}

func TestForgedPartialIsNamedAndExcluded(t *testing.T) {
	cases := []struct {
		th, n  int
		forged []int // signers whose partial is forged
		order  []int // signers in arrival order
	}{
		{3, 5, []int{1}, []int{0, 1, 2, 3}},
		{3, 5, []int{0}, []int{0, 1, 2, 3, 4}},
		{3, 5, []int{0, 2}, []int{0, 1, 2, 3, 4}},
		{3, 5, []int{4}, []int{4, 3, 2, 1}},
		{7, 10, []int{0, 3, 6}, []int{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}},
		{7, 10, []int{1, 2, 3}, []int{9, 8, 7, 6, 5, 4, 3, 2, 1, 0}},
	}
	for _, tc := range cases {
		t.Run(fmt.Sprintf("%d-of-%d/forged%v", tc.th, tc.n, tc.forged), func(t *testing.T) {
			key, shares := mustDeal(t, nil, "forge", tc.th, tc.n)
			msg := []byte("vote")
			var ps [][]byte
			for _, i := range tc.order {
				if slices.Contains(tc.forged, i) {
					ps = append(ps, forge(t, key.backend, i, msg))
				} else {
					ps = append(ps, mustSign(t, shares[i], msg))
				}
			}
			v := NewVerifier(key)
			c := v.NewCollector(msg)
			for _, p := range ps {
				if err := c.Add(p); err != nil {
					t.Fatalf("Add: %v", err)
				}
			}
			sig, bad, err := c.Recover()
			if err != nil {
				t.Fatalf("Recover: %v", err)
			}
			if err := key.Verify(msg, sig); err != nil {
				t.Fatalf("recovered signature: %v", err)
			}
			// Every forged partial that recovery had to look at is named,
			// and no honest signer is.
			for _, i := range bad {
				if !slices.Contains(tc.forged, i) {
					t.Fatalf("honest signer %d named bad (bad=%v)", i, bad)
				}
			}
			for _, i := range tc.forged {
				if pos := slices.Index(tc.order, i); pos < tc.th && !slices.Contains(bad, i) {
					t.Fatalf("forged signer %d among the first t not named (bad=%v)", i, bad)
				}
			}
			for _, i := range c.Signers() {
				if slices.Contains(tc.forged, i) {
					t.Fatalf("forged signer %d used in the signature", i)
				}
			}
			for _, p := range ps {
				i, _ := PartialIndex(key, p)
				err := v.VerifyPartial(msg, p)
				if slices.Contains(tc.forged, i) != errors.Is(err, ErrBadPartial) {
					t.Fatalf("VerifyPartial(signer %d) = %v", i, err)
				}
			}
		})
	}
}

func TestForgedPartialsLeaveTooFew(t *testing.T) {
	key, shares := mustDeal(t, nil, "few", 3, 5)
	msg := []byte("m")
	ps := [][]byte{mustSign(t, shares[0], msg), forge(t, key.backend, 1, msg), mustSign(t, shares[2], msg)}
	v := NewVerifier(key)
	c := v.NewCollector(msg)
	for _, p := range ps {
		if err := c.Add(p); err != nil {
			t.Fatal(err)
		}
	}
	_, bad, err := c.Recover()
	if !errors.Is(err, ErrNotEnoughPartials) || !slices.Equal(bad, []int{1}) {
		t.Fatalf("Recover: bad=%v err=%v, want [1] and ErrNotEnoughPartials", bad, err)
	}
	// The honest signer 1 sends a good partial after all; recovery completes.
	if err := c.Add(mustSign(t, shares[1], msg)); err != nil {
		t.Fatalf("Add after bad: %v", err)
	}
	sig, bad, err := c.Recover()
	if err != nil || len(bad) != 0 {
		t.Fatalf("Recover: bad=%v err=%v", bad, err)
	}
	if err := key.Verify(msg, sig); err != nil {
		t.Fatal(err)
	}
}

func TestStructuralRejectsBeforeCurveWork(t *testing.T) {
	cb := &countingBackend{Backend: NewBN256()}
	key, shares := mustDeal(t, cb, "structural", 3, 5)
	msg := []byte("m")
	good := mustSign(t, shares[2], msg)
	outOfRange := slices.Clone(good)
	outOfRange[0], outOfRange[1] = 0, 5
	huge := slices.Clone(good)
	huge[0], huge[1] = 0xff, 0xff

	v := NewVerifier(key)
	c := v.NewCollector(msg)
	if err := c.Add(good); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name    string
		partial []byte
		want    error
	}{
		{"empty", nil, ErrBadPartial},
		{"short", good[:10], ErrBadPartial},
		{"one byte short", good[:len(good)-1], ErrBadPartial},
		{"one byte long", append(slices.Clone(good), 0), ErrBadPartial},
		{"index n", outOfRange, ErrBadIndex},
		{"index 65535", huge, ErrBadIndex},
		{"duplicate", good, ErrDuplicateSigner},
		{"duplicate other bytes", forge(t, cb.Backend, 2, msg), ErrDuplicateSigner},
	}
	for _, tc := range cases {
		before := cb.work()
		if err := c.Add(tc.partial); !errors.Is(err, tc.want) {
			t.Errorf("Add(%s) = %v, want %v", tc.name, err, tc.want)
		}
		if tc.want != ErrDuplicateSigner {
			if err := v.VerifyPartial(msg, tc.partial); !errors.Is(err, tc.want) {
				t.Errorf("VerifyPartial(%s) = %v, want %v", tc.name, err, tc.want)
			}
		}
		if got := cb.work() - before; got != 0 {
			t.Errorf("%s: %d curve operations before rejection", tc.name, got)
		}
	}
	if c.Len() != 1 {
		t.Fatalf("collector holds %d partials, want 1", c.Len())
	}
}

func TestBadPointsAreRejected(t *testing.T) {
	key, shares := mustDeal(t, nil, "points", 3, 5)
	msg := []byte("m")
	good := mustSign(t, shares[1], msg)
	offCurve := slices.Clone(good)
	offCurve[len(offCurve)-1] ^= 1
	identity := make([]byte, len(good))
	identity[1] = 1
	// Non-canonical: x coordinate + p (the field modulus) no longer fits 32
	// bytes, so use all-ones coordinates, which are >= p.
	nonCanonical := slices.Clone(good)
	for k := 2; k < len(nonCanonical); k++ {
		nonCanonical[k] = 0xff
	}
	v := NewVerifier(key)
	for name, p := range map[string][]byte{"off curve": offCurve, "identity": identity, "non-canonical": nonCanonical} {
		if err := v.VerifyPartial(msg, p); !errors.Is(err, ErrBadPartial) {
			t.Errorf("VerifyPartial(%s) = %v, want ErrBadPartial", name, err)
		}
		c := v.NewCollector(msg)
		if err := c.Add(p); !errors.Is(err, ErrBadPartial) || !slices.Equal(c.Bad(), []int{1}) {
			t.Errorf("Add(%s) = %v, bad %v", name, err, c.Bad())
		}
	}
	if err := key.Verify(msg, identity[2:]); !errors.Is(err, ErrBadGroupSignature) {
		t.Errorf("identity group signature: %v", err)
	}
	if err := key.Verify(msg, good[2:]); !errors.Is(err, ErrBadGroupSignature) {
		t.Errorf("a partial passed as group signature: %v", err)
	}
}

func TestGroupKeyAndShareEncoding(t *testing.T) {
	key, shares := mustDeal(t, nil, "enc", 3, 5)
	k2, err := ParseGroupKey(key.Bytes())
	if err != nil || !k2.Equal(key) || k2.Threshold() != 3 || k2.Signers() != 5 {
		t.Fatalf("ParseGroupKey round trip: %v", err)
	}
	if len(key.Bytes()) != 6+3*128 || len(key.PublicKey()) != 128 {
		t.Fatalf("group key is %d bytes, public key %d", len(key.Bytes()), len(key.PublicKey()))
	}
	for _, s := range shares {
		s2, err := ParseShare(s.Bytes())
		if err != nil || s2.Index() != s.Index() || !bytes.Equal(s2.Bytes(), s.Bytes()) || !s2.Matches(key) {
			t.Fatalf("ParseShare round trip: %v", err)
		}
	}
	other, _ := mustDeal(t, nil, "other", 3, 5)
	if shares[0].Matches(other) {
		t.Fatal("share matches a foreign key")
	}

	bad := map[string][]byte{
		"empty":     nil,
		"version":   append([]byte{9}, key.Bytes()[1:]...),
		"backend":   append([]byte{1, 7}, key.Bytes()[2:]...),
		"truncated": key.Bytes()[:len(key.Bytes())-1],
		"trailing":  append(slices.Clone(key.Bytes()), 0),
		"t=0":       append([]byte{1, 1, 0, 0, 0, 5}, key.Bytes()[6:]...),
		"t>n":       append([]byte{1, 1, 0, 3, 0, 2}, key.Bytes()[6:]...),
	}
	corrupt := slices.Clone(key.Bytes())
	corrupt[6+128+5] ^= 0x40
	bad["bad point"] = corrupt
	zero := slices.Clone(key.Bytes())
	clear(zero[6 : 6+128])
	bad["identity key"] = zero
	for name, data := range bad {
		if _, err := ParseGroupKey(data); err == nil {
			t.Errorf("ParseGroupKey(%s) accepted", name)
		}
	}
	if err := VerifyGroup(bad["truncated"], []byte("m"), make([]byte, 64)); !errors.Is(err, ErrBadGroupKey) {
		t.Errorf("VerifyGroup with a bad key: %v", err)
	}
	sb := shares[0].Bytes()
	for name, data := range map[string][]byte{
		"empty": nil, "short": sb[:10], "long": append(slices.Clone(sb), 0),
		"version": append([]byte{2}, sb[1:]...), "scalar >= order": append(slices.Clone(sb[:4]), bytes.Repeat([]byte{0xff}, 32)...),
	} {
		if _, err := ParseShare(data); err == nil {
			t.Errorf("ParseShare(%s) accepted", name)
		}
	}
}

func TestDealParams(t *testing.T) {
	for _, p := range [][2]int{{0, 5}, {6, 5}, {-1, 3}, {2, 70000}} {
		if _, _, err := Deal(nil, SeededReader(nil), p[0], p[1]); !errors.Is(err, ErrBadParams) {
			t.Errorf("Deal(%d,%d) = %v, want ErrBadParams", p[0], p[1], err)
		}
	}
	// t = 1: every share is the secret; still a valid scheme.
	key, shares := mustDeal(t, nil, "t1", 1, 3)
	sig, _, err := Recover(NewVerifier(key), []byte("m"), [][]byte{mustSign(t, shares[2], []byte("m"))})
	if err != nil || key.Verify([]byte("m"), sig) != nil {
		t.Fatalf("t=1: %v", err)
	}
}

func TestDealIsDeterministic(t *testing.T) {
	k1, s1 := mustDeal(t, nil, "same", 4, 7)
	k2, s2 := mustDeal(t, nil, "same", 4, 7)
	k3, _ := mustDeal(t, nil, "different", 4, 7)
	if !k1.Equal(k2) || k1.Equal(k3) {
		t.Fatal("Deal is not a function of its seed")
	}
	for i := range s1 {
		if !bytes.Equal(s1[i].Bytes(), s2[i].Bytes()) {
			t.Fatalf("share %d differs", i)
		}
	}
}

func TestFailingReader(t *testing.T) {
	_, _, err := Deal(nil, io.LimitReader(SeededReader(nil), 40), 3, 5)
	if err == nil || !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
		t.Fatalf("Deal with a short reader: %v", err)
	}
	if _, err := NewDKGKey(nil, bytes.NewReader(nil)); err == nil {
		t.Fatal("NewDKGKey with an empty reader succeeded")
	}
}

func TestSeededReader(t *testing.T) {
	a, b := make([]byte, 100), make([]byte, 100)
	io.ReadFull(SeededReader([]byte("x")), a)
	r := SeededReader([]byte("x"))
	io.ReadFull(r, b[:37])
	io.ReadFull(r, b[37:])
	if !bytes.Equal(a, b) {
		t.Fatal("SeededReader output depends on read sizes")
	}
	c := make([]byte, 100)
	io.ReadFull(SeededReader([]byte("y")), c)
	if bytes.Equal(a, c) {
		t.Fatal("different seeds, same stream")
	}
}

func TestVerifierPublicShareCache(t *testing.T) {
	key, shares := mustDeal(t, nil, "cache", 3, 5)
	v := NewVerifier(key)
	for i := range shares {
		pub, err := v.PublicShare(i)
		if err != nil {
			t.Fatal(err)
		}
		want, _ := key.poly.Eval(i).V.MarshalBinary()
		if !bytes.Equal(pub, want) {
			t.Fatalf("public share %d wrong", i)
		}
	}
	if _, err := v.PublicShare(5); !errors.Is(err, ErrBadIndex) {
		t.Fatalf("PublicShare(5) = %v", err)
	}
}

func TestVerifierConcurrentUse(t *testing.T) {
	key, shares := mustDeal(t, nil, "conc", 3, 5)
	v := NewVerifier(key)
	msg := []byte("m")
	errs := make(chan error, len(shares))
	for _, s := range shares {
		p := mustSign(t, s, msg)
		go func() { errs <- v.VerifyPartial(msg, p) }()
	}
	for range shares {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
}
