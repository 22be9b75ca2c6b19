package pebblestore

import (
	"errors"
	"fmt"

	"aura/crdt"

	"github.com/cockroachdb/pebble"
	"github.com/cockroachdb/pebble/bloom"
)

// Options configure Open. The zero value is usable.
type Options struct {
	// Account is the account of the journal. Zero means: the stored one, or
	// adopt (and persist) the account of the first fact ingested. A non-zero
	// account that differs from the stored one fails with
	// crdt.ErrWrongAccount.
	Account crdt.AccountID
	// CacheSize is Pebble's block cache in bytes (default 32 MiB).
	CacheSize int64
	// MemTableSize is Pebble's memtable size in bytes (default 16 MiB).
	MemTableSize uint64
	// Pebble, when set, is used as the base options (its Cache, MemTableSize
	// and filter policies are kept when set there).
	Pebble *pebble.Options
}

const (
	defaultCacheSize    = 32 << 20
	defaultMemTableSize = 16 << 20
)

// Store is the journal store on Pebble: a crdt.Journal over the database.
type Store struct {
	*crdt.Journal
	db *pebble.DB
}

var _ crdt.Store = (*Store)(nil)

// Open opens (or creates) the store in dir.
func Open(dir string, opts Options) (*Store, error) {
	po := &pebble.Options{}
	if opts.Pebble != nil {
		po = opts.Pebble.Clone()
	}
	if po.Cache == nil {
		size := opts.CacheSize
		if size <= 0 {
			size = defaultCacheSize
		}
		c := pebble.NewCache(size)
		defer c.Unref() // the DB holds its own reference
		po.Cache = c
	}
	if po.MemTableSize == 0 {
		po.MemTableSize = opts.MemTableSize
		if po.MemTableSize == 0 {
			po.MemTableSize = defaultMemTableSize
		}
	}
	if len(po.Levels) == 0 {
		po.Levels = make([]pebble.LevelOptions, 7)
	}
	for i := range po.Levels {
		if po.Levels[i].FilterPolicy == nil {
			po.Levels[i].FilterPolicy = bloom.FilterPolicy(10)
		}
	}
	po.EnsureDefaults()
	db, err := pebble.Open(dir, po)
	if err != nil {
		return nil, fmt.Errorf("open journal store in %s: %w", dir, err)
	}
	j, err := crdt.OpenJournal(&kv{db: db}, opts.Account)
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("open journal store in %s: %w", dir, err)
	}
	return &Store{Journal: j, db: db}, nil
}

// DB is the underlying database. The node keeps its blob blocks in it under
// key prefixes other than crdt.JournalPrefix. Close closes it.
func (s *Store) DB() *pebble.DB { return s.db }

// kv adapts a *pebble.DB to crdt.KV.
type kv struct{ db *pebble.DB }

func (k *kv) Get(key []byte) ([]byte, bool, error) {
	v, closer, err := k.db.Get(key)
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	out := append([]byte(nil), v...)
	return out, true, closer.Close()
}

func (k *kv) Scan(lo, hi []byte, fn func(key, value []byte) error) error {
	it, err := k.db.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: hi})
	if err != nil {
		return err
	}
	for it.First(); it.Valid(); it.Next() {
		if err := fn(it.Key(), it.Value()); err != nil {
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

func (k *kv) NewBatch() crdt.KVBatch { return &batch{b: k.db.NewBatch()} }

func (k *kv) Compact(lo, hi []byte) error {
	if err := k.db.Flush(); err != nil {
		return err
	}
	return k.db.Compact(lo, hi, true)
}

func (k *kv) Close() error { return k.db.Close() }

type batch struct{ b *pebble.Batch }

func (b *batch) Set(key, value []byte) error     { return b.b.Set(key, value, nil) }
func (b *batch) Delete(key []byte) error         { return b.b.Delete(key, nil) }
func (b *batch) DeleteRange(lo, hi []byte) error { return b.b.DeleteRange(lo, hi, nil) }

func (b *batch) Commit(sync bool) error {
	o := pebble.NoSync
	if sync {
		o = pebble.Sync
	}
	return b.b.Commit(o)
}

func (b *batch) Close() error {
	if b.b == nil {
		return nil
	}
	err := b.b.Close()
	b.b = nil
	return err
}
