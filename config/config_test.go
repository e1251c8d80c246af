package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func writeConfig(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

const minimal = `
version: v1alpha1
autoscale:
  hosts:
    - {name: h1, uri: "test:///default"}
  groups:
    - {name: web, min: 1, max: 3, template: {diskSize: 1GiB}}
`

func TestExampleConfigsAreValid(t *testing.T) {
	for _, name := range []string{"demo.yaml", "test-driver.yaml"} {
		t.Run(name, func(t *testing.T) {
			if _, err := load(filepath.Join("..", "deploy", "examples", name), noEnv, nil); err != nil {
				t.Fatalf("example %s: %v", name, err)
			}
		})
	}
}

func noEnv() []string { return nil }

func TestDefaultsAreApplied(t *testing.T) {
	cfg, err := load(writeConfig(t, minimal), noEnv, nil)
	if err != nil {
		t.Fatal(err)
	}
	g := cfg.Autoscale.Groups[0]
	checks := []struct {
		name      string
		got, want any
	}{
		{"stateDir", cfg.Controller.StateDir, DefaultStateDir},
		{"log file", cfg.Controller.Log.File, DefaultLogFile},
		{"task queue", cfg.Controller.Temporal.TaskQueue, DefaultTaskQueue},
		{"embedded port", cfg.Controller.Temporal.Embedded.Port, DefaultEmbeddedPort},
		{"temporal address", cfg.TemporalAddress(), "127.0.0.1:7233"},
		{"host pool", cfg.Autoscale.Hosts[0].Pool, DefaultPool},
		{"group hosts", strings.Join(g.Hosts, ","), "h1"},
		{"desired", *g.Desired, 1},
		{"interval", g.Scaling.EvaluationInterval, DefaultEvaluationInterval},
		{"vcpus", g.Template.VCPUs, DefaultVCPUs},
		{"memory", g.Template.Memory, DefaultMemory},
		{"network", g.Template.Network.Type, NetworkNone},
		{"shutdown", g.Template.ShutdownGrace(), DefaultShutdownTimeout},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %v, want %v", c.name, c.got, c.want)
		}
	}
}

func TestEveryErrorIsReportedWithItsPath(t *testing.T) {
	body := `
version: v1alpha1
controller:
  bogus: true
autoscale:
  hosts:
    - {name: h1, uri: "qemu:///system"}
  groups:
    - {name: ok, min: 0, max: 2, template: {diskSize: 1GiB}}
    - name: bad
      hosts: [h1, nope]
      min: 3
      max: 2
      scaling: {evaluationInterval: -1s}
      template: {memory: 1GiB, diskSize: 1GiB, network: {type: wifi}, shutdownTimeout: -5s, unknown: 1}
`
	_, err := load(writeConfig(t, body), noEnv, nil)
	if err == nil {
		t.Fatal("broken config loaded without error")
	}
	for _, want := range []string{
		"controller.bogus: unknown key",
		"autoscale.groups[1].template.unknown: unknown key",
		"autoscale.groups[1].hosts[1]: unknown host \"nope\"",
		"autoscale.groups[1].max: must be >= min (3)",
		"autoscale.groups[1].scaling.evaluationInterval: must be >= 1s",
		"autoscale.groups[1].template.network.type: must be one of",
		"autoscale.groups[1].template.shutdownTimeout: must be >= 0",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
}

func TestEnvironmentAndFlagsOverrideTheFile(t *testing.T) {
	env := func() []string {
		return []string{
			"PREMISCALE_CONTROLLER_TEMPORAL_TASK_QUEUE=from-env",
			"PREMISCALE_CONTROLLER_TEMPORAL_ADDRESS=temporal.example:7233",
			"PREMISCALE_LOG_LEVEL=debug",
			"PREMISCALE_LOG_FILE=/tmp/x.log",
			"PREMISCALE_CONFIG_PATH=/ignored",
		}
	}
	cfg, err := load(writeConfig(t, minimal), env, map[string]any{KeyLogLevel: "warn"})
	if err != nil {
		t.Fatal(err)
	}
	if got := cfg.Controller.Temporal.TaskQueue; got != "from-env" {
		t.Errorf("task queue = %q, want from-env", got)
	}
	if cfg.UsesEmbedded() || cfg.TemporalAddress() != "temporal.example:7233" {
		t.Errorf("address = %q, embedded %v; want the env's address", cfg.TemporalAddress(), cfg.UsesEmbedded())
	}
	if got := cfg.Controller.Log.Level; got != "warn" {
		t.Errorf("log level = %q, want the flag's warn over the env's debug", got)
	}
	if got := cfg.Controller.Log.File; got != "/tmp/x.log" {
		t.Errorf("log file = %q, want /tmp/x.log", got)
	}
}

func TestUnknownEnvironmentVariableIsAnError(t *testing.T) {
	_, err := load(writeConfig(t, minimal), func() []string { return []string{"PREMISCALE_CONTROLER_STATEDIR=/x"} }, nil)
	if err == nil || !strings.Contains(err.Error(), "PREMISCALE_CONTROLER_STATEDIR") {
		t.Fatalf("err = %v, want the misspelt variable named", err)
	}
}

func TestMissingFileNamesThePath(t *testing.T) {
	_, err := load("/nonexistent/premiscale.yaml", noEnv, nil)
	if err == nil || !strings.Contains(err.Error(), "/nonexistent/premiscale.yaml") {
		t.Fatalf("err = %v, want the path named", err)
	}
}

func TestParseSize(t *testing.T) {
	tests := []struct {
		in      string
		want    uint64
		wantErr bool
	}{
		{"512MiB", 512 << 20, false},
		{"2GiB", 2 << 30, false},
		{"1G", 1 << 30, false},
		{"10GB", 10e9, false},
		{"4096KiB", 4 << 20, false},
		{"256", 0, true},
		{"MiB", 0, true},
		{"1.5GiB", 0, true},
		{"99999999999999999999B", 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseSize(tt.in)
			if (err != nil) != tt.wantErr || got != tt.want {
				t.Errorf("ParseSize(%q) = %d, %v; want %d, err %v", tt.in, got, err, tt.want, tt.wantErr)
			}
		})
	}
}

func TestShutdownTimeoutZeroMeansDestroyAtOnce(t *testing.T) {
	body := strings.Replace(minimal, "{diskSize: 1GiB}", "{diskSize: 1GiB, shutdownTimeout: 0s}", 1)
	cfg, err := load(writeConfig(t, body), noEnv, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := cfg.Autoscale.Groups[0].Template.ShutdownGrace(); got != 0 {
		t.Errorf("shutdown grace = %s, want 0 (explicit 0s kept, not defaulted)", got)
	}
}
