package node

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"aura/maintenance"
)

// Errors of a kind print only what happened (no "bad request:" prefix)
// and still map to their status.
func TestKindErrorsAndStatus(t *testing.T) {
	cause := errors.New("disk on fire")
	for _, c := range []struct {
		err  error
		code int
	}{
		{errorf(ErrBadRequest, "empty key"), http.StatusBadRequest},
		{errorf(ErrNotFound, "no value for key %q", "k"), http.StatusNotFound},
		{errorf(ErrUnavailable, "cannot reach: %w", cause), http.StatusServiceUnavailable},
		{errorf(ErrTooLarge, "value of 9 bytes is too large"), http.StatusBadRequest},
		{errorf(ErrNoPeers, "no device of the account is reachable; 2 devices known"), http.StatusServiceUnavailable},
		{fmt.Errorf("vote: %w", maintenance.ErrStaleProposal), http.StatusConflict},
		{fmt.Errorf("restore: %w", maintenance.ErrBadSnapshot), http.StatusUnprocessableEntity},
		{errorf(maintenance.ErrNotPermitted, "only the account's admin may x"), http.StatusForbidden},
		{cause, http.StatusInternalServerError},
	} {
		if got := statusOf(c.err); got != c.code {
			t.Errorf("statusOf(%q) = %d, want %d", c.err, got, c.code)
		}
		for _, prefix := range []string{"bad request", "not found", "unavailable", "too large"} {
			if strings.HasPrefix(c.err.Error(), prefix) {
				t.Errorf("%q starts with the kind %q", c.err, prefix)
			}
		}
	}
	if err := errorf(ErrUnavailable, "cannot reach: %w", cause); !errors.Is(err, cause) || !errors.Is(err, ErrUnavailable) {
		t.Fatal("errorf loses its kind or its cause")
	}
	for _, c := range []struct{ m, n int }{{0, 3}, {1, 3}, {4, 3}, {2, 1}, {0, 1}} {
		if err := thresholdRange(c.m, c.n); err == nil || !strings.Contains(err.Error(), fmt.Sprintf("--threshold %d is out of range", c.m)) {
			t.Errorf("thresholdRange(%d, %d) = %v", c.m, c.n, err)
		}
	}
	for _, c := range []struct{ m, n int }{{1, 1}, {2, 3}, {3, 3}} {
		if err := thresholdRange(c.m, c.n); err != nil {
			t.Errorf("thresholdRange(%d, %d) = %v, want nil", c.m, c.n, err)
		}
	}
}
