package crdt

import (
	"crypto/ed25519"
	"crypto/sha256"
	"fmt"
)

// testKey is a deterministic device key.
func testKey(i int) ed25519.PrivateKey {
	seed := sha256.Sum256([]byte(fmt.Sprintf("aura test device %d", i)))
	return ed25519.NewKeyFromSeed(seed[:])
}

// scenario is a small account: device 0 is the admin, devices 1..n-1 are
// added with default capabilities.
type fataler interface {
	Helper()
	Fatal(args ...any)
}

type scenario struct {
	t       fataler
	keys    []ed25519.PrivateKey
	writers []*Writer
	account AccountID
	epoch   uint64
	facts   []*Fact
}

func newScenario(t fataler, n int) *scenario {
	s := &scenario{t: t}
	for i := 0; i < n; i++ {
		s.keys = append(s.keys, testKey(i))
		s.writers = append(s.writers, NewWriter(s.keys[i], AccountID{}, 0, 0))
	}
	g, err := s.writers[0].Genesis("test", 2, [16]byte{1, 2, 3})
	if err != nil {
		t.Fatal(err)
	}
	s.account = s.writers[0].Account()
	s.epoch = 1
	s.facts = append(s.facts, g)
	for i := 1; i < n; i++ {
		s.writers[i].SetAccount(s.account)
		s.epoch++
		s.write(0, s.epoch, &DeviceAdded{Device: s.dev(i), Capabilities: DefaultDeviceCapabilities, Name: fmt.Sprintf("d%d", i)})
	}
	return s
}

func (s *scenario) dev(i int) DeviceID { return s.writers[i].Device() }

// write makes device i write body at epoch; the writer observes every fact
// written so far (a causally up-to-date device).
func (s *scenario) write(i int, epoch uint64, body Body) *Fact {
	s.t.Helper()
	for _, f := range s.facts {
		s.writers[i].Observe(f.Lamport)
	}
	f, err := s.writers[i].Write(epoch, body)
	if err != nil {
		s.t.Fatal(err)
	}
	s.facts = append(s.facts, f)
	return f
}

func (s *scenario) reduce(facts []*Fact) *State {
	st := NewState(s.account, nil)
	st.Fold(facts)
	return st
}

type ed25519PublicKeyT = ed25519.PublicKey

func ed25519Sign(k ed25519.PrivateKey, msg []byte) []byte { return ed25519.Sign(k, msg) }
