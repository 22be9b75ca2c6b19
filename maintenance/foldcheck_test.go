package maintenance

import (
	"os"
	"testing"
)

// TestMain: every test here refolds the journal wherever the replica takes
// its live state for a frontier, and compares.
func TestMain(m *testing.M) {
	CheckFoldShortcuts(true)
	os.Exit(m.Run())
}
