package blobstore

import (
	"context"
	"io"
	"syscall"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
)

// Run both in one go to compare, e.g.
//
//	go test -run XXX -bench '100MB' -benchtime 3x ./blobstore/
const benchSize = 100 << 20

// BenchmarkRawStream100MB copies 100 MB over one libp2p stream between two
// hosts on loopback (same transport, security and muxer as the fetch
// benchmark): the ceiling a block protocol can approach. Like a fetch, it
// moves 100 MB of distinct bytes from one buffer to another; the
// "hot-1MiB" variant resends one cache-resident 1 MiB chunk and discards
// what arrives, which flatters the stream by keeping every byte in cache.
func BenchmarkRawStream100MB(b *testing.B) {
	b.Run("distinct", func(b *testing.B) { benchRawStream(b, false) })
	b.Run("hot-1MiB", func(b *testing.B) { benchRawStream(b, true) })
}

func benchRawStream(b *testing.B, hot bool) {
	src, dst := newHost(b), newHost(b)
	connect(b, src, dst)
	const proto = "/aura/bench/raw/1"
	var data, sink []byte
	if hot {
		data = randomBytes(1, 1<<20)
	} else {
		data = randomBytes(1, benchSize)
		sink = make([]byte, benchSize)
	}
	got := make(chan int64, 1)
	dst.SetStreamHandler(proto, func(s network.Stream) {
		var n int64
		if hot {
			n, _ = io.Copy(io.Discard, s)
		} else {
			k, _ := io.ReadFull(s, sink)
			n = int64(k)
		}
		_, _ = s.Write([]byte{1}) // ack: everything arrived
		_ = s.Close()
		got <- n
	})
	defer dst.RemoveStreamHandler(proto)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()

	b.SetBytes(benchSize)
	b.ResetTimer()
	cpu := startCPU()
	for range b.N {
		s, err := src.NewStream(ctx, dst.ID(), proto)
		if err != nil {
			b.Fatal(err)
		}
		for off := 0; off < benchSize; off += 1 << 20 {
			chunk := data[off%len(data):][:1<<20]
			if _, err := s.Write(chunk); err != nil {
				b.Fatal(err)
			}
		}
		if err := s.CloseWrite(); err != nil {
			b.Fatal(err)
		}
		if _, err := io.ReadAll(s); err != nil {
			b.Fatal(err)
		}
		if n := <-got; n != benchSize {
			b.Fatalf("copied %d bytes", n)
		}
		_ = s.Close()
	}
	cpu.report(b)
}

// BenchmarkFetch100MB3Peers fetches a 100 MB blob held by three peers into
// a fourth node's Pebble (hashing, verifying and durably storing it). The
// client's blocks are garbage-collected between iterations, off the clock.
func BenchmarkFetch100MB3Peers(b *testing.B) {
	data := randomBytes(2, benchSize)
	servers := []node{newNode(b), newNode(b), newNode(b)}
	var peers []peer.ID
	root := putBytes(b, servers[0].s, data)
	for _, n := range servers[1:] {
		putBytes(b, n.s, data)
	}
	client := newNode(b)
	for _, n := range servers {
		connect(b, client.h, n.h)
		peers = append(peers, n.h.ID())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()

	var dups int
	b.SetBytes(benchSize)
	b.ResetTimer()
	cpu := startCPU()
	for range b.N {
		st, err := client.s.Fetch(ctx, root, peers, nil)
		if err != nil {
			b.Fatal(err)
		}
		if st.Fetched != benchSize/ChunkSize+1 {
			b.Fatalf("fetched %d blocks", st.Fetched)
		}
		dups += st.Duplicates
		b.StopTimer()
		cpu.pause()
		if _, err := client.s.GC(ctx); err != nil {
			b.Fatal(err)
		}
		cpu.resume()
		b.StartTimer()
	}
	cpu.report(b)
	if client.s.packs == nil {
		b.Fatal("client keeps blocks in Pebble batches, not pack files")
	}
	b.ReportMetric(float64(dups)/float64(b.N), "dupblocks/op")
}

// cpuMeter measures the process's CPU time (user+system, all goroutines,
// both ends of the transfer), which the machine's other load does not
// inflate the way it inflates wall time.
type cpuMeter struct {
	start time.Duration
	spent time.Duration
}

func processCPU() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func startCPU() *cpuMeter   { return &cpuMeter{start: processCPU()} }
func (m *cpuMeter) pause()  { m.spent += processCPU() - m.start }
func (m *cpuMeter) resume() { m.start = processCPU() }
func (m *cpuMeter) report(b *testing.B) {
	m.pause()
	b.ReportMetric(float64(m.spent.Milliseconds())/float64(b.N), "cpu-ms/op")
}
