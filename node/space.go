package node

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"
)

// The free-space guard (etcd's space quota with its NOSPACE alarm, and
// CockroachDB's emergency ballast): the node watches the free space of
// the filesystem its data lives on and refuses new local writes before
// Pebble can run out (a write Pebble cannot make is fatal to it). Reads,
// serving sync to peers, snapshot rounds and GC go on: GC is what frees
// the space. A ballast file of [storage] ballast_mb is kept beside the
// data and deleted when the alarm goes up, so those still have room; it
// comes back, and writes resume by themselves, once free space is above
// the threshold plus the ballast again.

// ErrDiskFull: writes are refused until space is freed.
var ErrDiskFull = errors.New("disk nearly full")

// BallastFile is the reserve kept in HOME.
const BallastFile = "ballast"

type spaceGuard struct {
	dir     string // the data directory
	ballast string
	minFree uint64
	size    uint64 // ballast bytes

	mu      sync.Mutex
	checked time.Time
	free    uint64
	alarm   bool
}

func newSpaceGuard(home string, c StorageConfig) *spaceGuard {
	return &spaceGuard{dir: filepath.Join(home, DataDir), ballast: filepath.Join(home, BallastFile),
		minFree: uint64(max(c.MinFreeMB, 0)) << 20, size: uint64(max(c.BallastMB, 0)) << 20}
}

// start takes the first reading and places the ballast when there is room.
func (g *spaceGuard) start() {
	if g.minFree == 0 {
		return
	}
	if _, alarm := g.check(true); !alarm {
		g.mu.Lock()
		g.placeBallast()
		g.mu.Unlock()
	}
}

// DiskInfo is the guard's state in status.
type DiskInfo struct {
	FreeBytes uint64 `json:"free_bytes"`
	MinFree   uint64 `json:"min_free_bytes"`
	Full      bool   `json:"full"` // writes refused
}

func (g *spaceGuard) info() *DiskInfo {
	if g == nil || g.minFree == 0 {
		return nil
	}
	free, alarm := g.check(false)
	return &DiskInfo{FreeBytes: free, MinFree: g.minFree, Full: alarm}
}

func freeBytes(dir string) (uint64, error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return 0, fmt.Errorf("free space of %s: %w", dir, err)
	}
	return st.Bavail * uint64(st.Bsize), nil
}

// check refreshes the state (at most every 100 ms unless force) and
// returns free bytes and whether the alarm is up.
func (g *spaceGuard) check(force bool) (uint64, bool) {
	if g == nil || g.minFree == 0 {
		return 0, false
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if !force && time.Since(g.checked) < 100*time.Millisecond {
		return g.free, g.alarm
	}
	g.checked = time.Now()
	free, err := freeBytes(g.dir)
	if err != nil {
		return g.free, g.alarm
	}
	g.free = free
	switch {
	case !g.alarm && free < g.minFree:
		g.alarm = true
		// Release the reserve: snapshots and GC need room to free space.
		if os.Remove(g.ballast) == nil {
			if f, err := freeBytes(g.dir); err == nil {
				g.free = f
			}
		}
	case g.alarm && free >= g.minFree+g.size:
		g.alarm = false
		g.placeBallast()
	}
	return g.free, g.alarm
}

// placeBallast writes the reserve file when it is missing and there is
// room for it above the threshold.
func (g *spaceGuard) placeBallast() {
	if g.size == 0 {
		return
	}
	if fi, err := os.Stat(g.ballast); err == nil && uint64(fi.Size()) >= g.size {
		return
	}
	if free, err := freeBytes(g.dir); err != nil || free < g.minFree+g.size {
		return
	}
	f, err := os.OpenFile(g.ballast, os.O_CREATE|os.O_WRONLY, 0o600)
	if err != nil {
		return
	}
	defer f.Close()
	if err := syscall.Fallocate(int(f.Fd()), 0, 0, int64(g.size)); err != nil {
		// Filesystems without fallocate: write the bytes.
		zero := make([]byte, 1<<20)
		for off := uint64(0); off < g.size; off += uint64(len(zero)) {
			if _, err := f.WriteAt(zero[:min(uint64(len(zero)), g.size-off)], int64(off)); err != nil {
				f.Close()
				_ = os.Remove(g.ballast)
				return
			}
		}
	}
	_ = f.Sync()
}

// writable refuses a local write while the alarm is up.
func (g *spaceGuard) writable() error {
	free, alarm := g.check(false)
	if !alarm {
		return nil
	}
	return errorf(ErrDiskFull, "disk nearly full: %d MB free under %s; writes are refused until space is freed (below %d MB); reads, sync to peers and snapshots that free space still run",
		free>>20, g.dir, g.minFree>>20)
}

// receivable refuses facts from peers only when even half the threshold
// is gone: they are not lost (the peers keep them), while a full disk
// would stop the node.
func (g *spaceGuard) receivable() error {
	free, alarm := g.check(false)
	if alarm && free < g.minFree/2 {
		return errorf(ErrDiskFull, "disk nearly full: %d MB free under %s; facts from peers wait until space is freed", free>>20, g.dir)
	}
	return nil
}
