//go:build !linux

package blobstore

import "os"

// openStagedFile opens path for writing (buffered: no O_DIRECT here).
func openStagedFile(path string) (*os.File, bool, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	return f, false, err
}
