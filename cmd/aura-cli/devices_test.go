package main

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestRemoveDeviceAndReshare: three `aura-node run` processes; the admin
// lists the devices, removes one, and the key is reshared by itself among
// the other two; out-of-range thresholds and non-admins get clear errors.
func TestRemoveDeviceAndReshare(t *testing.T) {
	nodeBin, cliBin := bins(t)
	e := &env{t: t, nodeBin: nodeBin, cliBin: cliBin}
	dir := t.TempDir()
	a, b, c := filepath.Join(dir, "a"), filepath.Join(dir, "b"), filepath.Join(dir, "c")
	e.init(a)
	e.init(b)
	idC := e.init(c)
	e.start(a)
	e.start(b)
	e.start(c)
	e.cli(a, "account", "create", "--threshold", "2")
	for _, h := range []string{b, c} {
		out := e.cli(a, "account", "invite")
		lines := strings.Split(strings.TrimSpace(out), "\n")
		e.cli(h, "account", "join", lines[len(lines)-1])
	}
	type dev struct {
		ID           string `json:"id"`
		RemovedEpoch uint64 `json:"removed_epoch"`
		HoldsShare   bool   `json:"holds_share"`
		ShareIndex   int    `json:"share_index"`
	}
	devices := func(home string) []dev {
		var ds []dev
		if err := json.Unmarshal([]byte(e.cli(home, "--json", "account", "devices")), &ds); err != nil {
			t.Fatal(err)
		}
		return ds
	}
	waitUntil(t, 30*time.Second, "three devices everywhere", func() bool {
		return len(devices(b)) == 3 && len(devices(c)) == 3
	})
	e.cli(a, "threshold", "keygen", "--threshold", "2")
	waitUntil(t, 20*time.Second, "shares listed", func() bool {
		for _, d := range devices(b) {
			if !d.HoldsShare {
				return false
			}
		}
		return true
	})
	if out := e.cli(a, "account", "devices"); !strings.Contains(out, "SHARE") || !strings.Contains(out, idC) || !strings.Contains(out, "(this)") {
		t.Fatalf("account devices:\n%s", out)
	}

	_, errOut, err := e.run(cliBin, "--home", b, "account", "remove", idC)
	if err == nil || !strings.Contains(errOut, "admin") {
		t.Fatalf("remove by a non-admin: err=%v stderr=%q", err, errOut)
	}
	out := e.cli(a, "account", "remove", idC)
	if !strings.Contains(out, "removed device "+idC) || !strings.Contains(out, "resharing: started") {
		t.Fatalf("account remove:\n%s", out)
	}
	var key struct {
		KeyEpoch     uint64   `json:"key_epoch"`
		Participants []string `json:"participants"`
		HasShare     bool     `json:"has_share"`
	}
	for _, h := range []string{a, b} {
		waitUntil(t, 60*time.Second, "the reshared key on "+filepath.Base(h), func() bool {
			if json.Unmarshal([]byte(e.cli(h, "--json", "threshold", "status")), &key) != nil {
				return false
			}
			return key.KeyEpoch == 2 && len(key.Participants) == 2 && key.HasShare
		})
	}
	if out := e.cli(a, "threshold", "status"); !strings.Contains(out, "resharing after a removal: done") {
		t.Fatalf("threshold status:\n%s", out)
	}
	for _, d := range devices(a) {
		if (d.ID == idC) != (d.RemovedEpoch != 0) || (d.ID == idC) == d.HoldsShare {
			t.Fatalf("after the removal: %+v", d)
		}
	}
	_, errOut, err = e.run(cliBin, "--home", a, "threshold", "reshare", "--threshold", "3")
	if err == nil || !strings.Contains(errOut, "M must be from 2 to 2") {
		t.Fatalf("reshare --threshold 3 with 2 devices: err=%v stderr=%q", err, errOut)
	}
	_, errOut, err = e.run(cliBin, "--home", a, "account", "remove", idC)
	if err == nil || !strings.Contains(errOut, "already removed") {
		t.Fatalf("second removal: err=%v stderr=%q", err, errOut)
	}
	out = e.cli(a, "threshold", "reshare")
	if !strings.Contains(out, "reshared at key epoch 3: 2 of 2 devices") {
		t.Fatalf("threshold reshare:\n%s", out)
	}
}
