package node

import (
	"bufio"
	"context"
	"crypto/rand"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/network"

	"aura/threshold"
)

// lyingDKGHandler is a participant's /aura/dkg/1 side that runs the real
// session but reports another group key than the one it computed.
func lyingDKGHandler(n *Node, lie []byte) network.StreamHandler {
	return func(s network.Stream) {
		defer s.Close()
		_ = s.SetDeadline(time.Now().Add(30 * time.Second))
		p, err := threshold.NewKeygenParticipant(threshold.KeygenParticipantConfig{
			Self: append([]byte(nil), n.device[:]...), Rand: rand.Reader}, time.Now().UnixMilli())
		if err != nil {
			return
		}
		r, w := bufio.NewReader(s), bufio.NewWriter(s)
		for !p.Over() {
			f, err := readFrame(r)
			if err != nil {
				return
			}
			for _, snd := range p.Step(time.Now().UnixMilli(), f).Send {
				frame := snd.Frame
				if kf, err := threshold.ParseKeygenFrame(frame); err == nil && kf.Type == threshold.FrameResult {
					kf.Data = lie
					frame = kf.Marshal()
				}
				if writeFrame(w, frame) != nil {
					return
				}
			}
		}
	}
}

// TestKeygenNamesTheLyingDevice: over real streams, a device that reports
// another group key makes the hub refuse, name it, and publish nothing; a
// retry with an honest device succeeds.
func TestKeygenNamesTheLyingDevice(t *testing.T) {
	ns := newNodes(t, 3)
	formAccount(t, ns, 2)
	other, _, err := threshold.Deal(nil, rand.Reader, 2, 3)
	if err != nil {
		t.Fatal(err)
	}
	liar := ns[2]
	liar.host.SetStreamHandler(DKGProtocol, liar.guardStream(lyingDKGHandler(liar, other.Bytes())))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	_, err = ns[0].Keygen(ctx, 2)
	if !errors.Is(err, ErrKeygen) || !errors.Is(err, threshold.ErrKeygenDisagree) {
		t.Fatalf("Keygen with a liar: %v", err)
	}
	if !strings.Contains(err.Error(), liar.device.Short()) {
		t.Fatalf("the error does not name the liar %s: %v", liar.device.Short(), err)
	}
	t.Logf("keygen with a liar: %v", err)
	if s := ns[0].Status(); s.GroupKey != nil {
		t.Fatalf("a group key was published: %+v", s.GroupKey)
	}
	liar.host.SetStreamHandler(DKGProtocol, liar.guardStream(liar.handleDKG))
	keygen(t, ns, 2)
}
