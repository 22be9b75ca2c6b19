package node

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/multiformats/go-multiaddr"
	toml "github.com/pelletier/go-toml/v2"

	"aura/crdt"
)

// ConfigFile and KeyFile are the names of the node's files in its home.
const (
	ConfigFile = "config.toml"
	KeyFile    = "device.key"
	SocketFile = "aura.sock"
	DataDir    = "data"
	ShareFile  = "threshold.share"
	SealFile   = "share.seal"
)

// Duration is a time.Duration written as text ("15m", "500ms") in TOML.
type Duration time.Duration

// MarshalText renders d as Go duration text.
func (d Duration) MarshalText() ([]byte, error) { return []byte(time.Duration(d).String()), nil }

// UnmarshalText parses Go duration text.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}

// Config mirrors config.toml. Zero values mean the default (see
// DefaultConfig); Validate names every problem by its TOML key.
type Config struct {
	// Name is this device's human name in the account (default: hostname).
	Name string `toml:"name"`
	// Listen are the multiaddrs the libp2p host listens on.
	Listen []string `toml:"listen"`
	// Bootstrap are multiaddrs with /p2p/ of peers to dial at start.
	Bootstrap []string `toml:"bootstrap"`

	Discovery DiscoveryConfig `toml:"discovery"`
	NAT       NATConfig       `toml:"nat"`
	Relay     RelayConfig     `toml:"relay"`
	Conn      ConnConfig      `toml:"connections"`
	Metrics   MetricsConfig   `toml:"metrics"`
	Log       LogConfig       `toml:"log"`
	Sync      SyncConfig      `toml:"sync"`
	Snapshot  SnapshotConfig  `toml:"snapshot"`
	Invite    InviteConfig    `toml:"invite"`
	Storage   StorageConfig   `toml:"storage"`
	Upgrade   UpgradeConfig   `toml:"upgrade"`
	Admin     AdminConfig     `toml:"admin"` // admin replacement (admin.go)
}

// StorageConfig is the free-space guard (see space.go).
type StorageConfig struct {
	// MinFreeMB: below this much free space writes are refused (0: never).
	MinFreeMB int64 `toml:"min_free_mb"`
	// BallastMB is the reserve file released when the alarm goes up.
	BallastMB int64 `toml:"ballast_mb"`
}

// DiscoveryConfig turns LAN discovery on or off.
type DiscoveryConfig struct {
	MDNS *bool `toml:"mdns"`
}

// NATConfig configures NAT traversal.
type NATConfig struct {
	PortMap      *bool `toml:"port_map"`
	HolePunching *bool `toml:"hole_punching"`
	AutoNAT      *bool `toml:"autonat"`
	// Reachability is auto (AutoNAT decides), public (this device is
	// reachable from the internet: a relay) or private (behind NAT: reserve
	// a relay slot at once instead of after AutoNAT's probes).
	Reachability string `toml:"reachability"`
}

// RelayConfig configures circuit relays.
type RelayConfig struct {
	// Static are multiaddrs (with /p2p/) of relays to use when this node is
	// not reachable directly.
	Static []string `toml:"static"`
	// Service makes this node a relay for the devices of the account.
	Service bool `toml:"service"`
	// CircuitDuration and CircuitDataMB limit one relayed connection
	// through this device's relay (libp2p's defaults, 2 minutes and 128 KiB,
	// carry no real traffic).
	CircuitDuration Duration `toml:"circuit_duration"`
	CircuitDataMB   int64    `toml:"circuit_data_mb"`
}

// ConnConfig bounds connections.
type ConnConfig struct {
	Low  int `toml:"low_water"`
	High int `toml:"high_water"`
	// MaxMemoryMB is the resource manager's memory limit.
	MaxMemoryMB int `toml:"max_memory_mb"`
	// MaxFDs is the resource manager's file descriptor limit.
	MaxFDs int `toml:"max_fds"`
}

// MetricsConfig is where Prometheus metrics are served ("" turns them off).
type MetricsConfig struct {
	Address string `toml:"address"`
}

// LogConfig configures structured logs.
type LogConfig struct {
	Level  string `toml:"level"`  // debug, info, warn, error
	Format string `toml:"format"` // text or json
}

// SyncConfig tunes gossip and anti-entropy.
type SyncConfig struct {
	Interval  Duration `toml:"interval"`
	Reconnect Duration `toml:"reconnect"`
}

// SnapshotConfig tunes the maintenance driver.
type SnapshotConfig struct {
	Tick Duration `toml:"tick"`
	// Timeout is how long a snapshot round may take.
	Timeout Duration `toml:"timeout"`
	// WatermarkMB is the journal size that triggers a proposal (negative: never).
	WatermarkMB int64 `toml:"watermark_mb"`
	Keep        int   `toml:"keep"`
}

// InviteConfig tunes invites.
type InviteConfig struct {
	TTL Duration `toml:"ttl"`
}

func boolp(b bool) *bool { return &b }

// DefaultPort is the default listen port (TCP and QUIC); DefaultMetricsPort
// the default metrics port on 127.0.0.1. `aura-node init` picks the next
// free ones when these are taken.
const (
	DefaultPort        = 4401
	DefaultMetricsPort = 9401
)

func defaultListen(port int) []string {
	return []string{fmt.Sprintf("/ip4/0.0.0.0/tcp/%d", port), fmt.Sprintf("/ip4/0.0.0.0/udp/%d/quic-v1", port)}
}

// DefaultConfig returns the configuration with every default filled in.
func DefaultConfig() Config {
	host, _ := os.Hostname()
	return Config{
		Name:      host,
		Listen:    defaultListen(DefaultPort),
		Discovery: DiscoveryConfig{MDNS: boolp(true)},
		NAT:       NATConfig{PortMap: boolp(true), HolePunching: boolp(true), AutoNAT: boolp(true), Reachability: ReachAuto},
		Relay:     RelayConfig{CircuitDuration: Duration(defaultCircuitDuration), CircuitDataMB: defaultCircuitDataMB},
		Conn:      ConnConfig{Low: 32, High: 128, MaxMemoryMB: 256, MaxFDs: 512},
		Metrics:   MetricsConfig{Address: fmt.Sprintf("127.0.0.1:%d", DefaultMetricsPort)},
		Log:       LogConfig{Level: "info", Format: "text"},
		Sync:      SyncConfig{Interval: Duration(30 * time.Second), Reconnect: Duration(10 * time.Second)},
		Snapshot:  SnapshotConfig{Tick: Duration(500 * time.Millisecond), Timeout: Duration(60 * time.Second), WatermarkMB: 100, Keep: 2},
		Invite:    InviteConfig{TTL: Duration(15 * time.Minute)},
		Storage:   StorageConfig{MinFreeMB: 64, BallastMB: 16},
		Upgrade:   UpgradeConfig{Policy: crdt.PolicyManual},
	}
}

// WithDefaults fills zero values from DefaultConfig.
func (c Config) WithDefaults() Config {
	d := DefaultConfig()
	if c.Name == "" {
		c.Name = d.Name
	}
	if c.Listen == nil {
		c.Listen = d.Listen
	}
	if c.Upgrade.Policy == "" {
		c.Upgrade.Policy = d.Upgrade.Policy
	}
	if c.Discovery.MDNS == nil {
		c.Discovery.MDNS = d.Discovery.MDNS
	}
	if c.NAT.PortMap == nil {
		c.NAT.PortMap = d.NAT.PortMap
	}
	if c.NAT.HolePunching == nil {
		c.NAT.HolePunching = d.NAT.HolePunching
	}
	if c.NAT.AutoNAT == nil {
		c.NAT.AutoNAT = d.NAT.AutoNAT
	}
	if c.NAT.Reachability == "" {
		c.NAT.Reachability = d.NAT.Reachability
	}
	if c.Relay.CircuitDuration == 0 {
		c.Relay.CircuitDuration = d.Relay.CircuitDuration
	}
	if c.Relay.CircuitDataMB == 0 {
		c.Relay.CircuitDataMB = d.Relay.CircuitDataMB
	}
	if c.Conn.Low == 0 {
		c.Conn.Low = d.Conn.Low
	}
	if c.Conn.High == 0 {
		c.Conn.High = d.Conn.High
	}
	if c.Conn.MaxMemoryMB == 0 {
		c.Conn.MaxMemoryMB = d.Conn.MaxMemoryMB
	}
	if c.Conn.MaxFDs == 0 {
		c.Conn.MaxFDs = d.Conn.MaxFDs
	}
	if c.Log.Level == "" {
		c.Log.Level = d.Log.Level
	}
	if c.Log.Format == "" {
		c.Log.Format = d.Log.Format
	}
	if c.Sync.Interval == 0 {
		c.Sync.Interval = d.Sync.Interval
	}
	if c.Sync.Reconnect == 0 {
		c.Sync.Reconnect = d.Sync.Reconnect
	}
	if c.Snapshot.Tick == 0 {
		c.Snapshot.Tick = d.Snapshot.Tick
	}
	if c.Snapshot.Timeout == 0 {
		c.Snapshot.Timeout = d.Snapshot.Timeout
	}
	if c.Snapshot.WatermarkMB == 0 {
		c.Snapshot.WatermarkMB = d.Snapshot.WatermarkMB
	}
	if c.Snapshot.Keep == 0 {
		c.Snapshot.Keep = d.Snapshot.Keep
	}
	if c.Invite.TTL == 0 {
		c.Invite.TTL = d.Invite.TTL
	}
	if c.Storage.MinFreeMB == 0 {
		c.Storage.MinFreeMB = d.Storage.MinFreeMB
	}
	if c.Storage.BallastMB == 0 {
		c.Storage.BallastMB = d.Storage.BallastMB
	}
	return c
}

// Validate returns every problem of c (after defaults), each naming its
// TOML key; nil when c is usable.
func (c Config) Validate() error {
	c = c.WithDefaults()
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", key, fmt.Sprintf(format, args...)))
	}
	if len(c.Listen) == 0 {
		bad("listen", "at least one multiaddr is needed")
	}
	for i, a := range c.Listen {
		if _, err := multiaddr.NewMultiaddr(a); err != nil {
			bad(fmt.Sprintf("listen[%d]", i), "%q is not a multiaddr: %v", a, err)
		}
	}
	for i, a := range c.Bootstrap {
		if _, err := parseAddrInfo(a); err != nil {
			bad(fmt.Sprintf("bootstrap[%d]", i), "%v", err)
		}
	}
	for i, a := range c.Relay.Static {
		if _, err := parseAddrInfo(a); err != nil {
			bad(fmt.Sprintf("relay.static[%d]", i), "%v", err)
		}
	}
	switch c.NAT.Reachability {
	case ReachAuto, ReachPublic, ReachPrivate:
	default:
		bad("nat.reachability", "%q is not auto, public or private", c.NAT.Reachability)
	}
	if c.Relay.CircuitDuration < Duration(time.Minute) {
		bad("relay.circuit_duration", "%s is below 1m", time.Duration(c.Relay.CircuitDuration))
	}
	if c.Relay.CircuitDataMB < 1 {
		bad("relay.circuit_data_mb", "%d must be at least 1", c.Relay.CircuitDataMB)
	}
	if c.Conn.Low < 0 || c.Conn.High < 0 || c.Conn.Low > c.Conn.High {
		bad("connections.low_water", "%d must be ≥ 0 and ≤ connections.high_water (%d)", c.Conn.Low, c.Conn.High)
	}
	if c.Conn.MaxMemoryMB < 16 {
		bad("connections.max_memory_mb", "%d is below the minimum of 16", c.Conn.MaxMemoryMB)
	}
	if c.Conn.MaxFDs < 16 {
		bad("connections.max_fds", "%d is below the minimum of 16", c.Conn.MaxFDs)
	}
	if a := c.Metrics.Address; a != "" && a != "off" {
		if _, port, err := net.SplitHostPort(a); err != nil {
			bad("metrics.address", "%q is not host:port (or \"off\"): %v", a, err)
		} else if p, err := strconv.Atoi(port); err != nil || p < 0 || p > 65535 {
			bad("metrics.address", "%q: port %s is not a number from 0 to 65535", a, port)
		}
	}
	switch strings.ToLower(c.Log.Level) {
	case "debug", "info", "warn", "error":
	default:
		bad("log.level", "%q is not one of debug, info, warn, error", c.Log.Level)
	}
	switch c.Log.Format {
	case "text", "json":
	default:
		bad("log.format", "%q is not text or json", c.Log.Format)
	}
	if c.Sync.Interval < 0 {
		bad("sync.interval", "must not be negative")
	}
	if c.Sync.Reconnect < 0 {
		bad("sync.reconnect", "must not be negative")
	}
	if c.Snapshot.Tick < Duration(10*time.Millisecond) {
		bad("snapshot.tick", "%s is below 10ms", time.Duration(c.Snapshot.Tick))
	}
	if c.Snapshot.Timeout < Duration(time.Second) {
		bad("snapshot.timeout", "%s is below 1s", time.Duration(c.Snapshot.Timeout))
	}
	if c.Snapshot.Keep < 1 {
		bad("snapshot.keep", "%d must be at least 1", c.Snapshot.Keep)
	}
	if c.Storage.MinFreeMB < 0 && c.Storage.MinFreeMB != -1 {
		bad("storage.min_free_mb", "%d must be positive, or -1 to turn the guard off", c.Storage.MinFreeMB)
	}
	if c.Storage.BallastMB < 0 && c.Storage.BallastMB != -1 {
		bad("storage.ballast_mb", "%d must be positive, or -1 for no ballast", c.Storage.BallastMB)
	}
	switch c.Upgrade.Policy {
	case crdt.PolicyManual, crdt.PolicyAuto:
	default:
		bad("upgrade.policy", "%q is not manual or auto", c.Upgrade.Policy)
	}
	c.Upgrade.validate(bad)
	if c.Invite.TTL < Duration(time.Second) {
		bad("invite.ttl", "%s is below 1s", time.Duration(c.Invite.TTL))
	}
	return errors.Join(errs...)
}

// LoadConfig reads and validates HOME/config.toml.
func LoadConfig(home string) (Config, error) {
	path := filepath.Join(home, ConfigFile)
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return Config{}, fmt.Errorf("no config at %s: run `aura-node init --home %s` first", path, home)
	}
	if err != nil {
		return Config{}, err
	}
	var c Config
	dec := toml.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		return Config{}, tomlError(path, err)
	}
	if err := c.Validate(); err != nil {
		return Config{}, fmt.Errorf("%s: %w", path, err)
	}
	return c.WithDefaults(), nil
}

// tomlError names the file, line and key of a TOML decoding error.
func tomlError(path string, err error) error {
	var sm *toml.StrictMissingError
	if errors.As(err, &sm) && len(sm.Errors) > 0 {
		var parts []string
		for _, e := range sm.Errors {
			row, _ := e.Position()
			parts = append(parts, fmt.Sprintf("%s:%d: unknown key %s", path, row, strings.Join(e.Key(), ".")))
		}
		return fmt.Errorf("%s (see the commented keys `aura-node init` writes)", strings.Join(parts, "; "))
	}
	var de *toml.DecodeError
	if errors.As(err, &de) {
		row, col := de.Position()
		where := ""
		if k := de.Key(); len(k) > 0 {
			where = " (key " + strings.Join(k, ".") + ")"
		}
		return fmt.Errorf("%s:%d:%d: %s%s", path, row, col, de.Error(), where)
	}
	return fmt.Errorf("%s: %w", path, err)
}

// quote renders a TOML string.
func quote(s string) string {
	b, _ := toml.Marshal(map[string]string{"v": s})
	return strings.TrimSpace(strings.TrimPrefix(string(b), "v = "))
}

func quoteList(xs []string) string {
	q := make([]string, len(xs))
	for i, x := range xs {
		q[i] = quote(x)
	}
	return "[" + strings.Join(q, ", ") + "]"
}

// Render writes c as a commented config.toml.
func (c Config) Render() []byte {
	c = c.WithDefaults()
	var b strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	p("# aura-node configuration (TOML). Zero or missing values mean the default.\n\n")
	p("# This device's human name in the account.\nname = %s\n\n", quote(c.Name))
	p("# Multiaddrs the libp2p host listens on (TCP and QUIC).\nlisten = %s\n\n", quoteList(c.Listen))
	p("# Peers to dial at start: multiaddrs ending in /p2p/<peer id>.\nbootstrap = %s\n\n", quoteList(c.Bootstrap))
	p("[discovery]\n# Find the account's devices on the LAN with mDNS.\nmdns = %t\n\n", *c.Discovery.MDNS)
	p("[nat]\n# Ask the router for a port mapping (UPnP / NAT-PMP).\nport_map = %t\n", *c.NAT.PortMap)
	p("# Direct connections through NATs (DCUtR).\nhole_punching = %t\n", *c.NAT.HolePunching)
	p("# Answer reachability probes of peers (AutoNAT service).\nautonat = %t\n", *c.NAT.AutoNAT)
	p("# auto: AutoNAT finds out whether this device is reachable from the internet;\n# public: it is (the device that runs the relay); private: it is behind NAT\n# (with relay.static, reserve a relay slot at once instead of after AutoNAT's\n# probes).\nreachability = %s\n\n", quote(c.NAT.Reachability))
	p("[relay]\n# Relays of the account to reserve a slot on, so that devices behind NAT reach\n# this one (then hole punching makes the connection direct, or, behind a\n# symmetric NAT, it stays relayed): multiaddrs ending in /p2p/<relay's peer id>.\n# List the relay's TCP and QUIC addresses; entries of one relay count once.\nstatic = %s\n", quoteList(c.Relay.Static))
	p("# Relay for the devices of the account (only for them): turn on on a device\n# reachable from the internet, with nat.reachability = \"public\".\nservice = %t\n", c.Relay.Service)
	p("# Limits of one relayed connection through this device's relay: after this\n# long, or this many MB in one direction, the circuit is reset and redialed.\ncircuit_duration = %s\ncircuit_data_mb = %d\n\n", quote(time.Duration(c.Relay.CircuitDuration).String()), c.Relay.CircuitDataMB)
	p("[connections]\n# Connection manager watermarks.\nlow_water = %d\nhigh_water = %d\n", c.Conn.Low, c.Conn.High)
	p("# Resource manager limits.\nmax_memory_mb = %d\nmax_fds = %d\n\n", c.Conn.MaxMemoryMB, c.Conn.MaxFDs)
	p("[metrics]\n# Prometheus metrics at http://ADDRESS/metrics; \"\" or \"off\" turns them off.\naddress = %s\n\n", quote(c.Metrics.Address))
	p("[log]\n# debug, info, warn or error.\nlevel = %s\n# text or json.\nformat = %s\n\n", quote(c.Log.Level), quote(c.Log.Format))
	p("[sync]\n# Mean period of anti-entropy with a random peer.\ninterval = %s\n", quote(time.Duration(c.Sync.Interval).String()))
	p("# How often to redial devices of the account that are not connected.\nreconnect = %s\n\n", quote(time.Duration(c.Sync.Reconnect).String()))
	p("[snapshot]\n# Period of the maintenance timer.\ntick = %s\n", quote(time.Duration(c.Snapshot.Tick).String()))
	p("# How long a snapshot round may take before it is abandoned.\ntimeout = %s\n", quote(time.Duration(c.Snapshot.Timeout).String()))
	p("# Journal size (MB) past which this device proposes a snapshot; negative: never.\nwatermark_mb = %d\n", c.Snapshot.WatermarkMB)
	p("# Snapshot blobs kept pinned.\nkeep = %d\n\n", c.Snapshot.Keep)
	p("[invite]\n# How long an invite code stays valid.\nttl = %s\n\n", quote(time.Duration(c.Invite.TTL).String()))
	p("[storage]\n# Below this much free space (MB) under HOME/data, writes are refused until\n# space is freed (reads, sync and snapshots go on); -1 turns the guard off.\nmin_free_mb = %d\n", c.Storage.MinFreeMB)
	p("# Reserve file (MB) released when the guard trips, so snapshots and GC\n# can run; -1 for none.\nballast_mb = %d\n", c.Storage.BallastMB)
	p("\n[admin]\n# Approve an admin replacement by itself once the admin has been unreachable\n# this long (\"0s\": never; the operator approves with `aura-cli admin replace\n# --new DEVICE --approve`).\nauto_approve_after = %s\n# How long a replacement request stays open (\"0s\": the snapshot timeout).\ntimeout = %s\n", quote(time.Duration(c.Admin.AutoApproveAfter).String()), quote(time.Duration(c.Admin.Timeout).String()))
	p("\n[upgrade]\n# Upgrade policy published in this device's metadata: manual (readiness after\n# `aura-cli upgrade approve`) or auto. `aura-cli device policy` changes it.\npolicy = %s\n", quote(c.Upgrade.Policy))
	if len(c.Upgrade.TestProtocols) > 0 {
		p("# FOR TESTS ONLY: the protocol versions advertised instead of this binary's.\ntest_protocols = %s\n", quoteList(c.Upgrade.TestProtocols))
	}
	b.WriteString(c.Upgrade.render())
	return []byte(b.String())
}

// DefaultHome is $AURA_HOME, else ~/.aura.
func DefaultHome() string {
	if h := os.Getenv("AURA_HOME"); h != "" {
		return h
	}
	if u, err := os.UserHomeDir(); err == nil {
		return filepath.Join(u, ".aura")
	}
	return ".aura"
}
