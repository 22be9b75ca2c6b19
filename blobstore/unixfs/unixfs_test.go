package unixfs

import (
	"bytes"
	"errors"
	"testing"

	"github.com/ipfs/go-cid"
)

func pattern(n int) []byte {
	b := make([]byte, n)
	x := uint32(2463534242)
	for i := range b {
		x ^= x << 13
		x ^= x >> 17
		x ^= x << 5
		b[i] = byte(x)
	}
	return b
}

func importMap(t testing.TB, data []byte, l Layout) (cid.Cid, map[string][]byte) {
	t.Helper()
	blocks := map[string][]byte{}
	root, n, err := Import(bytes.NewReader(data), l, func(c cid.Cid, b []byte) error {
		blocks[c.KeyString()] = b
		return nil
	})
	if err != nil || n != int64(len(data)) {
		t.Fatalf("import: %v (%d of %d bytes)", err, n, len(data))
	}
	return root, blocks
}

func TestSmallBlobIsOneRawBlock(t *testing.T) {
	for _, n := range []int{0, 1, ChunkSize} {
		data := pattern(n)
		root, blocks := importMap(t, data, Layout{})
		if root.Type() != cid.Raw || len(blocks) != 1 || !root.Equals(RawCID(data)) || !Sum(data).Equals(root) {
			t.Fatalf("size %d: root %s (%d blocks)", n, root, len(blocks))
		}
	}
}

func TestDeepDAGRoundTrip(t *testing.T) {
	l := Layout{ChunkSize: 10, MaxLinks: 3}
	data := pattern(10*3*3*3 + 1) // one chunk past a full depth-3 tree: depth 4
	root, blocks := importMap(t, data, l)
	depth := 0
	for c := root; c.Type() == cid.DagProtobuf; depth++ {
		links, err := Links(c, blocks[c.KeyString()])
		if err != nil || len(links) == 0 {
			t.Fatalf("links of %s: %v", c, err)
		}
		c = links[0]
	}
	if depth != 4 {
		t.Fatalf("depth %d, want 4", depth)
	}
	get := func(c cid.Cid) ([]byte, error) {
		b, ok := blocks[c.KeyString()]
		if !ok {
			return nil, ErrMissing
		}
		return b, nil
	}
	back, err := Cat(root, get)
	if err != nil || !bytes.Equal(back, data) {
		t.Fatalf("cat: %v", err)
	}
	// A missing leaf and a tampered block are reported.
	var leaf cid.Cid
	for k := range blocks {
		if c, _ := cid.Cast([]byte(k)); c.Type() == cid.Raw {
			leaf = c
			break
		}
	}
	saved := blocks[leaf.KeyString()]
	delete(blocks, leaf.KeyString())
	if _, err := Cat(root, get); !errors.Is(err, ErrMissing) {
		t.Fatalf("missing leaf: %v", err)
	}
	blocks[leaf.KeyString()] = append([]byte{saved[0] ^ 1}, saved[1:]...)
	if _, err := Cat(root, get); !errors.Is(err, ErrMalformed) {
		t.Fatalf("tampered leaf: %v", err)
	}
}

type failReader struct{ n int }

func (r *failReader) Read(p []byte) (int, error) {
	if r.n <= 0 {
		return 0, errors.New("disk on fire")
	}
	k := min(len(p), r.n)
	r.n -= k
	return k, nil
}

func TestReadErrorIsReturned(t *testing.T) {
	for _, n := range []int{0, 5, 25} {
		_, _, err := Import(&failReader{n: n}, Layout{ChunkSize: 10, MaxLinks: 2}, func(cid.Cid, []byte) error { return nil })
		if err == nil || err.Error() != "disk on fire" {
			t.Fatalf("after %d bytes: %v", n, err)
		}
	}
	stop := errors.New("stop")
	if _, _, err := Import(bytes.NewReader(pattern(100)), Layout{ChunkSize: 10}, func(cid.Cid, []byte) error { return stop }); !errors.Is(err, stop) {
		t.Fatalf("emit error: %v", err)
	}
}

func FuzzDecode(f *testing.F) {
	_, blocks := importMap(f, pattern(55), Layout{ChunkSize: 10, MaxLinks: 3})
	for _, b := range blocks {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		c := cid.NewCidV1(cid.DagProtobuf, RawCID(b).Hash())
		nd, err := Decode(c, b)
		if err == nil && len(nd.Sizes) != len(nd.Links) {
			t.Fatal("sizes and links disagree")
		}
	})
}
