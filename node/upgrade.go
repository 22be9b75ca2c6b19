package node

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/ipfs/go-cid"

	"aura/crdt"
	"aura/maintenance"
)

// The node's side of OTA upgrades (DESIGN §6). The rules are
// maintenance's (upgrade.go there): which upgrades to fetch (FetchPlan),
// what a fetched artifact must be (VerifyArtifact), when to append
// readiness (ReadyFact), when a hard fork activates and who writes it
// (UpgradeCoordinator). The node carries them out: it fetches its own
// platform's artifact from peers by CID into
// HOME/upgrades/<package>/<version>.unverified, reading at most the signed
// size plus one byte, checks size and hash, renames it into place, runs
// the optional hook, and writes the facts the core returns. Activation is
// reconciled once in start(), before gossip joins and the control API
// serves, so a node restarted at the fence never ingests, votes or serves
// under the old rules (an activation written then reaches the others by
// anti-entropy when they connect).

// ErrHook: the configured upgrade hook failed; readiness is withheld.
var ErrHook = errors.New("upgrade hook failed")

// UpgradesDir is where verified artifacts live, under HOME.
const UpgradesDir = "upgrades"

// localUpgrade is what this device did with one upgrade (in memory: a
// restart re-checks the verified file instead of trusting a record).
type localUpgrade struct {
	fetching    bool
	done, total int64
	verified    crdt.Hash // zero until the artifact checked out
	path        string
	err         error // the last failure; a verification failure is final
	final       bool  // err is a verification failure: no retry
	nextTry     time.Time
}

// upgrades is the node's upgrade driver state.
type upgrades struct {
	mu       sync.Mutex
	coord    maintenance.UpgradeCoordinator
	local    map[[16]byte]*localUpgrade
	approved map[[16]byte]bool
	kick     chan struct{}
}

func (u *upgrades) get(id [16]byte) *localUpgrade {
	if u.local == nil {
		u.local = map[[16]byte]*localUpgrade{}
	}
	l := u.local[id]
	if l == nil {
		l = &localUpgrade{}
		u.local[id] = l
	}
	return l
}

func (n *Node) upgradeCfg() UpgradeConfig { return n.cfg.Upgrade.withDefaults() }

// startUpgrades loads approvals, reconciles activation before the node
// serves (startup reconciliation), and starts the upgrade loop.
func (n *Node) startUpgrades() {
	n.upg.kick = make(chan struct{}, 1)
	n.upg.approved = map[[16]byte]bool{}
	n.upg.coord.Grace = time.Duration(n.upgradeCfg().ActivationGrace).Milliseconds()
	_ = n.nmeta.Scan("upgrade/approved/", func(k string, _ []byte) error {
		if id, err := crdt.ParseUpgradeName(strings.TrimPrefix(k, "upgrade/approved/")); err == nil {
			n.upg.approved[id] = true
		}
		return nil
	})
	n.activateDue()
	n.mu.Lock()
	st := n.rep.State()
	for _, id := range maintenance.InForceIDs(st) {
		m := st.Upgrades[id].Meta
		n.log.Info("upgrade in force", "upgrade", crdt.UpgradeName(id), "package", m.Package, "version", m.Version, "fence", m.ActivationFence)
	}
	n.mu.Unlock()
	n.wg.Add(1)
	go n.upgradeLoop()
}

func (n *Node) kickUpgrades() {
	select {
	case n.upg.kick <- struct{}{}:
	default:
	}
}

func (n *Node) upgradeLoop() {
	defer n.wg.Done()
	t := time.NewTicker(time.Duration(n.upgradeCfg().Check))
	defer t.Stop()
	for {
		select {
		case <-n.ctx.Done():
			return
		case <-t.C:
		case <-n.upg.kick:
		}
		n.upgradeStep()
	}
}

// upgradeStep is one round of the loop: activations due, fetches to
// start, readiness to declare.
func (n *Node) upgradeStep() {
	if n.closed.Load() || n.Account().IsZero() {
		return
	}
	n.activateDue()
	platform := n.upgradeCfg().Platform
	n.mu.Lock()
	plan := maintenance.FetchPlan(n.rep.State(), n.device, platform, now())
	n.mu.Unlock()
	for _, f := range plan {
		n.upg.mu.Lock()
		l := n.upg.get(f.Upgrade)
		start := !l.fetching && l.verified == (crdt.Hash{}) && !l.final && !time.Now().Before(l.nextTry)
		if start {
			l.fetching, l.err = true, nil
		}
		n.upg.mu.Unlock()
		if start {
			n.wg.Add(1)
			go func() {
				defer n.wg.Done()
				n.fetchUpgrade(f)
			}()
		}
	}
	n.declareReady(platform)
}

// activateDue writes the activations the coordinator asks of this device.
func (n *Node) activateDue() {
	var outs []maintenance.Output
	n.mu.Lock()
	if !n.rep.Account().IsZero() {
		t := now()
		n.upg.mu.Lock()
		acts := n.upg.coord.Activations(n.rep.State(), n.device, t)
		n.upg.mu.Unlock()
		for _, a := range acts {
			out, err := n.rep.Write(t, a)
			if err != nil {
				n.log.Warn("upgrade activation not written", "upgrade", crdt.UpgradeName(a.Upgrade), "err", err)
				continue
			}
			n.log.Info("upgrade activated", "upgrade", crdt.UpgradeName(a.Upgrade), "version", a.ToVersion, "fence", a.ActivationFence)
			outs = append(outs, out)
		}
	}
	n.mu.Unlock()
	for _, out := range outs {
		n.handle(out)
	}
}

// declareReady appends UpgradeReady for every verified artifact the core
// says may be declared (policy auto, or approved).
func (n *Node) declareReady(platform string) {
	n.upg.mu.Lock()
	type cand struct {
		id       [16]byte
		verified crdt.Hash
		approved bool
	}
	var cs []cand
	for id, l := range n.upg.local {
		if l.verified != (crdt.Hash{}) {
			cs = append(cs, cand{id, l.verified, n.upg.approved[id]})
		}
	}
	n.upg.mu.Unlock()
	for _, c := range cs {
		var out maintenance.Output
		var ready *crdt.UpgradeReady
		n.mu.Lock()
		t := now()
		ready, err := maintenance.ReadyFact(n.rep.State(), c.id, n.device, platform, t, c.verified, c.approved)
		if err == nil && ready != nil {
			out, err = n.rep.Write(t, ready)
		}
		n.mu.Unlock()
		if err != nil {
			n.log.Debug("upgrade readiness not declared", "upgrade", crdt.UpgradeName(c.id), "err", err)
			continue
		}
		if ready != nil {
			n.log.Info("upgrade ready", "upgrade", crdt.UpgradeName(c.id))
			n.handle(out)
		}
	}
}

// artifactPath is where a verified artifact lives.
func (n *Node) artifactPath(pkg, version string) string {
	return filepath.Join(n.home, UpgradesDir, pkg, version)
}

// fetchUpgrade fetches, verifies and installs one artifact, then records
// the outcome; failures are logged and kept for `upgrade status`.
func (n *Node) fetchUpgrade(f maintenance.Fetch) {
	sum, path, err := n.fetchArtifact(f)
	final := errors.Is(err, maintenance.ErrHashMismatch) || errors.Is(err, maintenance.ErrSizeOverrun) ||
		errors.Is(err, maintenance.ErrSizeShort) || errors.Is(err, ErrHook)
	if err == nil {
		err = n.runHook(path)
		final = err != nil
	}
	n.upg.mu.Lock()
	l := n.upg.get(f.Upgrade)
	l.fetching = false
	l.err, l.final = err, final
	if err == nil {
		l.verified, l.path = sum, path
	} else if !final {
		l.nextTry = time.Now().Add(5 * time.Second)
	}
	n.upg.mu.Unlock()
	switch {
	case err == nil:
		n.log.Info("upgrade artifact verified", "upgrade", crdt.UpgradeName(f.Upgrade), "package", f.Package, "version", f.Version, "path", path)
		n.kickUpgrades()
	case final:
		n.log.Error("upgrade artifact refused: not marked ready", "upgrade", crdt.UpgradeName(f.Upgrade), "package", f.Package, "version", f.Version, "err", err)
	default:
		n.log.Warn("upgrade artifact not fetched yet", "upgrade", crdt.UpgradeName(f.Upgrade), "err", err)
	}
}

// fetchArtifact gets the artifact's blob from peers (pinned first, with
// progress), copies at most Size+1 bytes of it into
// <version>.unverified, checks it (maintenance.VerifyArtifact), and
// renames it into place. A file already in place is checked again instead.
func (n *Node) fetchArtifact(f maintenance.Fetch) (crdt.Hash, string, error) {
	a := f.Artifact
	final := n.artifactPath(f.Package, f.Version)
	if sum, size, err := hashFile(final, a.Size); err == nil {
		if err := maintenance.VerifyArtifact(&a, size, sum); err == nil {
			return sum, final, nil
		}
		_ = os.Remove(final) // not what was signed: fetch again
	}
	c, err := cid.Cast(a.CID)
	if err != nil {
		return crdt.Hash{}, "", fmt.Errorf("artifact CID: %w", err)
	}
	ctx, cancel := context.WithCancelCause(n.ctx)
	defer cancel(nil)
	has, _ := n.blobs.Has(ctx, c)
	if !has {
		if err := n.space.writable(); err != nil {
			return crdt.Hash{}, "", err
		}
		if err := n.blobs.Pin(c); err != nil {
			return crdt.Hash{}, "", err
		}
		peers := n.connectedKnown()
		if len(peers) == 0 {
			return crdt.Hash{}, "", errorf(ErrUnavailable, "no device connected to fetch artifact %s from", c)
		}
		_, err := n.blobs.Fetch(ctx, c, peers, func(done, total int64) {
			n.upg.mu.Lock()
			l := n.upg.get(f.Upgrade)
			l.done, l.total = done, total
			n.upg.mu.Unlock()
			if total > int64(a.Size) {
				// The blob says it is larger than signed: stop early.
				cancel(fmt.Errorf("blob of %d bytes: %w", total, maintenance.ErrSizeOverrun))
			}
		})
		if cause := context.Cause(ctx); cause != nil && errors.Is(cause, maintenance.ErrSizeOverrun) {
			_ = n.blobs.Unpin(c)
			return crdt.Hash{}, "", fmt.Errorf("%s artifact: more than the signed %d bytes (%v): %w", a.Platform, a.Size, cause, maintenance.ErrSizeOverrun)
		}
		if err != nil {
			return crdt.Hash{}, "", fmt.Errorf("fetch artifact %s: %w", c, err)
		}
	}
	rd, err := n.blobs.Open(ctx, c)
	if err != nil {
		return crdt.Hash{}, "", err
	}
	defer rd.Close()
	if err := os.MkdirAll(filepath.Dir(final), 0o700); err != nil {
		return crdt.Hash{}, "", err
	}
	tmp := final + ".unverified"
	sum, size, err := copyCapped(tmp, rd, a.Size)
	if err != nil {
		_ = os.Remove(tmp)
		return crdt.Hash{}, "", err
	}
	if err := maintenance.VerifyArtifact(&a, size, sum); err != nil {
		_ = os.Remove(tmp)
		return crdt.Hash{}, "", err
	}
	if err := os.Rename(tmp, final); err != nil {
		return crdt.Hash{}, "", err
	}
	if d, err := os.Open(filepath.Dir(final)); err == nil {
		_ = d.Sync()
		d.Close()
	}
	return sum, final, nil
}

// copyCapped writes at most limit+1 bytes of r to path (0700: it may be
// a binary the hook installs), fsynced, and returns their sha2-256 and
// count; limit+1 bytes mean an overrun.
func copyCapped(path string, r io.Reader, limit uint64) (crdt.Hash, uint64, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o700)
	if err != nil {
		return crdt.Hash{}, 0, err
	}
	h := sha256.New()
	k, err := io.Copy(io.MultiWriter(f, h), io.LimitReader(r, int64(limit)+1))
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	var sum crdt.Hash
	h.Sum(sum[:0])
	return sum, uint64(k), err
}

// hashFile hashes at most limit+1 bytes of a file.
func hashFile(path string, limit uint64) (crdt.Hash, uint64, error) {
	f, err := os.Open(path)
	if err != nil {
		return crdt.Hash{}, 0, err
	}
	defer f.Close()
	h := sha256.New()
	k, err := io.Copy(h, io.LimitReader(f, int64(limit)+1))
	var sum crdt.Hash
	h.Sum(sum[:0])
	return sum, uint64(k), err
}

// runHook runs the configured hook with the verified path, bounded by
// upgrade.hook_timeout, and logs its result.
func (n *Node) runHook(path string) error {
	cfg := n.upgradeCfg()
	args := strings.Fields(cfg.Hook)
	if len(args) == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(n.ctx, time.Duration(cfg.HookTimeout))
	defer cancel()
	cmd := exec.CommandContext(ctx, args[0], append(args[1:], path)...)
	cmd.WaitDelay = time.Second
	out, err := cmd.CombinedOutput()
	if len(out) > 4096 {
		out = out[len(out)-4096:]
	}
	if err != nil {
		n.log.Error("upgrade hook failed", "hook", cfg.Hook, "path", path, "err", err, "output", string(out))
		return fmt.Errorf("%w: %s %s: %v", ErrHook, cfg.Hook, path, err)
	}
	n.log.Info("upgrade hook ran", "hook", cfg.Hook, "path", path, "output", string(out))
	return nil
}
