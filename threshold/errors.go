package threshold

import "errors"

// Sentinel errors. Functions wrap them with context (fmt.Errorf("...: %w", err)),
// so callers test with errors.Is.
var (
	// ErrBadPartial: a partial signature is malformed (wrong length, not a
	// canonical curve point) or does not verify against its signer's public share.
	ErrBadPartial = errors.New("threshold: bad partial signature")
	// ErrBadIndex: a signer index is outside [0, n) for the group key.
	ErrBadIndex = errors.New("threshold: signer index out of range")
	// ErrDuplicateSigner: a second partial for a signer that already has one.
	ErrDuplicateSigner = errors.New("threshold: duplicate signer")
	// ErrNotEnoughPartials: fewer than t valid partials are available.
	ErrNotEnoughPartials = errors.New("threshold: not enough valid partials")
	// ErrBadGroupSignature: a group signature is malformed or does not verify
	// against the group public key.
	ErrBadGroupSignature = errors.New("threshold: bad group signature")
	// ErrBadGroupKey: encoded group key bytes are malformed.
	ErrBadGroupKey = errors.New("threshold: bad group key")
	// ErrBadShare: encoded private share bytes are malformed.
	ErrBadShare = errors.New("threshold: bad private share")
	// ErrBadParams: threshold t and size n are inconsistent (need 1 <= t <= n <= 65535;
	// the DKG needs t >= 2).
	ErrBadParams = errors.New("threshold: bad threshold parameters")
	// ErrUnknownBackend: encoded bytes name a curve backend this build lacks.
	ErrUnknownBackend = errors.New("threshold: unknown curve backend")
	// ErrBackendMismatch: two objects from different curve backends were combined.
	ErrBackendMismatch = errors.New("threshold: curve backend mismatch")
	// ErrWrongPassphrase: a sealed share cannot be opened with the given
	// passphrase or identity.
	ErrWrongPassphrase = errors.New("threshold: wrong passphrase or identity for sealed share")
	// ErrBadSealed: sealed share bytes are not a valid age file.
	ErrBadSealed = errors.New("threshold: bad sealed share")
	// ErrBadDKGMessage: a DKG message is malformed, misaddressed or fails the
	// library's checks (bad signature, bad deal, ...).
	ErrBadDKGMessage = errors.New("threshold: bad DKG message")
	// ErrDKGNotDone: the DKG result was asked for before the DKG finished.
	ErrDKGNotDone = errors.New("threshold: DKG not finished")
	// ErrBadDKGConfig: a DKG configuration is inconsistent.
	ErrBadDKGConfig = errors.New("threshold: bad DKG configuration")
)
