package node

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/multiformats/go-multiaddr"

	"aura/crdt"
)

const keyPEMType = "AURA DEVICE KEY"

// ErrKeyPermissions: the device key file is readable or writable by others.
var ErrKeyPermissions = errors.New("unprotected device key")

// InitOptions are the choices of `aura-node init`.
type InitOptions struct {
	Listen []string // empty: the defaults
	NoMDNS bool
	// NoPortMap turns NAT port mapping off.
	NoPortMap bool
	// Metrics, when set, is the metrics address ("off" turns metrics off).
	Metrics string
	// Config, when not nil, is written instead of DefaultConfig (Listen and
	// NoMDNS still apply).
	Config *Config
	Force  bool // overwrite an existing config (never an existing key)
	// Notice, when set, is told about choices init made for the user
	// (ports moved because the defaults were taken).
	Notice func(string)
}

// Init creates home with a commented config and a device key (0600), and
// returns the device id. An existing key is kept.
func Init(home string, o InitOptions) (crdt.DeviceID, error) {
	if err := os.MkdirAll(home, 0o700); err != nil {
		return crdt.DeviceID{}, fmt.Errorf("create home %s: %w", home, err)
	}
	cfg := DefaultConfig()
	if o.Config != nil {
		cfg = o.Config.WithDefaults()
	}
	if len(o.Listen) > 0 {
		cfg.Listen = o.Listen
	}
	if o.NoMDNS {
		cfg.Discovery.MDNS = boolp(false)
	}
	if o.NoPortMap {
		cfg.NAT.PortMap = boolp(false)
	}
	if o.Metrics != "" {
		cfg.Metrics.Address = o.Metrics
	}
	if err := cfg.Validate(); err != nil {
		return crdt.DeviceID{}, err
	}
	// Several nodes per machine: ports left at their defaults move to free
	// ones when another process holds them.
	notice := o.Notice
	if notice == nil {
		notice = func(string) {}
	}
	if len(o.Listen) == 0 && (o.Config == nil || o.Config.Listen == nil) {
		if p := freePort("0.0.0.0", DefaultPort, true); p != DefaultPort && p != 0 {
			cfg.Listen = defaultListen(p)
			notice(fmt.Sprintf("port %d (TCP or UDP) is in use, probably by another aura-node: listening on %d instead (listen in %s)", DefaultPort, p, filepath.Join(home, ConfigFile)))
		}
	}
	if o.Metrics == "" && (o.Config == nil || o.Config.Metrics.Address == "") {
		if p := freePort("127.0.0.1", DefaultMetricsPort, false); p != DefaultMetricsPort && p != 0 {
			cfg.Metrics.Address = fmt.Sprintf("127.0.0.1:%d", p)
			notice(fmt.Sprintf("metrics port %d is in use: serving metrics on 127.0.0.1:%d instead ([metrics] address in %s)", DefaultMetricsPort, p, filepath.Join(home, ConfigFile)))
		}
	}
	cpath := filepath.Join(home, ConfigFile)
	if _, err := os.Stat(cpath); err == nil && !o.Force {
		return crdt.DeviceID{}, fmt.Errorf("%s already exists: edit it, or pass --force to overwrite it", cpath)
	}
	key, err := loadOrCreateKey(home)
	if err != nil {
		return crdt.DeviceID{}, err
	}
	if err := writeFileAtomic(cpath, cfg.Render(), 0o600); err != nil {
		return crdt.DeviceID{}, err
	}
	return crdt.DeviceIDFromKey(key.Public().(ed25519.PublicKey)), nil
}

// LoadKey reads the device key of home.
func LoadKey(home string) (ed25519.PrivateKey, error) {
	path := filepath.Join(home, KeyFile)
	fi, err := os.Stat(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("no device key at %s: run `aura-node init --home %s` first", path, home)
	}
	if err != nil {
		return nil, fmt.Errorf("device key: %w", err)
	}
	// As ssh does with private keys: a key others may read is refused.
	if m := fi.Mode().Perm(); m&0o077 != 0 {
		return nil, errorf(ErrKeyPermissions, "device key %s is accessible by others (mode %04o): run `chmod 600 %s`", path, m, path)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("device key: %w", err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != keyPEMType || len(blk.Bytes) != ed25519.SeedSize {
		return nil, fmt.Errorf("%s is not an aura device key", path)
	}
	return ed25519.NewKeyFromSeed(blk.Bytes), nil
}

func loadOrCreateKey(home string) (ed25519.PrivateKey, error) {
	if k, err := LoadKey(home); err == nil {
		return k, nil
	} else if _, serr := os.Stat(filepath.Join(home, KeyFile)); serr == nil {
		return nil, err
	}
	_, k, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	b := pem.EncodeToMemory(&pem.Block{Type: keyPEMType, Bytes: k.Seed()})
	if err := writeFileAtomic(filepath.Join(home, KeyFile), b, 0o600); err != nil {
		return nil, err
	}
	return k, nil
}

func writeFileAtomic(path string, data []byte, mode os.FileMode) error {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, mode)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Chmod(tmp, mode); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// libp2pKey converts the device key to libp2p's type.
func libp2pKey(k ed25519.PrivateKey) (crypto.PrivKey, error) {
	return crypto.UnmarshalEd25519PrivateKey(k)
}

// PeerID is the libp2p peer id of a device.
func PeerID(d crdt.DeviceID) peer.ID { return peer.ID(d.PeerIDBytes()) }

// DeviceOf converts a peer id to a device id (false for non-ed25519 peers).
func DeviceOf(p peer.ID) (crdt.DeviceID, bool) {
	d, err := crdt.DeviceIDFromPeerIDBytes([]byte(p))
	return d, err == nil
}

func parseAddrInfo(s string) (*peer.AddrInfo, error) {
	ma, err := multiaddr.NewMultiaddr(s)
	if err != nil {
		return nil, fmt.Errorf("%q is not a multiaddr: %v", s, err)
	}
	ai, err := peer.AddrInfoFromP2pAddr(ma)
	if err != nil {
		return nil, fmt.Errorf("%q must end in /p2p/<peer id>: %v", s, err)
	}
	return ai, nil
}
