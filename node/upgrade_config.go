package node

import (
	"fmt"
	"runtime"
	"time"
)

// UpgradeConfig is the [upgrade] section of config.toml: this device's
// part in OTA upgrades (upgrade.go, metadata.go).
type UpgradeConfig struct {
	// Policy is the upgrade policy this device publishes in its
	// DeviceMetadata: manual (readiness after `aura-cli upgrade approve`)
	// or auto (default manual). `aura-cli device policy` changes it at run
	// time; an edit of this key wins again at the next start (metadata.go).
	Policy string `toml:"policy"`
	// TestProtocols, FOR TESTS ONLY, replaces the account protocol versions
	// this device advertises (AccountProtocols) so a test can run a device
	// that lacks one. Rendered only when set; leave it unset.
	TestProtocols []string `toml:"test_protocols"`
	// Check is the period of the upgrade loop: fetch, verify, readiness,
	// activation (default 2s).
	Check Duration `toml:"check"`
	// ActivationGrace is how long each fallback activator waits for the
	// one before it when the publisher is gone (default 30s).
	ActivationGrace Duration `toml:"activation_grace"`
	// Hook, when set, is a command ("/usr/local/bin/install-aura --now")
	// run with the verified artifact's path as its last argument before
	// this device declares readiness; a failing hook withholds readiness.
	Hook string `toml:"hook"`
	// HookTimeout bounds the hook (default 5m).
	HookTimeout Duration `toml:"hook_timeout"`
	// Platform overrides this device's platform (GOOS/GOARCH of the
	// binary): the artifact it fetches.
	Platform string `toml:"platform"`
}

func (u UpgradeConfig) withDefaults() UpgradeConfig {
	if u.Check == 0 {
		u.Check = Duration(2 * time.Second)
	}
	if u.ActivationGrace == 0 {
		u.ActivationGrace = Duration(30 * time.Second)
	}
	if u.HookTimeout == 0 {
		u.HookTimeout = Duration(5 * time.Minute)
	}
	if u.Platform == "" {
		u.Platform = runtime.GOOS + "/" + runtime.GOARCH
	}
	return u
}

// validate reports the section's problems under their keys.
func (u UpgradeConfig) validate(bad func(key, format string, args ...any)) {
	u = u.withDefaults()
	if u.Check < Duration(10*time.Millisecond) {
		bad("upgrade.check", "%s is below 10ms", time.Duration(u.Check))
	}
	if u.ActivationGrace < 0 {
		bad("upgrade.activation_grace", "%s is negative", time.Duration(u.ActivationGrace))
	}
	if u.HookTimeout < Duration(time.Second) {
		bad("upgrade.hook_timeout", "%s is below 1s", time.Duration(u.HookTimeout))
	}
}

// render is the section as config.toml writes it.
func (u UpgradeConfig) render() string {
	u = u.withDefaults()
	return fmt.Sprintf("# Period of the upgrade loop (fetch, verify, readiness, activation).\ncheck = %s\n"+
		"# How long each fallback activator waits when the publisher is gone.\nactivation_grace = %s\n"+
		"# Command run with a verified artifact's path as last argument before this\n# device declares readiness (\"\": none); a failure withholds readiness.\nhook = %s\nhook_timeout = %s\n"+
		"# This device's platform (GOOS/GOARCH): the artifact it fetches.\nplatform = %s\n",
		quote(time.Duration(u.Check).String()), quote(time.Duration(u.ActivationGrace).String()), quote(u.Hook),
		quote(time.Duration(u.HookTimeout).String()), quote(u.Platform))
}
