package maintenance

import (
	"errors"
	"os"
	"testing"

	"aura/crdt"
)

// TestMain: every test here refolds the journal wherever the replica takes
// its live state for a frontier, and compares.
func TestMain(m *testing.M) {
	CheckFoldShortcuts(true)
	os.Exit(m.Run())
}

// The shortcut's answer is the refold's (a proposer's digest equals the
// state folded from its journal), and a live state that drifted from the
// journal is caught by the cross-check, not proposed.
func TestFoldShortcutMatchesRefoldAndDriftIsCaught(t *testing.T) {
	c := newCluster(t, 3, 2)
	r := c.reps[0]
	vv := r.store.VersionVector()
	enc, err := r.encodedAt(vv) // the live state (the journal holds exactly vv)
	c.must(err)
	st, err := r.StateAt(vv)
	c.must(err)
	if crdt.DigestOf(enc) != crdt.DigestOf(st.Encode()) {
		t.Fatal("the live state's encoding differs from the refold's")
	}

	r.cache.enc = nil
	r.state.KV["drift"] = &crdt.Entry{Value: []byte("not in the journal")}
	defer func() {
		p := recover()
		var m *FoldMismatch
		if err, ok := p.(error); !ok || !errors.As(err, &m) {
			t.Fatalf("a drifted live state was not caught: recovered %v", p)
		}
	}()
	_, _ = r.encodedAt(vv)
}
