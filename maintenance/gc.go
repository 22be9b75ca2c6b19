package maintenance

import (
	"bytes"
	"fmt"
	"io"

	"aura/crdt"
)

func (r *Replica) loadBase() error {
	b, err := r.cfg.Meta.Get(metaBase)
	if err != nil {
		return fmt.Errorf("load base snapshot record: %w", err)
	}
	if b == nil {
		return nil
	}
	var rec baseRecord
	if err := crdt.Unmarshal(b, &rec); err != nil {
		return fmt.Errorf("load base snapshot record: %w", err)
	}
	read, err := r.readBlob(rec.Snapshot.BlobCID)
	if err != nil {
		return fmt.Errorf("load base snapshot: %w", err)
	}
	if read.Digest != rec.Snapshot.StateDigest {
		return fmt.Errorf("load base snapshot: %w: digest", ErrBadSnapshot)
	}
	st := read.State
	st.SetVerifier(r.verifyGroup)
	r.base, r.baseSt = &rec, st
	return nil
}

// readBlob decodes a held state blob, as a stream when the Blobs can
// (BlobOpener): the blob's bytes are never held beside the state.
func (r *Replica) readBlob(c []byte) (*crdt.StreamedState, error) {
	var src io.Reader
	if o, ok := r.cfg.Blobs.(BlobOpener); ok {
		rc, err := o.Open(c)
		if err != nil {
			return nil, fmt.Errorf("blob: %w", err)
		}
		defer rc.Close()
		src = rc
	} else {
		b, err := r.cfg.Blobs.Get(c)
		if err != nil {
			return nil, fmt.Errorf("blob: %w", err)
		}
		src = bytes.NewReader(b)
	}
	read, err := crdt.ReadState(src, crdt.ReadOptions{})
	if err != nil {
		return nil, fmt.Errorf("state: %w", err)
	}
	return read, nil
}

func (r *Replica) saveBase(rec *baseRecord) error {
	b, err := crdt.Marshal(rec)
	if err != nil {
		return err
	}
	return r.cfg.Meta.Put(metaBase, b)
}

// Base returns the snapshot this replica's journal rests on, if any.
func (r *Replica) Base() (proposal [16]byte, snap *crdt.SnapshotV1) {
	if r.base == nil {
		return [16]byte{}, nil
	}
	s := r.base.Snapshot
	return r.base.Proposal, &s
}

// collect garbage-collects below a verified completed snapshot (DESIGN §5):
// recompute the state at its frontier and check the signed digest, store
// the state blob, rest the journal on it, prune the facts it covers, and
// return the blob plan (blobs.go). GC never removes a fact the snapshot
// does not cover: Prune stops at the frontier.
func (r *Replica) collect(c *crdt.SnapshotCompleted) Output {
	var out Output
	snap := &c.Snapshot
	if r.base != nil && r.base.Proposal == c.ProposalID {
		return out
	}
	if r.base != nil && !snap.Frontier.Covers(r.base.Snapshot.Frontier) {
		// Not a successor of the snapshot this journal rests on (two rounds
		// completed with incomparable frontiers): collecting it would leave
		// this device unable to sync or restore.
		out.Events = append(out.Events, Event{Kind: EventGcSkipped, Proposal: c.ProposalID, Detail: "frontier does not cover this device's base snapshot"})
		return out
	}
	if !r.store.VersionVector().Covers(snap.Frontier) {
		if r.store.PrunedTo().Covers(snap.Frontier) {
			return out // already below what we collected
		}
		// Behind: sync may still deliver the facts (Tick then collects);
		// if peers collected them the driver restores from the blob.
		cc := *c
		r.uncollected = &cc
		out.Restore = restoreRequest(c)
		return out
	}
	if _, prefix, err := r.heads(snap.Frontier); err == nil && prefix != snap.PrefixHash {
		// This journal holds another fact than the snapshot for some
		// equivocator's seq: the signed snapshot decides. Restore from it.
		out.Restore = restoreRequest(c)
		out.Events = append(out.Events, Event{Kind: EventRestoreNeeded, Proposal: c.ProposalID, Detail: "journal prefix differs from the snapshot's (equivocation)"})
		return out
	}
	enc, err := r.encodedAt(snap.Frontier)
	if err != nil {
		out.Events = append(out.Events, Event{Kind: EventGcSkipped, Proposal: c.ProposalID, Err: err})
		return out
	}
	if crdt.DigestOf(enc) != snap.StateDigest {
		out.Events = append(out.Events, Event{Kind: EventGcRefused, Proposal: c.ProposalID, Detail: "signed digest differs from this journal's state at the frontier"})
		return out
	}
	cid, err := r.cfg.Blobs.Put(enc)
	if err != nil {
		out.Events = append(out.Events, Event{Kind: EventError, Proposal: c.ProposalID, Err: err, Detail: "store state blob"})
		return out
	}
	if !bytes.Equal(cid, snap.BlobCID) {
		out.Events = append(out.Events, Event{Kind: EventWarning, Proposal: c.ProposalID, Detail: "state blob CID differs from the completion's (chunking?)"})
	}
	// The streaming decoder accepts exactly what DecodeState accepts, with
	// the same state, without re-encoding the whole state to check it.
	read, err := crdt.ReadState(bytes.NewReader(enc), crdt.ReadOptions{})
	if err != nil {
		out.Events = append(out.Events, Event{Kind: EventError, Proposal: c.ProposalID, Err: err, Detail: "decode own state"})
		return out
	}
	o, err := r.rebase(c, read.State)
	out.merge(o)
	if err != nil {
		out.Events = append(out.Events, Event{Kind: EventError, Proposal: c.ProposalID, Err: err})
	}
	return out
}

// rebase makes the snapshot the journal's base, prunes below it, and
// reports GC figures and the blob plan.
func (r *Replica) rebase(c *crdt.SnapshotCompleted, st *crdt.State) (Output, error) {
	var out Output
	snap := &c.Snapshot
	rec := &baseRecord{Proposal: c.ProposalID, Snapshot: *snap}
	if err := r.saveBase(rec); err != nil {
		return out, fmt.Errorf("save base: %w", err)
	}
	st.SetVerifier(r.verifyGroup)
	prevSt := r.baseSt
	r.base, r.baseSt = rec, st
	before := r.store.Stats()
	// Rebase prunes where this journal holds the frontier (checking its chain
	// heads against the snapshot's) and jumps where it holds less.
	if err := r.store.Rebase(snap.Frontier, snap.Heads); err != nil {
		return out, fmt.Errorf("rest the journal on the snapshot: %w", err)
	}
	facts := r.store.Stats().PrunedFacts - before.PrunedFacts
	bytes := r.store.Stats().PrunedBytes - before.PrunedBytes
	after := r.store.Stats()
	gc := &GCStats{Proposal: c.ProposalID, FactsBefore: before.Facts, BytesBefore: before.Bytes,
		FactsAfter: after.Facts, BytesAfter: after.Bytes, PrunedFacts: facts, PrunedBytes: bytes}
	plan := r.BlobPlan()
	gc.BlobsDeleted = newlyCovered(prevSt, plan.Delete)
	r.lastGC = gc
	out.Collected = gc
	out.Blobs = &plan
	out.Events = append(out.Events, Event{Kind: EventGc, Proposal: c.ProposalID,
		Detail: fmt.Sprintf("pruned %d facts (%d bytes); journal %d→%d facts", facts, bytes, before.Facts, after.Facts)})
	return out, nil
}
