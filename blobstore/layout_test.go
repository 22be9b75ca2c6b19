package blobstore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"testing"

	chunker "github.com/ipfs/boxo/chunker"
	"github.com/ipfs/boxo/ipld/unixfs/importer/balanced"
	"github.com/ipfs/boxo/ipld/unixfs/importer/helpers"
	"github.com/ipfs/go-cid"
	ipld "github.com/ipfs/go-ipld-format"
	mh "github.com/multiformats/go-multihash"

	"aura/blobstore/unixfs"
)

// boxoImport is the reference: boxo's balanced importer with the
// parameters of the unixfs-v1-2025 profile (raw leaves, CIDv1, sha2-256).
func boxoImport(t *testing.T, data []byte, chunk, links int) (cid.Cid, map[string][]byte) {
	t.Helper()
	rec := &recorder{blocks: map[string][]byte{}}
	params := helpers.DagBuilderParams{Dagserv: rec, Maxlinks: links, RawLeaves: true,
		CidBuilder: cid.Prefix{Version: 1, Codec: cid.DagProtobuf, MhType: mh.SHA2_256, MhLength: -1}}
	db, err := params.New(chunker.NewSizeSplitter(bytes.NewReader(data), int64(chunk)))
	if err != nil {
		t.Fatal(err)
	}
	root, err := balanced.Layout(db)
	if err != nil {
		t.Fatal(err)
	}
	return root.Cid(), rec.blocks
}

// TestLayoutMatchesBoxo: the hand-written builder that the blobstore and
// the simulator share gives boxo's CIDs and blocks, byte for byte, for
// sizes around the chunk and link boundaries, and Cat reads them back.
func TestLayoutMatchesBoxo(t *testing.T) {
	type layout struct{ chunk, links int }
	cases := []struct {
		l     layout
		sizes []int
	}{
		{layout{unixfs.ChunkSize, unixfs.MaxLinks}, []int{0, 1, 1000, unixfs.ChunkSize - 1, unixfs.ChunkSize, unixfs.ChunkSize + 1, 2*unixfs.ChunkSize + 5, 3 * unixfs.ChunkSize}},
		{layout{1024, 4}, []int{0, 1023, 1024, 1025, 4 * 1024, 4*1024 + 1, 16 * 1024, 16*1024 + 1, 70*1024 + 3}},
		{layout{100, 2}, []int{99, 100, 101, 200, 201, 401, 801, 1601}},
	}
	for _, c := range cases {
		for _, n := range c.sizes {
			t.Run(fmt.Sprintf("chunk%d-links%d-size%d", c.l.chunk, c.l.links, n), func(t *testing.T) {
				data := randomBytes(uint64(n), n)
				want, wantBlocks := boxoImport(t, data, c.l.chunk, c.l.links)
				got := map[string][]byte{}
				root, read, err := unixfs.Import(bytes.NewReader(data), unixfs.Layout{ChunkSize: c.l.chunk, MaxLinks: c.l.links}, func(id cid.Cid, b []byte) error {
					got[id.KeyString()] = b
					return nil
				})
				if err != nil || read != int64(n) {
					t.Fatalf("import: %v (read %d of %d)", err, read, n)
				}
				if !root.Equals(want) {
					t.Fatalf("root %s, boxo %s", root, want)
				}
				if len(got) != len(wantBlocks) {
					t.Fatalf("%d blocks, boxo %d", len(got), len(wantBlocks))
				}
				for k, b := range wantBlocks {
					if !bytes.Equal(got[k], b) {
						t.Fatalf("block %s differs from boxo's", cid.MustParse([]byte(k)))
					}
				}
				back, err := unixfs.Cat(root, func(id cid.Cid) ([]byte, error) {
					b, ok := got[id.KeyString()]
					if !ok {
						return nil, unixfs.ErrMissing
					}
					return b, nil
				})
				if err != nil || !bytes.Equal(back, data) {
					t.Fatalf("cat: %v (%d bytes back of %d)", err, len(back), n)
				}
			})
		}
	}
}

// TestStoreUsesSharedLayout: Store.Put names bytes as unixfs.Sum does (the
// CID the simulator's blob store gives them).
func TestStoreUsesSharedLayout(t *testing.T) {
	s := newStore(t)
	for _, n := range []int{0, 7, unixfs.ChunkSize, unixfs.ChunkSize + 1, 2*unixfs.ChunkSize + 3} {
		data := randomBytes(uint64(n)+99, n)
		c, _, err := s.Put(context.Background(), bytes.NewReader(data))
		if err != nil {
			t.Fatal(err)
		}
		if want := unixfs.Sum(data); !c.Equals(want) {
			t.Fatalf("size %d: store %s, unixfs.Sum %s", n, c, want)
		}
	}
}

// recorder is an ipld.DAGService that keeps what the importer adds.
type recorder struct{ blocks map[string][]byte }

func (r *recorder) Add(_ context.Context, nd ipld.Node) error {
	r.blocks[nd.Cid().KeyString()] = append([]byte(nil), nd.RawData()...)
	return nil
}

func (r *recorder) AddMany(ctx context.Context, nds []ipld.Node) error {
	for _, nd := range nds {
		if err := r.Add(ctx, nd); err != nil {
			return err
		}
	}
	return nil
}

func (r *recorder) Get(context.Context, cid.Cid) (ipld.Node, error) {
	return nil, errors.New("recorder: no reads")
}

func (r *recorder) GetMany(context.Context, []cid.Cid) <-chan *ipld.NodeOption {
	ch := make(chan *ipld.NodeOption)
	close(ch)
	return ch
}

func (r *recorder) Remove(context.Context, cid.Cid) error       { return nil }
func (r *recorder) RemoveMany(context.Context, []cid.Cid) error { return nil }
