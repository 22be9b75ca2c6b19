package maintenance

import (
	"crypto/sha256"
	"fmt"
	"sort"
	"strings"
	"sync"

	cid "github.com/ipfs/go-cid"
	mh "github.com/multiformats/go-multihash"
)

// MemMeta is an in-memory Meta (tests and the simulator).
type MemMeta struct {
	mu sync.Mutex
	m  map[string][]byte
}

// NewMemMeta returns an empty MemMeta.
func NewMemMeta() *MemMeta { return &MemMeta{m: map[string][]byte{}} }

func (m *MemMeta) Get(key string) ([]byte, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	v, ok := m.m[key]
	if !ok {
		return nil, nil
	}
	return append([]byte(nil), v...), nil
}

func (m *MemMeta) Put(key string, value []byte) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.m[key] = append([]byte(nil), value...)
	return nil
}

func (m *MemMeta) Delete(key string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.m, key)
	return nil
}

func (m *MemMeta) Scan(prefix string, fn func(string, []byte) error) error {
	m.mu.Lock()
	var keys []string
	for k := range m.m {
		if strings.HasPrefix(k, prefix) {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	vals := make([][]byte, len(keys))
	for i, k := range keys {
		vals[i] = m.m[k]
	}
	m.mu.Unlock()
	for i, k := range keys {
		if err := fn(k, vals[i]); err != nil {
			return err
		}
	}
	return nil
}

// MemBlobs is an in-memory Blobs for the core's own tests: whole blobs
// named by a CIDv1 (raw, sha2-256) of their bytes. The node and the
// simulator both store chunked UnixFS blobs (aura/blobstore/unixfs) with
// other CIDs for blobs over 1 MiB; all are deterministic.
type MemBlobs struct {
	mu sync.Mutex
	m  map[string][]byte
}

// NewMemBlobs returns an empty MemBlobs.
func NewMemBlobs() *MemBlobs { return &MemBlobs{m: map[string][]byte{}} }

// MemCID is the CID MemBlobs gives data.
func MemCID(data []byte) []byte {
	sum := sha256.Sum256(data)
	m, _ := mh.Encode(sum[:], mh.SHA2_256)
	return cid.NewCidV1(cid.Raw, m).Bytes()
}

func (b *MemBlobs) Put(data []byte) ([]byte, error) {
	c := MemCID(data)
	b.mu.Lock()
	b.m[string(c)] = append([]byte(nil), data...)
	b.mu.Unlock()
	return c, nil
}

func (b *MemBlobs) Get(c []byte) ([]byte, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	v, ok := b.m[string(c)]
	if !ok {
		return nil, fmt.Errorf("blob %x: %w", c, ErrBlobMissing)
	}
	return v, nil
}

// Delete drops a blob.
func (b *MemBlobs) Delete(c []byte) {
	b.mu.Lock()
	delete(b.m, string(c))
	b.mu.Unlock()
}

// Len is the number of blobs held.
func (b *MemBlobs) Len() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.m)
}
