package blobstore

import (
	"context"
	"crypto/sha256"
	"testing"

	"github.com/ipfs/go-cid"

	"aura/blobstore/unixfs"
)

// The stages of a fetch measured apart, without the network: what a
// server spends reading the blocks it serves, and what the client spends
// verifying and storing them. Their cpu-ms/op add up to what a fetch costs
// beyond BenchmarkRawStream100MB.

// BenchmarkServeRead100MB reads a 100 MB blob's leaves the way the server
// does for a request.
func BenchmarkServeRead100MB(b *testing.B) {
	s := newStore(b)
	root := putBytes(b, s, randomBytes(3, benchSize))
	var leaves []cid.Cid
	err := s.walkLocal(context.Background(), root, func(c cid.Cid, held bool, _ int) bool {
		if c.Type() == cid.Raw {
			leaves = append(leaves, c)
		}
		return true
	})
	if err != nil {
		b.Fatal(err)
	}
	var n int
	b.SetBytes(benchSize)
	b.ResetTimer()
	cpu := startCPU()
	for range b.N {
		for _, c := range leaves {
			if err := s.viewBlock(c.Hash(), func(v []byte) error { n += len(v); return nil }); err != nil {
				b.Fatal(err)
			}
		}
	}
	cpu.report(b)
}

// BenchmarkVerifyStore100MB hashes and stores 100 blocks of 1 MiB through
// one sink, then syncs: the client's part of a fetch.
func BenchmarkVerifyStore100MB(b *testing.B) {
	s := newStore(b)
	data := randomBytes(4, benchSize)
	var cids []cid.Cid
	for off := 0; off < benchSize; off += ChunkSize {
		cids = append(cids, unixfs.RawCID(data[off:off+ChunkSize]))
	}
	b.SetBytes(benchSize)
	b.ResetTimer()
	cpu := startCPU()
	for range b.N {
		k := s.newSink()
		for i, c := range cids {
			blk := data[i*ChunkSize : (i+1)*ChunkSize]
			if sha256.Sum256(blk) != [32]byte(c.Hash()[2:]) {
				b.Fatal("hash")
			}
			if err := k.add(c.Hash(), blk); err != nil {
				b.Fatal(err)
			}
		}
		if err := k.close(true); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		cpu.pause()
		if _, err := s.GC(context.Background()); err != nil {
			b.Fatal(err)
		}
		cpu.resume()
		b.StartTimer()
	}
	cpu.report(b)
}
