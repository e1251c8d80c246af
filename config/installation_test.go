package config

import (
	"os"
	"path/filepath"
	"testing"
)

func TestInstallationIsGeneratedOnceWithTheStateOrDerivedFromTheNamespace(t *testing.T) {
	dir := t.TempDir()
	embedded := func() *Config {
		c := &Config{Controller: Controller{StateDir: dir}}
		c.ApplyDefaults()
		return c
	}
	worker := embedded()
	if err := worker.ResolveInstallation(false); err == nil {
		t.Error("a worker generated the identity before any controller did")
	}
	first := embedded()
	if err := first.ResolveInstallation(true); err != nil {
		t.Fatal(err)
	}
	if !installationRE.MatchString(first.Controller.Installation) {
		t.Fatalf("generated %q", first.Controller.Installation)
	}
	fi, err := os.Stat(filepath.Join(dir, InstallationFile))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("identity file: %v, mode %v; want 0600", err, fi.Mode())
	}
	again := embedded()
	if err := again.ResolveInstallation(false); err != nil || again.Controller.Installation != first.Controller.Installation {
		t.Errorf("restart: %q %v, want the same %q", again.Controller.Installation, err, first.Controller.Installation)
	}
	fresh := &Config{Controller: Controller{StateDir: t.TempDir()}}
	fresh.ApplyDefaults()
	if err := fresh.ResolveInstallation(true); err != nil || fresh.Controller.Installation == first.Controller.Installation {
		t.Errorf("a fresh state dir kept the identity %q (%v)", fresh.Controller.Installation, err)
	}

	cluster := &Config{Controller: Controller{Temporal: Temporal{Address: "temporal:7233", Namespace: "Prod_1"}}}
	cluster.ApplyDefaults()
	if err := cluster.ResolveInstallation(true); err != nil || cluster.Controller.Installation != "" {
		t.Errorf("with a Temporal cluster: %q %v; want it left to the cluster", cluster.Controller.Installation, err)
	}
	if l := cluster.LegacyInstallation(); l != "prod-1.premiscale" {
		t.Errorf("legacy identity %q, want prod-1.premiscale", l)
	}
}
