package test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/restmapper"
	"sigs.k8s.io/yaml"

	"github.com/premiscale/premiscale/test/k8s"
)

// chartPodValues: the embedded server, the cluster-autoscaler's provider
// with its certificates from a Secret (so the chart renders both of its
// Services; the chart fills in the provider's settings), one kubeadm group
// on a host nobody listens on.
const chartPodValues = `
clusterAutoscaler:
  enabled: true
  tlsSecret: RELEASE-autoscaler-tls
config:
  version: v1alpha1
  controller:
    kubernetes:
      apiServerEndpoint: "10.0.0.10:6443"
      caCertHashes: ["sha256:0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f"]
  autoscale:
    hosts:
      - {name: kvm1, uri: "qemu+tcp://127.0.0.1:1/system"}
    groups:
      - name: workers
        min: 0
        max: 3
        scaling: {mode: clusterAutoscaler}
        template: {diskSize: 1GiB}
        kubernetes: {join: kubeadm}
`

// TestChartPodStartsUnderAnyReleaseName installs the chart for real on
// the real API server under the release names premiscale, ps and
// premiscale-prod (every object it renders, and the Secret its values
// name), reads back the controller Pod that the Deployment's ReplicaSet
// made (after admission), and starts its container from the image `make
// image` builds, as a kubelet would (k8s.StartPod): the image's entrypoint
// with the rendered args, the rendered env over the image's, the
// service-link variables of every Service in the namespace computed by the
// kubelet's own code with links on (the chart turns them off; the
// controller must not depend on it), the ConfigMap, the Secret, the state
// claim and the service-account token mounted where the Pod says, as the
// Pod's user with a read-only root. Its readiness probe must pass within
// the probe's own timeout, and it must stop cleanly within the Pod's
// termination grace period.
func TestChartPodStartsUnderAnyReleaseName(t *testing.T) {
	helm := helmBinary(t)
	img := buildImage(t)
	kc := realKube(t)
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	pki := newTestPKI(t, t.TempDir(), "links")
	for _, release := range []string{"premiscale", "ps", "premiscale-prod"} {
		t.Run(release, func(t *testing.T) {
			ns := "links-" + release
			manifest := renderRelease(t, ctx, kc, helm, release, ns, strings.ReplaceAll(chartPodValues, "RELEASE", release))
			var err error
			tls := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: release + "-autoscaler-tls", Namespace: ns}, Type: corev1.SecretTypeTLS, Data: map[string][]byte{}}
			for key, file := range map[string]string{"tls.crt": pki.serverCert, "tls.key": pki.serverKey, "ca.crt": pki.caFile} {
				if tls.Data[key], err = os.ReadFile(file); err != nil {
					t.Fatal(err)
				}
			}
			createSecret(t, ctx, kc, tls)
			applyManifest(t, ctx, kc, ns, manifest)

			pod := waitControllerPod(t, ctx, kc, ns, release)
			ctr := pod.Spec.Containers[0]
			p, err := kc.StartPod(ctx, pod, img.pod, true)
			if err != nil {
				t.Fatal(err)
			}
			stopped := false
			defer func() {
				if !stopped {
					_ = p.Stop(5 * time.Second)
				}
			}()

			// The test can fail: the kubelet's variables for the chart's
			// own Services are there, with PremiScale's prefix where the
			// release name gives it.
			prefix := strings.ToUpper(strings.ReplaceAll(release, "-", "_")) + "_"
			if release == "ps" {
				prefix = "PS_PREMISCALE_"
			}
			for _, v := range []string{prefix + "METRICS_SERVICE_HOST", prefix + "METRICS_PORT", prefix + "EXTERNALGRPC_PORT", "KUBERNETES_SERVICE_HOST"} {
				if !slices.ContainsFunc(p.Env, func(kv string) bool { return strings.HasPrefix(kv, v+"=") }) {
					t.Fatalf("the kubelet's variable %s is not in the container's environment %q", v, p.Env)
				}
			}

			waitPodReady(t, ctx, p, ctr)
			if _, err := p.Probe(ctx, ctr, ctr.LivenessProbe); err != nil {
				t.Errorf("liveness probe: %v", err)
			}
			grace := time.Duration(*pod.Spec.TerminationGracePeriodSeconds) * time.Second
			start := time.Now()
			stopped = true
			if err := p.Stop(grace); err != nil {
				t.Error(err)
			}
			if done, err := p.Exited(); !done || err != nil {
				t.Errorf("the container did not stop cleanly on SIGTERM within %s (%v after %s):\n%s", grace, err, time.Since(start).Round(time.Millisecond), p.Output())
			}
			if out := p.Output(); strings.Contains(out, "no such config key") {
				t.Errorf("the controller complained:\n%s", out)
			}
		})
	}
}

// renderRelease renders the chart as release in namespace ns with the
// values, and creates ns on the API server.
func renderRelease(t *testing.T, ctx context.Context, kc *k8s.Cluster, helm, release, ns, values string) []byte {
	t.Helper()
	path := filepath.Join(t.TempDir(), "values.yaml")
	if err := os.WriteFile(path, []byte(values), 0o600); err != nil {
		t.Fatal(err)
	}
	manifest, err := exec.Command(helm, "template", release, chartDir, "-f", path, "--namespace", ns).Output()
	if err != nil {
		t.Fatalf("helm template: %v", err)
	}
	if _, err := kc.Admin.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	return manifest
}

// waitPodReady probes the container's readiness as the kubelet would,
// every fifth of its period, for up to 2 minutes; it fails the test if the
// container exits first or never gets ready, with what it printed.
func waitPodReady(t *testing.T, ctx context.Context, p *k8s.PodProcess, ctr corev1.Container) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		if done, err := p.Exited(); done {
			t.Fatalf("the container exited (%v) before it was ready:\n%s", err, p.Output())
		}
		_, err := p.Probe(ctx, ctr, ctr.ReadinessProbe)
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("not ready within 2m: %v\n%s", err, p.Output())
		}
		time.Sleep(time.Duration(max(ctr.ReadinessProbe.PeriodSeconds, 1)) * time.Second / 5)
	}
}

// createSecret creates a Secret for the test's release.
func createSecret(t *testing.T, ctx context.Context, kc *k8s.Cluster, s *corev1.Secret) {
	t.Helper()
	if _, err := kc.Admin.CoreV1().Secrets(s.Namespace).Create(ctx, s, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// eachManifestObject decodes each object of a rendered manifest and calls
// fn with the API server's resource for it (in ns, for a namespaced object
// that names none) and the namespace it lands in ("" if cluster-scoped).
// A kind the server does not serve fails the test.
func eachManifestObject(t *testing.T, kc *k8s.Cluster, ns string, manifest []byte, fn func(obj *unstructured.Unstructured, ri dynamic.ResourceInterface, objNS string)) {
	t.Helper()
	dyn, err := dynamic.NewForConfig(kc.Config)
	if err != nil {
		t.Fatal(err)
	}
	mapper := restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(kc.Admin.Discovery()))
	for _, doc := range bytes.Split(manifest, []byte("\n---\n")) {
		if !bytes.Contains(doc, []byte("kind:")) {
			continue
		}
		var obj unstructured.Unstructured
		if err := yaml.Unmarshal(doc, &obj.Object); err != nil {
			t.Fatalf("rendered object: %v\n%s", err, doc)
		}
		gvk := obj.GroupVersionKind()
		m, err := mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
		if err != nil {
			t.Fatalf("%s: the API server does not serve it: %v", gvk, err)
		}
		ri := dynamic.ResourceInterface(dyn.Resource(m.Resource))
		objNS := ""
		if m.Scope.Name() == meta.RESTScopeNameNamespace {
			if objNS = obj.GetNamespace(); objNS == "" {
				objNS = ns
			}
			ri = dyn.Resource(m.Resource).Namespace(objNS)
		}
		fn(&obj, ri, objNS)
	}
}

// applyManifest creates every object of a rendered manifest on the API
// server for real (namespaced ones in ns unless they name their own), and
// deletes the cluster-scoped ones and kube-system's when the test ends.
func applyManifest(t *testing.T, ctx context.Context, kc *k8s.Cluster, ns string, manifest []byte) {
	t.Helper()
	eachManifestObject(t, kc, ns, manifest, func(obj *unstructured.Unstructured, ri dynamic.ResourceInterface, objNS string) {
		if _, err := ri.Create(ctx, obj, metav1.CreateOptions{FieldValidation: "Strict"}); err != nil {
			t.Fatalf("create %s %s: %v", obj.GetKind(), obj.GetName(), err)
		}
		if objNS != ns {
			name := obj.GetName()
			t.Cleanup(func() { _ = ri.Delete(context.Background(), name, metav1.DeleteOptions{}) })
		}
	})
	t.Cleanup(func() {
		_ = kc.Admin.CoreV1().Namespaces().Delete(context.Background(), ns, metav1.DeleteOptions{})
	})
}

// waitControllerPod returns the controller Pod the release's Deployment
// made, as admission left it (its service-account token volume added).
func waitControllerPod(t *testing.T, ctx context.Context, kc *k8s.Cluster, ns, release string) *corev1.Pod {
	t.Helper()
	sel := "app.kubernetes.io/instance=" + release + ",app.kubernetes.io/component=controller"
	for {
		l, err := kc.Admin.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: sel})
		if err == nil && len(l.Items) > 0 {
			return &l.Items[0]
		}
		if ctx.Err() != nil {
			t.Fatalf("no controller pod of %s in %s: %v", release, ns, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// secretValues: the bearer token comes from a Secret as a variable
// (envFrom), the libvirt hosts' TLS client key from hostsSecret; a group's
// check queries Prometheus every second and its host is dialled, so both
// are used while the pod runs.
const secretValues = `
hostsSecret: premiscale-hosts
envFrom:
  - secretRef: {name: premiscale-prometheus}
config:
  version: v1alpha1
  controller:
    prometheus: {address: "http://127.0.0.1:9/"}
  autoscale:
    hosts:
      - {name: kvm1, uri: "qemu+tls://127.0.0.1:1/system?pkipath=/etc/premiscale/hosts"}
    groups:
      - name: web
        min: 0
        max: 3
        scaling:
          evaluationInterval: 1s
          checks:
            - {name: load, query: "sum(up)", strategy: targetValue, target: 1, onError: hold}
        template: {diskSize: 1GiB}
`

// TestChartKeepsSecretsOutOfConfigMapsAnnotationsAndLogs installs the
// chart for real with a Prometheus bearer token and the libvirt hosts' TLS
// client key in Secrets (the values name the Secrets, never hold them),
// and runs the controller Pod as a kubelet would while it uses both: no
// ConfigMap, no annotation of any object in the namespace, and no line the
// controller logs holds either secret. The same config with the token
// written inline is refused by `premiscale --validate` with the pod's
// environment, naming the key.
func TestChartKeepsSecretsOutOfConfigMapsAnnotationsAndLogs(t *testing.T) {
	helm := helmBinary(t)
	img := buildImage(t)
	kc := realKube(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	const release, ns = "premiscale", "secrets-chart"
	token := "tok-" + strings.ReplaceAll(uuid.NewString(), "-", "")
	pki := newTestPKI(t, t.TempDir(), "hosts")
	key, err := os.ReadFile(pki.clientKey)
	if err != nil {
		t.Fatal(err)
	}
	// The key's base64 body, whatever wraps it.
	keyBody := strings.Join(strings.Split(strings.TrimSpace(string(key)), "\n")[1:2], "")
	sentinels := map[string]string{"bearer token": token, "client key": keyBody}

	manifest := renderRelease(t, ctx, kc, helm, release, ns, secretValues)
	hosts := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "premiscale-hosts", Namespace: ns}, Data: map[string][]byte{}}
	for k, f := range map[string]string{"cacert.pem": pki.caFile, "clientcert.pem": pki.clientCert, "clientkey.pem": pki.clientKey} {
		if hosts.Data[k], err = os.ReadFile(f); err != nil {
			t.Fatal(err)
		}
	}
	prom := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "premiscale-prometheus", Namespace: ns},
		StringData: map[string]string{"PREMISCALE_CONTROLLER_PROMETHEUS_BEARERTOKEN": token}}
	createSecret(t, ctx, kc, hosts)
	createSecret(t, ctx, kc, prom)
	applyManifest(t, ctx, kc, ns, manifest)
	pod := waitControllerPod(t, ctx, kc, ns, release)

	p, err := kc.StartPod(ctx, pod, img.pod, true)
	if err != nil {
		t.Fatal(err)
	}
	ctr := pod.Spec.Containers[0]
	t.Cleanup(func() { _ = p.Stop(5 * time.Second) })
	waitPodReady(t, ctx, p, ctr)
	// Several evaluations: Prometheus queried with the token, the host
	// dialled with the key.
	time.Sleep(8 * time.Second)
	if err := p.Stop(time.Duration(*pod.Spec.TerminationGracePeriodSeconds) * time.Second); err != nil {
		t.Error(err)
	}
	logs := p.Output()
	if !strings.Contains(logs, "kvm1") {
		t.Errorf("the controller logged nothing of its host kvm1, so this test saw no use of the key:\n%s", logs)
	}

	// Every object of the namespace: ConfigMaps' data, annotations.
	var objects []string
	cms, err := kc.Admin.CoreV1().ConfigMaps(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, cm := range cms.Items {
		for k, v := range cm.Data {
			objects = append(objects, "ConfigMap "+cm.Name+" "+k+": "+v)
		}
		objects = append(objects, fmt.Sprintf("ConfigMap %s annotations: %v", cm.Name, cm.Annotations))
	}
	deps, err := kc.Admin.AppsV1().Deployments(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range deps.Items {
		objects = append(objects, fmt.Sprintf("Deployment %s annotations: %v %v", d.Name, d.Annotations, d.Spec.Template.Annotations))
	}
	pods, err := kc.Admin.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, po := range pods.Items {
		objects = append(objects, fmt.Sprintf("Pod %s annotations: %v", po.Name, po.Annotations))
	}
	objects = append(objects, "the rendered manifest: "+string(manifest))
	for what, s := range sentinels {
		for _, o := range objects {
			if strings.Contains(o, s) {
				t.Errorf("the %s is in %.80s…", what, o)
			}
		}
		for _, line := range strings.Split(logs, "\n") {
			if strings.Contains(line, s) {
				t.Errorf("the controller logged the %s: %s", what, line)
			}
		}
	}

	// The same config with the token inline is refused, by name.
	var cm corev1.ConfigMap
	for _, c := range cms.Items {
		if _, ok := c.Data["config.yaml"]; ok {
			cm = c
		}
	}
	inline := strings.Replace(cm.Data["config.yaml"], "address: http://127.0.0.1:9/", "address: http://127.0.0.1:9/\n    bearerToken: "+token, 1)
	if inline == cm.Data["config.yaml"] {
		t.Fatalf("could not write the token into the rendered config:\n%s", inline)
	}
	path := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(path, []byte(inline), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(premiscaleBin, "--validate", "-c", path)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir()}
	for _, e := range ctr.Env {
		cmd.Env = append(cmd.Env, e.Name+"="+e.Value)
	}
	out, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "controller.prometheus.bearerToken: a secret written in the config file") || strings.Contains(string(out), token) {
		t.Errorf("--validate of the chart's config with an inline token: %v\n%s", err, out)
	}
}
