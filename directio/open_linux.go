package directio

import (
	"errors"
	"os"
	"syscall"
)

// openFile opens path with O_DIRECT when the file system supports it, and
// reports whether it did.
func openFile(path string, perm os.FileMode) (*os.File, bool, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC|syscall.O_DIRECT, perm)
	if err == nil {
		return f, true, nil
	}
	if !errors.Is(err, syscall.EINVAL) {
		return nil, false, err
	}
	f, err = os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, perm)
	return f, false, err
}
