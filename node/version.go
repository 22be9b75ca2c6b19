package node

import (
	"runtime"
	"runtime/debug"
	"strings"

	"aura/blobstore"
	"aura/gossip"
)

// Version is the node's software version.
const Version = "0.1.0"

// AccountProtocols are the versions of the account protocol (fact
// envelope, guards, maintenance rules) this binary can run: what a device
// advertises as DeviceMetadata.SupportedProtocols.
var AccountProtocols = []string{"aura/1"}

// BuildInfo describes this binary: `aura-node --version`, `aura-cli version`.
type BuildInfo struct {
	Version   string   `json:"version"`
	Commit    string   `json:"commit"`
	GoVersion string   `json:"go_version"`
	Protocols []string `json:"protocols"`      // account protocol versions
	Wire      []string `json:"wire_protocols"` // libp2p protocol ids spoken
}

// Build returns this binary's BuildInfo. The commit comes from the Go
// build's VCS stamp ("unknown" when built outside a checkout; "+dirty"
// when the tree had changes).
func Build() BuildInfo {
	b := BuildInfo{Version: Version, Commit: "unknown", GoVersion: runtime.Version(), Protocols: AccountProtocols,
		Wire: []string{string(gossip.SyncProtocol), "/aura/facts/1 (gossipsub topic)", string(JoinProtocol), string(DKGProtocol), string(ReshareProtocol),
			string(SnapshotProtocol), string(PeersProtocol), string(blobstore.ProtocolID)}}
	if bi, ok := debug.ReadBuildInfo(); ok {
		dirty := false
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				b.Commit = s.Value
			case "vcs.modified":
				dirty = s.Value == "true"
			}
		}
		if dirty && b.Commit != "unknown" {
			b.Commit += "+dirty"
		}
	}
	return b
}

// String is the human form, several lines.
func (b BuildInfo) String() string {
	var s strings.Builder
	s.WriteString("version    " + b.Version + "\n")
	s.WriteString("commit     " + b.Commit + "\n")
	s.WriteString("go         " + b.GoVersion + "\n")
	s.WriteString("protocols  " + strings.Join(b.Protocols, ", ") + "\n")
	s.WriteString("wire       " + strings.Join(b.Wire, ", ") + "\n")
	return s.String()
}
