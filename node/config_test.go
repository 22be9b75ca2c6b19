package node

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestConfigValidateNamesEveryKey(t *testing.T) {
	c := DefaultConfig()
	c.Listen = []string{"not-a-multiaddr"}
	c.Bootstrap = []string{"/ip4/1.2.3.4/tcp/1"}
	c.Conn.Low, c.Conn.High = 10, 5
	c.Metrics.Address = "nope"
	c.Log.Level = "loud"
	c.Snapshot.Keep = -1
	err := c.Validate()
	if err == nil {
		t.Fatal("invalid config accepted")
	}
	for _, key := range []string{"listen[0]", "bootstrap[0]", "connections.low_water", "metrics.address", "log.level", "snapshot.keep"} {
		if !strings.Contains(err.Error(), key) {
			t.Errorf("error does not name %s: %v", key, err)
		}
	}
	if err := DefaultConfig().Validate(); err != nil {
		t.Fatal(err)
	}
}

func TestInitWritesCommentedConfigAndKey(t *testing.T) {
	home := filepath.Join(t.TempDir(), "h")
	id, err := Init(home, InitOptions{Listen: []string{"/ip4/127.0.0.1/tcp/0"}, NoMDNS: true, Metrics: "off"})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(filepath.Join(home, ConfigFile))
	if !strings.Contains(string(b), "# ") || !strings.Contains(string(b), "mdns = false") {
		t.Fatalf("config:\n%s", b)
	}
	cfg, err := LoadConfig(home)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Listen[0] != "/ip4/127.0.0.1/tcp/0" || *cfg.Discovery.MDNS || cfg.Metrics.Address != "off" {
		t.Fatalf("round trip: %+v", cfg)
	}
	fi, err := os.Stat(filepath.Join(home, KeyFile))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file: %v %v", fi, err)
	}
	k, err := LoadKey(home)
	if err != nil || id.String() == "" || PeerID(id).String() != id.String() {
		t.Fatalf("key: %v", err)
	}
	_ = k
	if _, err := Init(home, InitOptions{}); err == nil {
		t.Fatal("init over an existing config without --force")
	}
	// A typo in the file is reported with its key.
	os.WriteFile(filepath.Join(home, ConfigFile), append(b, []byte("\n[log]\nlevl = 'x'\n")...), 0o600)
	if _, err := LoadConfig(home); err == nil {
		t.Fatal("unknown key accepted")
	}
}
