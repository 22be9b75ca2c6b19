package sim

import (
	"bytes"
	"crypto/ed25519"
	"fmt"
	"strings"
	"testing"

	"aura/crdt"
)

// TestOracleFold: the reference reducer on a hand-made journal gives what
// DESIGN §3 says, and crdt's reducer agrees with it on the same facts:
// writes before admission and after removal do not count, one just before
// the removal does, a tie on Lamport time goes to the higher author, a
// delete with a later stamp wins over a put, a grant counts from its
// epoch on, and a stranger's write never counts.
func TestOracleFold(t *testing.T) {
	key := func(i int) ed25519.PrivateKey {
		return ed25519.NewKeyFromSeed(bytes.Repeat([]byte{byte(i + 1)}, 32))
	}
	admin, dev, stranger := key(0), key(1), key(2)
	aID := crdt.DeviceIDFromKey(admin.Public().(ed25519.PublicKey))
	bID := crdt.DeviceIDFromKey(dev.Public().(ed25519.PublicKey))
	var nonce [16]byte
	account := crdt.AccountIDFor(aID, nonce)
	s := &sim{byID: map[crdt.DeviceID]*device{}, stranger: stranger, account: account}
	s.truth = newTruth(s)
	seqs := map[crdt.DeviceID]uint64{}
	var facts []*crdt.Fact
	sign := func(k ed25519.PrivateKey, epoch, lamport uint64, body crdt.Body) *crdt.Fact {
		id := crdt.DeviceIDFromKey(k.Public().(ed25519.PublicKey))
		seqs[id]++
		f, err := crdt.NewFact(k, account, seqs[id], epoch, lamport, body)
		if err != nil {
			t.Fatal(err)
		}
		facts = append(facts, f)
		return f
	}
	sign(admin, 1, 1, &crdt.Genesis{Name: "t", Threshold: 1, Nonce: nonce})
	sign(dev, 1, 2, &crdt.Put{Key: "early", Value: []byte("before admission")}) // epoch 1: not yet a member
	sign(admin, 2, 3, &crdt.DeviceAdded{Device: bID, Capabilities: []string{crdt.CapWrite}})
	sign(admin, 2, 10, &crdt.Put{Key: "tie", Value: []byte("admin")})
	sign(dev, 2, 10, &crdt.Put{Key: "tie", Value: []byte("dev")})
	sign(dev, 2, 11, &crdt.Put{Key: "gone", Value: []byte("x")})
	sign(admin, 2, 12, &crdt.Delete{Key: "gone"})
	sign(dev, 2, 13, &crdt.CacheInvalidated{Keys: []string{"members"}, EpochFloor: 2})
	sign(admin, 3, 14, &crdt.CapabilityGrant{Device: bID, Capabilities: []string{crdt.CapUpgradePublish}})
	sign(admin, 4, 15, &crdt.DeviceRemoved{Device: bID})
	sign(dev, 3, 16, &crdt.Put{Key: "last", Value: []byte("just before removal")})
	sign(dev, 4, 17, &crdt.Put{Key: "late", Value: []byte("after removal")})
	sign(stranger, 4, 18, &crdt.Put{Key: "intruder", Value: []byte("x")})

	o := newOracle(s)
	ref := o.fold(account, facts)
	want := map[string]string{"tie": "admin", "last": "just before removal"}
	if bytes.Compare(bID[:], aID[:]) > 0 {
		want["tie"] = "dev"
	}
	for k, v := range want {
		if e, ok := ref.kv[k]; !ok || e.deleted || e.value != v {
			t.Errorf("key %s: %+v, want %q", k, e, v)
		}
	}
	if e := ref.kv["gone"]; !e.deleted {
		t.Errorf("key gone: %+v, want deleted", e)
	}
	for _, k := range []string{"early", "late", "intruder"} {
		if e, ok := ref.kv[k]; ok {
			t.Errorf("key %s counted: %+v", k, e)
		}
	}
	m := ref.members[bID]
	if m == nil || m.added != 2 || m.removed != 4 || m.caps[crdt.CapUpgradePublish] != 3 || m.caps[crdt.CapWrite] != 2 {
		t.Errorf("member: %+v", m)
	}
	if ref.epoch != 4 || ref.floors["members"] != 2 {
		t.Errorf("epoch %d, floors %v", ref.epoch, ref.floors)
	}
	if !ref.holds(bID, crdt.CapUpgradePublish, 3) || ref.holds(bID, crdt.CapUpgradePublish, 2) || ref.holds(bID, "", 4) {
		t.Error("holds: grant or removal epochs ignored")
	}
	// crdt's reducer, fed the facts in reverse, agrees.
	st := crdt.NewState(account, nil)
	for i := len(facts) - 1; i >= 0; i-- {
		_ = st.Apply(facts[i])
	}
	if d := ref.diff(s, st); d != "" {
		t.Fatalf("crdt's reducer and the oracle disagree: %s", d)
	}
	// And the oracle sees a state that deviates.
	st.KV["tie"].Value = []byte("flipped")
	if d := ref.diff(s, st); !strings.Contains(d, "key tie") {
		t.Fatalf("a flipped value went unnoticed: %q", d)
	}
}

// TestOracleAloneCatches: a guard that ignores the epoch of a grant (the
// grant-epoch-ignored defect folding backdated Byzantine writes) passes
// every check but the oracle on some seed: the oracle adds power the
// other invariants lack.
func TestOracleAloneCatches(t *testing.T) {
	for seed := uint64(1); seed <= 5; seed++ {
		cfg := small(t, "net,byz=1:backdate", seed)
		cfg.Defects = Defects{GrantEpochIgnored: true}
		r, err := Run(cfg)
		if err != nil {
			t.Fatal(err)
		}
		only := r.Failed()
		for _, v := range r.Violations {
			only = only && v.Invariant == "oracle"
		}
		if only {
			t.Logf("seed %d: only the oracle fires: %s", seed, r.Violations[0])
			return
		}
	}
	t.Fatal("no seed where the oracle alone catches grant-epoch-ignored")
}

// TestContendedWorkloads: the contend mix does what it claims (shared
// keys with Lamport ties, grants and removals, crashes inside fence
// releases, tampered blobs offered and refused) and holds every
// invariant, the oracle's and exactly-once's among them.
func TestContendedWorkloads(t *testing.T) {
	var st Stats
	for seed := uint64(1); seed <= 3; seed++ {
		cfg := small(t, mixes[len(mixes)-1].spec, seed)
		contendedWorkload(&cfg.Workload)
		r, err := Run(cfg)
		if err != nil {
			t.Fatal(err)
		}
		if r.Failed() {
			t.Fatalf("%s", r.Report())
		}
		st.add(r.Stats)
		if seed == 1 { // the command replays the workloads too
			args := strings.Fields(strings.TrimPrefix(r.Command(), "aura-cli sim "))
			for i, a := range args {
				args[i] = strings.Trim(a, "'")
			}
			var out, errb bytes.Buffer
			if code := Main(append(args, "--json"), &out, &errb); code != 0 {
				t.Fatalf("replay of %q: exit %d: %s", r.Command(), code, errb.String())
			}
			if want := fmt.Sprintf(`"trace_sha256": "%x"`, r.TraceHash); !strings.Contains(out.String(), want) {
				t.Fatalf("replay of %q traced differently", r.Command())
			}
		}
	}
	t.Logf("%+v", st)
	for name, n := range map[string]int{"contended pairs": st.ContendedPairs, "Lamport ties": st.LamportTies, "grants": st.Grants,
		"removals": st.Removals, "release crashes": st.ReleaseCrashes, "tampered offers refused": st.TamperedRefused,
		"oracle checks": st.OracleChecked, "writes counted": st.WritesCounted} {
		if n == 0 {
			t.Errorf("no %s in 3 seeds", name)
		}
	}
}
