package maintenance

import (
	"crypto/sha256"
	"encoding/binary"
	"sync"

	"aura/threshold"
)

// sigCache is one replica's memory of threshold signatures: parsed group
// keys (parsing checks every commitment's subgroup, which costs far more
// than one pairing check) and signatures that checked out (folds of the
// same journal — StateAt, Open, Restore, rebuilds — meet the same
// completion again and again, and a pairing check costs a millisecond).
// It is per replica, never process-wide, so simulated devices share
// nothing. The zero value is ready.
type sigCache struct {
	mu       sync.Mutex
	keys     map[string]*threshold.GroupKey
	verified map[[32]byte]bool
}

const maxVerified = 4096

func (c *sigCache) verify(groupKey, msg, sig []byte) error {
	h := sha256.New()
	for _, part := range [][]byte{groupKey, msg, sig} {
		var n [8]byte
		binary.BigEndian.PutUint64(n[:], uint64(len(part)))
		h.Write(n[:])
		h.Write(part)
	}
	var id [32]byte
	h.Sum(id[:0])
	c.mu.Lock()
	if c.verified[id] {
		c.mu.Unlock()
		return nil
	}
	k := c.keys[string(groupKey)]
	c.mu.Unlock()
	if k == nil {
		var err error
		if k, err = threshold.ParseGroupKey(groupKey); err != nil {
			return err
		}
	}
	if err := k.Verify(msg, sig); err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.keys == nil {
		c.keys, c.verified = map[string]*threshold.GroupKey{}, map[[32]byte]bool{}
	}
	if len(c.verified) >= maxVerified {
		clear(c.verified)
	}
	c.keys[string(groupKey)] = k
	c.verified[id] = true
	return nil
}
