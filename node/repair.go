package node

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"time"

	"github.com/cockroachdb/pebble"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/multiformats/go-multiaddr"

	"aura/crdt"
	"aura/crdt/pebblestore"
)

// ErrDamagedStore: the store cannot be opened as it is.
var ErrDamagedStore = errors.New("damaged store")

// checkStoreDir refuses a data directory Pebble would panic on: files of
// a database but no CURRENT.
func checkStoreDir(home string) error {
	dir := filepath.Join(home, DataDir)
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil // absent: a new store
	}
	hasDB, hasCurrent := false, false
	for _, e := range ents {
		switch n := e.Name(); {
		case n == "CURRENT":
			hasCurrent = true
		case strings.HasPrefix(n, "MANIFEST-"), strings.HasSuffix(n, ".sst"), strings.HasSuffix(n, ".log"):
			hasDB = true
		}
	}
	if hasDB && !hasCurrent {
		return errorf(ErrDamagedStore, "the store in %s is damaged: its CURRENT file is missing; run `aura-node repair --home %s` to move it aside and rebuild this device from its peers", dir, home)
	}
	return nil
}

// openStore opens the journal store, turning Pebble's failures (and its
// panics on some damage) into one error that names the directory, the file
// when Pebble says, and the way out.
func openStore(home string, po *pebble.Options) (st *pebblestore.Store, err error) {
	if err := checkStoreDir(home); err != nil {
		return nil, err
	}
	dir := filepath.Join(home, DataDir)
	defer func() {
		if p := recover(); p != nil {
			st, err = nil, errorf(ErrDamagedStore, "the store in %s is damaged (%v); run `aura-node repair --home %s` to move it aside and rebuild this device from its peers", dir, p, home)
		}
	}()
	st, err = pebblestore.Open(dir, pebblestore.Options{Pebble: po})
	if err != nil {
		msg := strings.TrimPrefix(err.Error(), "open journal store in "+dir+": ")
		return nil, errorf(ErrDamagedStore, "cannot open the store in %s: %s; if it is damaged, `aura-node repair --home %s` moves it aside and rebuilds this device from its peers", dir, msg, home)
	}
	return st, nil
}

// damaged adds the way out to an error that found the store corrupt
// while reading it.
func damaged(home string, err error) error {
	if pebble.IsCorruptionError(err) || errors.Is(err, pebble.ErrCorruption) {
		return errorf(ErrDamagedStore, "the store in %s is damaged: %v; run `aura-node repair --home %s` to move it aside and rebuild this device from its peers", filepath.Join(home, DataDir), err, home)
	}
	return err
}

// probeStore opens the store and reads every key and value (checksums
// are checked on every block read): nil means the store is sound.
func probeStore(home string) error {
	return contained(func(log quietLog) error { return probeStoreWith(home, log) },
		func(err error) error { return fmt.Errorf("%w: %v", ErrDamagedStore, err) })
}

func probeStoreWith(home string, log quietLog) (err error) {
	st, err := openStore(home, &pebble.Options{Logger: log})
	if err != nil {
		return err
	}
	defer st.Close()
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("%w: %v", ErrDamagedStore, p)
		}
	}()
	it, err := st.DB().NewIter(nil)
	if err != nil {
		return damaged(home, err)
	}
	for it.First(); it.Valid(); it.Next() {
		_ = it.Value()
	}
	if err := it.Error(); err != nil {
		it.Close()
		return damaged(home, err)
	}
	return damaged(home, it.Close())
}

// RepairOptions configure Repair.
type RepairOptions struct {
	// Timeout bounds the wait for peers and the rebuild.
	Timeout time.Duration
	// Peers are extra addresses of the account's devices to dial.
	Peers []string
	Log   io.Writer // progress lines (nil: none)
}

// RepairReport is what Repair did.
type RepairReport struct {
	MovedTo       string   `json:"moved_to"`
	Account       string   `json:"account"`
	OwnSeqs       uint64   `json:"own_seqs"` // this device's writes found in the damaged store (highest seq)
	Salvaged      int      `json:"salvaged"`
	Replayed      int      `json:"replayed"`       // own facts peers lacked, replayed from the damaged store       // own facts read back from it
	Recovered     uint64   `json:"recovered_to"`   // own seq held after the rebuild
	MissingOwn    []uint64 `json:"missing_own"`    // own seqs neither peers nor the damaged store had
	Restored      bool     `json:"restored"`       // from a snapshot
	Facts         uint64   `json:"facts"`          // journal facts after the rebuild
	DamagedReason string   `json:"damaged_reason"` // why the store did not open, if it did not
	Unreadable    bool     `json:"salvage_failed"` // nothing could be read from the damaged store
}

// salvage reads what it can from a damaged store: the node's records and
// this device's own signed facts.
type salvage struct {
	account crdt.AccountID
	inviter []byte
	peers   map[string]string
	own     []*crdt.Fact
	maxOwn  uint64
}

func salvageStore(dir string, device crdt.DeviceID) (s *salvage, err error) {
	if _, err := os.Stat(filepath.Join(dir, "CURRENT")); errors.Is(err, os.ErrNotExist) {
		// Read a copy whose CURRENT names the newest manifest; the damaged
		// store itself stays as it is.
		tmp, err := os.MkdirTemp(filepath.Dir(dir), ".salvage-")
		if err != nil {
			return nil, err
		}
		defer os.RemoveAll(tmp)
		if err := copyDir(dir, tmp); err != nil {
			return nil, fmt.Errorf("copy the damaged store: %w", err)
		}
		ms, _ := filepath.Glob(filepath.Join(tmp, "MANIFEST-*"))
		if len(ms) == 0 {
			return nil, errors.New("the damaged store has no manifest")
		}
		sort.Strings(ms)
		if err := os.WriteFile(filepath.Join(tmp, "CURRENT"), []byte(filepath.Base(ms[len(ms)-1])+"\n"), 0o600); err != nil {
			return nil, err
		}
		dir = tmp
	}
	var got *salvage // written by fn, read only once fn returned
	err = contained(func(log quietLog) error {
		var rerr error
		got, rerr = readSalvage(dir, device, log)
		return rerr
	}, func(err error) error { return fmt.Errorf("read the damaged store: %v", err) })
	if err != nil {
		return nil, err
	}
	return got, nil
}

// readSalvage reads what salvageStore keeps from a read-only store.
func readSalvage(dir string, device crdt.DeviceID, log quietLog) (s *salvage, err error) {
	defer func() {
		if p := recover(); p != nil {
			s, err = nil, fmt.Errorf("read the damaged store: %v", p)
		}
	}()
	st, err := pebblestore.Open(dir, pebblestore.Options{Pebble: &pebble.Options{ReadOnly: true, Logger: log}})
	if err != nil {
		return nil, err
	}
	defer st.Close()
	s = &salvage{peers: map[string]string{}}
	m := &kvMeta{db: st.DB(), prefix: prefixNode}
	if b, _ := m.Get("account"); len(b) == 16 {
		copy(s.account[:], b)
	}
	s.inviter, _ = m.Get("inviter")
	_ = m.Scan("peer/", func(k string, v []byte) error { s.peers[k] = string(v); return nil })
	s.maxOwn = st.VersionVector()[device]
	for seq := uint64(1); seq <= s.maxOwn; seq++ {
		if f, err := st.BySeq(device, seq); err == nil {
			s.own = append(s.own, f)
		}
	}
	return s, nil
}

// quietLog is the Pebble logger of the stores repair reads while they may
// be damaged: it says nothing, and its Fatalf (which must not return)
// hands the error to contained and ends the goroutine that hit it.
type quietLog struct{ fatal chan error }

func (quietLog) Infof(string, ...any)  {}
func (quietLog) Errorf(string, ...any) {}
func (l quietLog) Fatalf(format string, args ...any) {
	select {
	case l.fatal <- fmt.Errorf(format, args...):
	default:
	}
	runtime.Goexit()
}

// contained runs fn, which reads a store that may be damaged, in a
// goroutine of its own, so that Pebble's Fatalf (quietLog) ends only that
// goroutine; its error comes back through wrap. A fatal error in one of
// Pebble's own goroutines leaves fn's goroutine behind (repair is a
// short-lived command).
func contained(fn func(quietLog) error, wrap func(error) error) error {
	log := quietLog{fatal: make(chan error, 1)}
	done := make(chan error, 1)
	go func() { done <- fn(log) }()
	select {
	case err := <-done:
		return err
	case err := <-log.fatal:
		return wrap(err)
	}
}

// Repair moves a damaged store aside (never deleting it), keeps the device
// key, config, threshold share and the account record, and rebuilds the
// journal from the account's other devices (restore from the newest
// snapshot, then sync). It re-ingests this device's own signed facts it
// could still read from the damaged store, and reports the ones that
// neither the peers nor the damaged store still have.
func Repair(ctx context.Context, home string, o RepairOptions) (*RepairReport, error) {
	say := func(format string, args ...any) {
		if o.Log != nil {
			fmt.Fprintf(o.Log, format+"\n", args...)
		}
	}
	if o.Timeout <= 0 {
		o.Timeout = 2 * time.Minute
	}
	cfg, err := LoadConfig(home)
	if err != nil {
		return nil, err
	}
	key, err := LoadKey(home)
	if err != nil {
		return nil, err
	}
	lock, err := lockHome(home)
	if err != nil {
		return nil, err
	}
	device := crdt.DeviceIDFromKey(key.Public().(ed25519.PublicKey))
	dir := filepath.Join(home, DataDir)
	rep := &RepairReport{}
	if _, err := os.Stat(dir); err != nil {
		lock.release()
		return nil, fmt.Errorf("no store at %s to repair", dir)
	}
	if err := probeStore(home); err == nil {
		lock.release()
		return nil, fmt.Errorf("the store in %s opens: nothing to repair (start the node with `aura-node run --home %s`)", dir, home)
	} else {
		rep.DamagedReason = err.Error()
	}
	sv, serr := salvageStore(dir, device)
	if serr == nil {
		say("read %d of this device's own writes (seq up to %d) from the damaged store", len(sv.own), sv.maxOwn)
	}
	if serr != nil {
		rep.Unreadable = true
		say("could not read the damaged store (%v): this device's own writes that peers lack cannot be recovered", serr)
		sv = &salvage{peers: map[string]string{}}
	}
	if sv.account.IsZero() {
		if a, ok := readAccountFile(home); ok {
			sv.account = a
		}
	}
	if sv.account.IsZero() {
		lock.release()
		return nil, fmt.Errorf("the damaged store holds no readable account record and %s has none: nothing to rebuild from; the store stays at %s", filepath.Join(home, AccountFile), dir)
	}
	rep.Account, rep.OwnSeqs, rep.Salvaged = sv.account.String(), sv.maxOwn, len(sv.own)
	aside := fmt.Sprintf("%s.damaged-%s", dir, time.Now().UTC().Format("20060102T150405Z"))
	if err := os.Rename(dir, aside); err != nil {
		lock.release()
		return nil, fmt.Errorf("move the damaged store aside: %w", err)
	}
	rep.MovedTo = aside
	say("moved the damaged store to %s (kept, never deleted)", aside)
	lock.release()

	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	n, err := New(ctx, Options{Home: home, Config: &cfg, NoSocket: true, Logger: logger})
	if err != nil {
		return rep, fmt.Errorf("start a fresh store: %w", err)
	}
	defer n.Close()
	if err := n.adoptAccount(sv); err != nil {
		return rep, err
	}
	var known []peer.AddrInfo
	for _, s := range append(o.Peers, readPeersFile(home)...) {
		if ai, err := parseAddrInfo(s); err == nil {
			n.gater.trust(ai.ID, true)
			n.host.Peerstore().AddAddrs(ai.ID, ai.Addrs, time.Hour)
			known = append(known, *ai)
		}
	}
	n.kickReconnect()
	rctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	// The reconnect loop dials members and bootstrap entries; a store
	// being rebuilt knows no member yet, so the devices the peers file and
	// --peer name are dialled here until one answers.
	go n.dialUntilConnected(rctx, known)
	say("waiting for a device of the account (up to %s)", o.Timeout)
	if err := n.waitForDevices(rctx); err != nil {
		return rep, fmt.Errorf("%w (run repair again once one is online, or give one with --peer MULTIADDR)", err)
	}
	if res, err := n.Restore(rctx, nil); err == nil {
		rep.Restored = !res.UpToDate
		say("restored from the newest snapshot")
	} else if errors.Is(err, ErrNoSnapshot) {
		say("no snapshot yet: rebuilding by sync")
		for _, p := range n.connectedKnown() {
			_ = n.SyncWith(rctx, p)
		}
	} else {
		return rep, fmt.Errorf("rebuild from peers: %w", err)
	}
	// Own facts the peers lack come back from the damaged store.
	have := n.VersionVector()[device]
	var back []*crdt.Fact
	for _, f := range sv.own {
		if f.Seq > have {
			back = append(back, f)
		}
	}
	rep.Replayed = len(back)
	if len(back) > 0 {
		if _, err := n.receive(back); err != nil {
			say("re-ingest own facts: %v", err)
		}
	}
	rep.Recovered = n.VersionVector()[device]
	got := map[uint64]bool{}
	for _, f := range sv.own {
		got[f.Seq] = true
	}
	for seq := rep.Recovered + 1; seq <= sv.maxOwn; seq++ {
		if !got[seq] {
			rep.MissingOwn = append(rep.MissingOwn, seq)
		}
	}
	sort.Slice(rep.MissingOwn, func(i, j int) bool { return rep.MissingOwn[i] < rep.MissingOwn[j] })
	rep.Facts = n.store.Stats().Facts
	return rep, nil
}

// adoptAccount writes the account record (and the inviter and peer
// addresses) into the fresh store, so the node is the same device of the
// same account.
func (n *Node) adoptAccount(sv *salvage) error {
	if err := n.withLock(func() error { return n.rep.Join(sv.account) }); err != nil {
		return fmt.Errorf("bind the fresh store to account %s: %w", sv.account, err)
	}
	if err := n.saveAccount(sv.account); err != nil {
		return err
	}
	if len(sv.inviter) > 0 {
		_ = n.nmeta.Put("inviter", sv.inviter)
		if p, err := peer.IDFromBytes(sv.inviter); err == nil {
			n.gater.trust(p, true)
		}
	}
	for k, v := range sv.peers {
		_ = n.nmeta.Put(k, []byte(v))
		if p, err := peer.Decode(strings.TrimPrefix(k, "peer/")); err == nil {
			n.gater.trust(p, true)
			for _, s := range strings.Split(v, "\n") {
				if a, err := multiaddr.NewMultiaddr(s); err == nil {
					n.host.Peerstore().AddAddr(p, a, time.Hour)
				}
			}
		}
	}
	return n.startGossip()
}

func copyDir(from, to string) error {
	ents, err := os.ReadDir(from)
	if err != nil {
		return err
	}
	for _, e := range ents {
		if !e.Type().IsRegular() || e.Name() == "LOCK" {
			continue
		}
		b, err := os.ReadFile(filepath.Join(from, e.Name()))
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(to, e.Name()), b, 0o600); err != nil {
			return err
		}
	}
	return nil
}

// dialUntilConnected dials the given devices every two seconds until one
// is connected or ctx ends.
func (n *Node) dialUntilConnected(ctx context.Context, ais []peer.AddrInfo) {
	for {
		for _, ai := range ais {
			if n.host.Network().Connectedness(ai.ID) == network.Connected {
				return
			}
		}
		for _, ai := range ais {
			n.clearBackoff(ai.ID)
			dctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			_ = n.host.Connect(dctx, ai)
			cancel()
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(2 * time.Second):
		}
	}
}

// PeersFile keeps the addresses of the account's devices outside the
// store (one multiaddr with /p2p/ per line), for repair.
const PeersFile = "peers"

func (n *Node) writePeersFile(saved map[peer.ID]string) {
	var lines []string
	for p, addrs := range saved {
		for _, a := range strings.Split(addrs, "\n") {
			if a != "" {
				lines = append(lines, a+"/p2p/"+p.String())
			}
		}
	}
	sort.Strings(lines)
	_ = writeFileAtomic(filepath.Join(n.home, PeersFile), []byte(strings.Join(lines, "\n")+"\n"), 0o600)
}

func readPeersFile(home string) []string {
	b, err := os.ReadFile(filepath.Join(home, PeersFile))
	if err != nil {
		return nil
	}
	return strings.Fields(string(b))
}

// AccountFile keeps the account id outside the store, so a device whose
// store is unreadable still knows its account for repair.
const AccountFile = "account"

func writeAccountFile(home string, a crdt.AccountID) error {
	return writeFileAtomic(filepath.Join(home, AccountFile), []byte(a.String()+"\n"), 0o600)
}

func readAccountFile(home string) (crdt.AccountID, bool) {
	b, err := os.ReadFile(filepath.Join(home, AccountFile))
	if err != nil {
		return crdt.AccountID{}, false
	}
	a, err := crdt.ParseAccountID(strings.TrimSpace(string(b)))
	return a, err == nil
}
