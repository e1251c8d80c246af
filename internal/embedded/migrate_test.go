package embedded

import (
	"bytes"
	"context"
	"database/sql"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.temporal.io/sdk/client"
	sqliteschema "go.temporal.io/server/schema/sqlite"
)

func TestInferSQLiteVersionReadsEachStepsMark(t *testing.T) {
	base := map[string]bool{"executions": true, "namespaces": true, "current_executions": true}
	with := func(extra ...string) map[string]bool {
		m := map[string]bool{}
		for k := range base {
			m[k] = true
		}
		for _, e := range extra {
			m[e] = true
		}
		return m
	}
	for _, tc := range []struct {
		name    string
		tables  map[string]bool
		columns map[string]bool
		want    string
	}{
		{"0.1", with(), nil, "0.1"},
		{"0.2", with("task_queue_user_data"), nil, "0.2"},
		{"0.3", with("task_queue_user_data", "queues"), nil, "0.3"},
		{"0.4", with("queues", "nexus_incoming_services"), nil, "0.4"},
		{"0.5", with("queues", "nexus_endpoints"), nil, "0.5"},
		{"0.6", with("nexus_endpoints"), map[string]bool{"start_time": false}, "0.6"},
		{"0.7", with("nexus_endpoints"), map[string]bool{"start_time": false, "data": false, "data_encoding": false}, "0.7"},
		{"0.8", with("nexus_endpoints"), map[string]bool{"start_time": false, "data": false, "data_encoding": true}, "0.8"},
		{"0.9", with("chasm_node_maps"), map[string]bool{"data_encoding": true}, "0.9"},
		{"0.10", with("chasm_node_maps", "tasks_v2"), nil, "0.10"},
		{"0.11", with("chasm_node_maps", "tasks_v2", "current_chasm_executions"), nil, "0.11"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := inferSQLiteVersion(tc.tables, tc.columns)
			if err != nil || got != tc.want {
				t.Errorf("inferSQLiteVersion = %q, %v; want %q", got, err, tc.want)
			}
		})
	}
	if _, err := inferSQLiteVersion(map[string]bool{"users": true}, nil); err == nil || !strings.Contains(err.Error(), "not a Temporal database") {
		t.Errorf("a file without Temporal's tables: %v", err)
	}
}

func TestCompareVersionsIsNumeric(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		sign int
	}{{"0.9", "0.10", -1}, {"0.10", "0.9", 1}, {"0.11", "0.11", 0}, {"1.0", "0.11", 1}, {"0.1", "0.1.0", 0}} {
		if got := compareVersions(tc.a, tc.b); (got > 0) != (tc.sign > 0) || (got < 0) != (tc.sign < 0) {
			t.Errorf("compareVersions(%s, %s) = %d", tc.a, tc.b, got)
		}
	}
}

// schemaVersion reads the recorded version of the file at path.
func schemaVersion(t *testing.T, path string) string {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+path+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = db.Close() }()
	var v string
	if err := db.QueryRow(`SELECT curr_version FROM schema_version WHERE db_name=?`, sqliteSchemaKey).Scan(&v); err != nil {
		t.Fatalf("schema version of %s: %v", path, err)
	}
	return v
}

// execSQL runs statements on the file at path.
func execSQL(t *testing.T, path string, stmts ...string) {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+path+"?mode=rwc&_pragma=busy_timeout(5000)")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = db.Close() }()
	for _, s := range stmts {
		if _, err := db.Exec(s); err != nil {
			t.Fatalf("%s: %v", s, err)
		}
	}
}

// TestStartMigratesAnOlderDatabaseAndKeepsItsWorkflows: a file at schema
// 0.10 with no recorded version (as Temporal v1.31's dev server and older
// PremiScale releases wrote it: 0.11 only adds current_chasm_executions),
// holding a finished and a waiting workflow, is copied aside, migrated to
// this server's schema and opened; both workflows are there and the
// waiting one completes. A file newer than the server, and one that is not
// Temporal's, are refused without a change.
func TestStartMigratesAnOlderDatabaseAndKeepsItsWorkflows(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a Temporal server twice")
	}
	if sqliteschema.Version != "0.11" {
		t.Fatalf("this test makes a 0.10 file from a %s one by undoing 0.11's step; write it again for the new step", sqliteschema.Version)
	}
	dbPath := filepath.Join(t.TempDir(), "temporal.db")
	port := freeTestPort(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	s := startServer(t, dbPath, port, "new database")
	if v := schemaVersion(t, dbPath); v != sqliteschema.Version {
		t.Fatalf("a new file records schema %q, want %s", v, sqliteschema.Version)
	}
	c, stopWorker := connect(t, s)
	if _, err := c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: "done", TaskQueue: taskQueue}, greetWorkflow); err != nil {
		t.Fatal(err)
	}
	update(ctx, t, c, "done", "ada")
	wantResult(ctx, t, c, "done", "hello ada")
	if _, err := c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: "waiting", TaskQueue: taskQueue}, greetWorkflow); err != nil {
		t.Fatal(err)
	}
	waitUntilAwaiting(ctx, t, c, "waiting")
	stopWorker()
	if err := s.Stop(); err != nil {
		t.Fatal(err)
	}

	// Undo 0.11 and forget the version: the file a previous server left.
	execSQL(t, dbPath, "DROP TABLE current_chasm_executions", "DROP TABLE schema_version", "DROP TABLE schema_update_history")
	s = startServer(t, dbPath, port, "migrated database")
	if v := schemaVersion(t, dbPath); v != sqliteschema.Version {
		t.Fatalf("after migration the file records %q, want %s", v, sqliteschema.Version)
	}
	backup := dbPath + ".before-" + sqliteschema.Version
	if fi, err := os.Stat(backup); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("copy before migrating: %v %v, want a 0600 file", fi, err)
	}
	db, err := sql.Open("sqlite", "file:"+backup+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	if v, recorded, err := sqliteVersion(db); err != nil || recorded || v != "0.10" {
		t.Errorf("the copy is at %q (recorded %v, %v), want the unrecorded 0.10 it was", v, recorded, err)
	}
	_ = db.Close()
	c, _ = connect(t, s)
	wantResult(ctx, t, c, "done", "hello ada")
	update(ctx, t, c, "waiting", "grace")
	wantResult(ctx, t, c, "waiting", "hello grace")
	if err := s.Stop(); err != nil {
		t.Fatal(err)
	}

	var before []byte
	// A file from a newer server: refused, untouched.
	execSQL(t, dbPath, "PRAGMA wal_checkpoint(TRUNCATE)", `UPDATE schema_version SET curr_version='0.12' WHERE db_name='temporal'`, "PRAGMA wal_checkpoint(TRUNCATE)")
	before, err = os.ReadFile(dbPath)
	if err != nil {
		t.Fatal(err)
	}
	_, err = Start(ctx, Options{DBPath: dbPath, Port: port})
	if err == nil || !strings.Contains(err.Error(), "newer than the "+sqliteschema.Version) {
		t.Fatalf("Start on a 0.12 file: %v", err)
	}
	if after, _ := os.ReadFile(dbPath); !bytes.Equal(before, after) {
		t.Error("the refused file changed")
	}

	// Not Temporal's at all.
	other := filepath.Join(t.TempDir(), "other.db")
	execSQL(t, other, "CREATE TABLE users(id INT)")
	if _, err := Start(ctx, Options{DBPath: other, Port: port}); err == nil || !strings.Contains(err.Error(), "not a Temporal database") {
		t.Fatalf("Start on another application's file: %v", err)
	}
}
