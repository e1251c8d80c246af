package test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	bootstrapapi "k8s.io/cluster-bootstrap/token/api"
	bootstraputil "k8s.io/cluster-bootstrap/token/util"
	"sigs.k8s.io/yaml"

	"github.com/premiscale/premiscale/activities"
	"github.com/premiscale/premiscale/config"
	"github.com/premiscale/premiscale/test/k8s"
)

// kubeCP is the real control plane the package's tests share: started by
// the first test that needs it, stopped by TestMain.
var kubeCP struct {
	once sync.Once
	c    *k8s.Cluster
	err  error
}

// realKube returns the shared Kubernetes control plane (package k8s),
// starting it on first use. Without one (PSTEST_K8S_DIR unset, outside
// make test) the test is skipped, unless PSTEST_REQUIRE_ALL=1.
func realKube(t *testing.T) *k8s.Cluster {
	t.Helper()
	if os.Getenv("PSTEST_K8S_DIR") == "" && os.Getenv("PSTEST_REQUIRE_ALL") != "1" {
		t.Skip("no Kubernetes control plane (PSTEST_K8S_DIR unset): run through make test")
	}
	kubeCP.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		dir, err := os.MkdirTemp("", "premiscale-k8s-")
		if err != nil {
			kubeCP.err = err
			return
		}
		start := time.Now()
		kubeCP.c, kubeCP.err = k8s.Start(ctx, dir)
		if kubeCP.err == nil {
			fmt.Fprintf(os.Stderr, "Kubernetes control plane ready in %s (%s)\n", time.Since(start).Round(time.Millisecond), dir)
		}
	})
	if kubeCP.err != nil {
		t.Fatalf("Kubernetes control plane: %v", kubeCP.err)
	}
	if gone := kubeCP.c.Exited(); len(gone) > 0 {
		t.Fatalf("control plane components exited: %s", strings.Join(gone, "\n"))
	}
	return kubeCP.c
}

// stopKube stops the shared control plane, keeping its directory (logs,
// audit log) when the run failed.
func stopKube(failed bool) {
	if kubeCP.c == nil {
		return
	}
	kubeCP.c.Stop()
	if failed {
		fmt.Fprintf(os.Stderr, "Kubernetes control plane logs kept in %s\n", kubeCP.c.Dir)
		return
	}
	_ = os.RemoveAll(kubeCP.c.Dir)
}

// kubeIdentity is PremiScale's identity in the cluster as the Helm chart
// makes it: its ServiceAccount with the chart's ClusterRole and Role.
type kubeIdentity struct {
	User        string
	Kubeconfig  string
	Client      kubernetes.Interface
	ClusterRole *rbacv1.ClusterRole
	Role        *rbacv1.Role
}

// chartIdentity installs the chart's ServiceAccount and RBAC objects (helm
// template of the default values, as release in namespace release) and
// returns a kubeconfig with a token of that ServiceAccount: PremiScale then
// runs with exactly the chart's rights, never as admin.
func chartIdentity(t *testing.T, ctx context.Context, kc *k8s.Cluster, release string) kubeIdentity {
	t.Helper()
	out, err := exec.Command(helmBinary(t), "template", release, chartDir, "--namespace", release,
		"--show-only", "templates/serviceaccount.yaml", "--show-only", "templates/rbac.yaml").Output()
	if err != nil {
		t.Fatalf("helm template: %v", err)
	}
	if _, err := kc.Admin.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: release}}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	var id kubeIdentity
	var sa *corev1.ServiceAccount
	decode := scheme.Codecs.UniversalDeserializer()
	for _, doc := range bytes.Split(out, []byte("\n---\n")) {
		if !bytes.Contains(doc, []byte("kind:")) {
			continue
		}
		obj, _, err := decode.Decode(doc, nil, nil)
		if err != nil {
			t.Fatalf("chart object: %v\n%s", err, doc)
		}
		switch o := obj.(type) {
		case *corev1.ServiceAccount:
			sa = o
			_, err = kc.Admin.CoreV1().ServiceAccounts(release).Create(ctx, o, metav1.CreateOptions{})
		case *rbacv1.ClusterRole:
			id.ClusterRole = o
			_, err = kc.Admin.RbacV1().ClusterRoles().Create(ctx, o, metav1.CreateOptions{})
		case *rbacv1.ClusterRoleBinding:
			_, err = kc.Admin.RbacV1().ClusterRoleBindings().Create(ctx, o, metav1.CreateOptions{})
		case *rbacv1.Role:
			id.Role = o
			_, err = kc.Admin.RbacV1().Roles(o.Namespace).Create(ctx, o, metav1.CreateOptions{})
		case *rbacv1.RoleBinding:
			_, err = kc.Admin.RbacV1().RoleBindings(o.Namespace).Create(ctx, o, metav1.CreateOptions{})
		default:
			t.Fatalf("unexpected %T in the chart's RBAC", obj)
		}
		if err != nil {
			t.Fatalf("create %T from the chart: %v", obj, err)
		}
	}
	if sa == nil || id.ClusterRole == nil || id.Role == nil {
		t.Fatalf("chart rendered no ServiceAccount, ClusterRole or Role:\n%s", out)
	}
	expiry := int64(3 * 3600)
	tok, err := kc.Admin.CoreV1().ServiceAccounts(release).CreateToken(ctx, sa.Name,
		&authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: &expiry}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	id.User = "system:serviceaccount:" + release + ":" + sa.Name
	if id.Kubeconfig, err = kc.TokenKubeconfig(release, tok.Status.Token); err != nil {
		t.Fatal(err)
	}
	if id.Client, err = activities.NewKubernetesClient(config.Kubernetes{Kubeconfig: id.Kubeconfig}); err != nil {
		t.Fatal(err)
	}
	return id
}

// checkExactRights reads the API server's audit log for the identity: no
// request was refused (a rule the chart lacks names its verb and resource),
// and, with allUsed, every verb the chart grants was used (one PremiScale
// does not need is named too): a test that runs every Kubernetes path
// calls it last.
func checkExactRights(t *testing.T, kc *k8s.Cluster, id kubeIdentity, allUsed bool) {
	t.Helper()
	events, err := kc.Audit(id.User)
	if err != nil {
		t.Fatal(err)
	}
	used := map[string]int{}
	for _, e := range events {
		if e.ResponseStatus != nil && e.ResponseStatus.Code == 403 {
			t.Errorf("the chart's RBAC refused PremiScale: %s %s (%s)", e.Verb, e.Resource(), e.ResponseStatus.Message)
		}
		if e.ObjectRef != nil { // not discovery
			used[e.Verb+" "+e.Resource()]++
		}
	}
	// Granted for a path this API server does not take: the node
	// informer's initial list on servers without streaming lists
	// (WatchListClient), and the activities' list when the cache has not
	// synced within 10 s.
	fallback := map[string]bool{"list /nodes": true}
	var granted []string
	rules := append(append([]rbacv1.PolicyRule{}, id.ClusterRole.Rules...), id.Role.Rules...)
	for _, r := range rules {
		for _, g := range r.APIGroups {
			for _, res := range r.Resources {
				for _, v := range r.Verbs {
					granted = append(granted, v+" "+g+"/"+res)
				}
			}
		}
	}
	sort.Strings(granted)
	for _, g := range granted {
		if allUsed && used[g] == 0 && !fallback[g] {
			t.Errorf("the chart grants %q, which PremiScale never used", g)
		}
	}
	var calls []string
	for k, n := range used {
		calls = append(calls, fmt.Sprintf("%s x%d", k, n))
	}
	slices.Sort(calls)
	t.Logf("PremiScale's requests as %s: %s", id.User, strings.Join(calls, ", "))
}

// webPodTemplate is a pod of app that tolerates every taint (the group's
// too), on nodes matching nodeSelector (any node if nil). kwok runs it.
func webPodTemplate(app string, nodeSelector map[string]string) corev1.PodTemplateSpec {
	return corev1.PodTemplateSpec{
		ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": app}},
		Spec: corev1.PodSpec{
			NodeSelector: nodeSelector,
			Tolerations:  []corev1.Toleration{{Operator: corev1.TolerationOpExists}},
			Containers:   []corev1.Container{{Name: "web", Image: "registry.invalid/web:1"}},
		},
	}
}

// webReplicaSet is n pods of app on one node (by hostname).
func webReplicaSet(app, node string, n int32) *appsv1.ReplicaSet {
	return &appsv1.ReplicaSet{
		ObjectMeta: metav1.ObjectMeta{Name: app, Namespace: "default"},
		Spec: appsv1.ReplicaSetSpec{
			Replicas: &n,
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": app}},
			Template: webPodTemplate(app, map[string]string{corev1.LabelHostname: node}),
		},
	}
}

// waitPodsRunning waits until the pods matching selector in namespace are
// n, all Running (kwok runs pods bound to its nodes).
func waitPodsRunning(t *testing.T, ctx context.Context, c kubernetes.Interface, ns, selector string, n int) []corev1.Pod {
	t.Helper()
	for {
		l, err := c.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: selector})
		if err != nil {
			t.Fatal(err)
		}
		running := 0
		for _, p := range l.Items {
			if p.Status.Phase == corev1.PodRunning && p.DeletionTimestamp == nil {
				running++
			}
		}
		if running == n && len(l.Items) == n {
			return l.Items
		}
		if ctx.Err() != nil {
			t.Fatalf("pods %s: %d running of %d, want %d", selector, running, len(l.Items), n)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// operatorVersion is the prometheus-operator release whose ServiceMonitor
// CRD the chart's ServiceMonitor is checked against (from its module on
// the Go module proxy, example/prometheus-operator-crd).
const operatorVersion = "v0.93.1"

// certManagerVersion is the cert-manager release whose Certificate CRD the
// chart's Certificates are checked against (from its module on the Go
// module proxy, deploy/crds).
const certManagerVersion = "v1.21.2"

// installServiceMonitorCRD installs the prometheus-operator's real
// ServiceMonitor CRD, as a cluster with the operator has it.
func installServiceMonitorCRD(t *testing.T, ctx context.Context, kc *k8s.Cluster) {
	t.Helper()
	installModuleCRD(t, ctx, kc, "github.com/prometheus-operator/prometheus-operator@"+operatorVersion, "example/prometheus-operator-crd/monitoring.coreos.com_servicemonitors.yaml")
}

// installCertificateCRD installs cert-manager's real Certificate CRD, as a
// cluster with cert-manager has it.
func installCertificateCRD(t *testing.T, ctx context.Context, kc *k8s.Cluster) {
	t.Helper()
	installModuleCRD(t, ctx, kc, "github.com/cert-manager/cert-manager@"+certManagerVersion, "deploy/crds/cert-manager.io_certificates.yaml")
}

// installModuleCRD installs the CRD at path in module@version (fetched
// through the Go module proxy) and waits until it is established.
func installModuleCRD(t *testing.T, ctx context.Context, kc *k8s.Cluster, module, path string) {
	t.Helper()
	out, err := exec.Command("go", "mod", "download", "-json", module).Output()
	if err != nil {
		t.Fatalf("go mod download %s: %v", module, err)
	}
	var mod struct{ Dir string }
	if err := json.Unmarshal(out, &mod); err != nil || mod.Dir == "" {
		t.Fatalf("go mod download: %v %s", err, out)
	}
	b, err := os.ReadFile(filepath.Join(mod.Dir, filepath.FromSlash(path)))
	if err != nil {
		t.Fatal(err)
	}
	var crd unstructured.Unstructured
	if err := yaml.Unmarshal(b, &crd.Object); err != nil {
		t.Fatal(err)
	}
	dyn, err := dynamic.NewForConfig(kc.Config)
	if err != nil {
		t.Fatal(err)
	}
	crds := dyn.Resource(schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"})
	if _, err := crds.Create(ctx, &crd, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	for {
		got, err := crds.Get(ctx, crd.GetName(), metav1.GetOptions{})
		if err == nil {
			conds, _, _ := unstructured.NestedSlice(got.Object, "status", "conditions")
			for _, c := range conds {
				if m, ok := c.(map[string]any); ok && m["type"] == "Established" && m["status"] == "True" {
					return
				}
			}
		}
		if ctx.Err() != nil {
			t.Fatalf("CRD %s never established: %v", crd.GetName(), err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// TestHelmChartInstallsOnARealAPIServer: for each values file in the
// chart's ci/ directory, `helm install --dry-run=server` against the real
// API server accepts the release, and every object helm renders for that
// server passes the server's own validation with strict field checking
// (unknown or duplicate fields refused) in a dry-run create. The
// ServiceMonitor is checked against the prometheus-operator's real CRD,
// the Certificates against cert-manager's.
func TestHelmChartInstallsOnARealAPIServer(t *testing.T) {
	helm := helmBinary(t)
	kc := realKube(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	installServiceMonitorCRD(t, ctx, kc)
	installCertificateCRD(t, ctx, kc)
	values, err := filepath.Glob(filepath.Join(chartDir, "ci", "*.yaml"))
	if err != nil || len(values) < 3 {
		t.Fatalf("ci values files: %v %v", values, err)
	}
	for _, vf := range values {
		name := strings.TrimSuffix(filepath.Base(vf), "-values.yaml")
		t.Run(name, func(t *testing.T) {
			ns := "chart-" + name
			out, err := exec.Command(helm, "install", "ps", chartDir, "-f", vf, "--namespace", ns, "--create-namespace",
				"--dry-run=server", "--kubeconfig", kc.Kubeconfig).CombinedOutput()
			if err != nil {
				t.Fatalf("helm install --dry-run=server: %v\n%s", err, out)
			}
			// The manifest helm would apply, rendered with this server's
			// capabilities (the ServiceMonitor kind included).
			manifest, err := exec.Command(helm, "template", "ps", chartDir, "-f", vf, "--namespace", ns,
				"--validate", "--kubeconfig", kc.Kubeconfig).Output()
			if err != nil {
				t.Fatalf("helm template --validate: %v", err)
			}
			if _, err := kc.Admin.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
				t.Fatal(err)
			}
			kinds := map[string]int{}
			eachManifestObject(t, kc, ns, manifest, func(obj *unstructured.Unstructured, ri dynamic.ResourceInterface, _ string) {
				opts := metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}, FieldValidation: "Strict"}
				if obj.GetKind() == "ServiceAccount" {
					// For real: the helm test Pod's admission looks it up.
					opts.DryRun = nil
				}
				if _, err := ri.Create(ctx, obj, opts); err != nil && !(opts.DryRun == nil && apierrors.IsAlreadyExists(err)) {
					t.Errorf("%s %s refused by the API server: %v", obj.GetKind(), obj.GetName(), err)
				}
				kinds[obj.GetKind()]++
			})
			t.Logf("validated by the API server: %v", kinds)
			if name == "embedded" && kinds["ServiceMonitor"] != 1 {
				t.Errorf("embedded values render %d ServiceMonitors on a cluster with the CRD, want 1", kinds["ServiceMonitor"])
			}
			if name == "autoscaler-cert-manager" && kinds["Certificate"] != 2 {
				t.Errorf("cert-manager values render %d Certificates, want 2", kinds["Certificate"])
			}
		})
	}
}

// bootstrapToken creates a kubeadm node join token (as `kubeadm token
// create` does) expiring at exp, and returns it as id.secret.
func bootstrapToken(t *testing.T, ctx context.Context, kc *k8s.Cluster, exp time.Time) string {
	t.Helper()
	token, err := bootstraputil.GenerateBootstrapToken()
	if err != nil {
		t.Fatal(err)
	}
	id, secret, _ := strings.Cut(token, ".")
	s := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: bootstrapapi.BootstrapTokenSecretPrefix + id, Namespace: metav1.NamespaceSystem},
		Type:       bootstrapapi.SecretTypeBootstrapToken,
		StringData: map[string]string{
			bootstrapapi.BootstrapTokenIDKey:               id,
			bootstrapapi.BootstrapTokenSecretKey:           secret,
			bootstrapapi.BootstrapTokenExpirationKey:       exp.UTC().Format(time.RFC3339),
			bootstrapapi.BootstrapTokenUsageAuthentication: "true",
			bootstrapapi.BootstrapTokenUsageSigningKey:     "true",
			bootstrapapi.BootstrapTokenExtraGroupsKey:      k8s.NodeBootstrapGroup,
		},
	}
	if _, err := kc.Admin.CoreV1().Secrets(metav1.NamespaceSystem).Create(ctx, s, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	return token
}

// TestKubeletStandInJoinsOnlyWithAValidToken checks the test's stand-in for
// kubeadm join and the kubelet against the real API server: a fresh node
// token joins (the Node is registered by the node's own certificate and
// kwok turns it Ready); a wrong discovery hash, an expired token and a
// deleted token do not.
func TestKubeletStandInJoinsOnlyWithAValidToken(t *testing.T) {
	kc := realKube(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	endpoint := strings.TrimPrefix(kc.Server, "https://")
	req := func(node, token string) k8s.JoinRequest {
		return k8s.JoinRequest{Endpoint: endpoint, Token: token, CAHashes: []string{kc.CAHash}, NodeName: node,
			ProviderID: "premiscale://standin/" + node, Labels: map[string]string{"tier": "standin"},
			DiscoveryTimeout: 5 * time.Second}
	}
	t.Cleanup(func() {
		_ = kc.Admin.CoreV1().Nodes().DeleteCollection(context.Background(), metav1.DeleteOptions{}, metav1.ListOptions{LabelSelector: "tier=standin"})
	})

	good := bootstrapToken(t, ctx, kc, time.Now().Add(time.Hour))
	bad := req("standin-hash", good)
	bad.CAHashes = []string{"sha256:" + strings.Repeat("ab", 32)}
	if _, err := kc.Join(ctx, bad); err == nil || !strings.Contains(err.Error(), "CA hash") {
		t.Errorf("join with a wrong discovery hash: %v, want refused", err)
	}
	kl, err := kc.Join(ctx, req("standin-ok", good))
	if err != nil {
		t.Fatalf("join with a fresh token: %v", err)
	}
	if node := kl.Node; node.Spec.ProviderID != "premiscale://standin/standin-ok" {
		t.Errorf("registered provider ID %q", node.Spec.ProviderID)
	}
	for {
		n, err := kc.Admin.CoreV1().Nodes().Get(ctx, "standin-ok", metav1.GetOptions{})
		if err == nil && slices.ContainsFunc(n.Status.Conditions, func(c corev1.NodeCondition) bool {
			return c.Type == corev1.NodeReady && c.Status == corev1.ConditionTrue
		}) {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("kwok never turned the node Ready: %v %+v", err, n)
		}
		time.Sleep(200 * time.Millisecond)
	}

	expired := bootstrapToken(t, ctx, kc, time.Now().Add(-time.Minute))
	if _, err := kc.Join(ctx, req("standin-expired", expired)); err == nil {
		t.Error("an expired token joined")
	}

	deleted := bootstrapToken(t, ctx, kc, time.Now().Add(time.Hour))
	id, _, _ := strings.Cut(deleted, ".")
	// Once signed for it (the token worked), deleted.
	for {
		cm, err := kc.Admin.CoreV1().ConfigMaps(metav1.NamespacePublic).Get(ctx, bootstrapapi.ConfigMapClusterInfo, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if cm.Data[bootstrapapi.JWSSignatureKeyPrefix+id] != "" {
			break
		}
		if ctx.Err() != nil {
			t.Fatal("cluster-info never signed for a fresh token")
		}
		time.Sleep(200 * time.Millisecond)
	}
	if err := kc.Admin.CoreV1().Secrets(metav1.NamespaceSystem).Delete(ctx, bootstrapapi.BootstrapTokenSecretPrefix+id, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := kc.Join(ctx, req("standin-deleted", deleted)); err == nil {
		t.Error("a deleted token joined")
	}
	for _, n := range []string{"standin-hash", "standin-expired", "standin-deleted"} {
		if _, err := kc.Admin.CoreV1().Nodes().Get(ctx, n, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			t.Errorf("node %s registered by a refused join: %v", n, err)
		}
	}
}
