//go:build !linux

package directio

import "os"

// openFile opens path for writing (buffered: no O_DIRECT here).
func openFile(path string, perm os.FileMode) (*os.File, bool, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, perm)
	return f, false, err
}
