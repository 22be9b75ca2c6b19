package node

import "fmt"

// kindError is an error of a kind callers branch on (errors.Is(err,
// ErrNotFound)) whose message is only what happened: the kind is not
// printed, so users never read "bad request: …" or "not found: …".
type kindError struct {
	kind error
	err  error
}

func (e *kindError) Error() string   { return e.err.Error() }
func (e *kindError) Unwrap() []error { return []error{e.kind, e.err} }

// errorf formats an error of the given kind; format may wrap (%w) causes.
func errorf(kind error, format string, args ...any) error {
	return &kindError{kind: kind, err: fmt.Errorf(format, args...)}
}

// thresholdRange refuses an M a key of n devices cannot have: 1 with a
// single device, else from 2 to n (M = 1 of several would let any one
// device sign for all). One message for every command that takes M.
func thresholdRange(m, n int) error {
	lo := 2
	if n == 1 {
		lo = 1
	}
	if m < lo || m > n {
		if lo == n {
			return errorf(ErrBadRequest, "--threshold %d is out of range: with %d device M must be %d", m, n, n)
		}
		return errorf(ErrBadRequest, "--threshold %d is out of range: with %d devices M must be from %d to %d", m, n, lo, n)
	}
	return nil
}
