package test

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/premiscale/premiscale/workflows"
)

// TestServerBackupRestoreResumesEveryGroup backs up a running controller's
// state with `premiscale server backup` while a group holds two VMs on the
// test driver, stops the controller, restores the backup into a fresh state
// dir with `premiscale server restore`, and starts the controller on it:
// the group is back with the same two members (the same domains, none
// re-created or adopted as another installation's), and it acts again
// (scales to one). A restore over a state dir that holds anything is
// refused, naming the directory; an archive that is not a backup is
// refused and leaves the directory empty.
func TestServerBackupRestoreResumesEveryGroup(t *testing.T) {
	lv := requireLibvirt(t, testDriverURI)
	const group = "bk"
	port := freePort(t)
	cfg, logPath := writeE2EConfig(t, group, port)
	c := &controller{t: t, config: cfg, log: logPath}
	c.start()
	t.Cleanup(func() { c.kill(syscall.SIGKILL) })
	c.mustCLI("scale", group, "2", "--wait", "--timeout", "2m")
	before := c.status(group)
	checkExactly(t, lv, group, 2)

	backup := filepath.Join(t.TempDir(), "premiscale.tar")
	out := c.mustCLI("server", "backup", backup)
	if !strings.Contains(out, "workflow executions") {
		t.Errorf("backup said %q", out)
	}
	if fi, err := os.Stat(backup); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("backup file: %v %v, want 0600 (it holds the CA key and every history)", fi, err)
	}
	c.kill(syscall.SIGTERM)

	// The same config on a fresh state dir.
	body, err := os.ReadFile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	oldState := filepath.Join(filepath.Dir(cfg), "state")
	newState := filepath.Join(t.TempDir(), "restored")
	restored := filepath.Join(filepath.Dir(cfg), "restored.yaml")
	if err := os.WriteFile(restored, []byte(strings.Replace(string(body), "stateDir: "+oldState, "stateDir: "+newState, 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	r := &controller{t: t, config: restored, log: logPath}
	if _, errOut, err := r.cli("server", "restore", filepath.Join(t.TempDir(), "missing.tar")); err == nil || !strings.Contains(errOut, "FILE") {
		t.Errorf("restore of a missing file: %v %q", err, errOut)
	}
	notBackup := filepath.Join(t.TempDir(), "not.tar")
	if err := os.WriteFile(notBackup, []byte("not a tar"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, err := r.cli("server", "restore", notBackup); err == nil {
		t.Error("restore of a file that is no backup succeeded")
	}
	if entries, _ := os.ReadDir(newState); len(entries) != 0 {
		t.Errorf("a failed restore left %d files in the state dir", len(entries))
	}
	out = r.mustCLI("server", "restore", backup)
	if !strings.Contains(out, "restored") {
		t.Errorf("restore said %q", out)
	}
	if _, errOut, err := r.cli("server", "restore", backup); err == nil || !strings.Contains(errOut, newState) || !strings.Contains(errOut, "not empty") {
		t.Errorf("restore over a restored state dir: %v %q, want refused naming it", err, errOut)
	}

	r.start()
	t.Cleanup(func() { r.kill(syscall.SIGKILL) })
	after := r.waitSettled(group, 2, time.Minute)
	names := func(st workflows.GroupStatus) []string {
		var out []string
		for _, m := range st.Members {
			out = append(out, m.Name)
		}
		slices.Sort(out)
		return out
	}
	if !slices.Equal(names(after), names(before)) {
		t.Errorf("members after the restore %v, before %v", names(after), names(before))
	}
	checkExactly(t, lv, group, 2)
	r.mustCLI("scale", group, "1", "--wait", "--timeout", "2m")
	checkExactly(t, lv, group, 1)
	r.mustCLI("scale", group, "0", "--wait", "--timeout", "2m")
}
