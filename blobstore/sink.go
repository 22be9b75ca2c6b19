package blobstore

import (
	"errors"
	"fmt"
	"os"
	"sync"

	"github.com/cockroachdb/pebble"
	"github.com/cockroachdb/pebble/sstable"
	mh "github.com/multiformats/go-multihash"

	"aura/directio"
)

// seqsPerFile is how many block numbers a sink reserves at a time; unused
// ones are gaps, which cost nothing.
const seqsPerFile = 1 << 16

// sink writes blocks for one Put, PutMany or fetching peer.
//
// Ingest mode (the default): block bytes stream into an sstable in the
// staging directory as they come; every stageBytes the file is handed to a
// background ingester, which syncs it, ingests it into Pebble (so each byte
// is written once, never through the WAL or a compaction) and then commits
// the blocks' catalogue entries. A crash between the two leaves block bytes
// that no entry points to; GC removes those.
//
// Batch mode (when the Store cannot ingest): blocks and catalogue entries go
// into a Pebble batch committed every stageBytes.
type sink struct {
	s       *Store
	release func([]byte) // called with each block's data once written, if set
	staged  map[string]struct{}
	wrote   bool // something was committed without sync

	// ingest mode
	cur   *stagedFile
	queue chan *stagedFile
	wg    sync.WaitGroup
	mu    sync.Mutex
	err   error // first error of the ingester

	// batch mode
	batch      *pebble.Batch
	batchBytes int
	next, end  uint64 // reserved block numbers
}

type stagedFile struct {
	w       *sstable.Writer
	path    string
	next    uint64 // next block number
	end     uint64 // end of the reserved numbers
	entries []entry
	bytes   int
}

type entry struct {
	h    mh.Multihash
	size int
	seq  uint64
}

func (s *Store) newSink() *sink {
	return &sink{s: s, staged: make(map[string]struct{})}
}

// has reports whether a block was added to this sink.
func (k *sink) has(h mh.Multihash) bool {
	_, ok := k.staged[string(h)]
	return ok
}

func (k *sink) asyncErr() error {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.err
}

func (k *sink) setErr(err error) {
	k.mu.Lock()
	if k.err == nil {
		k.err = err
	}
	k.mu.Unlock()
}

// add writes a block (once per multihash). data may be reused once add
// returns, unless release is set: then the sink calls it when done.
func (k *sink) add(h mh.Multihash, data []byte) error {
	if k.has(h) {
		k.done(data)
		return nil
	}
	k.staged[string(h)] = struct{}{}
	var err error
	if k.s.noIngest {
		err = k.addBatch(h, data)
	} else {
		err = k.addIngest(h, data)
	}
	k.done(data)
	return err
}

func (k *sink) done(data []byte) {
	if k.release != nil {
		k.release(data)
	}
}

func (k *sink) addBatch(h mh.Multihash, data []byte) error {
	if k.batch == nil {
		k.batch = k.s.db.NewBatch()
	}
	if k.next == k.end {
		k.next = k.s.allocSeq(seqsPerFile)
		k.end = k.next + seqsPerFile
	}
	seq := k.next
	k.next++
	if err := k.batch.Set(k.s.blockKey(seq), data, nil); err != nil {
		return err
	}
	if err := k.batch.Set(k.s.catalogKey(h), encodeEntry(len(data), seq), nil); err != nil {
		return err
	}
	k.batchBytes += len(data)
	if k.batchBytes >= stageBytes {
		return k.commitBatch(pebble.NoSync)
	}
	return nil
}

func (k *sink) commitBatch(opt *pebble.WriteOptions) error {
	if k.batch == nil || k.batch.Empty() {
		return nil
	}
	err := k.batch.Commit(opt)
	k.batch.Close()
	k.batch = nil
	k.batchBytes = 0
	if err != nil {
		return fmt.Errorf("blobstore: write blocks: %w", err)
	}
	k.wrote = true
	return nil
}

func (k *sink) addIngest(h mh.Multihash, data []byte) error {
	if err := k.asyncErr(); err != nil {
		return err
	}
	if k.cur == nil {
		f, err := k.s.openStaged()
		if err != nil {
			return err
		}
		k.cur = f
	}
	f := k.cur
	seq := f.next
	f.next++
	if err := f.w.Set(k.s.blockKey(seq), data); err != nil {
		return fmt.Errorf("blobstore: write staged sstable: %w", err)
	}
	f.entries = append(f.entries, entry{h, len(data), seq})
	f.bytes += len(data)
	k.wrote = true
	if f.bytes >= stageBytes || f.next == f.end {
		k.seal()
	}
	return nil
}

// seal hands the current file to the ingester.
func (k *sink) seal() {
	f := k.cur
	k.cur = nil
	if f == nil {
		return
	}
	if k.queue == nil {
		k.queue = make(chan *stagedFile, 1)
		k.wg.Go(func() {
			for f := range k.queue {
				if k.asyncErr() != nil {
					f.discard()
					continue
				}
				if err := k.s.ingestStaged(f); err != nil {
					k.setErr(err)
				}
			}
		})
	}
	k.queue <- f
}

// close stores everything added and stops the ingester. With sync, all the
// sink wrote is durable when it returns nil; without, the caller syncs
// (Store.syncWAL) after closing its sinks.
func (k *sink) close(sync bool) error {
	var err error
	if k.s.noIngest {
		opt := pebble.NoSync
		if sync {
			opt = pebble.Sync
		}
		err = k.commitBatch(opt)
	} else {
		k.seal()
		if k.queue != nil {
			close(k.queue)
			k.wg.Wait()
			k.queue = nil
		}
		err = k.asyncErr()
	}
	if err != nil {
		return err
	}
	if sync && k.wrote {
		return k.s.syncWAL()
	}
	return nil
}

// syncWAL makes every batch committed so far durable.
func (s *Store) syncWAL() error {
	if err := s.db.LogData(nil, pebble.Sync); err != nil {
		return fmt.Errorf("blobstore: sync: %w", err)
	}
	return nil
}

// openStaged starts an sstable in the staging directory with a fresh range
// of block numbers.
func (s *Store) openStaged() (*stagedFile, error) {
	base := s.allocSeq(seqsPerFile)
	f := &stagedFile{next: base, end: base + seqsPerFile}
	tmp, err := os.CreateTemp(s.opts.stagingDir, "aura-blobs-*.sst")
	if err != nil {
		return nil, fmt.Errorf("blobstore: staging file: %w", err)
	}
	f.path = tmp.Name()
	tmp.Close()
	file, err := directio.Create(f.path, 0o644)
	if err != nil {
		os.Remove(f.path)
		return nil, fmt.Errorf("blobstore: staging file: %w", err)
	}
	f.w = sstable.NewWriter(stagedWritable{file}, sstable.WriterOptions{
		TableFormat: s.db.FormatMajorVersion().MaxTableFormat(),
		// Blobs are compact CBOR or encrypted: compression would cost
		// CPU for nothing (Pebble would store the blocks raw anyway).
		Compression: sstable.NoCompression,
		Comparer:    pebble.DefaultComparer,
		// The CIDs are the integrity check; Pebble still verifies block
		// checksums on every read, and xxhash64 costs less than crc32c.
		Checksum: sstable.ChecksumTypeXXHash64,
		// Blocks are checksummed and written by Pebble's own goroutines,
		// beside the one chunking and hashing the blob: a restore's
		// write syscalls no longer sit on its critical path.
		Parallelism: true,
	})
	return f, nil
}

// stagedWritable is the objstorage.Writable a staged sstable is written
// through: a directio.File, so a fetch does not copy every byte into fresh
// page-cache pages it will not read again (on a VM each new page faults to
// the hypervisor: that cost a fetch more CPU than hashing the blocks).
type stagedWritable struct{ f *directio.File }

func (w stagedWritable) Write(p []byte) error {
	_, err := w.f.Write(p)
	return err
}
func (w stagedWritable) Finish() error { return w.f.Finish() }
func (w stagedWritable) Abort()        { w.f.Abort() }

// discard drops a staged file.
func (f *stagedFile) discard() {
	if f.w != nil {
		_ = f.w.Close()
		f.w = nil
	}
	if f.path != "" {
		os.Remove(f.path)
		f.path = ""
	}
}

// ingestStaged syncs and ingests a staged file, then commits the catalogue
// entries of its blocks (without sync).
func (s *Store) ingestStaged(f *stagedFile) error {
	defer f.discard() // our name for the file; Pebble has linked or copied it
	if len(f.entries) == 0 {
		return nil
	}
	err := f.w.Close() // syncs and closes the file
	f.w = nil
	if err == nil {
		err = s.db.Ingest([]string{f.path})
	}
	if err != nil {
		return fmt.Errorf("blobstore: ingest blocks: %w", err)
	}
	b := s.db.NewBatchWithSize(64 * len(f.entries))
	defer b.Close()
	for _, e := range f.entries {
		if err := b.Set(s.catalogKey(e.h), encodeEntry(e.size, e.seq), nil); err != nil {
			return err
		}
	}
	if err := b.Commit(pebble.NoSync); err != nil {
		return fmt.Errorf("blobstore: write catalogue: %w", err)
	}
	return nil
}

// probeIngest checks, once at New, that the staging directory and the DB
// allow ingestion: it ingests a one-key sstable outside the block range and
// deletes the key.
func (s *Store) probeIngest() error {
	f, err := s.openStaged()
	if err != nil {
		return err
	}
	defer f.discard()
	key := s.key(kindProbe, nil)
	if err := f.w.Set(key, nil); err != nil {
		return err
	}
	err = f.w.Close()
	f.w = nil
	if err == nil {
		err = s.db.Ingest([]string{f.path})
	}
	if err != nil {
		return err
	}
	return s.db.Delete(key, pebble.NoSync)
}

// IngestError says why the Store writes blocks through batches rather than
// by ingesting sstables (see WithStagingDir); nil when it ingests.
func (s *Store) IngestError() error { return s.ingestErr }

var errIngestOff = errors.New("blobstore: ingestion turned off")
