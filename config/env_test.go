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
