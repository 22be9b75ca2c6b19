package crdt

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"

	voi "github.com/oasisprotocol/curve25519-voi/primitives/ed25519"
)

// Fact signatures are checked under one rule everywhere, alone or in a
// batch: ed25519 with ZIP-215 validation (cofactored equation; small-order
// and non-canonical point encodings allowed). Under ZIP-215 a batch accepts
// exactly the signatures that one-by-one checks accept, so a fact's fate
// cannot depend on how it was batched, on which node, in which order. Every
// signature that crypto/ed25519 makes (and accepts) passes; the rule only
// widens acceptance at edge cases no honest signer produces, and it is the
// same for every node.
var sigRule = &voi.Options{Verify: voi.VerifyOptionsZIP_215}

// maxCachedKeys bounds the cache of decompressed author keys (an account has
// a few devices; forged authors must not grow it without bound).
const maxCachedKeys = 4096

// keyCache holds decompressed author public keys: decompression is a fifth
// of the cost of a signature check, and an account has few authors.
var keyCache struct {
	sync.RWMutex
	m map[DeviceID]*voi.ExpandedPublicKey
}

// expandedKey returns the decompressed public key of author, or nil when
// the 32 bytes are not a point.
func expandedKey(author DeviceID) *voi.ExpandedPublicKey {
	keyCache.RLock()
	k, ok := keyCache.m[author]
	keyCache.RUnlock()
	if ok {
		return k
	}
	k, err := voi.NewExpandedPublicKey(voi.PublicKey(author[:]))
	if err != nil {
		k = nil
	}
	keyCache.Lock()
	if keyCache.m == nil || len(keyCache.m) >= maxCachedKeys {
		keyCache.m = make(map[DeviceID]*voi.ExpandedPublicKey)
	}
	keyCache.m[author] = k
	keyCache.Unlock()
	return k
}

// checkSig reports whether sig is author's signature of msg under sigRule.
func checkSig(author DeviceID, msg, sig []byte) bool {
	k := expandedKey(author)
	return k != nil && len(sig) == voi.SignatureSize && voi.VerifyExpandedWithOptions(k, msg, sig, sigRule)
}

// badSig is the error of a fact whose signature does not verify.
func (f *Fact) badSig() error {
	return fmt.Errorf("fact %s by %s seq %d: %w", f.id, f.Author.Short(), f.Seq, ErrBadSignature)
}

// Batch sizes of VerifyFacts: a batch check costs about a third of checking
// its signatures one by one once it holds a few dozen, and keeps getting
// cheaper per signature up to about a thousand (the multiscalar
// multiplication amortizes better: 17.5 µs per signature at 128, 12.8 at
// 1024); below minBatch one-by-one checks are as cheap. A batch never waits
// for facts: it is what one message or sync frame brought, split over the
// cores, so a larger maxBatch costs no latency.
const (
	minBatch = 4
	maxBatch = 1024
)

// VerifyFacts checks the signatures of fs like VerifyOnce (facts already
// checked are skipped; valid ones are marked) and returns one error per
// fact, nil for a valid signature. Signatures are checked in batches on up
// to GOMAXPROCS goroutines; a batch that fails is checked one by one, so
// every bad fact is named and no good one is refused. The outcome is
// exactly that of VerifyOnce on each fact: the batch coefficients are
// derived from the facts' ids, so the check is deterministic, and the rule
// accepts the same signatures in a batch as alone.
func VerifyFacts(fs []*Fact) []error {
	errs := make([]error, len(fs))
	if len(fs) == 0 {
		return errs
	}
	if allMarked(fs) { // checked before (a validator, then Ingest): no batch, no goroutines
		for i, f := range fs {
			if _, ok := f.signedEnd(); !ok { // fields changed since Sign or DecodeFact
				f.clearMark()
				errs[i] = f.Verify()
			}
		}
		return errs
	}
	workers := runtime.GOMAXPROCS(0)
	size := min(max((len(fs)+workers-1)/workers, minBatch), maxBatch)
	chunks := (len(fs) + size - 1) / size
	if chunks == 1 || workers == 1 {
		var b sigBatch
		for lo := 0; lo < len(fs); lo += size {
			hi := min(lo+size, len(fs))
			b.check(fs[lo:hi], errs[lo:hi])
		}
		return errs
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	for range min(workers, chunks) {
		wg.Go(func() {
			var b sigBatch
			for {
				c := int(next.Add(1)) - 1
				if c >= chunks {
					return
				}
				lo, hi := c*size, min((c+1)*size, len(fs))
				b.check(fs[lo:hi], errs[lo:hi])
			}
		})
	}
	wg.Wait()
	return errs
}

// allMarked reports whether every fact of fs already passed a check.
func allMarked(fs []*Fact) bool {
	for _, f := range fs {
		if !f.isMarked() {
			return false
		}
	}
	return true
}

// sigBatch is one goroutine's reusable scratch for batch checks.
type sigBatch struct {
	v     *voi.BatchVerifier
	msgs  []byte // signed parts, back to back
	ends  []int  // end offset of each in msgs
	which []int  // index in the chunk of each batched fact
	ids   []byte // transcript: the batched facts' ids
}

// check verifies the facts of one chunk, writing their errors.
func (b *sigBatch) check(fs []*Fact, errs []error) {
	b.msgs, b.ends, b.which, b.ids = b.msgs[:0], b.ends[:0], b.which[:0], b.ids[:0]
	for i, f := range fs {
		if f.isMarked() {
			if _, ok := f.signedEnd(); ok {
				continue
			}
		}
		msgs, ok := f.signedPart(b.msgs)
		if !ok { // fields changed since Sign or DecodeFact
			f.clearMark()
			errs[i] = f.Verify()
			continue
		}
		b.msgs = msgs
		b.ends = append(b.ends, len(b.msgs))
		b.which = append(b.which, i)
		b.ids = append(b.ids, f.id[:]...)
	}
	if len(b.which) == 0 {
		return
	}
	if len(b.which) >= minBatch && b.batchOK(fs) {
		for _, i := range b.which {
			fs[i].markVerified()
		}
		return
	}
	start := 0
	for k, i := range b.which {
		f := fs[i]
		if checkSig(f.Author, b.msgs[start:b.ends[k]], f.Sig) {
			f.markVerified()
		} else {
			errs[i] = f.badSig()
		}
		start = b.ends[k]
	}
}

// batchOK checks the batched signatures at once: true only if all are
// valid. The random coefficients of the batch equation come from a hash of
// the facts' ids (which cover author, signed bytes and signature), so an
// adversary cannot choose signatures that cancel out, and the same batch
// always gets the same answer.
func (b *sigBatch) batchOK(fs []*Fact) bool {
	if b.v == nil {
		b.v = voi.NewBatchVerifierWithCapacity(maxBatch)
	} else {
		b.v.Reset()
	}
	start := 0
	for k, i := range b.which {
		f := fs[i]
		key := expandedKey(f.Author)
		if key == nil {
			return false
		}
		b.v.AddExpandedWithOptions(key, b.msgs[start:b.ends[k]], f.Sig, sigRule)
		start = b.ends[k]
	}
	seed := sha256.Sum256(b.ids)
	return b.v.VerifyBatchOnly(bytes.NewReader(seed[:]))
}
