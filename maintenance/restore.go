package maintenance

import (
	"bytes"
	"fmt"
	"io"

	"aura/crdt"
)

// RestoreRequest asks the driver to fetch a snapshot's state blob by CID
// and hand it, with the completion, to Replica.Restore. The replica
// decides which snapshot; the driver only moves bytes.
type RestoreRequest struct {
	Completion crdt.SnapshotCompleted
	BlobCID    []byte // the state blob's binary CID (Completion.Snapshot.BlobCID)
	BlobSize   uint64
	// From is the device that reported the snapshot: fetch from it first
	// (any device that collected it holds the blob too). Zero when the
	// completion comes from this replica's own journal.
	From crdt.DeviceID
}

func restoreRequest(c *crdt.SnapshotCompleted) *RestoreRequest {
	return &RestoreRequest{Completion: *c, BlobCID: c.Snapshot.BlobCID, BlobSize: c.Snapshot.BlobSize}
}

// Offer is a completed snapshot a device reported: a peer's answer on the
// snapshot protocol (its newest completion), or the one an Output.Restore
// named. The completion is unverified: RestoreTarget checks it.
type Offer struct {
	From       crdt.DeviceID // who reported it; zero: this device
	Completion *crdt.SnapshotCompleted
}

// RestoreTarget decides what this device restores from, given what peers
// report: among the offers and the completions in this replica's own
// state, it drops those that do not verify (threshold signature under a
// group key this replica trusts, chain heads against the signed prefix
// hash; a device with no group key yet leaves the signature to Restore,
// which checks it against the genesis inside the blob), keeps those that
// NeedsRestore says this device needs, and returns the newest of them by
// crdt.NewerSnapshot; nil when none is needed. Both drivers call it
// before every restore and fetch exactly what it names, so a device never
// settles for an older snapshot than one a peer offered.
//
// It is pure: it reads the replica's state and journal and changes
// neither. A completion offered by several devices keeps the first device
// that offered it as From (a peer before this device's own journal).
func (r *Replica) RestoreTarget(offers []Offer) *RestoreRequest {
	type cand struct {
		c    *crdt.SnapshotCompleted
		from crdt.DeviceID
	}
	index := map[[16]byte]int{}
	var cands []cand
	for _, o := range offers {
		c := o.Completion
		if c == nil {
			continue
		}
		if i, ok := index[c.ProposalID]; ok {
			if cands[i].from == (crdt.DeviceID{}) && o.From != r.device {
				cands[i].from = o.From
			}
			continue
		}
		if ref := r.state.Completed[c.ProposalID]; ref != nil {
			cc := ref.Completed // verified when it entered the state
			c = &cc
		} else if r.checkOffer(c) != nil {
			continue
		}
		from := o.From
		if from == r.device {
			from = crdt.DeviceID{}
		}
		index[c.ProposalID] = len(cands)
		cands = append(cands, cand{c, from})
	}
	for id, ref := range r.state.Completed {
		if _, ok := index[id]; !ok {
			cc := ref.Completed
			index[id] = len(cands)
			cands = append(cands, cand{&cc, crdt.DeviceID{}})
		}
	}
	var best *cand
	for i := range cands {
		c := &cands[i]
		if (best == nil || crdt.NewerSnapshot(c.c, best.c)) && r.NeedsRestore(c.c) {
			best = c
		}
	}
	if best == nil {
		return nil
	}
	req := restoreRequest(best.c)
	req.From = best.from
	return req
}

// collectCaughtUp collects the newest completion that arrived before the
// facts under it, once sync brought them: the driver's restore then found
// nothing to restore (RestoreTarget: not needed), and without this the
// device would not collect until the next snapshot.
func (r *Replica) collectCaughtUp() Output {
	c := r.uncollected
	if c == nil {
		return Output{}
	}
	if (r.base != nil && r.base.Proposal == c.ProposalID) || !r.store.VersionVector().Covers(c.Snapshot.Frontier) {
		if r.base != nil && r.base.Proposal == c.ProposalID {
			r.uncollected = nil // restored from it meanwhile
		}
		return Output{}
	}
	r.uncollected = nil
	if newest := r.state.NewestSnapshot(); newest == nil || newest.ProposalID != c.ProposalID {
		return Output{} // superseded: the newer one's completion collects
	}
	return r.collect(c)
}

// checkOffer verifies what can be verified of a reported completion before
// its blob is fetched.
func (r *Replica) checkOffer(c *crdt.SnapshotCompleted) error {
	snap := &c.Snapshot
	if crdt.PrefixHash(snap.Frontier, snap.Heads) != snap.PrefixHash {
		return fmt.Errorf("%w: chain heads do not match the signed prefix hash", ErrBadSnapshot)
	}
	if len(r.state.GroupKeys) == 0 {
		return nil // Restore checks the signature against the blob's own genesis
	}
	msg := crdt.SnapshotMessage(r.state.Account, c.ProposalID, snap.Epoch, snap.Frontier, snap.PrefixHash, snap.StateDigest)
	for _, g := range r.state.GroupKeys {
		if r.sigs.verify(g.Key.PublicKey, msg, c.ThresholdSignature) == nil {
			return nil
		}
	}
	return fmt.Errorf("%w: threshold signature", ErrBadSnapshot)
}

// NewestSnapshot returns the newest completed snapshot in this replica's
// state (crdt.NewerSnapshot), or nil.
func (r *Replica) NewestSnapshot() *crdt.SnapshotCompleted { return r.state.NewestSnapshot() }

// verifyCompletion checks a completion's threshold signature under the
// group key this replica trusts (its own state's; or, with no state, the
// one inside the snapshot state).
func (r *Replica) verifyCompletion(c *crdt.SnapshotCompleted, st *crdt.State) error {
	keys := r.state.GroupKeys
	if len(keys) == 0 {
		if st.Genesis == nil || crdt.AccountIDFor(st.Genesis.Admin, st.Genesis.Nonce) != st.Account {
			return fmt.Errorf("%w: snapshot state's genesis does not found its account", ErrBadSnapshot)
		}
		keys = st.GroupKeys
	}
	msg := crdt.SnapshotMessage(st.Account, c.ProposalID, c.Snapshot.Epoch, c.Snapshot.Frontier, c.Snapshot.PrefixHash, c.Snapshot.StateDigest)
	for _, g := range keys {
		if r.sigs.verify(g.Key.PublicKey, msg, c.ThresholdSignature) == nil {
			return nil
		}
	}
	return fmt.Errorf("%w: threshold signature", ErrBadSnapshot)
}

// Restore rebuilds this replica from a completed snapshot and its blob
// (fetched from any peer by the driver, as RestoreTarget named): it
// verifies the threshold signature and the digest, hydrates the state, and
// rests the journal on the snapshot. Facts this device holds above the
// frontier (its own offline writes among them) stay and are folded on
// top; the tail arrives by sync. A snapshot this device no longer needs
// (NeedsRestore: it caught up meanwhile, or already rests on it) changes
// nothing: the Output then carries a "restore-skipped" event and no
// "restored" one. A snapshot that does not cover the one this device
// rests on is refused (ErrStaleProposal). Restore is RestoreFrom over
// the bytes (the simulator's path).
func (r *Replica) Restore(now int64, c *crdt.SnapshotCompleted, blob []byte) (Output, error) {
	return r.restore(now, c, bytes.NewReader(blob), blob)
}

// RestoreFrom is Restore reading the blob once from src (restore_stream.go):
// the blob is decoded and checked as it is read, and stored as it is read
// when the Blobs implement BlobStreamer, so the replica never holds the
// blob's bytes beside the state it decodes from them.
func (r *Replica) RestoreFrom(now int64, c *crdt.SnapshotCompleted, src io.Reader) (Output, error) {
	return r.restore(now, c, src, nil)
}

func (r *Replica) restore(now int64, c *crdt.SnapshotCompleted, src io.Reader, whole []byte) (Output, error) {
	snap := &c.Snapshot
	if r.base != nil && r.base.Proposal != c.ProposalID && !snap.Frontier.Covers(r.base.Snapshot.Frontier) {
		return Output{}, fmt.Errorf("restore: %w: the snapshot does not cover the one this device rests on", ErrStaleProposal)
	}
	if !r.NeedsRestore(c) {
		return Output{Events: []Event{{Kind: EventRestoreSkipped, Proposal: c.ProposalID,
			Detail: "this device already holds the snapshot's prefix"}}}, nil
	}
	read, err := stageBlob(r.cfg.Blobs, src, whole, crdt.ReadOptions{})
	if err != nil {
		return Output{}, fmt.Errorf("restore: %w", err)
	}
	st := read.State
	if err := r.verifyRead(c, read); err != nil {
		read.abort()
		return Output{}, fmt.Errorf("restore: %w", err)
	}
	if _, err := read.commit(); err != nil {
		return Output{}, fmt.Errorf("restore: keep blob: %w", err)
	}
	if r.state.Account.IsZero() {
		r.state = crdt.NewState(st.Account, r.verifyGroup)
	}
	// The base record is saved before the journal is rebased, so a crash in
	// between is finished on the next Open.
	out, err := r.rebase(c, st)
	if err != nil {
		return Output{}, fmt.Errorf("restore: %w", err)
	}
	if err := r.rebuild(); err != nil {
		return Output{}, fmt.Errorf("restore: fold tail: %w", err)
	}
	r.writer = crdt.NewWriter(r.cfg.Key, st.Account, max(r.writer.Seq(), r.store.VersionVector()[r.device]), max(r.writer.Lamport(), r.state.MaxLamport()))
	out.Events = append(out.Events, Event{Kind: EventRestored, Proposal: c.ProposalID,
		Detail: fmt.Sprintf("snapshot of %d facts at epoch %d", snap.Frontier.Total(), snap.Epoch)})
	return out, nil
}

// verifyRead checks a blob read against the signed completion: digest,
// account, threshold signature, prefix hash.
func (r *Replica) verifyRead(c *crdt.SnapshotCompleted, read *stagedBlob) error {
	snap := &c.Snapshot
	st := read.State
	if read.Digest != snap.StateDigest {
		return fmt.Errorf("%w: blob digest differs from the signed digest", ErrBadSnapshot)
	}
	if !r.state.Account.IsZero() && st.Account != r.state.Account {
		return fmt.Errorf("%w: snapshot of account %s, this device is in %s", ErrBadSnapshot, st.Account, r.state.Account)
	}
	if err := r.verifyCompletion(c, st); err != nil {
		return err
	}
	if crdt.PrefixHash(snap.Frontier, snap.Heads) != snap.PrefixHash {
		return fmt.Errorf("%w: chain heads do not match the signed prefix hash", ErrBadSnapshot)
	}
	return nil
}

// NeedsRestore reports whether this device must restore from completed
// snapshot c: it lacks part of c's frontier that sync can no longer bring
// (or that c collected), or its journal holds another fact than c for some
// equivocator's seq. A snapshot that does not succeed the one this device
// rests on is never restored from. RestoreTarget asks it of every
// candidate; drivers need not.
func (r *Replica) NeedsRestore(c *crdt.SnapshotCompleted) bool {
	snap := &c.Snapshot
	if r.base != nil && (r.base.Proposal == c.ProposalID || !snap.Frontier.Covers(r.base.Snapshot.Frontier)) {
		return false
	}
	if !r.store.VersionVector().Covers(snap.Frontier) {
		return true
	}
	_, prefix, err := r.heads(snap.Frontier)
	return err == nil && prefix != snap.PrefixHash
}
