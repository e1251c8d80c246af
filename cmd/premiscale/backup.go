package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/premiscale/premiscale/internal/embedded"
)

// embeddedStateDir is the state dir of a config whose embedded server
// persists to SQLite there, or an error naming what is in the way.
func embeddedStateDir(gf *globalFlags) (string, error) {
	cfg, err := loadConfig(gf)
	if err != nil {
		return "", err
	}
	if cfg.Controller.Temporal.Embedded.Postgres.Set() {
		return "", errors.New("controller.temporal.embedded.postgres: the embedded server persists to PostgreSQL here; back up both databases (DATABASE and DATABASE_visibility) with pg_dump, and the state dir's other files with them")
	}
	return cfg.Controller.StateDir, nil
}

func newBackupCmd(gf *globalFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "backup FILE",
		Short: "Write a consistent backup of the embedded server's state while it runs",
		Long: `Write controller.stateDir as a tar archive to FILE (0600): the embedded
Temporal server's SQLite database copied by SQLite itself in one read
transaction (VACUUM INTO), so the controller keeps running and the copy is of
one instant, checked with PRAGMA integrity_check; and the directory's other
files: the installation identity (without it, restored VMs would not be this
installation's), the generated CA and certificates, the template revisions.
Run it as the controller's user on its machine. 'premiscale server restore'
puts it back.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			dir, err := embeddedStateDir(gf)
			if err != nil {
				return err
			}
			syscall.Umask(0o077)
			tmp, err := os.CreateTemp(filepath.Dir(args[0]), ".premiscale-backup-*")
			if err != nil {
				return fmt.Errorf("FILE %s: %w", args[0], err)
			}
			defer os.Remove(tmp.Name())
			info, err := embedded.Backup(dir, TemporalDBFile, tmp)
			if cerr := tmp.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return fmt.Errorf("backup of %s: %w", dir, err)
			}
			if err := os.Rename(tmp.Name(), args[0]); err != nil {
				return fmt.Errorf("FILE %s: %w", args[0], err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "wrote %s: %d workflow executions, %d files of %s\n", args[0], info.Executions, len(info.Files), dir)
			return nil
		},
	}
}

func newRestoreCmd(gf *globalFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "restore FILE",
		Short: "Restore a backup into an empty state dir, before the controller starts",
		Long: `Unpack a backup written by 'premiscale server backup' into controller.stateDir,
which must be empty or not exist: a running controller's state is never
written over. Stop the controller, move its state dir away, restore, start
the controller: every group resumes from its history as of the backup, with
the installation identity it had, so it finds its VMs again. A VM created
after the backup is in no restored history: the orphan collector treats it
as any orphan (autoscale.orphans), and the group makes its own.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			dir, err := embeddedStateDir(gf)
			if err != nil {
				return err
			}
			f, err := os.Open(args[0])
			if err != nil {
				return fmt.Errorf("FILE %s: %w", args[0], err)
			}
			defer f.Close()
			syscall.Umask(0o077)
			info, err := embedded.Restore(f, dir, TemporalDBFile)
			if err != nil {
				return fmt.Errorf("controller.stateDir %s: %w", dir, err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "restored %s into %s: %d workflow executions, %d files; start the controller\n", args[0], dir, info.Executions, len(info.Files))
			return nil
		},
	}
}
