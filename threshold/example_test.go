package threshold_test

import (
	"fmt"

	"aura/threshold"
)

// A 3-of-5 key from a seeded dealer: three partials recover a group
// signature that verifies against the encoded group key.
func Example() {
	key, shares, err := threshold.Deal(threshold.NewBN256(), threshold.SeededReader([]byte("example")), 3, 5)
	if err != nil {
		panic(err)
	}
	msg := []byte("aura/snapshot/v1 ...")
	v := threshold.NewVerifier(key)
	c := v.NewCollector(msg)
	for _, s := range []*threshold.Share{shares[4], shares[0], shares[2]} {
		p, _ := threshold.SignPartial(s, msg)
		if err := c.Add(p); err != nil {
			panic(err)
		}
	}
	sig, bad, err := c.Recover()
	fmt.Println(len(sig), bad, err)
	fmt.Println(threshold.VerifyGroup(key.Bytes(), msg, sig))
	// Output:
	// 64 [] <nil>
	// <nil>
}
