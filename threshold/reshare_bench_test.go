package threshold

import (
	"fmt"
	"testing"
)

// BenchmarkReshareVsKeygen: a resharing session among n devices (all
// holding shares of an M-of-n key, M = n/2+1, moving to new shares of the
// same size) against a fresh key generation session of the same size, in
// the same run. Both run every side in one goroutine over FIFO links, so
// the figure is the total CPU work of the protocol.
func BenchmarkReshareVsKeygen(b *testing.B) {
	for _, n := range []int{5, 10, 20} {
		t := n/2 + 1
		b.Run(fmt.Sprintf("n=%d/keygen", n), func(b *testing.B) {
			for i := 0; b.Loop(); i++ {
				benchKeygen(b, fmt.Sprintf("bench-keygen-%d-%d", n, i), t, n)
			}
		})
		b.Run(fmt.Sprintf("n=%d/reshare", n), func(b *testing.B) {
			holders := make([]int, n)
			for k := range holders {
				holders[k] = k
			}
			for i := 0; b.Loop(); i++ {
				b.StopTimer()
				net := newReshareNet(b, fmt.Sprintf("bench-reshare-%d-%d", n, i), t, n, holders, t, 0)
				b.StartTimer()
				net.run()
				if net.hubOut == nil || net.hubOut.Done == nil {
					b.Fatalf("resharing failed: %+v", net.hubOut)
				}
			}
		})
	}
}

// benchKeygen runs one key generation session to success.
func benchKeygen(b *testing.B, seed string, t, n int) {
	ids := make([][]byte, n)
	for i := range ids {
		ids[i] = []byte(fmt.Sprintf("device-%02d", i))
	}
	var session [16]byte
	copy(session[:], seed)
	hub, err := NewKeygenHub(KeygenHubConfig{Session: session, Participants: ids, Threshold: t, Rand: SeededReader([]byte(seed))})
	if err != nil {
		b.Fatal(err)
	}
	parts := make([]*KeygenParticipant, n)
	toHub, fromHub := make([][][]byte, n), make([][][]byte, n)
	for i := 1; i < n; i++ {
		if parts[i], err = NewKeygenParticipant(KeygenParticipantConfig{Self: ids[i], Rand: SeededReader([]byte(fmt.Sprint(seed, i)))}, 0); err != nil {
			b.Fatal(err)
		}
	}
	var done bool
	hubOut := func(out KeygenOutput) {
		for _, s := range out.Send {
			fromHub[s.To] = append(fromHub[s.To], s.Frame)
		}
		if out.Err != nil {
			b.Fatal(out.Err)
		}
		done = done || out.Done != nil
	}
	var partOut func(i int, out KeygenOutput)
	partOut = func(i int, out KeygenOutput) {
		for _, s := range out.Send {
			toHub[i] = append(toHub[i], s.Frame)
		}
		if out.Err != nil {
			b.Fatal(out.Err)
		}
		if out.Keep != nil {
			partOut(i, parts[i].Kept(0))
		}
	}
	hubOut(hub.Start(0))
	for moved := true; moved; {
		moved = false
		for i := 1; i < n; i++ {
			if len(toHub[i]) > 0 {
				f := toHub[i][0]
				toHub[i] = toHub[i][1:]
				hubOut(hub.Step(0, i, f))
				moved = true
			}
			if len(fromHub[i]) > 0 {
				f := fromHub[i][0]
				fromHub[i] = fromHub[i][1:]
				partOut(i, parts[i].Step(0, f))
				moved = true
			}
		}
	}
	if !done {
		b.Fatal("key generation did not finish")
	}
}
