package embedded

import (
	"bytes"
	"crypto/md5" //nolint:gosec // the schema tool's manifest checksum, not security
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.temporal.io/server/common/persistence"
	serverschema "go.temporal.io/server/schema"
	sqliteschema "go.temporal.io/server/schema/sqlite"
)

// The SQLite store's schema, as Temporal ships it: schema.sql is the
// newest version whole (what ensureSchema writes into a new file), and
// each versioned/vX.Y directory the step from the version before. Upstream
// sets new files up whole and never upgrades an existing one (the dev
// server's files are not kept across CLI releases); PremiScale keeps its
// file for years, so migrateSQLite applies the steps itself.
const (
	sqliteVersionedDir = "sqlite/v3/temporal/versioned"
	// sqliteSchemaKey is the schema_version row (db_name) of the store:
	// fixed, so that a file moved or restored elsewhere keeps its version.
	sqliteSchemaKey = "temporal"
)

// sqliteStep is one versioned directory: its manifest and statements.
type sqliteStep struct {
	version, minCompatible, description, md5 string
	statements                               []string
}

// sqliteMigration reports what migrateSQLite did.
type sqliteMigration struct {
	From, To string
	// Backup is the copy of the file taken before the first step, "" when
	// nothing had to change.
	Backup string
}

// migrateSQLite brings the existing database at path to the schema this
// server needs (sqliteschema.Version). Its version is read from the
// schema_version table, or, in a file from before PremiScale recorded it,
// told from the tables and columns present. Before changing anything it
// copies the file to path.before-<version> (VACUUM INTO: consistent, even
// from a WAL); each step then runs in one transaction with its version
// row, so a crash leaves the file at a whole version. A file newer than
// this server is refused, untouched.
func migrateSQLite(path string, now time.Time) (sqliteMigration, error) {
	db, err := sql.Open("sqlite", "file:"+path+"?mode=rw&_pragma=busy_timeout(5000)")
	if err != nil {
		return sqliteMigration{}, err
	}
	defer func() { _ = db.Close() }()
	from, recorded, err := sqliteVersion(db)
	if err != nil {
		return sqliteMigration{}, err
	}
	m := sqliteMigration{From: from, To: sqliteschema.Version}
	switch c := compareVersions(from, sqliteschema.Version); {
	case c > 0:
		return m, fmt.Errorf("its schema is version %s, newer than the %s this PremiScale's Temporal server knows: it was written by a newer PremiScale; run that, or restore the copy taken before the upgrade (%s.before-*)", from, sqliteschema.Version, path)
	case c == 0 && recorded:
		return m, nil
	}
	steps, err := sqliteSteps(from)
	if err != nil {
		return m, err
	}
	if len(steps) > 0 {
		m.Backup = fmt.Sprintf("%s.before-%s", path, sqliteschema.Version)
		_ = os.Remove(m.Backup) // a copy from an earlier attempt that failed
		if _, err := db.Exec("VACUUM INTO ?", m.Backup); err != nil {
			return m, fmt.Errorf("copy to %s before migrating: %w", m.Backup, err)
		}
		if err := os.Chmod(m.Backup, 0o600); err != nil {
			return m, err
		}
	}
	if !recorded {
		if err := recordSQLiteVersion(db, nil, from, "0.1", "", "", now); err != nil {
			return m, err
		}
	}
	prev := from
	for _, s := range steps {
		tx, err := db.Begin()
		if err != nil {
			return m, err
		}
		for _, stmt := range s.statements {
			if _, err := tx.Exec(stmt); err != nil {
				_ = tx.Rollback()
				return m, fmt.Errorf("schema %s -> %s: %q: %w", prev, s.version, stmt, err)
			}
		}
		if err := recordSQLiteVersion(db, tx, s.version, s.minCompatible, prev, s.description+"\x00"+s.md5, now); err != nil {
			_ = tx.Rollback()
			return m, err
		}
		if err := tx.Commit(); err != nil {
			return m, fmt.Errorf("schema %s -> %s: %w", prev, s.version, err)
		}
		prev = s.version
	}
	return m, nil
}

// markSQLite records the newest version in a file ensureSchema just set
// up whole.
func markSQLite(path string, now time.Time) error {
	db, err := sql.Open("sqlite", "file:"+path+"?mode=rw")
	if err != nil {
		return err
	}
	defer func() { _ = db.Close() }()
	return recordSQLiteVersion(db, nil, sqliteschema.Version, "0.1", "", "", now)
}

// execer is a *sql.DB or a *sql.Tx.
type execer interface {
	Exec(query string, args ...any) (sql.Result, error)
}

// recordSQLiteVersion writes version into schema_version (creating the
// table and schema_update_history as Temporal's schema tool does, if
// missing) and, for a step (from != ""), a history row; descMD5 is the
// step's description and manifest checksum joined by a NUL.
func recordSQLiteVersion(db *sql.DB, tx *sql.Tx, version, minCompatible, from, descMD5 string, now time.Time) error {
	var ex execer = db
	if tx != nil {
		ex = tx
	}
	for _, ddl := range []string{
		`CREATE TABLE IF NOT EXISTS schema_version(version_partition INT not null, db_name VARCHAR(255) not null, creation_time DATETIME(6), curr_version VARCHAR(64), min_compatible_version VARCHAR(64), PRIMARY KEY (version_partition, db_name))`,
		`CREATE TABLE IF NOT EXISTS schema_update_history(version_partition INT not null, year int not null, month int not null, update_time DATETIME(6) not null, description VARCHAR(255), manifest_md5 VARCHAR(64), new_version VARCHAR(64), old_version VARCHAR(64), PRIMARY KEY (version_partition, year, month, update_time))`,
	} {
		if _, err := ex.Exec(ddl); err != nil {
			return fmt.Errorf("schema version table: %w", err)
		}
	}
	if _, err := ex.Exec(`REPLACE INTO schema_version(version_partition, db_name, creation_time, curr_version, min_compatible_version) VALUES (0,?,?,?,?)`,
		sqliteSchemaKey, now.UTC(), version, minCompatible); err != nil {
		return fmt.Errorf("record schema version %s: %w", version, err)
	}
	if from == "" {
		return nil
	}
	desc, sum, _ := strings.Cut(descMD5, "\x00")
	if _, err := ex.Exec(`INSERT INTO schema_update_history(version_partition, year, month, update_time, old_version, new_version, manifest_md5, description) VALUES (0,?,?,?,?,?,?,?)`,
		now.Year(), int(now.Month()), now.UTC().Add(time.Duration(len(version))), from, version, sum, desc); err != nil {
		return fmt.Errorf("record schema step %s -> %s: %w", from, version, err)
	}
	return nil
}

// sqliteVersion reads the recorded version, or tells it from the tables.
func sqliteVersion(db *sql.DB) (version string, recorded bool, err error) {
	tables := map[string]bool{}
	rows, err := db.Query(`SELECT name FROM sqlite_master WHERE type='table'`)
	if err != nil {
		return "", false, fmt.Errorf("read its tables: %w", err)
	}
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			_ = rows.Close()
			return "", false, err
		}
		tables[n] = true
	}
	if err := errors.Join(rows.Err(), rows.Close()); err != nil {
		return "", false, err
	}
	if tables["schema_version"] {
		err := db.QueryRow(`SELECT curr_version FROM schema_version WHERE version_partition=0 AND db_name=?`, sqliteSchemaKey).Scan(&version)
		if err == nil {
			return version, true, nil
		}
		if !errors.Is(err, sql.ErrNoRows) {
			return "", false, fmt.Errorf("read its schema version: %w", err)
		}
	}
	// notNull holds current_executions' columns, each with its NOT NULL.
	notNull := map[string]bool{}
	if tables["current_executions"] {
		rows, err := db.Query(`SELECT name, "notnull" FROM pragma_table_info('current_executions')`)
		if err != nil {
			return "", false, fmt.Errorf("read its columns: %w", err)
		}
		for rows.Next() {
			var n string
			var nn bool
			if err := rows.Scan(&n, &nn); err != nil {
				_ = rows.Close()
				return "", false, err
			}
			notNull[n] = nn
		}
		if err := errors.Join(rows.Err(), rows.Close()); err != nil {
			return "", false, err
		}
	}
	version, err = inferSQLiteVersion(tables, notNull)
	return version, false, err
}

// inferSQLiteVersion tells a file's schema version from what each step
// of sqlite/v3/temporal/versioned left behind: the newest step whose mark
// is present. tables are the file's tables; columns are those of
// current_executions, each with whether it is NOT NULL.
func inferSQLiteVersion(tables, columns map[string]bool) (string, error) {
	nn, hasEncoding := columns["data_encoding"]
	_, hasStart := columns["start_time"]
	switch {
	case tables["current_chasm_executions"]:
		return "0.11", nil
	case tables["tasks_v2"]:
		return "0.10", nil
	case tables["chasm_node_maps"]:
		return "0.9", nil
	case hasEncoding && nn: // 0.8 re-added it NOT NULL
		return "0.8", nil
	case hasEncoding:
		return "0.7", nil
	case hasStart:
		return "0.6", nil
	case tables["nexus_endpoints"]:
		return "0.5", nil
	case tables["nexus_incoming_services"]:
		return "0.4", nil
	case tables["queues"]:
		return "0.3", nil
	case tables["task_queue_user_data"]:
		return "0.2", nil
	case tables["executions"] && tables["namespaces"]:
		return "0.1", nil
	}
	return "", errors.New("it holds no Temporal schema (no executions or namespaces table): not a Temporal database")
}

// sqliteSteps returns the versioned steps after from, oldest first.
func sqliteSteps(from string) ([]sqliteStep, error) {
	assets := serverschema.Assets()
	dirs, err := fs.ReadDir(assets, sqliteVersionedDir)
	if err != nil {
		return nil, fmt.Errorf("the server's schema files: %w", err)
	}
	var steps []sqliteStep
	for _, d := range dirs {
		v := strings.TrimPrefix(d.Name(), "v")
		if !d.IsDir() || compareVersions(v, from) <= 0 {
			continue
		}
		dir := path.Join(sqliteVersionedDir, d.Name())
		raw, err := fs.ReadFile(assets, path.Join(dir, "manifest.json"))
		if err != nil {
			return nil, err
		}
		var man struct {
			CurrVersion, MinCompatibleVersion, Description string
			SchemaUpdateCqlFiles                           []string
		}
		if err := json.Unmarshal(raw, &man); err != nil {
			return nil, fmt.Errorf("%s/manifest.json: %w", dir, err)
		}
		var readers []io.Reader
		for _, f := range man.SchemaUpdateCqlFiles {
			b, err := fs.ReadFile(assets, path.Join(dir, f))
			if err != nil {
				return nil, err
			}
			readers = append(readers, bytes.NewReader(b))
		}
		stmts, err := persistence.LoadAndSplitQueryFromReaders(readers)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", dir, err)
		}
		sum := md5.Sum(raw) //nolint:gosec // as the schema tool records it
		steps = append(steps, sqliteStep{version: man.CurrVersion, minCompatible: man.MinCompatibleVersion,
			description: man.Description, md5: hex.EncodeToString(sum[:]), statements: stmts})
	}
	slices.SortFunc(steps, func(a, b sqliteStep) int { return compareVersions(a.version, b.version) })
	if n := len(steps); n > 0 && steps[n-1].version != sqliteschema.Version {
		return nil, fmt.Errorf("the server's schema steps end at %s, not at its version %s", steps[n-1].version, sqliteschema.Version)
	}
	return steps, nil
}

// compareVersions orders dotted numeric versions ("0.9" < "0.10").
func compareVersions(a, b string) int {
	as, bs := strings.Split(a, "."), strings.Split(b, ".")
	for i := range max(len(as), len(bs)) {
		var x, y int
		if i < len(as) {
			x, _ = strconv.Atoi(as[i])
		}
		if i < len(bs) {
			y, _ = strconv.Atoi(bs[i])
		}
		if x != y {
			return x - y
		}
	}
	return 0
}
