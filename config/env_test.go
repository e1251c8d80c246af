package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func envOf(kv ...string) func() []string { return func() []string { return kv } }

// TestOldDeploymentsTokenIsAcceptedWithANotice: PREMISCALE_TOKEN, set by
// every deployment of the original controller, loads with a notice instead
// of failing as an unknown variable.
func TestOldDeploymentsTokenIsAcceptedWithANotice(t *testing.T) {
	cfg, err := load(writeConfig(t, minimal), envOf("PREMISCALE_TOKEN=abc123"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Notices) != 1 || !strings.Contains(cfg.Notices[0], "PREMISCALE_TOKEN") || strings.Contains(cfg.Notices[0], "abc123") {
		t.Errorf("notices %q, want one naming PREMISCALE_TOKEN without its value", cfg.Notices)
	}
}

// TestLogFileVariableActsAsTheFlag: PREMISCALE_LOG_FILE logs to the file
// even where the config file says stdout, as --log-file does; without it
// the default is standard output.
func TestLogFileVariableActsAsTheFlag(t *testing.T) {
	body := minimal + "controller:\n  log: {stdout: true}\n"
	cfg, err := load(writeConfig(t, body), envOf("PREMISCALE_LOG_FILE=/tmp/p.log"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Controller.Log.Stdout || cfg.Controller.Log.File != "/tmp/p.log" {
		t.Errorf("log %+v, want the file and not stdout", cfg.Controller.Log)
	}
	cfg, err = load(writeConfig(t, minimal), noEnv, nil)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Controller.Log.File != "" {
		t.Errorf("default log file %q, want none (standard output)", cfg.Controller.Log.File)
	}
}

// TestModeOnAndOffAsYAML11Booleans: Helm, PyYAML and yq write an unquoted
// on/off as true/false; those read as the modes.
func TestModeOnAndOffAsYAML11Booleans(t *testing.T) {
	for _, tc := range []struct {
		yaml string
		want ScalingMode
	}{{"true", ModeOn}, {"false", ModeOff}, {"on", ModeOn}, {`"scaleOutOnly"`, ModeScaleOutOnly}} {
		cfg, err := load(writeConfig(t, strings.Replace(minimal, "template: {diskSize: 1GiB}", "template: {diskSize: 1GiB}, scaling: {mode: "+tc.yaml+"}", 1)), noEnv, nil)
		if err != nil {
			t.Fatalf("mode %s: %v", tc.yaml, err)
		}
		if got := cfg.Autoscale.Groups[0].Scaling.Mode; got != tc.want {
			t.Errorf("mode %s read as %q, want %q", tc.yaml, got, tc.want)
		}
	}
	if _, err := load(writeConfig(t, strings.Replace(minimal, "template: {diskSize: 1GiB}", "template: {diskSize: 1GiB}, scaling: {mode: 1}", 1)), noEnv, nil); err == nil || !strings.Contains(err.Error(), "autoscale.groups[0].scaling.mode") {
		t.Errorf("mode 1: %v, want an error naming the key", err)
	}
}

// TestKubeconfigFromTheEnvironmentAsKubectlFindsIt: a group that joins
// Kubernetes with no controller.kubernetes uses $KUBECONFIG, else the pod's
// service account, else ~/.kube/config; a config that needs no cluster
// takes none.
func TestKubeconfigFromTheEnvironmentAsKubectlFindsIt(t *testing.T) {
	joins := strings.Replace(minimal, "template: {diskSize: 1GiB}", `template: {diskSize: 1GiB}, kubernetes: {join: userData, userData: "#cloud-config\n"}`, 1)
	home := t.TempDir()
	if err := os.MkdirAll(filepath.Join(home, ".kube"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(home, ".kube", "config"), []byte("apiVersion: v1\nkind: Config\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name       string
		env        []string
		body       string
		kubeconfig string
		inCluster  bool
	}{
		{"KUBECONFIG", []string{"KUBECONFIG=/etc/k/a:/etc/k/b", "HOME=" + home}, joins, "/etc/k/a:/etc/k/b", false},
		{"in a pod", []string{"KUBERNETES_SERVICE_HOST=10.96.0.1", "HOME=" + home}, joins, "", true},
		{"home", []string{"HOME=" + home}, joins, filepath.Join(home, ".kube", "config"), false},
		{"not needed", []string{"KUBECONFIG=/etc/k/a"}, minimal, "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := load(writeConfig(t, tc.body), envOf(tc.env...), nil)
			if err != nil {
				t.Fatal(err)
			}
			k := cfg.Controller.Kubernetes
			if k.Kubeconfig != tc.kubeconfig || k.InCluster != tc.inCluster {
				t.Errorf("kubernetes %+v, want kubeconfig %q inCluster %v", k, tc.kubeconfig, tc.inCluster)
			}
			if (tc.kubeconfig != "" || tc.inCluster) && len(cfg.Notices) == 0 {
				t.Error("no notice says where the cluster came from")
			}
		})
	}
	// Nowhere to find one: the join is refused, naming what is missing.
	if _, err := load(writeConfig(t, joins), envOf("HOME="+t.TempDir()), nil); err == nil || !strings.Contains(err.Error(), "needs controller.kubernetes") {
		t.Errorf("join without any cluster: %v", err)
	}
}

// TestKubernetesServiceLinkVariablesAreNotConfigKeys: the variables a
// kubelet injects for a Service named premiscale-metrics (or any Service
// whose name starts with premiscale) load as nothing, while a variable of
// the same shape with a value no kubelet writes is still refused, and a
// real key still sets its value.
func TestKubernetesServiceLinkVariablesAreNotConfigKeys(t *testing.T) {
	links := []string{
		"PREMISCALE_METRICS_SERVICE_HOST=10.96.4.7",
		"PREMISCALE_METRICS_SERVICE_PORT=9464",
		"PREMISCALE_METRICS_SERVICE_PORT_METRICS=9464",
		"PREMISCALE_METRICS_PORT=tcp://10.96.4.7:9464",
		"PREMISCALE_METRICS_PORT_9464_TCP=tcp://10.96.4.7:9464",
		"PREMISCALE_METRICS_PORT_9464_TCP_PROTO=tcp",
		"PREMISCALE_METRICS_PORT_9464_TCP_PORT=9464",
		"PREMISCALE_METRICS_PORT_9464_TCP_ADDR=10.96.4.7",
		"PREMISCALE_PROD_EXTERNALGRPC_PORT_8086_TCP=tcp://[fd00::8]:8086",
		"PREMISCALE_PROD_EXTERNALGRPC_SERVICE_HOST=fd00::8",
		// A Service whose name is a config key's prefix: the kubelet's
		// _PORT is a URL, not the key's integer.
		"PREMISCALE_CONTROLLER_TEMPORAL_EMBEDDED_PORT=tcp://10.96.0.9:7233",
	}
	cfg, err := load(writeConfig(t, minimal), envOf(append(links, "PREMISCALE_CONTROLLER_TEMPORAL_TASKQUEUE=q1")...), nil)
	if err != nil {
		t.Fatalf("service-link variables refused: %v", err)
	}
	if cfg.Controller.Temporal.TaskQueue != "q1" {
		t.Errorf("task queue %q, want q1 from its variable beside the service links", cfg.Controller.Temporal.TaskQueue)
	}
	for _, bad := range []string{
		"PREMISCALE_METRICS_PORT=9464",                       // a _PORT that is not a URL
		"PREMISCALE_METRICS_SERVICE_HOST=metrics.local",      // not an IP
		"PREMISCALE_METRICS_PORT_9464_TCP=tcp://10.0.0.1:80", // port differs from the name
		"PREMISCALE_METRICS_PORT_9464_TCP_PROTO=udp",
		"PREMISCALE_CONTROLLER_TEMPORAL_EMBEDDED_PORT=http://x", // the key's value, wrong
		"PREMISCALE_CONTROLER_TEMPORAL_TASKQUEUE=q1",            // a typo
	} {
		name, _, _ := strings.Cut(bad, "=")
		if _, err := load(writeConfig(t, minimal), envOf(bad), nil); err == nil || !strings.Contains(err.Error(), name) {
			t.Errorf("%s: %v, want refused naming the variable", bad, err)
		}
	}
}

// TestInlineSecretsRefusedWhereTheFileMustHoldNone: with
// controller.inlineSecrets refuse (as the Helm chart sets it), a secret
// written in the config file is refused naming its key and the file key
// to use instead, never its value; the same secret from the environment
// (a Secret's env var) or from a file is accepted, and without refuse the
// file may hold it.
func TestInlineSecretsRefusedWhereTheFileMustHoldNone(t *testing.T) {
	const sentinel = "s3ntinel-value"
	refuse := []string{"PREMISCALE_CONTROLLER_INLINESECRETS=refuse"}
	for _, tc := range []struct{ body, key string }{
		{"controller:\n  prometheus: {address: http://p:9090, bearerToken: " + sentinel + "}\n", "controller.prometheus.bearerToken"},
		{"controller:\n  prometheus: {address: http://p:9090, basicAuth: {username: u, password: " + sentinel + "}}\n", "controller.prometheus.basicAuth.password"},
		{"controller:\n  temporal: {address: t:7233, apiKey: " + sentinel + ", tls: {enabled: true}}\n", "controller.temporal.apiKey"},
		{"controller:\n  temporal: {embedded: {postgres: {dsn: \"postgres://ps:" + sentinel + "@db/temporal\"}}}\n", "controller.temporal.embedded.postgres.dsn"},
	} {
		path := writeConfig(t, minimal+tc.body)
		_, err := load(path, envOf(refuse...), nil)
		if err == nil || !strings.Contains(err.Error(), tc.key+": a secret written in the config file") || strings.Contains(err.Error(), sentinel) {
			t.Errorf("%s inline with refuse: %v, want refused naming the key and not the value", tc.key, err)
		}
		if _, err := load(path, noEnv, nil); err != nil {
			t.Errorf("%s inline without refuse: %v, want accepted", tc.key, err)
		}
	}
	fromEnv := writeConfig(t, minimal+"controller:\n  prometheus: {address: http://p:9090}\n  temporal: {address: t:7233, tls: {enabled: true}}\n")
	env := append(refuse, "PREMISCALE_CONTROLLER_PROMETHEUS_BEARERTOKEN="+sentinel, "TEMPORAL_API_KEY="+sentinel)
	if cfg, err := load(fromEnv, envOf(env...), nil); err != nil || cfg.Controller.Prometheus.BearerToken != sentinel || cfg.Controller.Temporal.APIKey != sentinel {
		t.Errorf("secrets from the environment with refuse: %v", err)
	}
	if _, err := load(writeConfig(t, minimal), envOf("PREMISCALE_CONTROLLER_INLINESECRETS=maybe"), nil); err == nil || !strings.Contains(err.Error(), "controller.inlineSecrets") {
		t.Errorf("inlineSecrets maybe: %v, want refused naming the key", err)
	}
}
