package node

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/multiformats/go-multiaddr"
	manet "github.com/multiformats/go-multiaddr/net"
)

// Startup checks: what New verifies before it starts anything, so that a
// node that cannot run says why in one line and leaves nothing behind.

// LockFile is the home's lock: held (flock) by the running node, it names
// the node's pid.
const LockFile = "aura.lock"

// ErrRunning: another aura-node holds the home.
var ErrRunning = errors.New("another aura-node is running")

// ErrAddrInUse: a configured address is held by another process.
var ErrAddrInUse = errors.New("address in use")

// homeLock is the flock on HOME/aura.lock held while the node runs.
type homeLock struct{ f *os.File }

// lockHome takes the home's lock, or says which process holds it.
func lockHome(home string) (*homeLock, error) {
	path := filepath.Join(home, LockFile)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open lock %s: %w", path, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		b := make([]byte, 32)
		k, _ := f.ReadAt(b, 0)
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			pid := strings.TrimSpace(string(b[:k]))
			if pid == "" {
				pid = "unknown"
			}
			return nil, errorf(ErrRunning, "another aura-node is running on %s (pid %s): stop it first, or use another --home", home, pid)
		}
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	_ = f.Truncate(0)
	_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	return &homeLock{f: f}, nil
}

// release drops the lock (the file stays; its pid is stale but unlocked).
func (l *homeLock) release() {
	if l == nil || l.f == nil {
		return
	}
	_ = l.f.Truncate(0)
	_ = syscall.Flock(int(l.f.Fd()), syscall.LOCK_UN)
	_ = l.f.Close()
	l.f = nil
}

// checkListenFree refuses listen addresses another process holds. go-libp2p
// binds TCP with SO_REUSEPORT, so without this check two nodes would share
// one port silently and dials would land on either. A plain bind (no
// SO_REUSEPORT) fails whenever any socket holds the port.
func checkListenFree(home string, listen []string) error {
	for _, s := range listen {
		network, addr, ok := bindable(s)
		if !ok {
			continue
		}
		if err := probeBind(network, addr); err != nil {
			if errors.Is(err, syscall.EADDRINUSE) {
				return errorf(ErrAddrInUse, "listen address %s is in use by another process: set listen in %s to a free port, or run `aura-node init --force --home %s` to pick free ones",
					s, filepath.Join(home, ConfigFile), home)
			}
			return fmt.Errorf("listen address %s: %w", s, err)
		}
	}
	return nil
}

// bindable returns the socket a listen multiaddr binds ("tcp" or "udp",
// host:port), false for port 0 and addresses it cannot tell.
func bindable(s string) (network, addr string, ok bool) {
	ma, err := multiaddr.NewMultiaddr(s)
	if err != nil {
		return "", "", false
	}
	// Cut the multiaddr after its transport (tcp or udp) part.
	var head multiaddr.Multiaddr
	for _, c := range ma {
		head = append(head, c)
		if c.Protocol().Code == multiaddr.P_TCP || c.Protocol().Code == multiaddr.P_UDP {
			break
		}
	}
	na, err := manet.ToNetAddr(head)
	if err != nil {
		return "", "", false
	}
	switch a := na.(type) {
	case *net.TCPAddr:
		if a.Port == 0 {
			return "", "", false
		}
		return "tcp", a.String(), true
	case *net.UDPAddr:
		if a.Port == 0 {
			return "", "", false
		}
		return "udp", a.String(), true
	}
	return "", "", false
}

func probeBind(network, addr string) error {
	switch network {
	case "tcp":
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return err
		}
		return ln.Close()
	default:
		pc, err := net.ListenPacket("udp", addr)
		if err != nil {
			return err
		}
		return pc.Close()
	}
}

// listenMetrics binds the metrics address, or says what to change.
func listenMetrics(home, addr string) (net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		if errors.Is(err, syscall.EADDRINUSE) {
			return nil, errorf(ErrAddrInUse, "metrics address %s is in use: set [metrics] address in %s to a free host:port, or 'off'",
				addr, filepath.Join(home, ConfigFile))
		}
		return nil, fmt.Errorf("metrics address %s: %w: set [metrics] address in %s", addr, err, filepath.Join(home, ConfigFile))
	}
	return ln, nil
}

// portFree reports whether host:port is free for TCP, and for UDP when
// udp is set.
func portFree(host string, port int, udp bool) bool {
	addr := net.JoinHostPort(host, strconv.Itoa(port))
	if probeBind("tcp", addr) != nil {
		return false
	}
	return !udp || probeBind("udp", addr) == nil
}

// freePort returns the first port from start on (up to 200 further) that
// is free on host (TCP, and UDP when udp), or 0.
func freePort(host string, start int, udp bool) int {
	for p := start; p < start+200 && p <= 65535; p++ {
		if portFree(host, p, udp) {
			return p
		}
	}
	return 0
}
