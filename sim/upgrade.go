package sim

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"sort"

	"aura/crdt"
	"aura/maintenance"
)

// The upgrade simulation (issue 11, item 7): a hard fork and a soft
// upgrade published on an account of N devices under message loss,
// reordering and restarts, driven exactly as the node drives them
// (maintenance.FetchPlan, VerifyArtifact, ReadyFact, UpgradeCoordinator,
// CheckSession) over the same replicas. An oracle that reads only the
// facts (not the maintenance rules) checks:
//
//   - upgrade-ready-unverified: every UpgradeReady fact of an honest
//     device follows a download this simulator saw verify (the bytes'
//     sha2-256 equal to the signed one, the size the signed size);
//   - upgrade-stale-session: no session is admitted under an identity
//     epoch below the fence of an activation its runner holds;
//   - upgrade-unready-session: no session admitted after its runner holds
//     an activation has a participant without an UpgradeReady for it;
//   - upgrade-restart: a device restarted (also exactly at the fence, the
//     publisher before it could activate) holds every activation it held
//     before, in force as soon as it reopens and has run its startup
//     reconciliation;
//   - upgrade-liveness: at the end, once healed, when min-ready devices
//     are ready and the fence is reached, the fork is activated and in
//     force on every device.
//
// Downloads are corrupted at Corrupt's rate (a bad mirror); the defect
// ReadyUnverified makes the driver declare readiness for a download that
// failed verification, and upgrade-ready-unverified must catch it.

// UpgradeRun configures RunUpgrade.
type UpgradeRun struct {
	Seed    uint64
	Nodes   int     // devices at start (default 4); one more joins and moves the epoch to the fence
	Events  int     // steps (default 600)
	Loss    float64 // message loss (default 0.2)
	Corrupt float64 // share of downloads that arrive corrupted (default 0.25)
	// ReadyUnverified is a planted defect (tests only).
	ReadyUnverified bool
}

// UpgradeResult is what RunUpgrade found.
type UpgradeResult struct {
	Seed       uint64
	Violations []Violation
	Activated  bool // the hard fork was in force everywhere at the end
	Sessions   int  // sessions admitted
	Refused    int  // sessions the gate refused (stale epoch or unready participant)
	Restarts   int
}

type upDevice struct {
	name     string
	key      ed25519.PrivateKey
	id       crdt.DeviceID
	kv       *crdt.MemKV
	meta     *maintenance.MemMeta
	blobs    *maintenance.MemBlobs
	rep      *maintenance.Replica
	journal  *crdt.Journal
	coord    maintenance.UpgradeCoordinator
	up       bool
	member   bool
	policy   string
	approves bool                   // a manual device whose operator approves at some point
	approved map[[16]byte]bool      // durable, like the node's 'n' records
	verified map[[16]byte]crdt.Hash // in memory, like the node's
	inbox    []*crdt.Fact
	session  *upSession
}

type upSession struct {
	scope maintenance.Scope
	parts []crdt.DeviceID
}

type upgradeSim struct {
	cfg     UpgradeRun
	rng     *rand.Rand
	now     int64
	devs    []*upDevice
	res     UpgradeResult
	account crdt.AccountID
	// ground truth: the artifact bytes by CID, and the downloads that
	// verified (device, upgrade) → signed hash.
	bytes    map[string][]byte
	verified map[crdt.DeviceID]map[[16]byte]crdt.Hash
	hard     [16]byte
	fence    uint64
	minReady uint64
}

const upPlatform = "sim/vm"

func (s *upgradeSim) violate(inv, dev, format string, args ...any) {
	s.res.Violations = append(s.res.Violations, Violation{Invariant: inv, Device: dev, Detail: fmt.Sprintf(format, args...)})
}

func (s *upgradeSim) open(d *upDevice) error {
	j, err := crdt.OpenJournal(d.kv, crdt.AccountID{})
	if err != nil {
		return err
	}
	r, err := maintenance.Open(maintenance.Config{Key: d.key, Store: j, Meta: d.meta, Blobs: d.blobs, SnapshotTimeout: 6000, Watermark: -1})
	if err != nil {
		return err
	}
	if r.Account().IsZero() && !s.account.IsZero() && d.member {
		if err := r.Join(s.account); err != nil {
			return err
		}
	}
	d.rep, d.journal, d.up = r, j, true
	d.coord = maintenance.UpgradeCoordinator{Grace: 2000}
	d.verified = map[[16]byte]crdt.Hash{}
	return nil
}

// publish gossips facts: each receiver gets each fact unless lost.
func (s *upgradeSim) publish(from *upDevice, facts []*crdt.Fact) {
	for _, d := range s.devs {
		if d == from || !d.member {
			continue
		}
		for _, f := range facts {
			if s.rng.Float64() >= s.cfg.Loss {
				d.inbox = append(d.inbox, f)
			}
		}
	}
}

func (s *upgradeSim) write(d *upDevice, body crdt.Body) error {
	out, err := d.rep.Write(s.now, body)
	if err != nil {
		return err
	}
	s.publish(d, out.Publish)
	return nil
}

// RunUpgrade runs one seed of the upgrade simulation.
func RunUpgrade(cfg UpgradeRun) (UpgradeResult, error) {
	if cfg.Nodes == 0 {
		cfg.Nodes = 4
	}
	if cfg.Events == 0 {
		cfg.Events = 600
	}
	if cfg.Loss == 0 {
		cfg.Loss = 0.2
	}
	if cfg.Corrupt == 0 {
		cfg.Corrupt = 0.25
	}
	s := &upgradeSim{cfg: cfg, rng: rand.New(rand.NewPCG(cfg.Seed, 0x0a11)), now: 1_700_000_000_000,
		bytes: map[string][]byte{}, verified: map[crdt.DeviceID]map[[16]byte]crdt.Hash{}}
	s.res.Seed = cfg.Seed
	if err := s.setup(); err != nil {
		return s.res, err
	}
	for i := 0; i < cfg.Events; i++ {
		s.now += 50 + s.rng.Int64N(200)
		if err := s.step(i); err != nil {
			return s.res, err
		}
	}
	return s.res, s.finish()
}

func (s *upgradeSim) setup() error {
	n := s.cfg.Nodes
	for i := 0; i <= n; i++ {
		var seed [32]byte
		binary.LittleEndian.PutUint64(seed[:], s.cfg.Seed)
		seed[8] = byte(i)
		seed[9] = 0x0a
		d := &upDevice{name: fmt.Sprintf("d%d", i), key: ed25519.NewKeyFromSeed(seed[:]), kv: crdt.NewMemKV(),
			meta: maintenance.NewMemMeta(), blobs: maintenance.NewMemBlobs(), approved: map[[16]byte]bool{}, member: i < n}
		d.id = crdt.DeviceIDFromKey(d.key.Public().(ed25519.PublicKey))
		d.policy = crdt.PolicyManual
		if s.rng.IntN(2) == 0 || i == 0 {
			d.policy = crdt.PolicyAuto
		}
		d.approves = s.rng.IntN(3) != 0
		s.devs = append(s.devs, d)
		if err := s.open(d); err != nil {
			return err
		}
		d.up = d.member
	}
	admin := s.devs[0]
	out, err := admin.rep.CreateAccount("upgrade-sim", 2, [16]byte{1})
	if err != nil {
		return err
	}
	s.account = admin.rep.Account()
	setup := out.Publish
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
	for _, d := range s.devs[1:n] {
		if _, _, err := d.rep.Receive(s.now, setup); err != nil {
			return err
		}
	}
	for _, d := range s.devs[:n] {
		if err := s.write(d, &crdt.DeviceMetadata{Name: d.name, SupportedProtocols: []string{maintenance.BaseProtocol}, UpgradePolicy: d.policy}); err != nil {
			return err
		}
	}
	// The admin publishes a soft upgrade and a hard fork whose fence is
	// the next identity epoch (reached when the last device joins).
	art := func(b []byte) crdt.UpgradeArtifact {
		c := sha256.Sum256(append([]byte("cid:"), b...))
		s.bytes[string(c[:])] = b
		return crdt.UpgradeArtifact{Platform: upPlatform, SHA256: sha256.Sum256(b), Size: uint64(len(b)), CID: c[:]}
	}
	soft := &crdt.UpgradeMetadata{Package: "tools", Version: "1.1.0", UpgradeKind: crdt.UpgradeSoft, Artifacts: []crdt.UpgradeArtifact{art([]byte("tools 1.1.0"))}}
	soft.ID = crdt.UpgradeIDOf(soft)
	s.fence = admin.rep.State().Epoch + 1
	s.minReady = uint64(n/2 + 1)
	hard := &crdt.UpgradeMetadata{Package: "aura-node", Version: "2.0.0", UpgradeKind: crdt.UpgradeHard, ActivationFence: s.fence,
		MinReady: s.minReady, Artifacts: []crdt.UpgradeArtifact{art([]byte("aura-node 2.0.0 for the sim"))}}
	hard.ID = crdt.UpgradeIDOf(hard)
	s.hard = hard.ID
	for _, m := range []*crdt.UpgradeMetadata{soft, hard} {
		if err := maintenance.CheckPublish(admin.rep.State(), m, s.now); err != nil {
			return err
		}
		if err := s.write(admin, m); err != nil {
			return err
		}
	}
	return nil
}

// chained lists the facts of a device's journal chains (those its state
// is the fold of; facts held ahead of a gap are not).
func chained(d *upDevice) []*crdt.Fact {
	var fs []*crdt.Fact
	for a, top := range d.journal.VersionVector() {
		_ = d.journal.Range(a, 1, top, func(f *crdt.Fact) error { fs = append(fs, f); return nil })
	}
	return fs
}

// held lists the facts a device's journal holds.
func held(d *upDevice) []*crdt.Fact {
	var fs []*crdt.Fact
	_ = d.journal.All(func(f *crdt.Fact) error { fs = append(fs, f); return nil })
	return fs
}

func (s *upgradeSim) upDevs() []*upDevice {
	var out []*upDevice
	for _, d := range s.devs {
		if d.up && d.member {
			out = append(out, d)
		}
	}
	return out
}

func (s *upgradeSim) step(i int) error {
	ups := s.upDevs()
	if len(ups) == 0 {
		return nil
	}
	d := ups[s.rng.IntN(len(ups))]
	switch r := s.rng.IntN(100); {
	case r < 35: // deliver part of the inbox, shuffled
		s.rng.Shuffle(len(d.inbox), func(a, b int) { d.inbox[a], d.inbox[b] = d.inbox[b], d.inbox[a] })
		k := min(len(d.inbox), 1+s.rng.IntN(4))
		batch := d.inbox[:k]
		d.inbox = append([]*crdt.Fact(nil), d.inbox[k:]...)
		_, out, err := d.rep.Receive(s.now, batch)
		if err != nil {
			return err
		}
		s.publish(d, out.Publish)
	case r < 45: // anti-entropy with another reachable device
		o := ups[s.rng.IntN(len(ups))]
		if o != d {
			if _, out, err := d.rep.Receive(s.now, held(o)); err != nil {
				return err
			} else {
				s.publish(d, out.Publish)
			}
		}
	case r < 75:
		return s.tick(d)
	case r < 82: // an operator approves on a manual device that approves
		if d.policy == crdt.PolicyManual && d.approves {
			d.approved[s.hard] = true
		}
	case r < 96:
		return s.session(d)
	default:
		return s.restart(d)
	}
	// The last device joins a third of the way in: the epoch reaches the
	// fence; half the time the admin restarts exactly then, before it
	// could activate.
	if i == s.cfg.Events/3 {
		return s.admitLast()
	}
	return nil
}

func (s *upgradeSim) admitLast() error {
	admin, last := s.devs[0], s.devs[len(s.devs)-1]
	if !admin.up {
		return nil
	}
	out, err := admin.rep.AddDevice(last.id, last.name, nil)
	if err != nil {
		return err
	}
	last.member = true
	if err := last.rep.Join(s.account); err != nil {
		return err
	}
	last.up = true
	if _, _, err := last.rep.Receive(s.now, held(admin)); err != nil {
		return err
	}
	s.publish(admin, out.Publish)
	if err := s.write(last, &crdt.DeviceMetadata{Name: last.name, SupportedProtocols: []string{maintenance.BaseProtocol}, UpgradePolicy: last.policy}); err != nil {
		return err
	}
	if s.rng.IntN(2) == 0 {
		return s.restart(admin)
	}
	return nil
}

// tick is the node's upgrade loop: activation, fetch and verify, readiness.
func (s *upgradeSim) tick(d *upDevice) error {
	st := d.rep.State()
	for _, a := range d.coord.Activations(st, d.id, s.now) {
		if err := s.write(d, a); err != nil {
			return err
		}
	}
	for _, f := range maintenance.FetchPlan(d.rep.State(), d.id, upPlatform, s.now) {
		if _, ok := d.verified[f.Upgrade]; ok {
			continue
		}
		b := append([]byte(nil), s.bytes[string(f.Artifact.CID)]...)
		if s.rng.Float64() < s.cfg.Corrupt && len(b) > 0 {
			b[s.rng.IntN(len(b))] ^= 0x5a
		}
		sum := sha256.Sum256(b)
		err := maintenance.VerifyArtifact(&f.Artifact, uint64(len(b)), sum)
		if err == nil {
			d.verified[f.Upgrade] = sum
			if s.verified[d.id] == nil {
				s.verified[d.id] = map[[16]byte]crdt.Hash{}
			}
			if sum == f.Artifact.SHA256 {
				s.verified[d.id][f.Upgrade] = sum
			}
		} else if s.cfg.ReadyUnverified {
			d.verified[f.Upgrade] = f.Artifact.SHA256 // the defect: trusts the signature, not the bytes
		}
	}
	ids := make([][16]byte, 0, len(d.verified))
	for id := range d.verified {
		ids = append(ids, id)
	}
	sort.Slice(ids, func(i, j int) bool { return string(ids[i][:]) < string(ids[j][:]) })
	for _, id := range ids {
		r, err := maintenance.ReadyFact(d.rep.State(), id, d.id, upPlatform, s.now, d.verified[id], d.approved[id])
		if err != nil || r == nil {
			continue
		}
		if err := s.write(d, r); err != nil {
			return err
		}
	}
	return nil
}

// session begins a maintenance session on d, or ends the one it runs: the
// gate is checked at the end, as a session checks before it acts.
func (s *upgradeSim) session(d *upDevice) error {
	st := d.rep.State()
	if d.session == nil {
		members := st.MemberList()
		s.rng.Shuffle(len(members), func(a, b int) { members[a], members[b] = members[b], members[a] })
		d.session = &upSession{scope: maintenance.ScopeOf(st), parts: members[:1+s.rng.IntN(len(members))]}
		return nil
	}
	se := d.session
	d.session = nil
	if err := maintenance.CheckSession(st, se.scope, se.parts); err != nil {
		s.res.Refused++
		return nil
	}
	s.res.Sessions++
	// The oracle, from the chained facts only.
	acts, ready := map[[16]byte]uint64{}, map[[16]byte]map[crdt.DeviceID]bool{}
	for _, f := range chained(d) {
		body, err := f.DecodeBody()
		if err != nil {
			continue
		}
		switch b := body.(type) {
		case *crdt.UpgradeActivated:
			if b.Upgrade == s.hard {
				acts[b.Upgrade] = b.ActivationFence
			}
		case *crdt.UpgradeReady:
			if ready[b.Upgrade] == nil {
				ready[b.Upgrade] = map[crdt.DeviceID]bool{}
			}
			ready[b.Upgrade][f.Author] = true
		}
	}
	for id, fence := range acts {
		if se.scope.Identity < fence {
			s.violate("upgrade-stale-session", d.name, "session under identity epoch %d admitted after the activation at fence %d", se.scope.Identity, fence)
		}
		for _, p := range se.parts {
			if !ready[id][p] {
				s.violate("upgrade-unready-session", d.name, "session admitted with %s, not ready for the activated fork", p.Short())
			}
		}
	}
	return nil
}

// restart drops the replica and reopens it on its storage, then runs the
// startup reconciliation (one coordinator pass) before anything else.
func (s *upgradeSim) restart(d *upDevice) error {
	before := maintenance.InForce(d.rep.State(), s.hard)
	d.up = false
	d.session = nil
	if err := s.open(d); err != nil {
		return err
	}
	s.res.Restarts++
	for _, a := range d.coord.Activations(d.rep.State(), d.id, s.now) {
		if err := s.write(d, a); err != nil {
			return err
		}
	}
	if before && !maintenance.InForce(d.rep.State(), s.hard) {
		s.violate("upgrade-restart", d.name, "the hard fork in force before the restart is not after it")
	}
	return nil
}

func (s *upgradeSim) finish() error {
	// Heal: every approving operator has approved; rounds of full sync and
	// ticks, past every activator's grace, until nothing changes.
	for _, d := range s.devs {
		if d.member && d.policy == crdt.PolicyManual && d.approves {
			d.approved[s.hard] = true
		}
		if d.member && !d.up {
			if err := s.open(d); err != nil {
				return err
			}
		}
	}
	for round := 0; round < 12; round++ {
		s.now += 3000
		s.cfg.Corrupt = 0 // a good mirror at last
		for _, d := range s.upDevs() {
			for _, o := range s.upDevs() {
				if o != d {
					if _, out, err := d.rep.Receive(s.now, held(o)); err != nil {
						return err
					} else {
						s.publish(d, out.Publish)
					}
				}
			}
			if err := s.tick(d); err != nil {
				return err
			}
		}
	}
	// Readiness only after a verified hash.
	for _, d := range s.devs {
		if !d.member {
			continue
		}
		for _, f := range held(d) {
			if f.Kind != crdt.KindUpgradeReady {
				continue
			}
			body, _ := f.DecodeBody()
			r := body.(*crdt.UpgradeReady)
			if _, ok := s.verified[f.Author][r.Upgrade]; !ok {
				s.violate("upgrade-ready-unverified", s.nameOf(f.Author), "declared ready for %s without a verified download", crdt.UpgradeName(r.Upgrade))
			}
		}
		break // the journals are equal once healed; one suffices
	}
	st := s.devs[0].rep.State()
	readyN := uint64(len(maintenance.ReadyDevices(st, s.hard)))
	all := true
	for _, d := range s.upDevs() {
		all = all && maintenance.InForce(d.rep.State(), s.hard)
	}
	s.res.Activated = all
	if readyN >= s.minReady && st.Epoch >= s.fence && !all {
		s.violate("upgrade-liveness", "", "%d of %d ready at epoch %d (fence %d), yet the fork is not in force everywhere", readyN, s.minReady, st.Epoch, s.fence)
	}
	return nil
}

func (s *upgradeSim) nameOf(id crdt.DeviceID) string {
	for _, d := range s.devs {
		if d.id == id {
			return d.name
		}
	}
	return id.Short()
}
