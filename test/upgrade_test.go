package test

import (
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/premiscale/premiscale/workflows"
)

// upgradeFixture is the .json beside a database that
// test/upgrade/make-fixture.sh wrote with the previous Temporal server.
type upgradeFixture struct {
	Server       string    `json:"server"`
	Written      time.Time `json:"written"`
	Installation string    `json:"installation"`
	Groups       map[string]struct {
		Desired       int `json:"desired"`
		ConfigDesired int `json:"configDesired"`
	} `json:"groups"`
}

// TestADatabaseOfThePreviousServerOpensAndItsGroupsResume: a state dir
// whose database the Temporal server before the embedded one wrote (with
// its older SQLite schema, its group workflows mid-run) is opened by the
// real binary on its defaults: the file is copied aside and migrated, the
// very runs that were there carry on and reach their desired sizes, a new
// scale goes through, every history replays, and a restart migrates
// nothing more.
func TestADatabaseOfThePreviousServerOpensAndItsGroupsResume(t *testing.T) {
	requireLibvirt(t, testDriverURI)
	metas, err := filepath.Glob("testdata/upgrade/temporal-*.json")
	if err != nil || len(metas) != 1 {
		t.Fatalf("want one fixture in testdata/upgrade (test/upgrade/make-fixture.sh writes it), found %v %v", metas, err)
	}
	raw, err := os.ReadFile(metas[0])
	if err != nil {
		t.Fatal(err)
	}
	var fx upgradeFixture
	if err := json.Unmarshal(raw, &fx); err != nil || len(fx.Groups) == 0 {
		t.Fatalf("%s: %v %+v", metas[0], err, fx)
	}
	dir := t.TempDir()
	state := filepath.Join(dir, "state")
	if err := os.Mkdir(state, 0o700); err != nil {
		t.Fatal(err)
	}
	db := filepath.Join(state, "temporal.db")
	gunzipTo(t, strings.TrimSuffix(metas[0], ".json")+".db.gz", db)

	port := freePort(t)
	logPath := filepath.Join(dir, "controller.log")
	var groups strings.Builder
	for name, g := range fx.Groups {
		fmt.Fprintf(&groups, `    - name: %s
      max: 5
      desired: %d
      scaling: {evaluationInterval: 2s}
      template: {diskSize: 64MiB, memory: 64MiB, domainType: qemu, shutdownTimeout: 0s}
`, name, g.ConfigDesired)
	}
	cfgPath := filepath.Join(dir, "config.yaml")
	body := fmt.Sprintf(`version: v1alpha1
controller:
  stateDir: %s
  installation: %s
  log: {level: debug, file: %s}
  metrics: {listen: "127.0.0.1:0"}
  temporal:
    embedded: {port: %d}
autoscale:
  hosts:
    - {name: testhost, uri: "%s", pool: %s, cpuOvercommit: 16, memoryOvercommit: 16}
  groups:
%s`, state, fx.Installation, logPath, port, testDriverURI, testPool, groups.String())
	if err := os.WriteFile(cfgPath, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	c := &controller{t: t, config: cfgPath, log: logPath}
	c.start()
	t.Cleanup(func() { c.kill(syscall.SIGKILL) })
	t.Cleanup(c.checkLogForPanics)

	b, _ := os.ReadFile(logPath)
	if !strings.Contains(string(b), "migrated the SQLite database") || !strings.Contains(string(b), "from=0.10") {
		t.Fatalf("the log does not tell of the migration from 0.10 (server %s)", fx.Server)
	}
	if fi, err := os.Stat(db + ".before-0.11"); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("no 0600 copy of the file before migrating: %v %v", fi, err)
	}
	cl := c.mustDial()
	for name, g := range fx.Groups {
		st := c.waitSettled(name, g.Desired, 3*time.Minute)
		if st.Desired != g.Desired || st.Running != g.Desired {
			t.Fatalf("group %s after the upgrade: %+v, want %d running", name, st, g.Desired)
		}
		desc, err := cl.DescribeWorkflowExecution(context.Background(), workflows.GroupWorkflowID(name), "")
		if err != nil {
			t.Fatal(err)
		}
		if started := desc.GetWorkflowExecutionInfo().GetStartTime().AsTime(); !started.Before(fx.Written) {
			t.Errorf("group %s runs a workflow started %s, after the fixture was written (%s): the old run did not resume", name, started, fx.Written)
		}
	}
	var some string
	for name := range fx.Groups {
		some = name
		break
	}
	want := fx.Groups[some].Desired + 1
	c.mustCLI("scale", some, fmt.Sprint(want))
	if st := c.waitSettled(some, want, 2*time.Minute); st.Running != want {
		t.Fatalf("scale after the upgrade: %+v", st)
	}
	c.checkWorkflowTasks(port)

	// Once migrated, a restart finds the file at its version.
	c.kill(syscall.SIGTERM)
	c.start()
	c.waitSettled(some, want, time.Minute)
	if b, _ := os.ReadFile(logPath); strings.Count(string(b), "migrated the SQLite database") != 1 {
		t.Error("the restart migrated the file again")
	}
}

// gunzipTo writes the gzip file src, uncompressed, to dst (0600).
func gunzipTo(t *testing.T, src, dst string) {
	t.Helper()
	in, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = in.Close() }()
	zr, err := gzip.NewReader(in)
	if err != nil {
		t.Fatal(err)
	}
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, zr); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
}
