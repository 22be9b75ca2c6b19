package maintenance

import (
	"bytes"
	"errors"
	"fmt"
	"io"

	"aura/crdt"
)

// Streaming restore: the snapshot blob is read once, from an io.Reader,
// by crdt.ReadState, which checks its canonical form entry by entry and
// computes its digest as it reads; the bytes go into the blob storage as
// they are read (BlobStreamer) and are committed only once the blob
// verified. Restore never holds the blob beside the state, nor re-encodes
// the state to check it.
//
// Hydrate goes further, for a fresh device restored offline (a backup):
// it never holds the state's key/values at all. Stage reads the blob and
// keeps its state without them (crdt.ReadOptions.Lean); Hydrate verifies
// it against the completion, rests the journal on it, ingests the tail
// through the replica's own guard and ingest path (the guards read no
// key/value), and computes the state digest after the tail with
// crdt.JoinedDigest. The device's state is built from the blob and the
// journal when its replica is next opened.

// BlobStreamer is implemented by Blobs that can store a blob as it is
// read. Without it, the restore buffers the blob to Put it.
type BlobStreamer interface {
	Create() (BlobWriter, error)
}

// BlobWriter receives a blob's bytes in order. Commit stores them and
// returns the CID (as Blobs.Put would); Abort drops them.
type BlobWriter interface {
	io.Writer
	Commit() (cid []byte, err error)
	Abort()
}

// BlobOpener is implemented by Blobs that can read a held blob as a
// stream. Without it, a blob is read again with Get.
type BlobOpener interface {
	Open(cid []byte) (io.ReadCloser, error)
}

// stagedBlob is a blob read (decoded, hashed) and written, not committed.
type stagedBlob struct {
	*crdt.StreamedState
	commit func() ([]byte, error)
	abort  func()
}

// stageBlob reads a blob from src and stages it in blobs. whole, when
// set, is src's bytes (Put at commit).
func stageBlob(blobs Blobs, src io.Reader, whole []byte, o crdt.ReadOptions) (*stagedBlob, error) {
	s := &stagedBlob{abort: func() {}}
	switch bs, ok := blobs.(BlobStreamer); {
	case whole != nil:
		s.commit = func() ([]byte, error) { return blobs.Put(whole) }
	case ok:
		w, err := bs.Create()
		if err != nil {
			return nil, fmt.Errorf("store blob: %w", err)
		}
		src = io.TeeReader(src, w)
		s.commit, s.abort = w.Commit, w.Abort
	default:
		var buf bytes.Buffer
		src = io.TeeReader(src, &buf)
		s.commit = func() ([]byte, error) { return blobs.Put(buf.Bytes()) }
	}
	read, err := crdt.ReadState(src, o)
	if err != nil {
		s.abort()
		if errors.Is(err, crdt.ErrMalformed) || errors.Is(err, crdt.ErrNotCanonical) || errors.Is(err, crdt.ErrTooLarge) {
			return nil, fmt.Errorf("%w: %w", ErrBadSnapshot, err)
		}
		return nil, fmt.Errorf("read snapshot blob: %w", err)
	}
	s.StreamedState = read
	return s, nil
}

// Staged is a snapshot blob Stage read and stored, not verified yet.
type Staged struct {
	blob *stagedBlob
	cid  []byte
}

// Stage reads a snapshot blob once from src for Hydrate: it checks the
// canonical form and computes the digest on the way, keeps the state
// without its key/values, and stores the blob in blobs as it reads
// (unpinned and unverified: a driver that does not hydrate drops the
// storage it staged it in). Errors wrap ErrBadSnapshot when the bytes are
// not a state encoding.
func Stage(blobs Blobs, src io.Reader) (*Staged, error) {
	b, err := stageBlob(blobs, src, nil, crdt.ReadOptions{Lean: true})
	if err != nil {
		return nil, fmt.Errorf("stage snapshot: %w", err)
	}
	cid, err := b.commit()
	if err != nil {
		return nil, fmt.Errorf("stage snapshot: store blob: %w", err)
	}
	return &Staged{blob: b, cid: cid}, nil
}

// Size is the blob's size in bytes.
func (s *Staged) Size() int64 { return s.blob.Size }

// Digest is the state digest of the blob's bytes (crdt.DigestOf), not yet
// compared with any completion.
func (s *Staged) Digest() crdt.Hash { return s.blob.Digest }

// Hydrated reports a Hydrate.
type Hydrated struct {
	Account crdt.AccountID
	Member  bool      // this device is a member of the account after the tail
	Digest  crdt.Hash // the state digest after the tail
	Tail    crdt.IngestResult
	// Blobs is the plan for the device's blob storage (the restored
	// snapshot's blob pinned): the driver applies it.
	Blobs BlobPlan
}

// Hydrate restores a fresh device (no account, empty journal, no base)
// from a staged snapshot blob and a journal tail, without holding the
// snapshot's key/values: it verifies the blob against the completion
// (digest, threshold signature under the group key of the snapshot
// state's self-certifying genesis, prefix hash, and the CID the
// completion names), saves the base record, rests the journal on the
// snapshot, and ingests the tail as Receive does (guards, store, fold;
// the snapshot protocol runs when the device's replica is opened). The
// device's replica is opened afterwards with Open, which hydrates the
// whole state. Verification failures wrap ErrBadSnapshot, and nothing is
// written before they are checked (but the staged blob).
func Hydrate(cfg Config, c *crdt.SnapshotCompleted, s *Staged, tail []*crdt.Fact) (*Hydrated, error) {
	r, err := Open(cfg)
	if err != nil {
		return nil, err
	}
	if r.base != nil || !r.state.Account.IsZero() || len(r.store.VersionVector()) > 0 {
		return nil, fmt.Errorf("hydrate: %w: the device holds a journal already", ErrHasAccount)
	}
	if err := r.verifyRead(c, s.blob); err != nil {
		return nil, fmt.Errorf("hydrate: %w", err)
	}
	if !bytes.Equal(s.cid, c.Snapshot.BlobCID) {
		return nil, fmt.Errorf("hydrate: %w: the blob is stored as %x, the completion names %x", ErrBadSnapshot, s.cid, c.Snapshot.BlobCID)
	}
	st := s.blob.State
	r.state = crdt.NewState(st.Account, r.verifyGroup)
	if _, err := r.rebase(c, st); err != nil {
		return nil, fmt.Errorf("hydrate: %w", err)
	}
	if err := r.rebuild(); err != nil {
		return nil, fmt.Errorf("hydrate: %w", err)
	}
	r.writer = crdt.NewWriter(r.cfg.Key, st.Account, r.store.VersionVector()[r.device], r.state.MaxLamport())
	res, err := r.ingest(tail)
	if err != nil {
		return nil, fmt.Errorf("hydrate: replay the tail: %w", err)
	}
	digest, err := crdt.JoinedDigest(s.blob.StreamedState, r.state, func() (io.ReadCloser, error) {
		if o, ok := r.cfg.Blobs.(BlobOpener); ok {
			return o.Open(s.cid)
		}
		b, err := r.cfg.Blobs.Get(s.cid)
		if err != nil {
			return nil, err
		}
		return io.NopCloser(bytes.NewReader(b)), nil
	})
	if err != nil {
		return nil, fmt.Errorf("hydrate: state digest after the tail: %w", err)
	}
	return &Hydrated{Account: st.Account, Member: r.state.IsMember(r.device), Digest: digest, Tail: res, Blobs: r.BlobPlan()}, nil
}
