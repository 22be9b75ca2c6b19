package node

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"path/filepath"

	"github.com/cockroachdb/pebble"
	"github.com/ipfs/go-cid"

	"aura/blobstore"
	"aura/maintenance"
)

// Key prefixes of the node's Pebble database besides the journal's 'j'.
var (
	metaKeyPrefix = []byte{'m'} // maintenance.Meta records of the replica
	prefixNode    = []byte{'n'} // the node's own records (invites, account, peers)
	prefixBlobs   = []byte{'b'} // blobstore
)

// blobPacks is the blobstore's pack directory, inside the Pebble
// directory so that whatever moves or replaces the store (repair, backup
// restore) moves the blob bytes with their catalogue.
func blobPacks(dataDir string) string { return filepath.Join(dataDir, "blobs") }

// kvMeta is a string-keyed durable map over a key prefix of the DB. It
// implements maintenance.Meta.
type kvMeta struct {
	db     *pebble.DB
	prefix []byte
}

var _ maintenance.Meta = (*kvMeta)(nil)

func (m *kvMeta) key(k string) []byte {
	return append(append([]byte(nil), m.prefix...), k...)
}

func (m *kvMeta) Get(key string) ([]byte, error) {
	v, closer, err := m.db.Get(m.key(key))
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	out := bytes.Clone(v)
	if out == nil {
		out = []byte{}
	}
	return out, closer.Close()
}

func (m *kvMeta) Put(key string, value []byte) error {
	return m.db.Set(m.key(key), value, pebble.Sync)
}

func (m *kvMeta) Delete(key string) error {
	return m.db.Delete(m.key(key), pebble.Sync)
}

func (m *kvMeta) Scan(prefix string, fn func(key string, value []byte) error) error {
	lo := m.key(prefix)
	hi := prefixEnd(lo)
	it, err := m.db.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: hi})
	if err != nil {
		return err
	}
	for it.First(); it.Valid(); it.Next() {
		if err := fn(string(it.Key()[len(m.prefix):]), bytes.Clone(it.Value())); err != nil {
			it.Close()
			return err
		}
	}
	err = it.Error()
	if cerr := it.Close(); err == nil {
		err = cerr
	}
	return err
}

func prefixEnd(p []byte) []byte {
	end := bytes.Clone(p)
	for i := len(end) - 1; i >= 0; i-- {
		if end[i] < 0xff {
			end[i]++
			return end[:i+1]
		}
	}
	return nil
}

// blobAdapter is maintenance.Blobs over the blobstore: Put returns the
// UnixFS root CID's bytes (deterministic for equal bytes).
type blobAdapter struct{ s *blobstore.Store }

var _ maintenance.Blobs = blobAdapter{}

func (b blobAdapter) Put(data []byte) ([]byte, error) {
	c, _, err := b.s.Put(context.Background(), bytes.NewReader(data))
	if err != nil {
		return nil, err
	}
	return c.Bytes(), nil
}

func (b blobAdapter) Get(raw []byte) ([]byte, error) {
	c, err := cid.Cast(raw)
	if err != nil {
		return nil, fmt.Errorf("blob %x: %w", raw, err)
	}
	data, err := b.s.Get(context.Background(), c)
	if err != nil {
		if errors.Is(err, blobstore.ErrIncomplete) || errors.Is(err, blobstore.ErrNotFound) {
			return nil, fmt.Errorf("blob %s: %w", c, maintenance.ErrBlobMissing)
		}
		return nil, err
	}
	return data, nil
}
