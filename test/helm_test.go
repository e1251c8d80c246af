package test

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/yaml"
)

const chartDir = "../deploy/helm/premiscale"

func helmBinary(t *testing.T) string {
	t.Helper()
	if p, err := exec.LookPath("helm"); err == nil {
		return p
	}
	gopath, err := exec.Command("go", "env", "GOPATH").Output()
	if err == nil {
		if p := filepath.Join(strings.TrimSpace(string(gopath)), "bin", "helm"); fileExists(p) {
			return p
		}
	}
	if os.Getenv("REQUIRE_LIBVIRT") == "1" {
		t.Fatal("helm not installed (make test installs it with go install)")
	}
	t.Skip("helm not installed: run through make test")
	return ""
}

func fileExists(p string) bool { _, err := os.Stat(p); return err == nil }

// TestHelmChartRendersValidObjectsAndAConfigThatLoads: for each values file
// in the chart's ci/ directory, helm lint passes and helm template renders
// objects that decode strictly (no unknown field, every type right) into
// the Kubernetes API types this project builds against; the controller is
// one non-root replica probed on /healthz and /readyz; the ClusterRole
// grants exactly what PremiScale uses; and the rendered config file, with
// the pod's environment, passes `premiscale --validate`.
func TestHelmChartRendersValidObjectsAndAConfigThatLoads(t *testing.T) {
	helm := helmBinary(t)
	values, err := filepath.Glob(filepath.Join(chartDir, "ci", "*.yaml"))
	if err != nil || len(values) < 3 {
		t.Fatalf("ci values files: %v %v", values, err)
	}
	decoder := serializer.NewCodecFactory(scheme.Scheme, serializer.EnableStrict).UniversalDeserializer()
	for _, vf := range values {
		t.Run(filepath.Base(vf), func(t *testing.T) {
			if out, err := exec.Command(helm, "lint", "--strict", chartDir, "-f", vf).CombinedOutput(); err != nil {
				t.Fatalf("helm lint: %v\n%s", err, out)
			}
			// As on a cluster with the prometheus-operator's CRDs, so the
			// ServiceMonitor renders too.
			out, err := exec.Command(helm, "template", "ps", chartDir, "-f", vf, "--namespace", "premiscale",
				"--api-versions", "monitoring.coreos.com/v1/ServiceMonitor").Output()
			if err != nil {
				t.Fatalf("helm template: %v", err)
			}
			var deployments []*appsv1.Deployment
			var config string
			kinds := map[string]int{}
			for _, doc := range bytes.Split(out, []byte("\n---\n")) {
				if len(bytes.TrimSpace(doc)) == 0 || !bytes.Contains(doc, []byte("kind:")) {
					continue
				}
				var meta struct {
					APIVersion string `json:"apiVersion"`
					Kind       string `json:"kind"`
				}
				if err := yaml.Unmarshal(doc, &meta); err != nil {
					t.Fatalf("rendered document: %v\n%s", err, doc)
				}
				kinds[meta.Kind]++
				if meta.APIVersion == "monitoring.coreos.com/v1" {
					continue // the prometheus-operator's CRD, not in the API types
				}
				obj, _, err := decoder.Decode(doc, nil, nil)
				if err != nil {
					t.Errorf("%s does not decode strictly: %v", meta.Kind, err)
					continue
				}
				switch o := obj.(type) {
				case *appsv1.Deployment:
					deployments = append(deployments, o)
				case *corev1.ConfigMap:
					if c, ok := o.Data["config.yaml"]; ok {
						config = c
					}
				case *rbacv1.ClusterRole:
					checkClusterRole(t, o)
				}
			}
			t.Logf("rendered %v", kinds)
			if len(deployments) == 0 || config == "" {
				t.Fatalf("no Deployment or config: %v", kinds)
			}
			for _, d := range deployments {
				checkDeployment(t, d)
			}
			validateRenderedConfig(t, config, deployments[0])
		})
	}
	b, err := os.ReadFile(filepath.Join(chartDir, "dashboards", "premiscale.json"))
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Panels []struct {
			Targets []struct{ Expr string } `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(b, &dash); err != nil || len(dash.Panels) == 0 {
		t.Fatalf("dashboard: %v", err)
	}
}

func checkDeployment(t *testing.T, d *appsv1.Deployment) {
	t.Helper()
	spec := d.Spec.Template.Spec
	if spec.SecurityContext == nil || spec.SecurityContext.RunAsNonRoot == nil || !*spec.SecurityContext.RunAsNonRoot {
		t.Errorf("%s: pod not runAsNonRoot", d.Name)
	}
	c := spec.Containers[0]
	if c.SecurityContext == nil || c.SecurityContext.ReadOnlyRootFilesystem == nil || !*c.SecurityContext.ReadOnlyRootFilesystem ||
		c.SecurityContext.AllowPrivilegeEscalation == nil || *c.SecurityContext.AllowPrivilegeEscalation {
		t.Errorf("%s: container security context %+v", d.Name, c.SecurityContext)
	}
	if c.LivenessProbe == nil || c.LivenessProbe.HTTPGet.Path != "/healthz" || c.ReadinessProbe == nil || c.ReadinessProbe.HTTPGet.Path != "/readyz" {
		t.Errorf("%s: probes %+v %+v", d.Name, c.LivenessProbe, c.ReadinessProbe)
	}
	if d.Labels["app.kubernetes.io/component"] == "controller" {
		if d.Spec.Replicas == nil || *d.Spec.Replicas != 1 {
			t.Errorf("controller replicas %v, want 1", d.Spec.Replicas)
		}
	} else if !slices.Contains(c.Args, "worker") {
		t.Errorf("%s: args %v, want the worker command", d.Name, c.Args)
	}
	embedded := !slices.ContainsFunc(c.Env, func(e corev1.EnvVar) bool { return e.Name == "PREMISCALE_CONTROLLER_TEMPORAL_ADDRESS" })
	if embedded {
		if d.Spec.Strategy.Type != appsv1.RecreateDeploymentStrategyType {
			t.Errorf("embedded controller strategy %q, want Recreate (one pod on the database)", d.Spec.Strategy.Type)
		}
		if !slices.ContainsFunc(spec.Volumes, func(v corev1.Volume) bool { return v.PersistentVolumeClaim != nil }) {
			t.Error("embedded controller without a PersistentVolumeClaim for its state")
		}
	}
}

func checkClusterRole(t *testing.T, r *rbacv1.ClusterRole) {
	t.Helper()
	var got []string
	for _, rule := range r.Rules {
		for _, g := range rule.APIGroups {
			for _, res := range rule.Resources {
				for _, v := range rule.Verbs {
					got = append(got, g+"/"+res+":"+v)
				}
			}
		}
	}
	slices.Sort(got)
	want := []string{"/nodes:delete", "/nodes:list", "/nodes:patch", "/nodes:watch",
		"/pods/eviction:create", "/pods:get", "/pods:list", "apps/daemonsets:get"}
	if !slices.Equal(got, want) {
		t.Errorf("ClusterRole grants %v, want exactly %v", got, want)
	}
}

// validateRenderedConfig runs `premiscale --validate` on the rendered
// config with the controller pod's environment.
func validateRenderedConfig(t *testing.T, config string, d *appsv1.Deployment) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(path, []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(premiscaleBin, "--validate", "-c", path)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir()}
	for _, e := range d.Spec.Template.Spec.Containers[0].Env {
		cmd.Env = append(cmd.Env, e.Name+"="+e.Value)
	}
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("premiscale --validate on the rendered config: %v\n%s\n%s", err, out, config)
	}
}
