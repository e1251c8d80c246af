package config

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
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
	for _, name := range []string{"examples/demo.yaml", "examples/test-driver.yaml", "examples/metrics.yaml", "cluster-autoscaler/premiscale.yaml"} {
		t.Run(name, func(t *testing.T) {
			if _, err := load(filepath.Join("..", "deploy", name), noEnv, nil); err != nil {
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
		{"host watch", cfg.Controller.HostWatch.On(), true},
		{"resync interval", cfg.Controller.HostWatch.ResyncInterval, DefaultResyncInterval},
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
  hostWatch: {resyncInterval: 2s}
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
		"controller.hostWatch.resyncInterval: must be in [10s, 24h], got 2s",
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

func TestScalingErrorsNameTheirPaths(t *testing.T) {
	body := `
version: v1alpha1
autoscale:
  hosts:
    - {name: h1, uri: "test:///default"}
  groups:
    - name: web
      max: 3
      template: {diskSize: 1GiB}
      scaling:
        mode: sometimes
        checks:
          - {name: cpu, query: "avg(cpu)", strategy: threshold, upperBound: 0.9, delta: 1, percentage: 50}
          - {name: lat, query: "avg(lat)", strategy: targetValue, target: -0.5}
          - {name: q, query: "", strategy: magic}
          - {name: lat, query: "x", strategy: passThrough, target: 3, onError: panic}
        scaleIn: {stabilizationWindow: -1s, cooldown: -5s, maxStep: "0"}
        scaleOut: {maxStep: "150"}
`
	_, err := load(writeConfig(t, body), noEnv, nil)
	if err == nil {
		t.Fatal("broken scaling loaded without error")
	}
	for _, want := range []string{
		"autoscale.groups[0].scaling.mode: must be one of on, scaleOutOnly, off, clusterAutoscaler",
		"autoscale.groups[0].scaling.checks[0]: threshold needs exactly one of delta, percentage or value, got 2",
		"autoscale.groups[0].scaling.checks[1].target: must be a positive number, got -0.5",
		"autoscale.groups[0].scaling.checks[2].query: must be a PromQL query",
		"autoscale.groups[0].scaling.checks[2].strategy: must be one of",
		"autoscale.groups[0].scaling.checks[3].name: duplicate check name",
		"autoscale.groups[0].scaling.checks[3].target: is not a parameter of strategy passThrough",
		"autoscale.groups[0].scaling.checks[3].onError: must be one of hold, ignore",
		"autoscale.groups[0].scaling.scaleIn.stabilizationWindow: must be >= 0, got -1s",
		"autoscale.groups[0].scaling.scaleIn.cooldown: must be >= 0",
		"autoscale.groups[0].scaling.scaleIn.maxStep: must be a count >= 1",
		"controller.prometheus.address: must be set",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q", want)
		}
	}
	if strings.Contains(err.Error(), "scaleOut.maxStep") {
		t.Errorf("maxStep 150 (a count) rejected: %v", err)
	}
}

func TestScalingDefaults(t *testing.T) {
	body := `
version: v1alpha1
controller:
  prometheus: {address: "http://127.0.0.1:9090"}
autoscale:
  hosts:
    - {name: h1, uri: "test:///default"}
  groups:
    - name: web
      max: 3
      template: {diskSize: 1GiB}
      scaling:
        checks:
          - {name: cpu, query: "avg(cpu)", strategy: targetValue, target: 0.6}
`
	cfg, err := load(writeConfig(t, body), noEnv, nil)
	if err != nil {
		t.Fatal(err)
	}
	sc := cfg.Autoscale.Groups[0].Scaling
	c := sc.Checks[0]
	checks := []struct {
		name      string
		got, want any
	}{
		{"mode", sc.Mode, ScalingMode(ModeOn)},
		{"onError", c.OnError, OnErrorHold},
		{"tolerance", *c.Tolerance, DefaultTolerance},
		{"scaleOut cooldown", *sc.ScaleOut.Cooldown, DefaultScaleOutCooldown},
		{"scaleIn cooldown", *sc.ScaleIn.Cooldown, DefaultScaleInCooldown},
		{"scaleOut window", *sc.ScaleOut.StabilizationWindow, DefaultScaleOutWindow},
		{"scaleIn window", *sc.ScaleIn.StabilizationWindow, DefaultScaleInWindow},
		{"query timeout", cfg.Controller.Prometheus.QueryTimeout, DefaultQueryTimeout},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %v, want %v", c.name, c.got, c.want)
		}
	}
}

func TestParseMaxStep(t *testing.T) {
	tests := []struct {
		in      string
		count   int
		percent float64
		wantErr bool
	}{
		{"", 0, 0, false},
		{"2", 2, 0, false},
		{"50%", 0, 50, false},
		{" 25 % ", 0, 25, false},
		{"0", 0, 0, true},
		{"-1", 0, 0, true},
		{"0%", 0, 0, true},
		{"lots", 0, 0, true},
	}
	for _, tt := range tests {
		n, p, err := ParseMaxStep(tt.in)
		if n != tt.count || p != tt.percent || (err != nil) != tt.wantErr {
			t.Errorf("ParseMaxStep(%q) = %d, %v, %v; want %d, %v, err %v", tt.in, n, p, err, tt.count, tt.percent, tt.wantErr)
		}
	}
}

func TestPlacementAndHostCapacityErrorsNameTheirPaths(t *testing.T) {
	body := `
version: v1alpha1
autoscale:
  hosts:
    - {name: h1, uri: "test:///default", cpuOvercommit: 0.5, memoryOvercommit: -1, reserved: {memory: lots, cpus: -2}, maxConcurrentCalls: 65}
  groups:
    - {name: web, max: 3, template: {diskSize: 1GiB}, placement: {strategy: scatter, maxPerHost: -1}}
  orphans: {action: purge, gracePeriod: -1m, scanInterval: 10ms}
`
	_, err := load(writeConfig(t, body), noEnv, nil)
	if err == nil {
		t.Fatal("broken placement loaded without error")
	}
	for _, want := range []string{
		"autoscale.hosts[0].cpuOvercommit: must be >= 1, got 0.5",
		"autoscale.hosts[0].memoryOvercommit: must be >= 1, got -1",
		"autoscale.hosts[0].maxConcurrentCalls: must be from 1 to 64 (0: the default, 8), got 65",
		"autoscale.hosts[0].reserved.memory:",
		"autoscale.hosts[0].reserved.cpus: must be >= 0",
		"autoscale.groups[0].placement.strategy: must be one of spread, vacancy, binpack, random",
		"autoscale.groups[0].placement.maxPerHost: must be >= 0",
		"autoscale.orphans.action: must be one of report, delete",
		"autoscale.orphans.gracePeriod: must be >= 1m0s",
		"autoscale.orphans.scanInterval: must be >= 1s",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q", want)
		}
	}
}

func TestKubernetesErrorsNameTheirPaths(t *testing.T) {
	body := `
version: v1alpha1
controller:
  kubernetes: {inCluster: true, kubeconfig: /x, tokenTTL: 10s, caCertHashes: ["md5:abc"]}
autoscale:
  hosts:
    - {name: h1, uri: "test:///default"}
  groups:
    - name: web
      max: 3
      scaling: {scaleOut: {selection: oldest}, scaleIn: {selection: biggest}}
      kubernetes:
        join: kubeadm
        nodeName: "{{.VM"
        labels: {"bad key!": x, ok: "bad value!"}
        taints: [{key: dedicated, value: gpu, effect: Sometimes}]
        readyTimeout: 10s
        drain: {timeout: 0.5s, gracePeriod: -5s, onTimeout: ignore}
    - name: db
      max: 1
      kubernetes: {join: userData}
    - name: q
      max: 1
      scaling: {scaleIn: {selection: leastPods}}
`
	_, err := load(writeConfig(t, body), noEnv, nil)
	if err == nil {
		t.Fatal("broken kubernetes config loaded without error")
	}
	for _, want := range []string{
		"controller.kubernetes: set inCluster or kubeconfig, not both",
		"controller.kubernetes.tokenTTL: must be >= 1m",
		`controller.kubernetes.caCertHashes[0]: must be sha256:<64 hex digits>, got "md5:abc"`,
		"controller.kubernetes.apiServerEndpoint: must be set for kubeadm join (group autoscale.groups[0])",
		"autoscale.groups[0].scaling.scaleOut.selection: is not a scale-out setting",
		"autoscale.groups[0].scaling.scaleIn.selection: must be one of newest, oldest, leastPods",
		"autoscale.groups[0].kubernetes.nodeName:",
		`autoscale.groups[0].kubernetes.labels: invalid label key "bad key!"`,
		`autoscale.groups[0].kubernetes.labels.ok: invalid label value "bad value!"`,
		"autoscale.groups[0].kubernetes.taints[0].effect: must be one of NoSchedule, PreferNoSchedule, NoExecute",
		"autoscale.groups[0].kubernetes.readyTimeout: must be >= 1m",
		"autoscale.groups[0].kubernetes.drain.timeout: must be >= 1s",
		"autoscale.groups[0].kubernetes.drain.gracePeriod: must be >= 0s, or -1s",
		"autoscale.groups[0].kubernetes.drain.onTimeout: must be one of abort, force",
		"autoscale.groups[1].kubernetes.userData: must be set (or userDataFile) for join userData",
		"autoscale.groups[2].scaling.scaleIn.selection: leastPods needs the group's VMs to be nodes",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q", want)
		}
	}
}

func TestKubernetesDefaultsAndUserDataFile(t *testing.T) {
	dir := t.TempDir()
	ud := filepath.Join(dir, "user-data.tmpl")
	if err := os.WriteFile(ud, []byte("#cloud-config\nhostname: {{.NodeName}}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	body := `
version: v1alpha1
controller:
  kubernetes: {kubeconfig: /etc/kubeconfig}
autoscale:
  hosts:
    - {name: h1, uri: "test:///default"}
  groups:
    - {name: web, max: 3, template: {diskSize: 1GiB}, kubernetes: {join: userData, userDataFile: ` + ud + `}}
`
	cfg, err := load(writeConfig(t, body), noEnv, nil)
	if err != nil {
		t.Fatal(err)
	}
	k := cfg.Autoscale.Groups[0].Kubernetes
	if k.UserData != "#cloud-config\nhostname: {{.NodeName}}\n" {
		t.Errorf("userData = %q, want the file's content", k.UserData)
	}
	if k.NodeName != DefaultNodeName || k.ReadyTimeout != 15*time.Minute || k.Drain.Timeout != DefaultDrainTimeout ||
		*k.Drain.GracePeriod != -time.Second || !*k.Drain.IgnoreDaemonSets || k.Drain.OnTimeout != DrainAbort {
		t.Errorf("kubernetes defaults not applied: %+v drain %+v", k, k.Drain)
	}
	if sel := cfg.Autoscale.Groups[0].Scaling.ScaleIn.Selection; sel != SelectNewest {
		t.Errorf("scaleIn.selection = %q, want newest", sel)
	}
	if cfg.Controller.Kubernetes.TokenTTL != DefaultTokenTTL {
		t.Errorf("tokenTTL = %s", cfg.Controller.Kubernetes.TokenTTL)
	}
}

func TestClusterAutoscalerErrorsNameTheirPaths(t *testing.T) {
	body := `
version: v1alpha1
controller:
  clusterAutoscaler: {listen: "localhost", certFile: /c.pem}
autoscale:
  hosts:
    - {name: h1, uri: "test:///default"}
  groups:
    - name: ca
      max: 3
      scaling: {mode: clusterAutoscaler, checks: [{name: x, query: up, strategy: passThrough}]}
`
	_, err := load(writeConfig(t, body), noEnv, nil)
	if err == nil {
		t.Fatal("broken clusterAutoscaler config loaded without error")
	}
	for _, want := range []string{
		"controller.clusterAutoscaler.listen: must be host:port",
		"controller.clusterAutoscaler: certFile, keyFile and clientCAFile are required (mutual TLS), unless insecure: true",
		"autoscale.groups[0].scaling.checks: must be empty in clusterAutoscaler mode",
		"autoscale.groups[0].kubernetes.join: must not be none in clusterAutoscaler mode",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q", want)
		}
	}
}

func TestEmbeddedPostgresDSN(t *testing.T) {
	for _, tc := range []struct {
		dsn, passwordFile string
		want              string // error substring; empty: valid
	}{
		{"postgres://ps:secret@db.example:6432/temporal?sslmode=verify-full", "", ""},
		{"postgresql://ps@10.0.0.5/temporal", "/etc/premiscale/pg", ""},
		{"mysql://ps@db/temporal", "", `controller.temporal.embedded.postgres.dsn: scheme must be postgres://, got "mysql"`},
		{"postgres://db.example/temporal", "", "controller.temporal.embedded.postgres.dsn: has no user"},
		{"postgres://ps@db.example/", "", "controller.temporal.embedded.postgres.dsn: must name one database"},
		{"postgres://ps:p%zzword@db/temporal", "", "controller.temporal.embedded.postgres.dsn: does not parse"},
		{"postgres://ps:secret@db/temporal", "/etc/premiscale/pg", "controller.temporal.embedded.postgres.passwordFile: set a password in the dsn or passwordFile, not both"},
		{"", "/etc/premiscale/pg", "controller.temporal.embedded.postgres.passwordFile: needs controller.temporal.embedded.postgres.dsn"},
	} {
		body := strings.Replace(minimal, "version: v1alpha1\n", fmt.Sprintf("version: v1alpha1\ncontroller:\n  temporal:\n    embedded:\n      postgres: {dsn: %q, passwordFile: %q}\n", tc.dsn, tc.passwordFile), 1)
		_, err := load(writeConfig(t, body), noEnv, nil)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("dsn %q: %v", tc.dsn, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("dsn %q, passwordFile %q: err = %v, want %q", tc.dsn, tc.passwordFile, err, tc.want)
		case err != nil && strings.Contains(err.Error(), "secret"):
			t.Errorf("dsn %q: the error repeats the password: %v", tc.dsn, err)
		}
	}
	d, err := ParsePostgresDSN("postgres://ps:s%40cret@db.example/temporal?sslmode=require&connect_timeout=5")
	if err != nil {
		t.Fatal(err)
	}
	if d.Addr != "db.example:5432" || d.User != "ps" || d.Password != "s@cret" || d.Database != "temporal" || d.Params["sslmode"] != "require" || d.Params["connect_timeout"] != "5" {
		t.Errorf("parsed %+v", d)
	}
}

func TestScheduleErrorsNameTheirPaths(t *testing.T) {
	body := `
version: v1alpha1
autoscale:
  hosts:
    - {name: h1, uri: "test:///default"}
  groups:
    - name: web
      min: 1
      max: 10
      template: {diskSize: 1GiB}
      schedules:
        - {name: day, cron: "0 8 * * 1-5", timeZone: Europe/Berlin, duration: 11h, min: 20}
        - {name: day, cron: "0 25 * * *", duration: 1h, max: 0}
        - {name: tz, cron: "CRON_TZ=UTC 0 8 * * *", timeZone: Mars/Olympus, duration: 30s}
        - {name: every, cron: "@every 5m", duration: 1h, desired: 12}
        - {name: Bad_Name, cron: "@daily", duration: 1h, min: 3, max: 20}
`
	_, err := load(writeConfig(t, body), noEnv, nil)
	if err == nil {
		t.Fatal("broken schedules loaded without error")
	}
	for _, want := range []string{
		"autoscale.groups[0].schedules[0]: min 20 and max 10 during the window",
		"autoscale.groups[0].schedules[1].name: duplicate schedule name \"day\"",
		"autoscale.groups[0].schedules[1].cron: \"0 25 * * *\" is not a five-field cron expression",
		"autoscale.groups[0].schedules[1]: min 1 and max 0 during the window",
		"autoscale.groups[0].schedules[2].cron: must not carry a time zone; set timeZone",
		"autoscale.groups[0].schedules[2].timeZone: unknown time zone \"Mars/Olympus\"",
		"autoscale.groups[0].schedules[2].duration: must be >= 1m, got 30s",
		"autoscale.groups[0].schedules[2]: must set at least one of min, max, desired",
		"autoscale.groups[0].schedules[3].cron: @every is not a calendar",
		"autoscale.groups[0].schedules[3].desired: must be within [min, max] = [1, 10] during the window, got 12",
		"autoscale.groups[0].schedules[4].name:",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q\n%v", want, err)
		}
	}
	if strings.Contains(err.Error(), "schedules[4].max") || strings.Contains(err.Error(), "schedules[4]: min") {
		t.Errorf("a valid window (min 3, max 20) was refused:\n%v", err)
	}

	good := `
version: v1alpha1
autoscale:
  hosts:
    - {name: h1, uri: "test:///default"}
  groups:
    - name: web
      min: 1
      max: 10
      template: {diskSize: 1GiB}
      schedules:
        - {name: business-hours, cron: "0 8 * * MON-FRI", timeZone: America/New_York, duration: 11h, min: 5, max: 30, desired: 8}
        - {name: nightly, cron: "@daily", duration: 2h, max: 2}
`
	if _, err := load(writeConfig(t, good), noEnv, nil); err != nil {
		t.Fatalf("valid schedules refused: %v", err)
	}
}

func TestWarmPoolErrorsNameTheirPaths(t *testing.T) {
	body := `
version: v1alpha1
autoscale:
  hosts:
    - {name: h1, uri: "test:///default"}
  groups:
    - {name: a, max: 4, template: {diskSize: 1GiB}, warmPool: {size: 2, minSize: 1, state: frozen}}
    - {name: b, max: 4, template: {diskSize: 1GiB}, warmPool: {minSize: 3, maxPreparedSize: 2, ready: {timeout: 1s}}}
    - {name: c, max: 4, template: {diskSize: 1GiB}, warmPool: {size: -1}}
    - {name: d, max: 4, template: {diskSize: 1GiB}, warmPool: {state: paused}}
    - {name: e, max: 4, template: {diskSize: 1GiB}, warmPool: {size: 1, ready: {consoleLine: "a\nb"}}}
`
	_, err := load(writeConfig(t, body), noEnv, nil)
	if err == nil {
		t.Fatal("broken warm pools loaded without error")
	}
	for _, want := range []string{
		"autoscale.groups[0].warmPool.size: set either size or minSize/maxPreparedSize, not both",
		"autoscale.groups[0].warmPool.state: must be one of hibernated, paused, stopped, got \"frozen\"",
		"autoscale.groups[1].warmPool.maxPreparedSize: must be >= minSize (3), got 2",
		"autoscale.groups[1].warmPool.ready.timeout: must be >= 10s, got 1s",
		"autoscale.groups[2].warmPool.size: must be >= 0, got -1",
		"autoscale.groups[3].warmPool: must set size, or minSize and/or maxPreparedSize",
		"autoscale.groups[4].warmPool.ready.consoleLine: must be text within one line",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q\n%v", want, err)
		}
	}
	if strings.Contains(err.Error(), "groups[3].warmPool.state") {
		t.Errorf("a valid state was refused:\n%v", err)
	}
}

func TestRefreshErrorsNameTheirPaths(t *testing.T) {
	body := `
version: v1alpha1
autoscale:
  hosts:
    - {name: h1, uri: "test:///default"}
  groups:
    - {name: a, max: 4, template: {diskSize: 1GiB}, refresh: {mode: always, minHealthy: 101%, batch: -1}}
    - {name: b, max: 4, template: {diskSize: 1GiB}, refresh: {minHealthy: most, checkpoints: [50, 20]}}
    - {name: c, max: 4, template: {diskSize: 1GiB}, refresh: {mode: auto, minHealthy: "66%", batch: 2, checkpoints: [20, 100], checkpointDelay: 30m}}
    - {name: d, max: 4, template: {diskSize: 1GiB}, refresh: {checkpoints: [0, 101], checkpointDelay: 49h}}
    - {name: e, max: 4, template: {diskSize: 1GiB}, refresh: {checkpointDelay: 5m}}
`
	_, err := load(writeConfig(t, body), noEnv, nil)
	if err == nil {
		t.Fatal("broken refresh settings loaded without error")
	}
	for _, want := range []string{
		`autoscale.groups[0].refresh.mode: must be manual or auto, got "always"`,
		`autoscale.groups[0].refresh.minHealthy: must be a percentage from 0% to 100%, got "101%"`,
		"autoscale.groups[0].refresh.batch: must be from 0 to 1000, got -1",
		`autoscale.groups[1].refresh.minHealthy: must be a percentage from 0% to 100%, got "most"`,
		"autoscale.groups[1].refresh.checkpoints: must be ascending, each once, got 20 after 50",
		"autoscale.groups[3].refresh.checkpoints: must be percentages from 1 to 100, got 0",
		"autoscale.groups[3].refresh.checkpointDelay: must be from 0s to 48h0m0s, got 49h0m0s",
		"autoscale.groups[4].refresh.checkpointDelay: needs checkpoints to wait at",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q\n%v", want, err)
		}
	}
	if strings.Contains(err.Error(), "groups[2]") {
		t.Errorf("valid refresh settings were refused:\n%v", err)
	}
	cfg, err := load(writeConfig(t, `
version: v1alpha1
autoscale:
  hosts:
    - {name: h1, uri: "test:///default"}
  groups:
    - {name: x, max: 1, template: {diskSize: 1GiB}}
    - {name: c, max: 4, template: {diskSize: 1GiB}, refresh: {mode: auto, minHealthy: "66%", batch: 2}}
`), noEnv, nil)
	if err != nil {
		t.Fatal(err)
	}
	x, c := cfg.Autoscale.Groups[0].Refresh, cfg.Autoscale.Groups[1].Refresh
	if x.Mode != RefreshManual || x.MinHealthyPercent() != 90 || c.Mode != RefreshAuto || c.MinHealthyPercent() != 66 || c.Batch != 2 {
		t.Errorf("refresh settings = %+v (%d%%) and %+v (%d%%), want manual 90%% and auto 66%% batch 2", x, x.MinHealthyPercent(), c, c.MinHealthyPercent())
	}
}

func TestWarmPoolTargetFollowsDesired(t *testing.T) {
	n := func(v int) *int { return &v }
	for _, tc := range []struct {
		name         string
		pool         *WarmPool
		desired, max int
		want         int
	}{
		{"no pool", nil, 2, 10, 0},
		{"fixed size", &WarmPool{Size: n(3)}, 8, 10, 3},
		{"prepared defaults to max", &WarmPool{MinSize: n(0)}, 4, 10, 6},
		{"prepared capacity", &WarmPool{MaxPreparedSize: n(6)}, 4, 10, 2},
		{"min size holds when the group is large", &WarmPool{MinSize: n(2), MaxPreparedSize: n(6)}, 5, 10, 2},
		{"never negative", &WarmPool{MaxPreparedSize: n(3)}, 5, 10, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.pool.Target(tc.desired, tc.max); got != tc.want {
				t.Errorf("Target(%d, %d) = %d, want %d", tc.desired, tc.max, got, tc.want)
			}
		})
	}
}
