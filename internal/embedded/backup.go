package embedded

import (
	"archive/tar"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"

	_ "modernc.org/sqlite" // the driver of Temporal's SQLite plugin
)

// BackupInfo says what a backup holds.
type BackupInfo struct {
	// Files are the state directory's files in the archive, the database
	// first.
	Files []string
	// Executions is how many workflow executions the database holds.
	Executions int
}

// Backup writes a consistent copy of the embedded server's state directory
// to w as a tar archive, while the server runs: the SQLite database dbFile
// through SQLite's own online copy (VACUUM INTO, one read transaction, so
// the server's writes go on and the copy is of one instant), checked with
// PRAGMA integrity_check, then every other file of the directory as it is
// (the installation identity, the generated CA and certificates, the
// template revisions), which the server does not change while it runs.
// The archive holds the CA's key and every group's history: keep it as
// the state directory itself is kept.
func Backup(stateDir, dbFile string, w io.Writer) (BackupInfo, error) {
	db := filepath.Join(stateDir, dbFile)
	if _, err := os.Stat(db); err != nil {
		return BackupInfo{}, fmt.Errorf("database %s: %w", db, err)
	}
	tmp, err := os.MkdirTemp("", "premiscale-backup-")
	if err != nil {
		return BackupInfo{}, err
	}
	defer os.RemoveAll(tmp)
	snap := filepath.Join(tmp, dbFile)
	if err := vacuumInto(db, snap); err != nil {
		return BackupInfo{}, err
	}
	var info BackupInfo
	if info.Executions, err = checkDatabase(snap); err != nil {
		return BackupInfo{}, fmt.Errorf("the copy of %s: %w", db, err)
	}
	tw := tar.NewWriter(w)
	if err := addFile(tw, snap, dbFile); err != nil {
		return BackupInfo{}, err
	}
	info.Files = append(info.Files, dbFile)
	err = filepath.WalkDir(stateDir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(stateDir, p)
		if err != nil || rel == "." {
			return err
		}
		name := filepath.ToSlash(rel)
		if name == dbFile || strings.HasPrefix(name, dbFile+"-") || strings.HasPrefix(name, dbFile+".") {
			return nil // the database, its WAL and shared memory, schema temporaries
		}
		if d.IsDir() {
			return tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: name + "/", Mode: 0o700})
		}
		if !d.Type().IsRegular() {
			return nil
		}
		info.Files = append(info.Files, name)
		return addFile(tw, p, name)
	})
	if err != nil {
		return BackupInfo{}, fmt.Errorf("state dir %s: %w", stateDir, err)
	}
	return info, tw.Close()
}

func vacuumInto(db, snap string) error {
	h, err := sql.Open("sqlite", "file:"+db+"?mode=rw&_pragma=busy_timeout(10000)")
	if err != nil {
		return fmt.Errorf("open %s: %w", db, err)
	}
	defer h.Close()
	if _, err := h.Exec("VACUUM INTO ?", snap); err != nil {
		return fmt.Errorf("copy %s: %w", db, err)
	}
	return nil
}

// checkDatabase runs SQLite's integrity check on a database file and
// counts its workflow executions.
func checkDatabase(file string) (int, error) {
	h, err := sql.Open("sqlite", "file:"+file+"?mode=rw")
	if err != nil {
		return 0, err
	}
	defer h.Close()
	var res string
	if err := h.QueryRow("PRAGMA integrity_check").Scan(&res); err != nil {
		return 0, err
	}
	if res != "ok" {
		return 0, fmt.Errorf("integrity check: %s", res)
	}
	var n int
	if err := h.QueryRow("SELECT count(*) FROM executions").Scan(&n); err != nil {
		return 0, fmt.Errorf("not a Temporal database: %w", err)
	}
	return n, nil
}

func addFile(tw *tar.Writer, p, name string) error {
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o600, Size: fi.Size(), ModTime: fi.ModTime()}); err != nil {
		return err
	}
	_, err = io.Copy(tw, f)
	return err
}

// ErrStateDirNotEmpty: Restore refuses to write over a state directory.
var ErrStateDirNotEmpty = errors.New("state dir is not empty")

// Restore unpacks an archive Backup wrote into stateDir, which must not
// exist or be empty (so a running controller's state is never written
// over): directories 0700, files 0600. It fails, leaving stateDir empty,
// on an archive without dbFile, a path that leaves the directory, or a
// database that fails SQLite's integrity check.
func Restore(r io.Reader, stateDir, dbFile string) (info BackupInfo, err error) {
	if entries, err := os.ReadDir(stateDir); err == nil && len(entries) > 0 {
		return BackupInfo{}, fmt.Errorf("%w: %s holds %s; restore into an empty directory", ErrStateDirNotEmpty, stateDir, entries[0].Name())
	} else if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return BackupInfo{}, err
	}
	if err := os.MkdirAll(stateDir, 0o700); err != nil {
		return BackupInfo{}, err
	}
	defer func() {
		if err != nil {
			entries, _ := os.ReadDir(stateDir)
			for _, e := range entries {
				_ = os.RemoveAll(filepath.Join(stateDir, e.Name()))
			}
		}
	}()
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return BackupInfo{}, fmt.Errorf("archive: %w", err)
		}
		name := path.Clean(h.Name)
		if path.IsAbs(name) || name == ".." || strings.HasPrefix(name, "../") {
			return BackupInfo{}, fmt.Errorf("archive entry %q leaves the state dir", h.Name)
		}
		dst := filepath.Join(stateDir, filepath.FromSlash(name))
		switch h.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(dst, 0o700); err != nil {
				return BackupInfo{}, err
			}
		case tar.TypeReg:
			if err := os.MkdirAll(filepath.Dir(dst), 0o700); err != nil {
				return BackupInfo{}, err
			}
			f, err := os.OpenFile(dst, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
			if err != nil {
				return BackupInfo{}, err
			}
			_, err = io.Copy(f, tr)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return BackupInfo{}, err
			}
			info.Files = append(info.Files, name)
		default:
			return BackupInfo{}, fmt.Errorf("archive entry %q: type %c is not a backup's", h.Name, h.Typeflag)
		}
	}
	db := filepath.Join(stateDir, dbFile)
	if _, err := os.Stat(db); err != nil {
		return BackupInfo{}, fmt.Errorf("the archive holds no %s: not a PremiScale backup", dbFile)
	}
	if info.Executions, err = checkDatabase(db); err != nil {
		return BackupInfo{}, fmt.Errorf("restored %s: %w", dbFile, err)
	}
	return info, nil
}
