package node

import (
	"errors"
	"fmt"
)

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

// isKind reports whether err is of kind (a shorthand for errors.Is).
func isKind(err, kind error) bool { return errors.Is(err, kind) }
