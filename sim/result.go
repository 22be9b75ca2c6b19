package sim

import (
	"fmt"
	"strings"
)

// Violation is one broken invariant.
type Violation struct {
	At        int64  // virtual ms since the start of the run
	Invariant string // see doc.go
	Device    string // the device it concerns ("" for the whole mesh)
	Detail    string
}

func (v Violation) String() string {
	dev := ""
	if v.Device != "" {
		dev = " " + v.Device
	}
	return fmt.Sprintf("[%s]%s at %+.3fs: %s", v.Invariant, dev, float64(v.At)/1000, v.Detail)
}

// Stats are a run's figures.
type Stats struct {
	DeviceEvents int   `json:"device_events"` // device-events handled, quiesce and probes included
	ActiveEvents int   `json:"active_events"` // of which in the active phase
	ActiveMs     int64 `json:"active_ms"`     // virtual length of the active phase
	VirtualMs    int64 `json:"virtual_ms"`    // virtual length of the whole run
	TraceLines   int   `json:"trace_lines"`

	Writes     int `json:"writes"`    // acknowledged application writes
	Buffered   int `json:"buffered"`  // of which buffered behind a writer fence
	Proposals  int `json:"proposals"` // snapshot proposals (operator and probes; watermark ones are in the trace)
	Completed  int `json:"completed"` // distinct snapshots completed
	Abandoned  int `json:"abandoned"`
	GCs        int `json:"gcs"`
	Restores   int `json:"restores"`
	Admitted   int `json:"admitted"`    // fresh devices admitted
	CoreErrors int `json:"core_errors"` // "error" events of the cores
	Syncs      int `json:"syncs"`
	Delivered  int `json:"delivered"`
	Lost       int `json:"lost"`
	Duplicated int `json:"duplicated"`
	Dropped    int `json:"dropped"` // deliveries dropped because an end crashed or the link went down

	PrunedFacts    uint64 `json:"pruned_facts"`
	RestoreErrors  int    `json:"restore_errors"`
	Crashes        int    `json:"crashes"`
	MidCallCrashes int    `json:"mid_call_crashes"` // of which struck inside a core call
	ReleaseArmed   int    `json:"release_armed"`    // fence releases armed to crash (Faults.Release)
	ReleaseCrashes int    `json:"release_crashes"`  // of which crashed inside the release
	Partitions     int    `json:"partitions"`
	Offlines       int    `json:"offlines"`
	ByzActs        int    `json:"byz_acts"`

	CacheHits int `json:"cache_hits"` // views served from a device's cache

	CompletionsChecked   int `json:"completions_checked"`
	CompletionsUnchecked int `json:"completions_unchecked"` // equivocations too tangled to tell the branch

	KeygenAttempts  int `json:"keygen_attempts"`            // key generation sessions run (Workload.Keygen)
	ReshareAttempts int `json:"reshare_attempts,omitempty"` // resharing sessions run (Workload.Reshare)
	KeygenFailures  int `json:"keygen_failures"`            // of which failed (under faults)

	SessionAborts   int `json:"session_aborts"`   // key generation sessions the session gate aborted (Workload.Rekey)
	SessionRefusals int `json:"session_refusals"` // key generation sessions it refused to start

	BlobsStored     int `json:"blobs_stored"`     // `blob put`s acknowledged
	BlobsFetched    int `json:"blobs_fetched"`    // `blob get`s that fetched a blob from a peer
	BlobsTombstoned int `json:"blobs_tombstoned"` // `blob rm`s acknowledged
	BlobsFreed      int `json:"blobs_freed"`      // blobs gone from a device's store after a plan (deletions checked)
	BlocksCollected int `json:"blocks_collected"` // blocks the plans' collections dropped
	RestoresChecked int `json:"restores_checked"` // restores restore-newest checked

	// The oracle (oracle.go): device states compared with the reference
	// fold, those it could not check (equivocations too tangled), the
	// facts folded, and keys whose winner tied on Lamport time with a
	// write by another device (all summed over the states checked).
	ContendedWrites int `json:"contended_writes"` // writes to shared keys (Workload.Contend)
	ContendedPairs  int `json:"contended_pairs"`  // of which second writes at the same instant
	Grants          int `json:"grants"`           // capability grants (Workload.GrantEvery)
	Removals        int `json:"removals"`         // devices removed
	TamperedOffers  int `json:"tampered_offers"`  // tampered snapshot blobs offered to restoring devices
	TamperedRefused int `json:"tampered_refused"` // of which the fetch refused
	OracleChecked   int `json:"oracle_checked"`
	WritesCounted   int `json:"writes_counted"` // acknowledged writes exactly-once counted (per check)
	OracleUnchecked int `json:"oracle_unchecked"`
	OracleFacts     int `json:"oracle_facts"`
	LamportTies     int `json:"lamport_ties"`

	// Workload.Absence: snapshots completed while the device was away,
	// and its restores after it came back.
	AbsentSnapshots int `json:"absent_snapshots"`
	AbsentRestores  int `json:"absent_restores"`
}

func (s *Stats) add(o Stats) {
	s.DeviceEvents += o.DeviceEvents
	s.CacheHits += o.CacheHits
	s.ActiveEvents += o.ActiveEvents
	s.ActiveMs += o.ActiveMs
	s.VirtualMs += o.VirtualMs
	s.TraceLines += o.TraceLines
	s.Writes += o.Writes
	s.Buffered += o.Buffered
	s.Proposals += o.Proposals
	s.Completed += o.Completed
	s.Abandoned += o.Abandoned
	s.GCs += o.GCs
	s.Restores += o.Restores
	s.Admitted += o.Admitted
	s.CoreErrors += o.CoreErrors
	s.Syncs += o.Syncs
	s.Delivered += o.Delivered
	s.Lost += o.Lost
	s.Duplicated += o.Duplicated
	s.Dropped += o.Dropped
	s.PrunedFacts += o.PrunedFacts
	s.RestoreErrors += o.RestoreErrors
	s.Crashes += o.Crashes
	s.MidCallCrashes += o.MidCallCrashes
	s.ReleaseArmed += o.ReleaseArmed
	s.ReleaseCrashes += o.ReleaseCrashes
	s.Partitions += o.Partitions
	s.Offlines += o.Offlines
	s.ByzActs += o.ByzActs
	s.CompletionsChecked += o.CompletionsChecked
	s.CompletionsUnchecked += o.CompletionsUnchecked
	s.KeygenAttempts += o.KeygenAttempts
	s.ReshareAttempts += o.ReshareAttempts
	s.KeygenFailures += o.KeygenFailures
	s.SessionAborts += o.SessionAborts
	s.SessionRefusals += o.SessionRefusals
	s.BlobsStored += o.BlobsStored
	s.BlobsFetched += o.BlobsFetched
	s.BlobsTombstoned += o.BlobsTombstoned
	s.BlobsFreed += o.BlobsFreed
	s.BlocksCollected += o.BlocksCollected
	s.RestoresChecked += o.RestoresChecked
	s.ContendedWrites += o.ContendedWrites
	s.ContendedPairs += o.ContendedPairs
	s.Grants += o.Grants
	s.Removals += o.Removals
	s.TamperedOffers += o.TamperedOffers
	s.TamperedRefused += o.TamperedRefused
	s.OracleChecked += o.OracleChecked
	s.WritesCounted += o.WritesCounted
	s.OracleUnchecked += o.OracleUnchecked
	s.OracleFacts += o.OracleFacts
	s.LamportTies += o.LamportTies
	s.AbsentSnapshots += o.AbsentSnapshots
	s.AbsentRestores += o.AbsentRestores
}

// Result is the outcome of one seed.
type Result struct {
	Seed      uint64
	Nodes     int
	Threshold int
	Events    int
	Duration  int64
	Faults    Faults
	Defects   Defects
	Serial    bool    // Workload.SerialProposals
	Watermark int64   // Workload.Watermark
	Keygen    bool    // Workload.Keygen
	Reshare   bool    // Workload.Reshare.On
	Absence   Absence // Workload.Absence
	Rekey     bool    // Workload.Rekey
	HardFork  bool    // Workload.HardFork
	// ProposeEvery is Workload.ProposeEvery (ms).
	ProposeEvery int64
	// Admin is Workload.Admin.
	Admin      AdminWorkload
	Contend    float64 // Workload.Contend
	GrantEvery int64   // Workload.GrantEvery (ms)
	// Schedule is the fault schedule as it happened: partitions, crashes,
	// restarts, offline periods, admissions (network faults are drawn per
	// message from the seed at the rates in Faults).
	Schedule   []string
	Violations []Violation
	Stats      Stats
	// TraceHash is the sha2-256 of the trace: equal seeds give equal hashes.
	TraceHash [32]byte
}

// Failed reports whether any invariant was violated.
func (r Result) Failed() bool { return len(r.Violations) > 0 }

// Command is the aura-cli command line that replays this run.
func (r Result) Command() string {
	var b strings.Builder
	fmt.Fprintf(&b, "aura-cli sim --seed %d --nodes %d", r.Seed, r.Nodes)
	if r.Threshold != r.Nodes/2+1 {
		fmt.Fprintf(&b, " --threshold %d", r.Threshold)
	}
	fmt.Fprintf(&b, " --events %d", r.Events)
	if r.Duration > 0 {
		fmt.Fprintf(&b, " --duration %dms", r.Duration)
	}
	fmt.Fprintf(&b, " --faults '%s'", r.Faults)
	if r.Serial {
		b.WriteString(" --serial-proposals")
	}
	if r.Watermark != 0 && r.Watermark != defaultWatermark {
		fmt.Fprintf(&b, " --watermark %d", r.Watermark)
	}
	if r.Keygen {
		b.WriteString(" --keygen")
	}
	if r.Reshare {
		b.WriteString(" --reshare")
	}
	if r.ProposeEvery != 0 && r.ProposeEvery != defaultProposeEvery {
		fmt.Fprintf(&b, " --propose-every %dms", r.ProposeEvery)
	}
	if r.Rekey {
		b.WriteString(" --rekey")
	}
	if r.HardFork {
		b.WriteString(" --hard-fork")
	}
	if r.Absence.Snapshots > 0 {
		fmt.Fprintf(&b, " --absent %s", r.Absence)
	}
	if r.Admin.Candidates > 0 {
		fmt.Fprintf(&b, " --admin-replace %d", r.Admin.Candidates)
	}
	if r.Contend > 0 {
		fmt.Fprintf(&b, " --contend %g", r.Contend)
	}
	if r.GrantEvery > 0 {
		fmt.Fprintf(&b, " --grants %dms", r.GrantEvery)
	}
	if r.Defects.any() {
		fmt.Fprintf(&b, " --defects %s", r.Defects)
	}
	return b.String()
}

// Report renders a failing (or passing) run for a human: seed, faults,
// the fault schedule, the violations, and how to replay it.
func (r Result) Report() string {
	var b strings.Builder
	verdict := "ok"
	if r.Failed() {
		verdict = fmt.Sprintf("FAILED (%d violations)", len(r.Violations))
	}
	fmt.Fprintf(&b, "seed %d: %s\n", r.Seed, verdict)
	fmt.Fprintf(&b, "  nodes=%d threshold=%d events=%d faults=%s\n", r.Nodes, r.Threshold, r.Events, r.Faults)
	if r.Defects.any() {
		fmt.Fprintf(&b, "  defects=%s\n", r.Defects)
	}
	fmt.Fprintf(&b, "  fault schedule (%d):\n", len(r.Schedule))
	for _, l := range r.Schedule {
		fmt.Fprintf(&b, "    %s\n", l)
	}
	for _, v := range r.Violations {
		fmt.Fprintf(&b, "  violation %s\n", v)
	}
	fmt.Fprintf(&b, "  trace sha256 %x\n", r.TraceHash)
	fmt.Fprintf(&b, "  replay: %s --trace trace.txt\n", r.Command())
	return b.String()
}
