package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/premiscale/premiscale/config"
)

func TestEmbeddedPostgresReadsTheDSNOrItsPasswordFromFiles(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	uri := write("uri", "postgres://app:s3cret@db.example:5433/temporal?sslmode=verify-full\n")
	bare := write("bare", "postgres://app@db.example/temporal\n")
	pw := write("pw", "hunter2\n")
	bad := write("bad", "mysql://app:s3cret@db/x\n")

	pg, err := embeddedPostgres(config.EmbeddedPostgres{DSNFile: uri})
	if err != nil || pg.User != "app" || pg.Password != "s3cret" || pg.Addr != "db.example:5433" || pg.Database != "temporal" || pg.Params["sslmode"] != "verify-full" {
		t.Fatalf("dsnFile: %+v %v", pg, err)
	}
	pg, err = embeddedPostgres(config.EmbeddedPostgres{DSNFile: bare, PasswordFile: pw})
	if err != nil || pg.Password != "hunter2" || pg.Addr != "db.example:5432" {
		t.Fatalf("dsnFile and passwordFile: %+v %v", pg, err)
	}
	for _, tc := range []struct {
		name string
		in   config.EmbeddedPostgres
		want string
	}{
		{"missing file", config.EmbeddedPostgres{DSNFile: filepath.Join(dir, "none")}, "controller.temporal.embedded.postgres.dsnFile: open"},
		{"not postgres", config.EmbeddedPostgres{DSNFile: bad}, "controller.temporal.embedded.postgres.dsnFile: scheme must be postgres://"},
		{"two passwords", config.EmbeddedPostgres{DSNFile: uri, PasswordFile: pw}, "controller.temporal.embedded.postgres.passwordFile: controller.temporal.embedded.postgres.dsnFile already holds a password"},
	} {
		_, err := embeddedPostgres(tc.in)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", tc.name, err, tc.want)
		}
		if err != nil && (strings.Contains(err.Error(), "s3cret") || strings.Contains(err.Error(), "hunter2")) {
			t.Errorf("%s: the error repeats a password: %v", tc.name, err)
		}
	}
	if pg, err := embeddedPostgres(config.EmbeddedPostgres{}); pg != nil || err != nil {
		t.Errorf("nothing configured: %+v %v", pg, err)
	}
}
