package crdt

import "errors"

// Sentinel errors of the journal store.
var (
	ErrNotFound      = errors.New("fact not found")
	ErrPruned        = errors.New("facts below a snapshot frontier were pruned")
	ErrWrongAccount  = errors.New("fact belongs to another account")
	ErrClosed        = errors.New("store is closed")
	ErrUnauthorized  = errors.New("author lacks the capability")
	ErrNotAdmitted   = errors.New("fact not admitted")
	ErrEquivocation  = errors.New("equivocation: two facts for one author and seq")
	ErrUnknownPrefix = errors.New("version vector is not held")
)

// Admit is called by Ingest for each new fact, in causal order (Lamport,
// author, seq), after its signature checked out and before it is written.
// Returning an error rejects the fact: it is not stored. The node passes a
// function that checks the capability guard against the account state and
// folds the fact into it.
type Admit func(*Fact) error

// IngestResult reports what one Ingest call did.
type IngestResult struct {
	Added      []*Fact // newly stored facts, in the order admitted
	Duplicates int     // already held
	Pending    int     // of Added: held ahead of a gap for their author
	Evidence   int     // of Added: conflicted with a held fact at the same (author, seq)
	// Chained are the facts that entered their author's chain in this call:
	// new facts and pending ones whose gap filled, by author then seq. The
	// account state is the fold of exactly the chain facts (pending and
	// evidence facts never change state), so every replica that holds a
	// prefix holds the same state for it.
	Chained []*Fact
	// Rechained lists authors whose chain changed at or below a seq already
	// chained: an equivocation where the conflicting fact has the lower id,
	// which takes the slot on every replica (so all converge on one chain).
	// A caller folding state must rebuild it from the chain.
	Rechained []DeviceID
	Rejected  []Rejection // bad signature, wrong account, below a pruned frontier, or refused by Admit
}

// Rejection names a fact that Ingest refused and why.
type Rejection struct {
	ID     FactID
	Author DeviceID
	Seq    uint64
	Err    error
}

// Equivocation is evidence against an author: two different facts for one
// seq. Kept is the fact in the author's chain (the first held).
type Equivocation struct {
	Author   DeviceID
	Seq      uint64
	Kept     FactID
	Conflict FactID
}

// Stats are the store's size figures.
type Stats struct {
	Facts         uint64 // facts held (chain, pending and evidence)
	Bytes         uint64 // encoded bytes of the facts held
	Pending       uint64 // facts ahead of a gap
	Equivocations uint64
	PrunedFacts   uint64 // facts removed by Prune, in total
	PrunedBytes   uint64
}

// Store is the journal: a grow-only set of facts keyed by id, indexed by
// (author, seq), with version vector, hash chains, pending facts and
// equivocation evidence. Implementations: MemStore here and the Pebble store
// in crdt/pebblestore; one conformance suite runs against both.
//
// Ingest verifies signatures (in parallel) of facts not verified yet, drops
// duplicates, calls admit in causal order, and writes all admitted facts in
// one atomic, durable batch before returning: an acknowledged fact survives
// a crash.
type Store interface {
	Account() AccountID
	Ingest(facts []*Fact, admit Admit) (IngestResult, error)
	Has(id FactID) (bool, error)
	Get(id FactID) (*Fact, error)
	// BySeq returns the chain fact of author at seq.
	BySeq(author DeviceID, seq uint64) (*Fact, error)
	// Range calls fn with the chain facts of author with from ≤ seq ≤ to, in
	// order; ErrPruned if part of the range was pruned.
	Range(author DeviceID, from, to uint64, fn func(*Fact) error) error
	// All calls fn with every held fact (chain, pending and evidence), in
	// no promised order.
	All(fn func(*Fact) error) error
	VersionVector() VersionVector
	// Head returns h(author, seq) for seq ≤ VersionVector()[author].
	ChainHash(author DeviceID, seq uint64) (Hash, error)
	// PrefixHash is the content hash of the prefix that v names: one chain
	// lookup per author.
	PrefixHash(v VersionVector) (Hash, error)
	// PrunedTo is the version vector below which facts were pruned.
	PrunedTo() VersionVector
	Evidence() ([]Equivocation, error)
	Stats() Stats
	// Prune removes the chain facts at or below v (which must be covered by
	// VersionVector) and their evidence, keeps the chain heads at v, and
	// compacts so the space comes back. It returns the facts and bytes freed.
	Prune(v VersionVector) (facts, bytes uint64, err error)
	// Rebase rests the journal on a snapshot at v whose chain heads are
	// heads: it prunes where the journal holds that far and jumps the chain
	// heads where it holds less (restore), keeping every fact above v.
	Rebase(v VersionVector, heads map[DeviceID]Hash) error
	Close() error
}
