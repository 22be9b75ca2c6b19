package threshold

import (
	"bytes"
	"fmt"
	"slices"
	"testing"

	"pgregory.net/rapid"
)

// Law: whatever mix of honest and forged partials arrives, in whatever order,
// Recover succeeds exactly when at least t honest partials are present,
// returns the one group signature, never names an honest signer, and never
// interpolates a forged partial.
func TestRecoverLaws(t *testing.T) {
	const maxN = 6
	type fixture struct {
		key            *GroupKey
		honest, forged [][]byte
		sig            []byte
	}
	msg := []byte("law")
	fixtures := map[[2]int]*fixture{}
	for n := 1; n <= maxN; n++ {
		for th := 1; th <= n; th++ {
			key, shares := mustDeal(t, nil, fmt.Sprintf("law-%d-%d", th, n), th, n)
			f := &fixture{key: key}
			for i, s := range shares {
				f.honest = append(f.honest, mustSign(t, s, msg))
				f.forged = append(f.forged, forge(t, key.backend, i, msg))
			}
			sig, _, err := Recover(NewVerifier(key), msg, f.honest)
			if err != nil {
				t.Fatal(err)
			}
			f.sig = sig
			fixtures[[2]int{th, n}] = f
		}
	}
	rapid.Check(t, func(rt *rapid.T) {
		n := rapid.IntRange(1, maxN).Draw(rt, "n")
		th := rapid.IntRange(1, n).Draw(rt, "t")
		f := fixtures[[2]int{th, n}]
		// For each signer: absent, honest, or forged; then a random order.
		kinds := rapid.SliceOfN(rapid.IntRange(0, 2), n, n).Draw(rt, "kinds")
		var ps [][]byte
		var honest, forged []int
		for i, k := range kinds {
			switch k {
			case 1:
				ps = append(ps, f.honest[i])
				honest = append(honest, i)
			case 2:
				ps = append(ps, f.forged[i])
				forged = append(forged, i)
			}
		}
		perm := rapid.Permutation(ps).Draw(rt, "order")
		c := NewVerifier(f.key).NewCollector(msg)
		for _, p := range perm {
			if err := c.Add(p); err != nil {
				rt.Fatalf("Add: %v", err)
			}
		}
		sig, bad, err := c.Recover()
		for _, i := range bad {
			if !slices.Contains(forged, i) {
				rt.Fatalf("honest signer %d named bad", i)
			}
		}
		if len(honest) < th {
			if err == nil {
				rt.Fatalf("recovered with %d honest partials, t=%d", len(honest), th)
			}
			return
		}
		if err != nil {
			rt.Fatalf("Recover with %d honest of t=%d: %v", len(honest), th, err)
		}
		if !bytes.Equal(sig, f.sig) {
			rt.Fatal("recovered a different signature")
		}
		for _, i := range c.Signers() {
			if !slices.Contains(honest, i) {
				rt.Fatalf("signature interpolated signer %d, not honest", i)
			}
		}
	})
}
