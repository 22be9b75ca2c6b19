package crdt

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"testing"
	"testing/iotest"
)

// bigState is a state with key/values of every shape: values larger than
// the decoder's buffer, deleted keys, keys of several lengths.
func bigState(t testing.TB) (*scenario, *State) {
	s := newScenario(t, 3)
	big := bytes.Repeat([]byte("0123456789abcdef"), 9000) // 144 KB
	for i := range 40 {
		s.write(i%3, s.epoch, &Put{Key: fmt.Sprintf("k%0*d", 1+i%5, i), Value: append(big[:i*997%len(big)+1:i*997%len(big)+1], byte(i))})
	}
	s.write(1, s.epoch, &Delete{Key: "k1"})
	s.write(2, s.epoch, &BlobStored{CID: []byte("cid"), Size: 3})
	s.write(2, s.epoch, &DeviceMetadata{SupportedProtocols: []string{"p"}, UpgradePolicy: PolicyAuto})
	return s, s.reduce(s.facts)
}

func TestReadStateIsDecodeState(t *testing.T) {
	_, st := bigState(t)
	enc := st.Encode()
	for _, r := range []io.Reader{bytes.NewReader(enc), iotest.OneByteReader(bytes.NewReader(enc)), iotest.HalfReader(bytes.NewReader(enc))} {
		got, err := ReadState(r, ReadOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if got.Digest != DigestOf(enc) || got.Size != int64(len(enc)) || got.Entries != len(st.KV) {
			t.Fatalf("digest %s size %d entries %d; want %s %d %d", got.Digest, got.Size, got.Entries, DigestOf(enc), len(enc), len(st.KV))
		}
		if !bytes.Equal(got.State.Encode(), enc) {
			t.Fatal("streamed state does not re-encode to its input")
		}
	}
	lean, err := ReadState(bytes.NewReader(enc), ReadOptions{Lean: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(lean.State.KV) != 0 || lean.Digest != DigestOf(enc) || lean.Entries != len(st.KV) {
		t.Fatalf("lean read kept %d entries, digest %s", len(lean.State.KV), lean.Digest)
	}
	full := st.Clone()
	full.KV = map[string]*Entry{}
	if !bytes.Equal(lean.State.Encode(), full.Encode()) {
		t.Fatal("lean state differs from the state without its key/values")
	}
}

// The omitempty fields after the key/values (admin replacements) read
// back too, present or absent, and present-but-empty is refused.
func TestReadStateOptionalFields(t *testing.T) {
	s, st := bigState(t)
	st.AdminReplacements[s.dev(0)] = AdminOverride{New: s.dev(1), ActivationEpoch: 7}
	st.AdminProposals[[16]byte{9}] = &AdminProposalRef{Stamp: Stamp{Lamport: 3}, Votes: map[DeviceID][]byte{s.dev(2): []byte("v")}}
	enc := st.Encode()
	got, err := ReadState(bytes.NewReader(enc), ReadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got.State.Encode(), enc) || got.State.AdminReplacements[s.dev(0)].ActivationEpoch != 7 {
		t.Fatal("admin replacement fields did not read back")
	}
	if _, err := DecodeState(enc); err != nil {
		t.Fatal(err)
	}
	// Field 19 present with an empty map: not the canonical encoding.
	empty := NewState(s.account, nil)
	b := empty.Encode()
	b = append(append([]byte{b[0] + 1}, b[1:]...), 0x13, 0xa0)
	if _, err := DecodeState(b); err == nil {
		t.Fatal("DecodeState accepts an empty omitempty field")
	}
	if _, err := ReadState(bytes.NewReader(b), ReadOptions{}); !errors.Is(err, ErrNotCanonical) {
		t.Fatalf("empty omitempty field: %v", err)
	}
}

func TestReadStateRefuses(t *testing.T) {
	_, st := bigState(t)
	enc := st.Encode()
	// Swap two keys of equal length: out of canonical order.
	swapped := bytes.Replace(bytes.Replace(enc, []byte("k00004"), []byte("k_____"), 1), []byte("k00009"), []byte("k00004"), 1)
	swapped = bytes.Replace(swapped, []byte("k_____"), []byte("k00009"), 1)
	cases := map[string]struct {
		b    []byte
		want error
	}{
		"trailing byte":   {append(append([]byte(nil), enc...), 0), ErrMalformed},
		"truncated":       {enc[:len(enc)-1], ErrMalformed},
		"truncated value": {enc[:len(enc)/2], ErrMalformed},
		"keys reordered":  {swapped, ErrNotCanonical},
		"empty":           {nil, ErrMalformed},
	}
	for name, c := range cases {
		if _, err := DecodeState(c.b); err == nil {
			t.Fatalf("%s: DecodeState accepts it", name)
		}
		for _, lean := range []bool{false, true} {
			if _, err := ReadState(bytes.NewReader(c.b), ReadOptions{Lean: lean}); !errors.Is(err, c.want) {
				t.Fatalf("%s (lean %v): %v, want %v", name, lean, err, c.want)
			}
		}
	}
	if _, err := ReadState(bytes.NewReader(enc), ReadOptions{Limit: int64(len(enc) - 1)}); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("over the limit: %v", err)
	}
	boom := errors.New("disk on fire")
	if _, err := ReadState(io.MultiReader(bytes.NewReader(enc[:100]), iotest.ErrReader(boom)), ReadOptions{}); !errors.Is(err, boom) {
		t.Fatalf("reader error: %v", err)
	}
}

// The digest of a lean state after a fold, joined with the base it was
// read from, is the digest of the whole state after the same fold.
func TestJoinedDigest(t *testing.T) {
	s, base := bigState(t)
	enc := base.Encode()
	open := func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(enc)), nil }
	cases := map[string][]Body{
		"nothing":                {},
		"no key/value":           {&BlobStored{CID: []byte("other"), Size: 9}},
		"new keys":               {&Put{Key: "a", Value: []byte("1")}, &Put{Key: "zzzzzzzzz", Value: []byte("2")}, &Put{Key: "k0015x", Value: []byte("3")}},
		"overwrite and delete":   {&Put{Key: "k0", Value: []byte("new")}, &Delete{Key: "k00002"}},
		"membership and a value": {&Put{Key: "k1", Value: []byte("back")}},
	}
	for name, bodies := range cases {
		lean, err := ReadState(bytes.NewReader(enc), ReadOptions{Lean: true})
		if err != nil {
			t.Fatal(err)
		}
		full := base.Clone()
		for i, b := range bodies {
			f := s.write(i%3, s.epoch, b)
			if err := full.Apply(f); err != nil {
				t.Fatal(err)
			}
			if err := lean.State.Apply(f); err != nil {
				t.Fatal(err)
			}
		}
		got, err := JoinedDigest(lean, lean.State, open)
		if err != nil {
			t.Fatal(err)
		}
		if got != full.Digest() {
			t.Fatalf("%s: joined digest %s, whole state's %s", name, got, full.Digest())
		}
	}
}

func FuzzReadState(f *testing.F) {
	s := newScenario(f, 2)
	s.write(1, s.epoch, &Put{Key: "a", Value: []byte("b")})
	s.write(0, s.epoch, &Delete{Key: "bb"})
	f.Add(s.reduce(s.facts).Encode())
	s.write(1, s.epoch, &Put{Key: "c", Value: make([]byte, 60<<10)})
	f.Add(s.reduce(s.facts).Encode())
	f.Add(NewState(s.account, nil).Encode())
	withAdmin := s.reduce(s.facts)
	withAdmin.AdminReplacements[s.dev(0)] = AdminOverride{New: s.dev(1), ActivationEpoch: 2}
	f.Add(withAdmin.Encode())
	f.Fuzz(func(t *testing.T, b []byte) {
		want, werr := DecodeState(b)
		got, err := ReadState(bytes.NewReader(b), ReadOptions{})
		lean, lerr := ReadState(iotest.HalfReader(bytes.NewReader(b)), ReadOptions{Lean: true})
		if (werr == nil) != (err == nil) || (err == nil) != (lerr == nil) {
			t.Fatalf("DecodeState: %v; ReadState: %v; lean: %v", werr, err, lerr)
		}
		if err != nil {
			return
		}
		if !bytes.Equal(got.State.Encode(), b) || !bytes.Equal(want.Encode(), b) {
			t.Fatal("decoded state does not re-encode to its input")
		}
		if got.Digest != DigestOf(b) || lean.Digest != got.Digest {
			t.Fatal("digest differs from DigestOf")
		}
		if d, err := JoinedDigest(lean, lean.State, func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil }); err != nil || d != got.Digest {
			t.Fatalf("joined digest of an unchanged state: %v", err)
		}
	})
}
