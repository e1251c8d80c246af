package test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestSystemdUnitVerifiesAndIsHardened: deploy/systemd/premiscale.service,
// pointed at the binary under test, passes `systemd-analyze verify` without
// a single warning (an unknown or misspelt key is only a warning there), keeps
// the hardening it promises, and logs to the journal; its sysusers file
// puts the user in the libvirt group.
func TestSystemdUnitVerifiesAndIsHardened(t *testing.T) {
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		if os.Getenv("PSTEST_REQUIRE_ALL") == "1" {
			t.Fatal("systemd-analyze not installed (make test installs the systemd package)")
		}
		t.Skip("systemd-analyze not installed")
	}
	unit, err := os.ReadFile("../deploy/systemd/premiscale.service")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"NoNewPrivileges=yes", "ProtectSystem=strict", "ProtectHome=yes", "PrivateTmp=yes",
		"CapabilityBoundingSet=\n", "SupplementaryGroups=libvirt", "User=premiscale",
		"StateDirectory=premiscale", "StateDirectoryMode=0700", "UMask=0077", "--log-stdout",
		"Environment=PREMISCALE_CONTROLLER_STATEDIR=/var/lib/premiscale",
	} {
		if !strings.Contains(string(unit), want) {
			t.Errorf("unit lacks %q", want)
		}
	}
	const execStart = "ExecStart=/usr/local/bin/premiscale "
	if !strings.Contains(string(unit), execStart) {
		t.Fatalf("unit has no %q", execStart)
	}
	path := filepath.Join(t.TempDir(), "premiscale.service")
	if err := os.WriteFile(path, []byte(strings.Replace(string(unit), execStart, "ExecStart="+premiscaleBin+" ", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := runCmd(analyze, "verify", path)
	if err != nil || strings.TrimSpace(out) != "" {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
	if sysusers, err := exec.LookPath("systemd-sysusers"); err == nil {
		abs, _ := filepath.Abs("../deploy/systemd/premiscale.sysusers")
		out, err := runCmd(sysusers, "--dry-run", abs)
		if err != nil || !strings.Contains(out, "Creating user 'premiscale'") {
			t.Errorf("systemd-sysusers --dry-run: %v\n%s", err, out)
		}
	}
	b, err := os.ReadFile("../deploy/systemd/premiscale.sysusers")
	if err != nil || !strings.Contains(string(b), "m premiscale libvirt") {
		t.Errorf("sysusers file does not put premiscale in the libvirt group: %v\n%s", err, b)
	}
}

func runCmd(name string, args ...string) (string, error) {
	out, err := exec.Command(name, args...).CombinedOutput()
	return string(out), err
}
