package sim

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Absence is the workload of issue 10's first reproduction: one device
// (the last honest one of the group) goes away once it has collected a
// snapshot, and stays cut off from every other device while they complete
// Snapshots more; then it comes back, must restore from the newest one
// and bring its offline writes back in.
type Absence struct {
	// Snapshots is how many snapshots the others complete while it is away
	// (0: no absence).
	Snapshots int
	// Quiet: it writes nothing while away. By default it keeps writing,
	// offline, as a user would.
	Quiet bool
	// Restarts is how many times it restarts while away: after each of the
	// first Restarts snapshots it misses (at most Snapshots).
	Restarts int
}

// String renders the absence as --absent reads it back.
func (a Absence) String() string {
	if a.Snapshots <= 0 {
		return ""
	}
	s := strconv.Itoa(a.Snapshots)
	if a.Quiet {
		s += ":quiet"
	}
	if a.Restarts > 0 {
		s += fmt.Sprintf(":restarts=%d", a.Restarts)
	}
	return s
}

// ParseAbsence parses K[:quiet][:restarts=R].
func ParseAbsence(spec string) (Absence, error) {
	var a Absence
	parts := strings.Split(spec, ":")
	k, err := strconv.Atoi(parts[0])
	if err != nil || k < 0 {
		return a, fmt.Errorf("absence %q: want K[:quiet][:restarts=R], K the snapshots missed", spec)
	}
	a.Snapshots = k
	for _, p := range parts[1:] {
		switch {
		case p == "quiet":
			a.Quiet = true
		case strings.HasPrefix(p, "restarts="):
			r, err := strconv.Atoi(strings.TrimPrefix(p, "restarts="))
			if err != nil || r < 0 {
				return a, fmt.Errorf("absence %q: restarts wants a count", spec)
			}
			a.Restarts = r
		default:
			return a, fmt.Errorf("absence %q: unknown term %q (quiet, restarts=R)", spec, p)
		}
	}
	return a, nil
}

func (a Absence) check(c Config) error {
	if a.Snapshots <= 0 {
		return nil
	}
	if c.Nodes-c.Faults.Byzantine-1 < c.Threshold || c.Nodes-c.Faults.Byzantine-1 < 1 {
		return errors.New("absence: the honest devices other than the absent one must hold threshold shares")
	}
	return nil
}

// absence is the run's progress through Workload.Absence.
type absence struct {
	dev      *device
	started  bool
	since    int // completed snapshots when it left
	restarts int
	back     bool // its return is scheduled (or done)
	returned bool
}

// absentDevice is the device Workload.Absence takes away.
func (s *sim) absentDevice() *device {
	if s.cfg.Workload.Absence.Snapshots <= 0 {
		return nil
	}
	return s.devs[s.cfg.Nodes-s.cfg.Faults.Byzantine-1]
}

// absenceAfterGC starts the absence once its device collected a snapshot.
func (s *sim) absenceAfterGC(d *device) {
	a := &s.absence
	if a.dev == nil || a.started || d != a.dev || s.phase != phaseActive || !d.up {
		return
	}
	a.started = true
	a.since = s.res.Stats.Completed
	d.absent = true
	s.schedule("away %s while %d snapshots complete (quiet=%t, restarts=%d)", d.name,
		s.cfg.Workload.Absence.Snapshots, s.cfg.Workload.Absence.Quiet, s.cfg.Workload.Absence.Restarts)
}

// absenceOnCompletion counts a snapshot completed while the device is
// away, restarts it if due, and schedules its return after the last.
func (s *sim) absenceOnCompletion(by *device) {
	a := &s.absence
	if !a.started || a.back {
		return
	}
	w := s.cfg.Workload.Absence
	s.res.Stats.AbsentSnapshots = s.res.Stats.Completed - a.since
	if d := a.dev; a.restarts < min(w.Restarts, w.Snapshots) && d.up && d != by {
		a.restarts++
		s.crash(d, 300+s.workRng.Int64N(1000), "restart while away")
	}
	if s.res.Stats.AbsentSnapshots >= w.Snapshots {
		a.back = true
		// Time for the others to collect it first.
		s.at(2000, &event{kind: evBack, dev: a.dev.idx})
	}
}

// absenceEnd brings the device back.
func (s *sim) absenceEnd(why string) {
	a := &s.absence
	if a.dev == nil || !a.dev.absent {
		return
	}
	a.back, a.returned = true, true
	d := a.dev
	d.absent = false
	s.schedule("back %s after %d snapshots (%s)", d.name, s.res.Stats.AbsentSnapshots, why)
	if d.up && (s.phase == phaseActive || s.phase == phaseDrain) {
		s.at(1, &event{kind: evSync, dev: d.idx, inc: d.inc, tries: -1})
	}
}
