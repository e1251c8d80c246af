package embedded

import (
	"archive/tar"
	"bytes"
	"database/sql"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// stateDir makes a state dir as a controller leaves it: a WAL database
// with an executions table (rows written after the last checkpoint stay in
// the WAL), the installation identity and a generated CA key.
func stateDir(t *testing.T, rows int) string {
	t.Helper()
	dir := t.TempDir()
	db, err := sql.Open("sqlite", "file:"+filepath.Join(dir, "temporal.db")+"?mode=rwc&_pragma=journal_mode(wal)")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	if _, err := db.Exec("CREATE TABLE executions (id INTEGER PRIMARY KEY, payload BLOB)"); err != nil {
		t.Fatal(err)
	}
	for i := range rows {
		if _, err := db.Exec("INSERT INTO executions (payload) VALUES (?)", bytes.Repeat([]byte{byte(i)}, 512)); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.MkdirAll(filepath.Join(dir, "tls"), 0o700); err != nil {
		t.Fatal(err)
	}
	for name, body := range map[string]string{"installation": "inst-1\n", "tls/ca.key": "KEY\n", "revisions.json": "{}"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// TestBackupOfALiveDatabaseRestoresWhole: a backup taken while the
// database is open (its last rows only in the WAL) restores every row and
// every other file of the state dir, private; the restore refuses a state
// dir that holds anything.
func TestBackupOfALiveDatabaseRestoresWhole(t *testing.T) {
	src := stateDir(t, 40)
	var buf bytes.Buffer
	info, err := Backup(src, "temporal.db", &buf)
	if err != nil {
		t.Fatal(err)
	}
	if info.Executions != 40 || !slices.Equal(info.Files, []string{"temporal.db", "installation", "revisions.json", "tls/ca.key"}) {
		t.Errorf("backup %+v, want 40 executions and the db, installation, revisions and CA key", info)
	}
	dst := filepath.Join(t.TempDir(), "restored")
	got, err := Restore(bytes.NewReader(buf.Bytes()), dst, "temporal.db")
	if err != nil {
		t.Fatal(err)
	}
	if got.Executions != 40 {
		t.Errorf("restored %d executions, want 40", got.Executions)
	}
	for name, want := range map[string]string{"installation": "inst-1\n", "tls/ca.key": "KEY\n"} {
		b, err := os.ReadFile(filepath.Join(dst, name))
		fi, serr := os.Stat(filepath.Join(dst, name))
		if err != nil || serr != nil || string(b) != want || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s restored as %q (%v), mode %v", name, b, err, fi)
		}
	}
	if fi, err := os.Stat(dst); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("state dir %v %v, want 0700", fi, err)
	}
	if _, err := Restore(bytes.NewReader(buf.Bytes()), dst, "temporal.db"); !errors.Is(err, ErrStateDirNotEmpty) {
		t.Errorf("restore over a restored dir: %v, want %v", err, ErrStateDirNotEmpty)
	}
}

// TestRestoreRefusesWhatIsNotABackup: an entry that leaves the directory,
// an archive without the database, or a database that is not Temporal's
// is refused, and the state dir is left empty.
func TestRestoreRefusesWhatIsNotABackup(t *testing.T) {
	archive := func(files map[string]string) []byte {
		var b bytes.Buffer
		tw := tar.NewWriter(&b)
		for name, body := range files {
			_ = tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o600, Size: int64(len(body))})
			_, _ = tw.Write([]byte(body))
		}
		_ = tw.Close()
		return b.Bytes()
	}
	for name, a := range map[string][]byte{
		"escaping path": archive(map[string]string{"../evil": "x"}),
		"no database":   archive(map[string]string{"installation": "inst-1\n"}),
		"not sqlite":    archive(map[string]string{"temporal.db": "not a database"}),
		"not tar":       []byte("plain text"),
	} {
		dst := t.TempDir()
		if _, err := Restore(bytes.NewReader(a), dst, "temporal.db"); err == nil {
			t.Errorf("%s: restored", name)
		}
		if entries, _ := os.ReadDir(dst); len(entries) != 0 {
			t.Errorf("%s: left %d entries in the state dir", name, len(entries))
		}
		if _, err := os.Stat(filepath.Join(filepath.Dir(dst), "evil")); err == nil {
			t.Errorf("%s: wrote outside the state dir", name)
		}
	}
}
