package test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/premiscale/premiscale/workflows"
)

// requirePostgres returns the base URL of the test PostgreSQL
// (test/scripts/postgres.sh), or skips (fails under PSTEST_REQUIRE_ALL=1).
func requirePostgres(t *testing.T) string {
	t.Helper()
	u := os.Getenv("PSTEST_POSTGRES_URL")
	if u == "" {
		if os.Getenv("PSTEST_REQUIRE_ALL") == "1" {
			t.Fatal("PSTEST_POSTGRES_URL is not set (make test starts PostgreSQL)")
		}
		t.Skip("no test PostgreSQL (PSTEST_POSTGRES_URL)")
	}
	return u
}

// TestEmbeddedServerOnPostgreSQL: with a DSN configured, the embedded
// server keeps its state in PostgreSQL (two databases it creates, with
// their schemas), not in the SQLite file: a group scaled out survives a
// SIGKILL of the controller with its workflow and members (restarted with
// the DSN from dsnFile), and no temporal.db appears in stateDir. A wrong password stops the start with
// an error that names the database and not the password.
func TestEmbeddedServerOnPostgreSQL(t *testing.T) {
	lv := requireLibvirt(t, testDriverURI)
	base := requirePostgres(t)
	const group = "pg"
	port := freePort(t)
	cfgPath, logPath := writeE2EConfig(t, group, port)
	db := fmt.Sprintf("premiscale_%d", time.Now().UnixNano()%1_000_000_000)
	// The password from a file, the DSN without it.
	dsn := strings.Replace(base, ":premiscale-test@", "@", 1) + "/" + db + "?sslmode=disable"
	pwFile := filepath.Join(t.TempDir(), "pg-password")
	writePG := func(password string) {
		t.Helper()
		if err := os.WriteFile(pwFile, []byte(password+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	body, err := os.ReadFile(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	plain := fmt.Sprintf("embedded: {port: %d}", port)
	with := fmt.Sprintf("embedded: {port: %d, postgres: {dsn: %q, passwordFile: %s}}", port, dsn, pwFile)
	if !bytes.Contains(body, []byte(plain)) {
		t.Fatalf("config has no %q", plain)
	}
	if err := os.WriteFile(cfgPath, bytes.Replace(body, []byte(plain), []byte(with), 1), 0o600); err != nil {
		t.Fatal(err)
	}
	stateDir := filepath.Join(filepath.Dir(cfgPath), "state")

	// A wrong password: the controller does not start, and says where.
	writePG("not-the-password")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	out, err := exec.CommandContext(ctx, premiscaleBin, "-c", cfgPath).CombinedOutput()
	cancel()
	logged, _ := os.ReadFile(logPath)
	all := string(out) + string(logged)
	if err == nil || !strings.Contains(all, fmt.Sprintf("postgres database %q at 127.0.0.1:", db)) {
		t.Fatalf("start with a wrong password: err=%v, output %s\nlog: %s; want a failure naming database %s", err, out, logged, db)
	}
	if strings.Contains(all, "not-the-password") {
		t.Errorf("the password appears in the output or log")
	}
	t.Logf("wrong password: %s", lastLine(string(out)))

	writePG("premiscale-test")
	c := &controller{t: t, config: cfgPath, log: logPath}
	c.start()
	t.Cleanup(func() { c.kill(syscall.SIGKILL) })
	c.mustCLI("scale", group, "2", "--wait", "--timeout", "2m")
	checkExactly(t, lv, group, 2)
	before := c.status(group)

	c.kill(syscall.SIGKILL)
	// Restarted with the whole DSN, password and all, in a file (as a
	// PostgreSQL operator's Secret holds it): the same database.
	dsnFile := filepath.Join(t.TempDir(), "uri")
	if err := os.WriteFile(dsnFile, []byte(base+"/"+db+"?sslmode=disable\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	viaFile := fmt.Sprintf("embedded: {port: %d, postgres: {dsnFile: %s}}", port, dsnFile)
	if err := os.WriteFile(cfgPath, bytes.Replace(body, []byte(plain), []byte(viaFile), 1), 0o600); err != nil {
		t.Fatal(err)
	}
	c.start()
	st := c.waitSettled(group, 2, 2*time.Minute)
	if st.Desired != 2 || len(st.Members) != 2 || !sameMembers(st, before) {
		t.Fatalf("after SIGKILL and restart: desired %d, members %+v; want the 2 members from before %+v", st.Desired, st.Members, before.Members)
	}
	checkExactly(t, lv, group, 2)
	if _, err := os.Stat(filepath.Join(stateDir, "temporal.db")); !os.IsNotExist(err) {
		t.Errorf("stateDir has temporal.db (err %v): the server used SQLite", err)
	}
	// The workflow is listed (the visibility store, in its own database).
	if out := c.mustCLI("status"); !strings.Contains(out, group) {
		t.Errorf("status of all groups does not list %s:\n%s", group, out)
	}
	c.mustCLI("scale", group, "0", "--wait", "--timeout", "2m")
	checkExactly(t, lv, group, 0)
	c.checkWorkflowTasks(port)
}

func sameMembers(a, b workflows.GroupStatus) bool {
	if len(a.Members) != len(b.Members) {
		return false
	}
	names := map[string]bool{}
	for _, m := range a.Members {
		names[m.Name] = true
	}
	for _, m := range b.Members {
		if !names[m.Name] {
			return false
		}
	}
	return true
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}
