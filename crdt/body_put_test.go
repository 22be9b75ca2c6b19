package crdt

import (
	"bytes"
	"testing"
)

// FuzzPutBody: whatever the one-pass Put decoder accepts, the general
// canonical decoder (decode, re-encode, compare) accepts too, with the
// same key and value; and every Put the encoder writes with a value is
// taken by the one-pass path.
func FuzzPutBody(f *testing.F) {
	for _, p := range []Put{{Key: "k", Value: []byte("v")}, {Key: "", Value: []byte{}}, {Key: "ключ", Value: make([]byte, 300)}, {Key: string(make([]byte, 1000)), Value: []byte{1}}} {
		b, err := encMode.Marshal(&p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte{0xa2, 0x01, 0x61, 0xff, 0x02, 0x40})       // invalid UTF-8 key
	f.Add([]byte{0xa2, 0x01, 0x78, 0x01, 0x6b, 0x02, 0x40}) // non-minimal key head
	f.Add([]byte{0xa2, 0x01, 0x61, 0x6b, 0x02, 0xf6})       // nil value
	f.Fuzz(func(t *testing.T, b []byte) {
		fast, ok := decodePut(b)
		var slow Put
		serr := Unmarshal(b, &slow)
		if !ok {
			if serr == nil && slow.Value != nil {
				t.Fatalf("%x: the general decoder takes a Put with a value that the one-pass path refused", b)
			}
			return
		}
		if serr != nil {
			t.Fatalf("%x: one-pass path accepted what the general decoder refuses: %v", b, serr)
		}
		if fast.Key != slow.Key || !bytes.Equal(fast.Value, slow.Value) || (fast.Value == nil) != (slow.Value == nil) {
			t.Fatalf("%x: one-pass %+v, general %+v", b, fast, slow)
		}
	})
}
