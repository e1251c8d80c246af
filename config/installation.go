package config

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// InstallationFile holds the generated installation identity under
// controller.stateDir, beside the history it names.
const InstallationFile = "installation"

// ResolveInstallation fills in controller.installation when it is not set
// and the embedded server keeps the history. The identity is generated
// once (by the controller) and kept in the state dir beside the history: a
// fresh state dir is a new installation, and the VMs of the old one are
// never touched (reported, never reused, destroyed or deleted as orphans).
// With a Temporal cluster it leaves the identity unset: the identity is
// kept in the cluster, where every worker finds it
// (starter.ResolveInstallation).
func (c *Config) ResolveInstallation(controller bool) error {
	ctl := &c.Controller
	if ctl.Installation != "" || !c.UsesEmbedded() {
		return nil
	}
	path := filepath.Join(ctl.StateDir, InstallationFile)
	b, err := os.ReadFile(path)
	switch {
	case err == nil:
		id := strings.TrimSpace(string(b))
		if !installationRE.MatchString(id) {
			return fmt.Errorf("controller.installation: %s holds %q, not an identity; remove it to generate a new one, or set controller.installation", path, id)
		}
		ctl.Installation = id
		return nil
	case !errors.Is(err, os.ErrNotExist):
		return fmt.Errorf("controller.installation: %w", err)
	case !controller:
		return fmt.Errorf("controller.installation: not set and %s does not exist; start the controller first, or set it", path)
	}
	if ctl.Installation, err = NewInstallation(); err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return fmt.Errorf("controller.installation: %w", err)
	}
	if _, err := f.WriteString(ctl.Installation + "\n"); err != nil {
		_ = f.Close()
		return fmt.Errorf("controller.installation: %w", err)
	}
	return f.Close()
}

// LegacyInstallation is the identity a Temporal cluster's installation
// had before identities were kept in the cluster:
// "<namespace>.<taskQueue>", the same for every installation left on the
// defaults.
func (c *Config) LegacyInstallation() string {
	return installationName(c.Controller.Temporal.Namespace + "." + c.Controller.Temporal.TaskQueue)
}

// IsInstallation reports whether s is a valid installation identity.
func IsInstallation(s string) bool { return installationRE.MatchString(s) }

// NewInstallation generates a fresh installation identity: "ps-" and 12
// random hex digits.
func NewInstallation() (string, error) {
	var id [6]byte
	if _, err := rand.Read(id[:]); err != nil {
		return "", fmt.Errorf("controller.installation: %w", err)
	}
	return "ps-" + hex.EncodeToString(id[:]), nil
}

// installationName makes s an installation identity: lower case, with
// anything but letters, digits, '-' and '.' replaced by '-', at most 63.
func installationName(s string) string {
	b := []byte(strings.ToLower(s))
	for i, c := range b {
		if (c < 'a' || c > 'z') && (c < '0' || c > '9') && c != '-' && c != '.' {
			b[i] = '-'
		}
	}
	out := strings.Trim(string(b), "-.")
	if len(out) > 63 {
		out = strings.Trim(out[:63], "-.")
	}
	return out
}
