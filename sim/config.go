package sim

import (
	"errors"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Config describes one simulated run (Run) or the base of a sweep (Sweep:
// seeds Seed, Seed+1, …). Zero values mean the defaults.
type Config struct {
	// Nodes is the number of devices in the threshold group (default 5).
	// Fresh devices (Workload.Fresh) come on top.
	Nodes int
	// Threshold is M of the M-of-N snapshot key (default Nodes/2+1).
	Threshold int
	// Seed drives everything random in the run.
	Seed uint64
	// Events is the number of device-events of the active phase (default
	// 2000): a device-event is one thing a device handles (a delivery, a
	// write, a tick, a sync step, a restore, a Byzantine act). After it the
	// run quiesces: faults stop, the network heals, and the checks run.
	Events int
	// Duration caps the active phase in virtual ms (0: no cap).
	Duration int64
	// Faults are the injected faults.
	Faults Faults
	// Workload is what the devices and their operators do.
	Workload Workload
	// Defects switches on deliberate bugs, to prove (tests) or show (the
	// --defects flag) that the invariants catch them.
	Defects Defects
	// TraceWriter, if set, receives the run's trace: one line per event.
	TraceWriter io.Writer
	// Parallel is how many seeds Sweep runs at once (default 1). Each run
	// stays single-threaded and deterministic.
	Parallel int
	// NoFoldCheck skips the cross-check that honest replicas run wherever
	// the core takes the live state for the state at a frontier (a refold
	// of the journal, compared; maintenance.Config.CheckFold): for
	// benchmarks of the simulator's speed.
	NoFoldCheck bool
}

// defaultWatermark is Workload.Watermark's default.
const defaultWatermark = 24 << 10

// defaultProposeEvery is Workload.ProposeEvery's default (ms).
const defaultProposeEvery = 6000

// Workload is what the simulated users do.
type Workload struct {
	// WriteEvery is the mean time between application writes on each
	// device, ms (default 700; negative: no writes).
	WriteEvery int64
	// Overwrite is the share of writes that overwrite one of the device's
	// own earlier keys instead of a new key (default 0.2).
	Overwrite float64
	// ProposeEvery is the mean time between operator snapshot proposals
	// (`aura-cli snapshot propose` on a random device), ms (default 6000;
	// negative: none).
	ProposeEvery int64
	// SerialProposals makes operators propose only while no snapshot round
	// is open anywhere (the simulator's global view). By default they
	// propose whenever they like, so rounds overlap, as with two operators.
	SerialProposals bool
	// Watermark is the journal size in bytes past which devices propose by
	// themselves (default 24 KiB; negative: off).
	Watermark int64
	// Fresh is the number of fresh devices the admin adds during the run
	// (after the first snapshot completes); they restore from a snapshot
	// and sync the tail (default 1; negative: none).
	Fresh int
	// TickEvery is the period of each device's timer tick, ms (default 1000).
	TickEvery int64
	// SyncEvery is the mean period of anti-entropy, ms (default 3000).
	SyncEvery int64
	// SnapshotTimeout is the replicas' snapshot round timeout, ms (default
	// 6000); CompleteGrace is a third of it.
	SnapshotTimeout int64
	// Keygen makes the group key come from the product's key generation
	// session (threshold.KeygenHub and KeygenParticipant, keygen.go) run
	// under the faults before the workload starts, retried until it
	// succeeds, instead of a trusted dealer.
	Keygen bool
	// Reshare removes a device at setup and reshares the key (reshare.go).
	Reshare ReshareWorkload
	// BlobEvery is the mean time between blob operations on each honest
	// device, ms (default 4000; negative: none): `blob put` (store, pin,
	// BlobStored), `blob get` (fetch a live blob from a reachable device
	// that holds it, block by block) or `blob rm` (BlobTombstoned). Most
	// blobs are one block; some sit at the 1 MiB chunk boundary and some
	// span three chunks.
	BlobEvery int64
	// Absence takes one device away while the others complete snapshots
	// (off by default).
	Absence Absence
	// HardFork activates a hard fork at setup that one honest device is
	// not ready for (session.go; off by default).
	HardFork bool
	// Rekey runs a key generation session in the active phase under the
	// session gate, with the identity epoch moving during its first
	// attempt (session.go; off by default).
	Rekey bool
	// Admin is the admin replacement workload (admin.go; off by default).
	Admin AdminWorkload
	// Contend is the share of application writes that go to keys every
	// device writes, some of them deletes and some in pairs tied on
	// Lamport time (contend.go; 0: none).
	Contend float64
	// GrantEvery is the mean time between the admin's membership acts
	// (grants.go): a capability granted to a member at a new identity
	// epoch, or a Byzantine device removed, ms (0: none).
	GrantEvery int64
}

// Defects are deliberate bugs for the tests that prove the invariants can
// fail. Each is implemented by the simulator (the driver) doing something
// wrong with what it hands the cores; the cores stay untouched.
type Defects struct {
	// PruneAboveFrontier makes the driver's GC prune the journal past the
	// verified snapshot frontier after every collection.
	PruneAboveFrontier bool
	// SkipThresholdVerify installs an accept-everything threshold
	// verifier in honest replicas' state guard (a doctored path), so a
	// SnapshotCompleted with a forged group signature gets in. Byzantine
	// devices with the "forge" mode publish such completions.
	SkipThresholdVerify bool
	// LoseMetaOnCrash makes a crash lose the replica's Meta (writer
	// fence, buffered writes, base snapshot record): storage the driver
	// wrongly treats as volatile.
	LoseMetaOnCrash bool
	// KeygenUnsealed makes participants' drivers acknowledge the final
	// of a key generation without keeping the share (Workload.Keygen).
	KeygenUnsealed bool
	// DeleteOnTombstone makes the driver delete a blob as soon as its
	// device's state holds a tombstone for it, before a snapshot covers
	// the tombstone.
	DeleteOnTombstone bool
	// CacheNoInvalidate makes the driver skip the core's cache
	// invalidations, so the cached views go stale.
	CacheNoInvalidate bool
	// KeepTombstoned makes the driver ignore BlobPlan.Delete.
	KeepTombstoned bool
	// RestoreOwnNewest makes the restore driver restore the newest
	// completion in the device's own state instead of the target
	// RestoreTarget picks from what peers offered, and report it done
	// (issue 10's node bug: a device back after two snapshots restored the
	// stale one it rested on).
	RestoreOwnNewest bool
	// KeygenIgnoreEpoch makes the key generation driver skip the session
	// gate while the session runs (Workload.Rekey): it goes on after the
	// identity epoch moved.
	KeygenIgnoreEpoch bool
	// KeygenSkipGate makes the key generation driver start a session
	// without checking it (Workload.Rekey with HardFork): a device lacking
	// readiness takes part.
	KeygenSkipGate bool
	// AdminPersistOwn makes the driver persist the admin replacement its
	// device appended under maintenance:admin_override instead of the
	// core's winner (admin.go).
	AdminPersistOwn bool
	// BufferSeqLost makes the driver's Meta drop overwrites of buffered
	// writes' entries, so the seq a release records before committing a
	// write is lost, and a release that a crash interrupted commits it
	// again (exactly-once).
	BufferSeqLost bool
	// GrantEpochIgnored makes honest devices' drivers fold a put or delete
	// their replica refused as unauthorized when its author holds the
	// write capability at some epoch, whichever (a guard that ignores the
	// epoch of a grant; oracle).
	GrantEpochIgnored bool
	// ForeignProposal makes honest devices' drivers fold a snapshot
	// proposal their replica refused because it names another device as
	// proposer (proposal-authentic).
	ForeignProposal bool
	// SkipBlockCheck makes the driver's blob fetch keep blocks without
	// checking them against their CIDs, so a tampered snapshot blob a
	// Byzantine device offers is stored (blob-integrity).
	SkipBlockCheck bool
	// LWWTieArrival makes honest devices' drivers let a received put or
	// delete win a tie on Lamport time with its key's entry by arrival,
	// not by the author order (oracle).
	LWWTieArrival bool
}

func (d Defects) any() bool { return d.String() != "" }

func (d Defects) String() string {
	var s []string
	if d.PruneAboveFrontier {
		s = append(s, "prune-above-frontier")
	}
	if d.SkipThresholdVerify {
		s = append(s, "skip-threshold-verify")
	}
	if d.LoseMetaOnCrash {
		s = append(s, "lose-meta-on-crash")
	}
	if d.KeygenUnsealed {
		s = append(s, "keygen-unsealed")
	}
	if d.DeleteOnTombstone {
		s = append(s, "delete-on-tombstone")
	}
	if d.KeepTombstoned {
		s = append(s, "keep-tombstoned")
	}
	if d.RestoreOwnNewest {
		s = append(s, "restore-own-newest")
	}
	if d.CacheNoInvalidate {
		s = append(s, "cache-no-invalidate")
	}
	if d.KeygenIgnoreEpoch {
		s = append(s, "keygen-ignore-epoch")
	}
	if d.KeygenSkipGate {
		s = append(s, "keygen-skip-gate")
	}
	if d.AdminPersistOwn {
		s = append(s, "admin-persist-own")
	}
	if d.BufferSeqLost {
		s = append(s, "buffer-seq-lost")
	}
	if d.GrantEpochIgnored {
		s = append(s, "grant-epoch-ignored")
	}
	if d.ForeignProposal {
		s = append(s, "accept-foreign-proposal")
	}
	if d.SkipBlockCheck {
		s = append(s, "skip-block-check")
	}
	if d.LWWTieArrival {
		s = append(s, "lww-tie-arrival")
	}
	return strings.Join(s, ",")
}

// defectNames lists the defects ParseDefects knows.
const defectNames = "prune-above-frontier, skip-threshold-verify, lose-meta-on-crash, keygen-unsealed, delete-on-tombstone, keep-tombstoned, restore-own-newest, cache-no-invalidate, keygen-ignore-epoch, keygen-skip-gate, admin-persist-own, buffer-seq-lost, grant-epoch-ignored, accept-foreign-proposal, skip-block-check, lww-tie-arrival"

// ParseDefects parses a comma-separated list of defect names (see
// Defects.String).
func ParseDefects(spec string) (Defects, error) {
	var d Defects
	for _, name := range strings.Split(spec, ",") {
		switch strings.TrimSpace(name) {
		case "":
		case "prune-above-frontier":
			d.PruneAboveFrontier = true
		case "skip-threshold-verify":
			d.SkipThresholdVerify = true
		case "lose-meta-on-crash":
			d.LoseMetaOnCrash = true
		case "keygen-unsealed":
			d.KeygenUnsealed = true
		case "delete-on-tombstone":
			d.DeleteOnTombstone = true
		case "keep-tombstoned":
			d.KeepTombstoned = true
		case "restore-own-newest":
			d.RestoreOwnNewest = true
		case "cache-no-invalidate":
			d.CacheNoInvalidate = true
		case "keygen-ignore-epoch":
			d.KeygenIgnoreEpoch = true
		case "keygen-skip-gate":
			d.KeygenSkipGate = true
		case "admin-persist-own":
			d.AdminPersistOwn = true
		case "buffer-seq-lost":
			d.BufferSeqLost = true
		case "grant-epoch-ignored":
			d.GrantEpochIgnored = true
		case "accept-foreign-proposal":
			d.ForeignProposal = true
		case "skip-block-check":
			d.SkipBlockCheck = true
		case "lww-tie-arrival":
			d.LWWTieArrival = true
		default:
			return d, fmt.Errorf("unknown defect %q (%s)", name, defectNames)
		}
	}
	return d, nil
}

// ByzMode is a set of Byzantine behaviours.
type ByzMode uint16

// Byzantine behaviours.
const (
	// ByzBadPartial: vote on every proposal with an invalid partial
	// signature of the right length and the device's own index (garbage
	// bytes, or a valid point signing another message).
	ByzBadPartial ByzMode = 1 << iota
	// ByzLie: propose snapshots with a wrong state digest.
	ByzLie
	// ByzEquivocate: sign two different facts with one seq and send them
	// to different peers.
	ByzEquivocate
	// ByzUnauth: publish facts without the capability: membership facts
	// (admin only) and snapshot completions with a forged threshold
	// signature under its own key (at its next seq), and writes from a key
	// that is no member.
	ByzUnauth
	// ByzStranger: only the last of those: writes signed by a key that is
	// no member of the account.
	ByzStranger
	// ByzBackdate: writes signed at an identity epoch before the device
	// held the write capability (before it was added), and, once removed,
	// writes at the current epoch and just before the removal (grants.go).
	ByzBackdate
	// ByzImpersonate: snapshot proposals of the device's real frontier
	// and digest that name an honest device as proposer (grants.go).
	ByzImpersonate
	// ByzTamper: offer a tampered copy of the snapshot blob to every
	// restoring device it can reach, before the honest holders answer
	// (tamper.go).
	ByzTamper
	byzEnd
)

// ByzAll is every Byzantine behaviour.
const ByzAll = byzEnd - 1

var byzNames = []struct {
	m    ByzMode
	name string
}{{ByzBadPartial, "badpartial"}, {ByzLie, "lie"}, {ByzEquivocate, "equivocate"}, {ByzUnauth, "unauth"}, {ByzStranger, "stranger"},
	{ByzBackdate, "backdate"}, {ByzImpersonate, "impersonate"}, {ByzTamper, "tamper"}}

func (m ByzMode) String() string {
	var s []string
	for _, n := range byzNames {
		if m&n.m != 0 {
			s = append(s, n.name)
		}
	}
	return strings.Join(s, "+")
}

// Faults are the injected faults. Rates of schedule faults (partition,
// crash, offline) are per virtual second: the chance that one starts in a
// given second (for crash and offline, per device).
type Faults struct {
	Loss      float64 // chance a message is lost
	Dup       float64 // chance a message is delivered twice
	Reorder   float64 // chance a message is held back (up to 10× Delay more), so it overtakes nothing and is overtaken
	Delay     int64   // one-way delay, uniform in [1, Delay] ms (default 10)
	Partition float64 // partitions forming per virtual second; each heals after 2–15 s
	Crash     float64 // crashes per device per virtual second; down 1–8 s, then restart on the same storage
	// MidCall is the share of crashes that strike inside a core call,
	// just before one of its next durable writes (0: the default, 0.5;
	// negative: none, crashes fall between events only; "midcall=0" in a
	// spec). MidCallSkip lists call kinds joined by '+' (tick, write,
	// propose, receive, restore, admit, grant, prune) that such crashes spare.
	MidCall     float64
	MidCallSkip string
	// Release is the chance that a fence release (the commit of the
	// writes buffered behind a writer fence) is struck by a crash before
	// one of its durable steps, each equally likely (release.go).
	Release   float64
	Offline   float64 // offline periods per device per virtual second; 3–20 s cut from the network, still writing
	Skew      int64   // each device's clock is off by up to ± Skew ms
	Byzantine int     // number of Byzantine devices (the last ones of the group)
	Byz       ByzMode // what they do (default ByzAll when Byzantine > 0)
}

// callKinds are the core calls the simulator makes (Faults.MidCallSkip).
var callKinds = []string{"tick", "write", "propose", "receive", "restore", "admit", "grant", "prune"}

func contains(xs []string, x string) bool {
	for _, y := range xs {
		if y == x {
			return true
		}
	}
	return false
}

func (f Faults) skipMidCall(kind string) bool {
	return f.MidCallSkip != "" && contains(strings.Split(f.MidCallSkip, "+"), kind)
}

// Equal reports whether two fault sets are the same.
func (f Faults) Equal(o Faults) bool { return f.String() == o.String() }

// Presets name common fault mixes; a spec may use them as terms.
var Presets = map[string]string{
	"none":  "",
	"net":   "loss=0.05,dup=0.02,reorder=0.1,delay=50ms",
	"churn": "partition=0.02,crash=0.01,offline=0.01",
	"skew":  "skew=500ms",
	"chaos": "loss=0.05,dup=0.02,reorder=0.1,delay=50ms,partition=0.02,crash=0.01,offline=0.01,skew=500ms",
	"byz":   "byz=1:badpartial+lie+equivocate+unauth",
	"all":   "loss=0.05,dup=0.02,reorder=0.1,delay=50ms,partition=0.02,crash=0.01,offline=0.01,skew=500ms,byz=1:badpartial+lie+equivocate+unauth",
}

// FaultSyntax documents ParseFaults.
const FaultSyntax = `fault spec: comma-separated terms, later ones win
  loss=P        chance a message is lost (0..1)
  dup=P         chance a message is delivered twice
  reorder=P     chance a message is held back up to 10x delay
  delay=D       one-way delay, uniform in [1ms, D] (e.g. 50ms; default 10ms)
  partition=R   partitions forming per virtual second (heal after 2-15s)
  crash=R       crashes per device per virtual second (down 1-8s, restart on same storage)
  midcall=P     share of crashes that strike inside a core call, before one of its
                next durable writes (default 0.5)
  midcall-skip=K call kinds such crashes spare, joined by '+': tick, write, propose,
                receive, restore, admit, grant, prune
  release=P     chance a writer fence's release is struck by a crash before one of its
                durable steps (record seq, commit, drop entry; drop fence), each alike
  offline=R     offline periods per device per virtual second (3-20s, still writing)
  skew=D        clock skew of each device, up to +-D
  byz=K[:MODES] K Byzantine devices; MODES joined by '+' from
                badpartial, lie, equivocate, unauth, stranger, backdate,
                impersonate, tamper (default all)
  PRESET        one of: ` + "none, net, churn, skew, chaos, byz, all" + `
example: loss=0.05,dup=0.02,reorder=0.1,delay=50ms,partition=0.01,crash=0.005,skew=200ms,byz=1:badpartial+lie+equivocate+unauth`

// ParseFaults parses a fault spec (see FaultSyntax).
func ParseFaults(spec string) (Faults, error) {
	var f Faults
	return f, f.apply(spec, 0)
}

func (f *Faults) apply(spec string, depth int) error {
	for _, term := range strings.Split(spec, ",") {
		term = strings.TrimSpace(term)
		if term == "" {
			continue
		}
		key, val, hasVal := strings.Cut(term, "=")
		if !hasVal {
			p, ok := Presets[key]
			if !ok || depth > 0 {
				return fmt.Errorf("fault spec: unknown preset or term %q\n%s", term, FaultSyntax)
			}
			if err := f.apply(p, depth+1); err != nil {
				return err
			}
			continue
		}
		var err error
		switch key {
		case "loss":
			f.Loss, err = parseProb(val)
		case "dup":
			f.Dup, err = parseProb(val)
		case "reorder":
			f.Reorder, err = parseProb(val)
		case "partition":
			f.Partition, err = parseRate(val)
		case "crash":
			f.Crash, err = parseRate(val)
		case "midcall":
			if f.MidCall, err = parseProb(val); err == nil && f.MidCall == 0 {
				f.MidCall = -1
			}
		case "release":
			f.Release, err = parseProb(val)
		case "midcall-skip":
			for _, k := range strings.Split(val, "+") {
				if !contains(callKinds, k) {
					return fmt.Errorf("fault spec: midcall-skip: unknown call kind %q (%s)", k, strings.Join(callKinds, ", "))
				}
			}
			f.MidCallSkip = val
		case "offline":
			f.Offline, err = parseRate(val)
		case "delay":
			f.Delay, err = parseMillis(val)
		case "skew":
			f.Skew, err = parseMillis(val)
		case "byz":
			n, modes, _ := strings.Cut(val, ":")
			k, e := strconv.Atoi(n)
			if e != nil || k < 0 {
				return fmt.Errorf("fault spec: byz=%s: want a count, e.g. byz=1:lie+unauth", val)
			}
			f.Byzantine, f.Byz = k, 0
			if modes == "" {
				f.Byz = ByzAll
			}
			for _, m := range strings.Split(modes, "+") {
				if m == "" {
					continue
				}
				found := false
				for _, bn := range byzNames {
					if bn.name == m || (m == "all") {
						found = true
						if m == "all" {
							f.Byz = ByzAll
						} else {
							f.Byz |= bn.m
						}
					}
				}
				if !found {
					return fmt.Errorf("fault spec: unknown Byzantine mode %q (badpartial, lie, equivocate, unauth, stranger, backdate, impersonate, tamper, all)", m)
				}
			}
		default:
			return fmt.Errorf("fault spec: unknown term %q\n%s", key, FaultSyntax)
		}
		if err != nil {
			return fmt.Errorf("fault spec: %s: %w", term, err)
		}
	}
	return nil
}

func parseProb(s string) (float64, error) {
	p, err := strconv.ParseFloat(s, 64)
	if err != nil || p < 0 || p > 1 {
		return 0, errors.New("want a probability in [0, 1]")
	}
	return p, nil
}

func parseRate(s string) (float64, error) {
	p, err := strconv.ParseFloat(s, 64)
	if err != nil || p < 0 || p > 10 {
		return 0, errors.New("want a rate per virtual second in [0, 10]")
	}
	return p, nil
}

func parseMillis(s string) (int64, error) {
	if n, err := strconv.ParseInt(s, 10, 64); err == nil && n >= 0 {
		return n, nil // bare number: ms
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return 0, errors.New("want a duration such as 50ms or 2s")
	}
	return d.Milliseconds(), nil
}

// String renders the faults as a spec that ParseFaults reads back.
func (f Faults) String() string {
	var s []string
	num := func(k string, v float64) {
		if v != 0 {
			s = append(s, k+"="+strconv.FormatFloat(v, 'g', -1, 64))
		}
	}
	ms := func(k string, v int64) {
		if v != 0 {
			s = append(s, k+"="+(time.Duration(v)*time.Millisecond).String())
		}
	}
	num("loss", f.Loss)
	num("dup", f.Dup)
	num("reorder", f.Reorder)
	ms("delay", f.Delay)
	num("partition", f.Partition)
	num("crash", f.Crash)
	if f.MidCall != 0 && f.Crash > 0 {
		s = append(s, "midcall="+strconv.FormatFloat(max(f.MidCall, 0), 'g', -1, 64))
	}
	if f.MidCallSkip != "" {
		s = append(s, "midcall-skip="+f.MidCallSkip)
	}
	num("release", f.Release)
	num("offline", f.Offline)
	ms("skew", f.Skew)
	if f.Byzantine > 0 {
		m := f.Byz
		if m == 0 {
			m = ByzAll
		}
		s = append(s, fmt.Sprintf("byz=%d:%s", f.Byzantine, m))
	}
	if len(s) == 0 {
		return "none"
	}
	return strings.Join(s, ",")
}

// PresetNames lists the presets, sorted.
func PresetNames() []string {
	var out []string
	for k := range Presets {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// withDefaults fills zero values and checks the config.
func (c Config) withDefaults() (Config, error) {
	if c.Nodes == 0 {
		c.Nodes = 5
	}
	if c.Threshold == 0 {
		c.Threshold = c.Nodes/2 + 1
	}
	if c.Events == 0 {
		c.Events = 2000
	}
	if c.Parallel <= 0 {
		c.Parallel = 1
	}
	w := &c.Workload
	if w.WriteEvery == 0 {
		w.WriteEvery = 700
	}
	if w.Overwrite == 0 {
		w.Overwrite = 0.2
	}
	if w.ProposeEvery == 0 {
		w.ProposeEvery = defaultProposeEvery
	}
	if w.Watermark == 0 {
		w.Watermark = defaultWatermark
	}
	if w.Fresh == 0 {
		w.Fresh = 1
	}
	if w.TickEvery <= 0 {
		w.TickEvery = 1000
	}
	if w.SyncEvery <= 0 {
		w.SyncEvery = 3000
	}
	if w.SnapshotTimeout <= 0 {
		w.SnapshotTimeout = 6000
	}
	if w.BlobEvery == 0 {
		w.BlobEvery = 4000
	}
	f := &c.Faults
	if f.Delay <= 0 {
		f.Delay = 10
	}
	if f.Byzantine > 0 && f.Byz == 0 {
		f.Byz = ByzAll
	}
	if f.MidCall == 0 {
		f.MidCall = 0.5
	}
	var errs []error
	if c.Nodes < 2 || c.Nodes > 64 {
		errs = append(errs, fmt.Errorf("nodes: %d, want 2..64", c.Nodes))
	}
	if c.Threshold < 1 || c.Threshold > c.Nodes {
		errs = append(errs, fmt.Errorf("threshold: %d, want 1..nodes (%d)", c.Threshold, c.Nodes))
	}
	if f.Byzantine < 0 || c.Nodes-f.Byzantine < c.Threshold || f.Byzantine >= c.Nodes {
		errs = append(errs, fmt.Errorf("faults: byz=%d: the %d honest devices must hold at least threshold (%d) shares, and device 0 (the admin) stays honest",
			f.Byzantine, c.Nodes-f.Byzantine, c.Threshold))
	}
	if w.Contend < 0 || w.Contend > 1 || w.GrantEvery < 0 {
		errs = append(errs, fmt.Errorf("workload: contend %g (want [0, 1]) or grants %d ms (want ≥ 0)", w.Contend, w.GrantEvery))
	}
	if err := w.Absence.check(c); err != nil {
		errs = append(errs, err)
	}
	if c.Events < 0 || c.Duration < 0 {
		errs = append(errs, errors.New("events and duration must not be negative"))
	}
	return c, errors.Join(errs...)
}
