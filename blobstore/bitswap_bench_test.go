package blobstore

import (
	"context"
	"testing"
	"time"

	"github.com/ipfs/boxo/bitswap"
	"github.com/ipfs/boxo/bitswap/network/bsnet"
	"github.com/ipfs/boxo/blockservice"
	"github.com/ipfs/boxo/ipld/merkledag"
)

// BenchmarkBitswapFetch100MB3Peers is BenchmarkFetch100MB3Peers with boxo's
// bitswap instead of /aura/blocks/1: the same blob (same DAG, same 1 MiB
// raw leaves), held by three peers on the same Pebble-backed stores, fetched
// with a blockservice session walking the DAG (merkledag.FetchGraph) into
// the client's store. It is the reference for choosing the block protocol:
//
//	go test ./blobstore -run '^$' -bench '100MB' -benchtime 3x
func BenchmarkBitswapFetch100MB3Peers(b *testing.B) {
	data := randomBytes(2, benchSize)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	var nodes []node
	var swaps []*bitswap.Bitswap
	defer func() {
		for _, s := range swaps {
			_ = s.Close()
		}
	}()
	for i := 0; i < 4; i++ {
		n := newNode(b)
		nodes = append(nodes, n)
		swaps = append(swaps, bitswap.New(ctx, bsnet.NewFromIpfsHost(n.h), nil, n.s.Blockstore()))
	}
	servers, client := nodes[:3], nodes[3]
	root := putBytes(b, servers[0].s, data)
	for _, n := range servers[1:] {
		putBytes(b, n.s, data)
	}
	for _, n := range servers {
		connect(b, client.h, n.h)
	}
	bsvc := blockservice.New(client.s.Blockstore(), swaps[3])
	dag := merkledag.NewDAGService(bsvc)

	b.SetBytes(benchSize)
	b.ResetTimer()
	cpu := startCPU()
	for range b.N {
		if err := merkledag.FetchGraph(ctx, root, dag); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		cpu.pause()
		if ok, err := client.s.Has(ctx, root); err != nil || !ok {
			b.Fatalf("blob incomplete after the fetch: %v", err)
		}
		if _, err := client.s.GC(ctx); err != nil {
			b.Fatal(err)
		}
		cpu.resume()
		b.StartTimer()
	}
	cpu.report(b)
}
