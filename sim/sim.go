package sim

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"

	"aura/crdt"
	"aura/maintenance"
	"aura/threshold"
)

// t0 is the virtual clock at the start of every run (unix ms), so that
// device clocks with negative skew stay positive.
const t0 int64 = 1_700_000_000_000

// Run phases.
const (
	phaseActive   = iota // workload and faults
	phaseDrain           // faults off, network healed, timers and sync still running
	phaseConverge        // synchronous rounds until nothing changes
	phaseProbe           // liveness probes
)

// device is one simulated device: its durable storage (what survives a
// crash) and the replica running over it.
type device struct {
	idx   int
	name  string
	key   ed25519.PrivateKey
	id    crdt.DeviceID
	kv    *crdt.MemKV
	meta  *maintenance.MemMeta
	blobs *blobStore
	rep   *maintenance.Replica
	cache *maintenance.Cache[string] // derived views (cache.go); lost in a crash
	share *threshold.Share
	byz   *byzantine // nil for an honest device
	fresh bool       // added during the run

	admitted bool // a member (fresh devices: once the admin added it)
	up       bool
	dead     bool // failed to reopen after a crash: stays down
	inc      int  // incarnation: bumped by every crash
	offline  bool
	offTok   int
	skew     int64
	jitter   int64 // watermark jitter drawn once

	armed    int   // durable writes left before an armed crash strikes (-1: not armed)
	armedDur int64 // how long it stays down then
	shielded bool  // inside a call that crash points spare

	callKind     string // the core call running (s.call), "" between calls
	inRelease    bool   // that call is releasing the writer fence (release.go)
	releaseArmed bool   // the armed crash aims at that release

	writes  int      // application writes issued (for key names)
	ownKeys []string // keys this device wrote

	// The restore driver's memory, lost on a crash: the newest completion
	// each peer reported. heard is the newest of all, for restore-newest.
	offers []maintenance.Offer
	heard  *crdt.SnapshotCompleted

	absent bool // taken away by Workload.Absence

	adminOwn []byte // the admin-persist-own defect's record (admin.go)
}

func (d *device) honest() bool { return d.byz == nil }

// sim is one run.
type sim struct {
	cfg   Config
	now   int64
	phase int
	tl    timeline
	tr    *tracer

	devs     []*device
	byID     map[crdt.DeviceID]*device
	account  crdt.AccountID
	gk       *threshold.GroupKey
	stranger ed25519.PrivateKey

	netRng, workRng, faultRng, byzRng *rand.Rand

	partition []int // side of each device while a partition stands; nil otherwise
	partTok   int

	truth  *truth
	oracle *oracle
	res    *Result
	// what the run observed
	named      map[int]bool      // Byzantine devices named for bad partials
	completed  map[[16]byte]bool // proposals seen completed
	violated   map[string]bool   // de-duplicates violations
	checked    map[[32]byte]bool // completions already checked
	signed     []signedSnapshot  // completions with a valid group signature, in the order first seen
	proposedBy map[int]int       // "proposed" events per device
	bcast      []pending         // synchronous delivery queue (converge and probe phases)
	syncMode   bool
	absence    absence
	reshare    reshareRun // the removal and resharing at setup (reshare.go)
}

type pending struct {
	from  int
	facts []*crdt.Fact
}

// Run runs one seed and checks every invariant during and after it. The
// error reports a bad Config; invariant violations are in the Result.
func Run(cfg Config) (Result, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return Result{}, err
	}
	s := &sim{cfg: cfg, now: t0, tr: newTracer(cfg.TraceWriter),
		byID: map[crdt.DeviceID]*device{}, named: map[int]bool{}, completed: map[[16]byte]bool{},
		violated: map[string]bool{}, checked: map[[32]byte]bool{}, proposedBy: map[int]int{}}
	s.res = &Result{Seed: cfg.Seed, Nodes: cfg.Nodes, Threshold: cfg.Threshold, Faults: cfg.Faults,
		Events: cfg.Events, Duration: cfg.Duration, Defects: cfg.Defects, Serial: cfg.Workload.SerialProposals,
		Watermark: cfg.Workload.Watermark, Keygen: cfg.Workload.Keygen, Reshare: cfg.Workload.Reshare.On, Absence: cfg.Workload.Absence,
		Rekey: cfg.Workload.Rekey, HardFork: cfg.Workload.HardFork,
		ProposeEvery: cfg.Workload.ProposeEvery, Admin: cfg.Workload.Admin, Contend: cfg.Workload.Contend, GrantEvery: cfg.Workload.GrantEvery}
	s.netRng = rand.New(rand.NewPCG(cfg.Seed, 0x6e6574))    // "net"
	s.workRng = rand.New(rand.NewPCG(cfg.Seed, 0x776f726b)) // "work"
	s.faultRng = rand.New(rand.NewPCG(cfg.Seed, 0x666c74))  // "flt"
	s.byzRng = rand.New(rand.NewPCG(cfg.Seed, 0x62797a))    // "byz"
	if err := s.setup(); err != nil {
		return Result{}, fmt.Errorf("sim seed %d: setup: %w", cfg.Seed, err)
	}
	s.loop()
	s.quiesce()
	s.res.Stats.VirtualMs = s.now - t0
	s.res.Stats.TraceLines = s.tr.lines
	s.res.TraceHash = s.tr.sum()
	return *s.res, nil
}

// seedBytes derives per-purpose bytes from the seed.
func (s *sim) seedBytes(purpose string, i int) []byte {
	h := sha256.New()
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], s.cfg.Seed)
	binary.BigEndian.PutUint64(b[8:], uint64(i))
	h.Write([]byte("aura/sim/v1\x00" + purpose + "\x00"))
	h.Write(b[:])
	return h.Sum(nil)
}

func (s *sim) setup() error {
	n, m := s.cfg.Nodes, s.cfg.Threshold
	fresh := max(s.cfg.Workload.Fresh, 0)
	byzFrom := n - s.cfg.Faults.Byzantine
	for i := 0; i < n+fresh; i++ {
		d := &device{idx: i, key: ed25519.NewKeyFromSeed(s.seedBytes("device", i)), armed: -1,
			kv: crdt.NewMemKV(), meta: maintenance.NewMemMeta(), blobs: newBlobStore()}
		d.id = crdt.DeviceIDFromKey(d.key.Public().(ed25519.PublicKey))
		if i < n {
			d.name = fmt.Sprintf("d%d", i)
			d.admitted = true
		} else {
			d.name = fmt.Sprintf("f%d", i-n)
			d.fresh = true
		}
		if s.cfg.Faults.Skew > 0 {
			d.skew = s.faultRng.Int64N(2*s.cfg.Faults.Skew+1) - s.cfg.Faults.Skew
		}
		d.jitter = s.workRng.Int64N(2000)
		if i >= byzFrom && i < n {
			d.byz = &byzantine{modes: s.cfg.Faults.Byz, votes: map[[16]byte]bool{}}
			d.name += "!"
		}
		s.devs = append(s.devs, d)
		s.byID[d.id] = d
	}
	s.stranger = ed25519.NewKeyFromSeed(s.seedBytes("stranger", 0))
	s.absence.dev = s.absentDevice()
	s.truth = newTruth(s)
	s.oracle = newOracle(s)
	for _, d := range s.devs[:n] {
		if err := s.open(d); err != nil {
			return err
		}
		d.up = true
	}
	// Genesis, admissions and the dealt group key, delivered to everyone
	// before the clock starts.
	admin := s.devs[0]
	var nonce [16]byte
	copy(nonce[:], s.seedBytes("nonce", 0))
	var setup []*crdt.Fact
	out, err := admin.rep.CreateAccount("sim", uint64(m), nonce)
	if err != nil {
		return err
	}
	setup = append(setup, out.Publish...)
	s.account = admin.rep.Account()
	for _, d := range s.devs[1:n] {
		if err := d.rep.Join(s.account); err != nil {
			return err
		}
		out, err := admin.rep.AddDevice(d.id, d.name, nil)
		if err != nil {
			return err
		}
		setup = append(setup, out.Publish...)
	}
	var parts []crdt.DeviceID
	for _, d := range s.devs[:n] {
		parts = append(parts, d.id)
	}
	key, shares, err := s.groupKey(parts) // the dealer, or a key generation (keygen.go)
	if err != nil {
		return err
	}
	s.gk = key
	for i, d := range s.devs[:n] {
		d.share = shares[i]
	}
	out, err = admin.rep.PublishGroupKey(key, parts)
	if err != nil {
		return err
	}
	setup = append(setup, out.Publish...)
	if s.cfg.Workload.Reshare.On {
		setup = s.removeAndReshare(setup) // a device removed, the key reshared (reshare.go)
	}
	for _, f := range setup {
		s.truth.add(f)
	}
	for _, d := range s.devs[1:n] {
		if _, _, err := d.rep.Receive(s.devNow(d), setup); err != nil {
			return err
		}
	}
	if s.cfg.Workload.HardFork {
		if _, err := s.hardForkFacts(s.unreadyDevice()); err != nil {
			return err
		}
	}
	for _, d := range s.devs[:n] {
		s.doctor(d) // CreateAccount and Join replaced the state
		s.armShare(d)
		if d.byz != nil {
			s.byzSetup(d)
		}
	}
	s.tr.printf(0, "setup account=%s nodes=%d threshold=%d faults=%s defects=%s seed=%d",
		s.account, n, m, s.cfg.Faults, s.cfg.Defects, s.cfg.Seed)
	for _, d := range s.devs {
		s.tr.printf(0, "device %s id=%s skew=%d", d.name, d.id.Short(), d.skew)
	}
	// The timeline: per-device timers, workload, faults.
	for _, d := range s.devs[:n] {
		s.arm(d)
	}
	w := s.cfg.Workload
	if w.ProposeEvery > 0 {
		s.at(s.expDelay(s.workRng, w.ProposeEvery), &event{kind: evPropose})
	}
	if w.Rekey {
		s.at(2000, &event{kind: evRekey})
	}
	if w.GrantEvery > 0 {
		s.at(s.expDelay(s.workRng, w.GrantEvery), &event{kind: evGrant})
	}
	if s.cfg.Faults.Partition > 0 || s.cfg.Faults.Crash > 0 || s.cfg.Faults.Offline > 0 {
		s.at(1000, &event{kind: evFaultClock})
	}
	s.scheduleAdmin()
	return nil
}

// open (re)opens a device's replica over its durable storage.
func (s *sim) open(d *device) error {
	j, err := crdt.OpenJournal(diskKV{MemKV: d.kv, d: d}, crdt.AccountID{})
	if err != nil {
		return fmt.Errorf("open journal of %s: %w", d.name, err)
	}
	cfg := maintenance.Config{Key: d.key, Store: j, Meta: diskMeta{MemMeta: d.meta, d: d, s: s}, Blobs: d.blobs,
		SnapshotTimeout: s.cfg.Workload.SnapshotTimeout, Watermark: s.cfg.Workload.Watermark,
		WatermarkJitter: d.jitter,
		// Honest cores only: a planted defect may make the fold depend on
		// the order facts came in, which is for the invariants to find.
		CheckFold: s.cfg.Defects == (Defects{}) && !s.cfg.NoFoldCheck}
	if s.cfg.Workload.Watermark < 0 {
		cfg.Watermark = -1
	}
	if d.byz != nil {
		// The Byzantine device runs the real replica only to see what
		// honest ones see; everything it writes goes through its own
		// writer (byz.go). Keep the replica from writing anything.
		cfg.Watermark = -1
		cfg.CompleteGrace = 1 << 50
	}
	r, err := maintenance.Open(cfg)
	if err != nil {
		return fmt.Errorf("open replica of %s: %w", d.name, err)
	}
	d.rep = r
	d.cache = maintenance.NewCache[string]()
	if r.Account().IsZero() && !s.account.IsZero() && d.admitted {
		if err := r.Join(s.account); err != nil {
			return fmt.Errorf("join %s: %w", d.name, err)
		}
	}
	s.doctor(d)
	return nil
}

// armShare hands the replica its threshold share (again, after a restart).
// Byzantine devices keep theirs out of the replica.
func (s *sim) armShare(d *device) {
	if d.byz == nil && d.share != nil {
		d.rep.SetShare(d.share)
	}
}

// doctor applies the SkipThresholdVerify defect to an honest replica.
func (s *sim) doctor(d *device) {
	if s.cfg.Defects.SkipThresholdVerify && d.byz == nil && d.rep != nil {
		d.rep.State().SetVerifier(func(_, _, _ []byte) error { return nil })
	}
}

// arm starts a device's timers (at start, restart and admission).
func (s *sim) arm(d *device) {
	w := s.cfg.Workload
	s.at(s.workRng.Int64N(w.TickEvery)+1, &event{kind: evTick, dev: d.idx, inc: d.inc})
	s.at(s.workRng.Int64N(w.SyncEvery)+1, &event{kind: evSync, dev: d.idx, inc: d.inc})
	if d.byz == nil && w.WriteEvery > 0 {
		s.at(s.expDelay(s.workRng, w.WriteEvery), &event{kind: evWrite, dev: d.idx, inc: d.inc})
	}
	if d.byz == nil && w.BlobEvery > 0 {
		s.at(s.expDelay(s.workRng, w.BlobEvery), &event{kind: evBlob, dev: d.idx, inc: d.inc})
	}
	if d.byz != nil {
		s.at(s.expDelay(s.byzRng, 2000), &event{kind: evByz, dev: d.idx, inc: d.inc})
	}
}

// at schedules e after delay ms.
func (s *sim) at(delay int64, e *event) {
	e.at = s.now + max(delay, 0)
	s.tl.push(e)
}

// expDelay draws an exponential delay with the given mean, at least 1 ms.
func (s *sim) expDelay(r *rand.Rand, mean int64) int64 {
	return max(1, int64(r.ExpFloat64()*float64(mean)))
}

func (s *sim) devNow(d *device) int64 { return s.now + d.skew }

func (s *sim) rel() int64 { return s.now - t0 }

func (s *sim) trace(format string, args ...any) { s.tr.printf(s.rel(), format, args...) }

func (s *sim) nameOf(id crdt.DeviceID) string {
	if d := s.byID[id]; d != nil {
		return d.name
	}
	if id == crdt.DeviceIDFromKey(s.stranger.Public().(ed25519.PublicKey)) {
		return "stranger"
	}
	return id.Short()
}

// schedule records a fault in the run's fault schedule (and the trace).
func (s *sim) schedule(format string, args ...any) {
	line := fmt.Sprintf("%+9.3fs ", float64(s.rel())/1000) + fmt.Sprintf(format, args...)
	s.res.Schedule = append(s.res.Schedule, line)
	s.trace("fault "+format, args...)
}

// violate records an invariant violation (once per invariant, device and
// detail).
func (s *sim) violate(inv, dev, format string, args ...any) {
	v := Violation{At: s.rel(), Invariant: inv, Device: dev, Detail: fmt.Sprintf(format, args...)}
	k := v.Invariant + "|" + v.Device + "|" + v.Detail
	if s.violated[k] {
		return
	}
	s.violated[k] = true
	s.res.Violations = append(s.res.Violations, v)
	s.trace("VIOLATION %s %s: %s", inv, dev, v.Detail)
}

// loop runs the active phase.
func (s *sim) loop() {
	for s.tl.len() > 0 {
		if s.res.Stats.DeviceEvents >= s.cfg.Events || (s.cfg.Duration > 0 && s.tl.q[0].at-t0 >= s.cfg.Duration) {
			return
		}
		s.step(s.tl.pop())
	}
}

// step handles one event.
func (s *sim) step(e *event) {
	s.now = max(s.now, e.at)
	switch e.kind {
	case evDeliver:
		s.deliver(e)
	case evTick:
		s.onTick(e)
	case evWrite:
		s.onWrite(e)
	case evSync:
		s.onSync(e)
	case evPropose:
		s.onPropose(e)
	case evRestore:
		s.onRestore(e)
	case evCrash:
		if d := s.devs[e.dev]; d.up && d.inc == e.inc && d.armed >= 0 {
			s.crash(d, e.dur, "armed, no durable write came")
		}
	case evRestart:
		if d := s.devs[e.dev]; !d.up && d.inc == e.inc {
			s.restart(d)
		}
	case evFaultClock:
		s.onFaultClock(e)
	case evHeal:
		if s.partition != nil && s.partTok == e.inc {
			s.partition = nil
			s.schedule("partition healed")
		}
	case evOnline:
		if d := s.devs[e.dev]; d.offline && d.offTok == e.inc {
			d.offline = false
			s.schedule("online %s", d.name)
			if d.up {
				s.at(1, &event{kind: evSync, dev: d.idx, inc: d.inc, tries: -1})
			}
		}
	case evByz:
		s.onByz(e)
	case evAdmit:
		s.onAdmit(e)
	case evBlob:
		s.onBlob(e)
	case evBack:
		s.absenceEnd("its snapshots completed")
	case evRekey:
		s.onRekey()
	case evReplace:
		s.adminStart()
	case evGrant:
		s.onGrant(e)
	case evFencedWrite:
		s.onFencedWrite(e)
	}
}

// alive reports whether an event scheduled for d's incarnation inc still
// applies.
func (s *sim) alive(d *device, inc int) bool { return d.up && d.inc == inc && d.rep != nil }

func (s *sim) onTick(e *event) {
	d := s.devs[e.dev]
	if !s.alive(d, e.inc) {
		return
	}
	s.res.Stats.DeviceEvents++
	var out maintenance.Output
	if !s.call(d, "tick", func() { out = d.rep.Tick(s.devNow(d)) }) {
		return
	}
	s.handleOutput(d, out, "tick")
	if d.rep == nil {
		return
	}
	s.cacheRead(d)
	if _, deadline, open := d.rep.Fence(); open && s.devNow(d) > deadline && d.honest() {
		s.violate("fence-released", d.name, "fence still up %d ms past its deadline after a tick", s.devNow(d)-deadline)
	}
	if s.phase == phaseActive || s.phase == phaseDrain {
		s.at(s.cfg.Workload.TickEvery, &event{kind: evTick, dev: d.idx, inc: d.inc})
	}
}

func (s *sim) onWrite(e *event) {
	d := s.devs[e.dev]
	if !s.alive(d, e.inc) {
		return
	}
	if s.phase == phaseActive {
		s.at(s.expDelay(s.workRng, s.cfg.Workload.WriteEvery), &event{kind: evWrite, dev: d.idx, inc: d.inc})
	} else {
		return
	}
	if d.absent && s.cfg.Workload.Absence.Quiet {
		return
	}
	s.res.Stats.DeviceEvents++
	if w := s.cfg.Workload.Contend; w > 0 && s.workRng.Float64() < w {
		s.contendedWrite(d)
		return
	}
	s.appWrite(d)
}

// appWrite issues one application write on d and records it when the
// replica acknowledges it.
func (s *sim) appWrite(d *device) {
	var k string
	isNew := false
	if len(d.ownKeys) > 0 && s.workRng.Float64() < s.cfg.Workload.Overwrite {
		k = d.ownKeys[s.workRng.IntN(len(d.ownKeys))]
	} else {
		k, isNew = fmt.Sprintf("%s/k%d", d.name, d.writes), true
	}
	d.writes++
	v := fmt.Sprintf("v%d@%s", d.writes, d.name)
	if s.issueWrite(d, &crdt.Put{Key: k, Value: []byte(v)}, true) && isNew {
		d.ownKeys = append(d.ownKeys, k)
	}
}

// issueWrite hands one application write (a put or a delete) to d's
// replica and records it in the ground truth when acknowledged; own says
// the key is d's alone (no-write-lost then knows its last value). It
// reports whether the write was acknowledged.
func (s *sim) issueWrite(d *device, body crdt.Body, own bool) bool {
	k := putKey(d.id, body)
	var out maintenance.Output
	var err error
	if !s.call(d, "write", func() { out, err = d.rep.Write(s.devNow(d), body) }) {
		// The device died inside Write: the write may or may not be durable.
		if own {
			s.truth.uncertain(k.key)
		}
		s.truth.ledger.unsure[k]++
		return false
	}
	if err != nil {
		s.trace("%s write %s refused: %v", d.name, k.key, err)
		return false
	}
	s.res.Stats.Writes++
	buffered := len(out.Publish) == 0
	if buffered {
		s.res.Stats.Buffered++
	}
	if own {
		s.truth.ack(k.key, k.value)
	}
	s.truth.ledger.acked[k]++
	if k.kind == crdt.KindDelete {
		s.trace("%s delete %s buffered=%t", d.name, k.key, buffered)
	} else {
		s.trace("%s write %s=%s buffered=%t", d.name, k.key, k.value, buffered)
	}
	s.handleOutput(d, out, "write")
	return true
}

func (s *sim) onPropose(e *event) {
	if s.phase != phaseActive {
		return
	}
	s.at(s.expDelay(s.workRng, s.cfg.Workload.ProposeEvery), &event{kind: evPropose})
	var cands []*device
	for _, d := range s.devs {
		if d.up && d.honest() && d.admitted && d.rep != nil && !d.absent {
			cands = append(cands, d)
		}
	}
	if len(cands) == 0 {
		return
	}
	d := cands[s.workRng.IntN(len(cands))]
	if s.cfg.Workload.SerialProposals && s.truth.roundOpen(s.now, 2*s.cfg.Faults.Skew+2000) {
		s.trace("%s operator waits: a snapshot round is open", d.name)
		return
	}
	s.res.Stats.DeviceEvents++
	if _, ok := s.propose(d, "operator"); ok && s.cfg.Workload.Contend > 0 {
		s.fencedBurst(d)
	}
}

func (s *sim) propose(d *device, why string) ([16]byte, bool) {
	var out maintenance.Output
	var err error
	if !s.call(d, "propose", func() { out, err = d.rep.Propose(s.devNow(d)) }) {
		return [16]byte{}, false
	}
	if err != nil {
		s.trace("%s propose (%s) refused: %v", d.name, why, err)
		return [16]byte{}, false
	}
	s.res.Stats.Proposals++
	s.trace("%s propose (%s)", d.name, why)
	id, _, _ := d.rep.Fence()
	s.handleOutput(d, out, "propose")
	return id, true
}

// handleOutput carries out what a replica asked for.
func (s *sim) handleOutput(d *device, out maintenance.Output, via string) {
	s.adminOutput(d, out)
	s.cacheInvalidate(d, out, nil, false)
	for _, ev := range out.Events {
		s.onCoreEvent(d, ev)
	}
	if len(out.Publish) > 0 {
		for _, f := range out.Publish {
			s.truth.add(f)
			s.trace("%s commit %s seq=%d lamport=%d id=%s", d.name, f.Kind, f.Seq, f.Lamport, f.ID().Hex()[:12])
			if f.Kind == crdt.KindSnapshotCompleted && d.honest() {
				s.checkCompletionFact(d, f)
			}
			if d.honest() {
				s.checkSessionFact(d, f)
			}
		}
		s.publish(d, out.Publish)
	}
	if out.Collected != nil {
		s.res.Stats.GCs++
		s.res.Stats.PrunedFacts += out.Collected.PrunedFacts
		if s.cfg.Defects.PruneAboveFrontier && d.honest() {
			s.pruneAbove(d)
			if d.rep == nil {
				return // it crashed doing so
			}
		}
		s.checkPruned(d)
		s.absenceAfterGC(d)
	}
	if out.Blobs != nil || s.cfg.Defects.DeleteOnTombstone {
		s.applyBlobs(d, out.Blobs, via)
	}
	if out.Restore != nil {
		s.restoreWanted(d, out.Restore)
	}
}

// onCoreEvent traces a core event and keeps what the invariants need.
func (s *sim) onCoreEvent(d *device, ev maintenance.Event) {
	who := ""
	if ev.Device != (crdt.DeviceID{}) {
		who = " device=" + s.nameOf(ev.Device)
	}
	prop := ""
	if ev.Proposal != ([16]byte{}) {
		prop = fmt.Sprintf(" proposal=%x", ev.Proposal[:4])
	}
	s.trace("%s event %s%s%s %s", d.name, ev.Kind, prop, who, ev.Detail)
	switch ev.Kind {
	case maintenance.EventBadPartial:
		if t := s.byID[ev.Device]; t != nil && d.honest() {
			if t.honest() {
				s.violate("byzantine-named", d.name, "honest device %s named for a bad partial in proposal %x: %s", t.name, ev.Proposal[:4], ev.Detail)
			} else {
				s.named[t.idx] = true
			}
		}
	case maintenance.EventCompleted:
		if !s.completed[ev.Proposal] {
			s.completed[ev.Proposal] = true
			s.res.Stats.Completed++
			s.onFirstCompletion()
			s.absenceOnCompletion(d)
		}
	case maintenance.EventProposed:
		if t := s.byID[ev.Device]; t != nil && t == d {
			s.proposedBy[d.idx]++
		}
	case maintenance.EventAbandoned:
		s.res.Stats.Abandoned++
	case maintenance.EventRestored:
		s.res.Stats.Restores++
	case maintenance.EventError:
		s.res.Stats.CoreErrors++
	}
}

// crash takes a device down for dur ms; everything its journal committed
// and its Meta and blobs survive (unless a defect says otherwise).
func (s *sim) crash(d *device, dur int64, why string) {
	if !d.up {
		return
	}
	d.up = false
	d.inc++
	d.rep = nil
	d.armed = -1
	d.offers, d.heard = nil, nil
	s.res.Stats.Crashes++
	s.schedule("crash %s for %dms (%s)", d.name, dur, why)
	if s.cfg.Defects.LoseMetaOnCrash {
		d.meta = maintenance.NewMemMeta()
	}
	if dur > 0 {
		s.at(dur, &event{kind: evRestart, dev: d.idx, inc: d.inc})
	}
}

func (s *sim) restart(d *device) {
	if d.dead || d.up {
		return
	}
	if err := s.open(d); err != nil {
		d.dead = true
		s.violate("restart", d.name, "cannot reopen after a crash: %v", err)
		return
	}
	s.armShare(d)
	d.up = true
	s.schedule("restart %s", d.name)
	s.checkPruned(d)
	// The blob plan again: the crash may have struck between the core's
	// GC and the driver applying its plan.
	plan := d.rep.BlobPlan()
	s.applyBlobs(d, &plan, "restart")
	s.learnOwn(d)
	if s.phase == phaseActive || s.phase == phaseDrain {
		s.arm(d)
		s.at(1, &event{kind: evSync, dev: d.idx, inc: d.inc, tries: -1})
	}
}

// onFaultClock draws the schedule faults of the next virtual second.
func (s *sim) onFaultClock(e *event) {
	if s.phase != phaseActive {
		return
	}
	s.at(1000, &event{kind: evFaultClock})
	f := s.cfg.Faults
	r := s.faultRng
	if f.Partition > 0 && s.partition == nil && r.Float64() < f.Partition {
		side := make([]int, len(s.devs))
		a, b := 0, 0
		for i := range side {
			side[i] = r.IntN(2)
			if side[i] == 0 {
				a++
			} else {
				b++
			}
		}
		if a == 0 || b == 0 {
			side[r.IntN(len(side))] ^= 1
		}
		dur := 2000 + r.Int64N(13000)
		s.partition = side
		s.partTok++
		var g0, g1 []string
		for i, x := range side {
			if x == 0 {
				g0 = append(g0, s.devs[i].name)
			} else {
				g1 = append(g1, s.devs[i].name)
			}
		}
		s.res.Stats.Partitions++
		s.schedule("partition {%s} | {%s} for %dms", strings.Join(g0, " "), strings.Join(g1, " "), dur)
		s.at(dur, &event{kind: evHeal, inc: s.partTok})
	}
	for _, d := range s.devs {
		if f.Crash > 0 && d.up && d.honest() && d.armed < 0 && r.Float64() < f.Crash {
			dur := 1000 + r.Int64N(7000)
			if r.Float64() >= f.MidCall {
				s.crash(d, dur, "between events")
				continue
			}
			// Strike inside a later core call, just before one of its
			// next few durable writes (or in 2 s if none comes).
			d.armed, d.armedDur = r.IntN(3), dur
			s.trace("fault arm %s to crash before its durable write #%d", d.name, d.armed+1)
			s.at(2000, &event{kind: evCrash, dev: d.idx, inc: d.inc, dur: dur})
		}
	}
	for _, d := range s.devs {
		if f.Offline > 0 && d.admitted && !d.offline && r.Float64() < f.Offline {
			d.offline = true
			d.offTok++
			dur := 3000 + r.Int64N(17000)
			s.res.Stats.Offlines++
			s.schedule("offline %s for %dms", d.name, dur)
			s.at(dur, &event{kind: evOnline, dev: d.idx, inc: d.offTok})
		}
	}
}

// onFirstCompletion schedules the admission of fresh devices once a
// snapshot exists for them to restore from.
func (s *sim) onFirstCompletion() {
	if s.res.Stats.Completed != 1 || s.phase != phaseActive {
		return
	}
	for _, d := range s.devs {
		if d.fresh && !d.admitted {
			s.at(1000+s.workRng.Int64N(4000), &event{kind: evAdmit, dev: d.idx})
		}
	}
}

// onAdmit: the admin adds a fresh device, which joins and syncs (and
// restores, being far behind a collected snapshot).
func (s *sim) onAdmit(e *event) {
	d := s.devs[e.dev]
	admin := s.adminDevice()
	if d.admitted || s.phase != phaseActive {
		return
	}
	if !admin.up {
		s.at(1000, &event{kind: evAdmit, dev: d.idx})
		return
	}
	s.res.Stats.DeviceEvents++
	var out maintenance.Output
	var err error
	if !s.call(admin, "admit", func() { out, err = admin.rep.AddDevice(d.id, d.name, nil) }) {
		s.at(1000, &event{kind: evAdmit, dev: d.idx})
		return
	}
	if err != nil {
		s.trace("%s add %s refused: %v", admin.name, d.name, err)
		return
	}
	s.schedule("admit fresh device %s", d.name)
	s.res.Stats.Admitted++
	s.handleOutput(admin, out, "admit")
	d.admitted = true
	if err := s.open(d); err != nil {
		s.violate("restart", d.name, "cannot open fresh device: %v", err)
		d.dead = true
		return
	}
	d.up = true
	s.arm(d)
	s.at(1, &event{kind: evSync, dev: d.idx, inc: d.inc, tries: -1})
}

// honestUp lists the honest devices that are members and up.
func (s *sim) honestUp() []*device {
	var out []*device
	for _, d := range s.devs {
		if d.honest() && d.admitted && d.up && d.rep != nil {
			out = append(out, d)
		}
	}
	return out
}

var errNoSource = errors.New("no reachable device holds the snapshot blob")

// learnOwn adds to the ground truth the facts a restarted device finds in
// its own chain: a crash in the middle of a call may have committed facts
// whose publication it lost.
func (s *sim) learnOwn(d *device) {
	st := d.rep.Store()
	from := st.PrunedTo()[d.id] + 1
	_ = st.Range(d.id, from, st.VersionVector()[d.id], func(f *crdt.Fact) error {
		s.truth.add(f)
		return nil
	})
}
