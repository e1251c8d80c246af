package test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/yaml"

	"github.com/premiscale/premiscale/internal/telemetry"
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
	if os.Getenv("PSTEST_REQUIRE_ALL") == "1" {
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
				if meta.APIVersion == "monitoring.coreos.com/v1" || meta.APIVersion == "cert-manager.io/v1" {
					continue // the prometheus-operator's and cert-manager's CRDs, not in the API types
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
				case *rbacv1.Role:
					checkTokenRole(t, o)
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
		t.Fatalf("%s: probes %+v %+v", d.Name, c.LivenessProbe, c.ReadinessProbe)
	}
	if wait := time.Duration(c.ReadinessProbe.TimeoutSeconds) * time.Second; wait <= telemetry.ReadyTimeout {
		t.Errorf("%s: readiness probe gives up after %s, within /readyz's own budget of %s", d.Name, wait, telemetry.ReadyTimeout)
	}
	if spec.EnableServiceLinks == nil || *spec.EnableServiceLinks {
		t.Errorf("%s: service links on (the kubelet would inject the namespace's Services as variables)", d.Name)
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

// checkTokenRole: in kube-system, Secrets may be created and nothing
// else (no verb that reaches Secrets PremiScale did not make).
func checkTokenRole(t *testing.T, r *rbacv1.Role) {
	t.Helper()
	if r.Namespace != "kube-system" || len(r.Rules) != 1 || !slices.Equal(r.Rules[0].Resources, []string{"secrets"}) ||
		!slices.Equal(r.Rules[0].Verbs, []string{"create"}) || len(r.Rules[0].ResourceNames) != 0 {
		t.Errorf("Role %s/%s grants %+v, want create on secrets in kube-system only", r.Namespace, r.Name, r.Rules)
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

// TestClusterAutoscalerValuesMatchTheChart: the files that wire the
// upstream cluster-autoscaler chart to PremiScale (deploy/cluster-autoscaler)
// agree with what PremiScale's chart renders for release premiscale in
// namespace premiscale with clusterAutoscaler.enabled: the cloud config
// dials the chart's externalgrpc Service on its port, reads its TLS files
// from where values.yaml mounts the Secret, values.yaml selects the
// externalgrpc provider with that cloud config and pins the autoscaler of
// the Kubernetes minor this project builds against; and the chart alone
// (no controller.clusterAutoscaler in the values) gives the controller a
// listen address, the TLS Secret's files and allowed clients, in a config
// that passes `premiscale --validate` with the pod's environment.
func TestClusterAutoscalerValuesMatchTheChart(t *testing.T) {
	helm := helmBinary(t)
	values := filepath.Join(t.TempDir(), "values.yaml")
	if err := os.WriteFile(values, []byte(`
clusterAutoscaler: {enabled: true, tlsSecret: premiscale-autoscaler-tls}
config:
  version: v1alpha1
  controller:
    kubernetes: {apiServerEndpoint: "10.0.0.10:6443", caCertHashes: ["sha256:`+strings.Repeat("0f", 32)+`"]}
  autoscale:
    hosts: [{name: kvm1, uri: "qemu+tls://kvm1.example.internal/system?pkipath=/etc/premiscale/hosts"}]
    groups:
      - {name: workers, max: 5, scaling: {mode: clusterAutoscaler}, template: {diskSize: 1GiB}, kubernetes: {join: kubeadm}}
`), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(helm, "template", "premiscale", chartDir, "-f", values, "--namespace", "premiscale").Output()
	if err != nil {
		t.Fatalf("helm template: %v", err)
	}
	decoder := serializer.NewCodecFactory(scheme.Scheme, serializer.EnableStrict).UniversalDeserializer()
	var svc *corev1.Service
	var controller *appsv1.Deployment
	var rendered string
	for _, doc := range bytes.Split(out, []byte("\n---\n")) {
		if !bytes.Contains(doc, []byte("kind:")) {
			continue
		}
		obj, _, err := decoder.Decode(doc, nil, nil)
		if err != nil {
			t.Fatalf("rendered object: %v", err)
		}
		switch o := obj.(type) {
		case *corev1.Service:
			if slices.ContainsFunc(o.Spec.Ports, func(p corev1.ServicePort) bool { return p.Name == "externalgrpc" }) {
				svc = o
			}
		case *appsv1.Deployment:
			if o.Labels["app.kubernetes.io/component"] == "controller" {
				controller = o
			}
		case *corev1.ConfigMap:
			rendered = o.Data["config.yaml"]
		}
	}
	if svc == nil || controller == nil || rendered == "" {
		t.Fatalf("no externalgrpc Service, controller or config rendered")
	}

	var cloud struct{ Address, Cert, Key, Cacert string }
	readYAML(t, "../deploy/cluster-autoscaler/cloud-config.yaml", &cloud)
	if want := fmt.Sprintf("%s.premiscale.svc:%d", svc.Name, svc.Spec.Ports[0].Port); cloud.Address != want {
		t.Errorf("cloud-config.yaml dials %q, the chart's Service is %s", cloud.Address, want)
	}
	var ca struct {
		CloudProvider      string `json:"cloudProvider"`
		CloudConfigPath    string `json:"cloudConfigPath"`
		Image              struct{ Repository, Tag string }
		ExtraVolumeSecrets map[string]struct {
			Name      string `json:"name"`
			MountPath string `json:"mountPath"`
		} `json:"extraVolumeSecrets"`
	}
	readYAML(t, "../deploy/cluster-autoscaler/values.yaml", &ca)
	if ca.CloudProvider != "externalgrpc" || len(ca.ExtraVolumeSecrets) != 1 {
		t.Fatalf("values.yaml: provider %q, %d secrets, want externalgrpc and one Secret", ca.CloudProvider, len(ca.ExtraVolumeSecrets))
	}
	for _, v := range ca.ExtraVolumeSecrets {
		for _, f := range []string{ca.CloudConfigPath, cloud.Cert, cloud.Key, cloud.Cacert} {
			if filepath.Dir(f) != v.MountPath {
				t.Errorf("%s is not in the Secret values.yaml mounts at %s", f, v.MountPath)
			}
		}
	}
	gomod, err := os.ReadFile("../go.mod")
	if err != nil {
		t.Fatal(err)
	}
	var kubeMinor string
	for _, line := range strings.Split(string(gomod), "\n") {
		if f := strings.Fields(line); len(f) == 2 && f[0] == "k8s.io/api" {
			kubeMinor = strings.Split(f[1], ".")[1] // v0.37.2 -> 37
		}
	}
	if !strings.HasPrefix(ca.Image.Tag, "v1."+kubeMinor+".") {
		t.Errorf("values.yaml pins cluster-autoscaler %s; the project builds against Kubernetes 1.%s", ca.Image.Tag, kubeMinor)
	}

	var cfg struct {
		Controller struct {
			ClusterAutoscaler struct {
				Listen, CertFile, KeyFile, ClientCAFile string
				AllowedClients                          []string `json:"allowedClients"`
			} `json:"clusterAutoscaler"`
		}
	}
	if err := yaml.Unmarshal([]byte(rendered), &cfg); err != nil {
		t.Fatal(err)
	}
	got := cfg.Controller.ClusterAutoscaler
	mount := ""
	for _, m := range controller.Spec.Template.Spec.Containers[0].VolumeMounts {
		if m.Name == "autoscaler-tls" {
			mount = m.MountPath
		}
	}
	if got.Listen != fmt.Sprintf("0.0.0.0:%d", svc.Spec.Ports[0].Port) || mount == "" ||
		got.CertFile != mount+"/tls.crt" || got.KeyFile != mount+"/tls.key" || got.ClientCAFile != mount+"/ca.crt" ||
		!slices.Equal(got.AllowedClients, []string{"cluster-autoscaler"}) {
		t.Errorf("the chart's provider settings %+v (Secret mounted at %q)", got, mount)
	}
	validateRenderedConfig(t, rendered, controller)
}

func readYAML(t *testing.T, path string, v any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

// TestHelmValuesSchemaRefusesTyposAndWrongTypes: values.schema.json makes
// helm refuse, naming the key, a value the chart does not know and one of
// the wrong type, instead of rendering a release that ignores it.
func TestHelmValuesSchemaRefusesTyposAndWrongTypes(t *testing.T) {
	helm := helmBinary(t)
	for set, want := range map[string]string{
		"workerz.replicas=1":            "additional properties 'workerz' not allowed",
		"metrics.port=abc":              "/metrics/port",
		"clusterAutoscaler.enable=true": "additional properties 'enable' not allowed",
		"config.version=v2":             "/config/version",
	} {
		out, err := exec.Command(helm, "template", "ps", chartDir, "--set", set).CombinedOutput()
		if err == nil || !strings.Contains(string(out), want) {
			t.Errorf("helm template --set %s: %v, want refused with %q:\n%.300s", set, err, want, out)
		}
	}
}

// TestClusterAutoscalerCertManagerValuesMatchTheChart: with
// clusterAutoscaler.certManager, the chart's two Certificates and the
// upstream chart's overlay agree: the server certificate names the Service
// the cloud config dials and lands in the Secret the controller mounts and
// reads; the client certificate's CN is allowed, and it lands in the
// namespace and Secret the overlay mounts where the cloud config reads it,
// with the key names cert-manager writes.
func TestClusterAutoscalerCertManagerValuesMatchTheChart(t *testing.T) {
	helm := helmBinary(t)
	vf := filepath.Join(chartDir, "ci", "autoscaler-cert-manager-values.yaml")
	out, err := exec.Command(helm, "template", "premiscale", chartDir, "-f", vf, "--namespace", "premiscale").Output()
	if err != nil {
		t.Fatalf("helm template: %v", err)
	}
	type certificate struct {
		Metadata struct{ Name, Namespace string }
		Spec     struct {
			SecretName string                      `json:"secretName"`
			CommonName string                      `json:"commonName"`
			DNSNames   []string                    `json:"dnsNames"`
			Usages     []string                    `json:"usages"`
			IssuerRef  struct{ Name, Kind string } `json:"issuerRef"`
		}
	}
	decoder := serializer.NewCodecFactory(scheme.Scheme, serializer.EnableStrict).UniversalDeserializer()
	var certs []certificate
	var controller *appsv1.Deployment
	var rendered string
	for _, doc := range bytes.Split(out, []byte("\n---\n")) {
		switch {
		case bytes.Contains(doc, []byte("kind: Certificate")):
			var c certificate
			if err := yaml.Unmarshal(doc, &c); err != nil {
				t.Fatal(err)
			}
			certs = append(certs, c)
		case bytes.Contains(doc, []byte("kind: Deployment")), bytes.Contains(doc, []byte("kind: ConfigMap")):
			obj, _, err := decoder.Decode(doc, nil, nil)
			if err != nil {
				t.Fatal(err)
			}
			switch o := obj.(type) {
			case *appsv1.Deployment:
				if o.Labels["app.kubernetes.io/component"] == "controller" {
					controller = o
				}
			case *corev1.ConfigMap:
				if c, ok := o.Data["config.yaml"]; ok {
					rendered = c
				}
			}
		}
	}
	if len(certs) != 2 || controller == nil || rendered == "" {
		t.Fatalf("rendered %d Certificates, controller %v, config %q", len(certs), controller != nil, rendered)
	}
	server, client := certs[0], certs[1]
	if !slices.Contains(server.Spec.Usages, "server auth") {
		server, client = client, server
	}

	var cloud struct{ Address, Cert, Key, Cacert string }
	readYAML(t, "../deploy/cluster-autoscaler/cloud-config-cert-manager.yaml", &cloud)
	host, _, _ := strings.Cut(cloud.Address, ":")
	if !slices.Contains(server.Spec.DNSNames, host) {
		t.Errorf("the cloud config dials %s; the server certificate names %v", host, server.Spec.DNSNames)
	}
	var secret string
	for _, v := range controller.Spec.Template.Spec.Volumes {
		if v.Name == "autoscaler-tls" && v.Secret != nil {
			secret = v.Secret.SecretName
		}
	}
	if secret == "" || secret != server.Spec.SecretName {
		t.Errorf("the controller mounts Secret %q; the server certificate goes into %q", secret, server.Spec.SecretName)
	}
	var cfg struct {
		Controller struct {
			ClusterAutoscaler struct {
				CertFile, KeyFile, ClientCAFile string
				AllowedClients                  []string `json:"allowedClients"`
			} `json:"clusterAutoscaler"`
		}
	}
	if err := yaml.Unmarshal([]byte(rendered), &cfg); err != nil {
		t.Fatal(err)
	}
	got := cfg.Controller.ClusterAutoscaler
	if got.CertFile != "/etc/premiscale/autoscaler-tls/tls.crt" || got.ClientCAFile != "/etc/premiscale/autoscaler-tls/ca.crt" ||
		!slices.Contains(got.AllowedClients, client.Spec.CommonName) {
		t.Errorf("the provider reads %+v; the client certificate's CN is %q", got, client.Spec.CommonName)
	}

	var overlay struct {
		CloudConfigPath    string `json:"cloudConfigPath"`
		ExtraVolumeSecrets map[string]struct {
			Name      string `json:"name"`
			MountPath string `json:"mountPath"`
		} `json:"extraVolumeSecrets"`
	}
	readYAML(t, "../deploy/cluster-autoscaler/cert-manager-values.yaml", &overlay)
	clientMount := ""
	for _, v := range overlay.ExtraVolumeSecrets {
		if v.Name == client.Spec.SecretName {
			clientMount = v.MountPath
		}
	}
	if clientMount == "" || client.Metadata.Namespace != "kube-system" {
		t.Fatalf("the overlay mounts no Secret %q, or the client certificate is in %q, not kube-system where the README installs the autoscaler", client.Spec.SecretName, client.Metadata.Namespace)
	}
	for f, key := range map[string]string{cloud.Cert: "tls.crt", cloud.Key: "tls.key", cloud.Cacert: "ca.crt"} {
		if f != clientMount+"/"+key {
			t.Errorf("the cloud config reads %s; cert-manager writes %s/%s", f, clientMount, key)
		}
	}
	if server.Spec.IssuerRef != client.Spec.IssuerRef || server.Spec.IssuerRef.Kind != "ClusterIssuer" {
		t.Errorf("issuers %+v and %+v: one ClusterIssuer must sign both ends", server.Spec.IssuerRef, client.Spec.IssuerRef)
	}
}
