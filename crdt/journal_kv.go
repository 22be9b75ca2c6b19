package crdt

// KV is the small ordered key-value store that a Journal is written over.
// The journal logic lives once in this package; backends only store bytes:
// MemKV here (tests, simulator) and the Pebble KV in crdt/pebblestore.
//
// Implementations must be safe for concurrent use: the journal serialises
// its writes but reads (Get, Scan) may run at any time.
type KV interface {
	// Get returns a copy of the value under key, and false when absent.
	Get(key []byte) (value []byte, ok bool, err error)
	// Scan calls fn for every key k with lo ≤ k < hi, in ascending order.
	// key and value are only valid during the call and must not be
	// modified. An error from fn stops the scan and is returned.
	Scan(lo, hi []byte, fn func(key, value []byte) error) error
	// NewBatch starts an atomic write batch.
	NewBatch() KVBatch
	// Compact asks the backend to reclaim the space of deleted keys in
	// [lo, hi).
	Compact(lo, hi []byte) error
	Close() error
}

// KVBatch is a set of writes applied atomically, in order, by Commit. A
// batch is used once: Close releases it whether or not it was committed.
// Set, Delete and DeleteRange copy their arguments, so the caller may reuse
// its buffers.
type KVBatch interface {
	Set(key, value []byte) error
	Delete(key []byte) error
	// DeleteRange deletes every key k with lo ≤ k < hi.
	DeleteRange(lo, hi []byte) error
	// Commit applies the batch; with sync it returns only once the writes
	// are durable (fsync).
	Commit(sync bool) error
	Close() error
}
