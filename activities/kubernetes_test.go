package activities

import (
	"context"
	"errors"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	fakediscovery "k8s.io/client-go/discovery/fake"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	bootstrapapi "k8s.io/cluster-bootstrap/token/api"

	"github.com/premiscale/premiscale/config"
)

// TestJoinTokensAreCreateOnly: a kubeadm VM's token is a fresh bootstrap
// token Secret expiring after the worker's tokenTTL, labelled for the VM;
// every call makes a new one; and nothing but create ever reaches Secrets
// (CreateJoinToken and DeleteJoinTokens make no request at all), so the
// chart's Role needs no right that reaches other Secrets.
func TestJoinTokensAreCreateOnly(t *testing.T) {
	cs := fake.NewClientset()
	cat := testCatalog(config.JoinKubeadm)
	k := &Kubernetes{Client: cs, Catalog: cat}
	ctx := context.Background()
	rev := cat.groups["web"].Revision()
	if out, err := k.CreateJoinToken(ctx, JoinTokenInput{Group: "web", VM: "web-1", Revision: rev}); err != nil || out.TokenID != "" {
		t.Fatalf("CreateJoinToken = %+v %v, want nothing made", out, err)
	}
	if _, err := k.CreateJoinToken(ctx, JoinTokenInput{Group: "evil", VM: "evil-1", Revision: rev}); !isType(err, ErrTypeUnknownGroup) {
		t.Errorf("CreateJoinToken of an unknown group: %v, want %s", err, ErrTypeUnknownGroup)
	}
	first, err := k.newJoinToken(ctx, "web", "web-1")
	if err != nil {
		t.Fatal(err)
	}
	id, secret, ok := cutToken(first)
	if !ok || len(secret) != 16 {
		t.Fatalf("token %q is not id.secret", first)
	}
	s, err := cs.CoreV1().Secrets("kube-system").Get(ctx, "bootstrap-token-"+id, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if s.Type != bootstrapapi.SecretTypeBootstrapToken || s.Labels[LabelVM] != "web-1" || s.Labels[LabelGroup] != "web" ||
		s.StringData[bootstrapapi.BootstrapTokenUsageAuthentication] != "true" || s.StringData[bootstrapapi.BootstrapTokenSecretKey] != secret {
		t.Errorf("token secret = %+v", s)
	}
	if exp, _ := time.Parse(time.RFC3339, s.StringData[bootstrapapi.BootstrapTokenExpirationKey]); time.Until(exp) > 31*time.Minute || time.Until(exp) < 29*time.Minute {
		t.Errorf("token expires %s, want the worker's tokenTTL (30m) from now", exp)
	}
	second, err := k.newJoinToken(ctx, "web", "web-1")
	if err != nil || second == first {
		t.Errorf("second token %q %v, want a new one", second, err)
	}
	if err := k.DeleteJoinTokens(ctx, DeleteJoinTokensInput{Group: "web", VM: "web-1"}); err != nil {
		t.Fatal(err)
	}
	var verbs []string
	for _, a := range cs.Actions() {
		verbs = append(verbs, a.GetVerb()+" "+a.GetResource().Resource)
	}
	// The get is the test's own, above.
	if want := []string{"create secrets", "get secrets", "create secrets"}; !slices.Equal(verbs, want) {
		t.Errorf("requests %v, want exactly %v", verbs, want)
	}
}

func TestNoClusterIsANonRetryableError(t *testing.T) {
	_, err := (&Kubernetes{}).NodeStatus(context.Background(), NodeRef{ProviderID: "x"})
	var ae *temporal.ApplicationError
	if !errors.As(err, &ae) || ae.Type() != ErrTypeNoKubernetes || !ae.NonRetryable() {
		t.Fatalf("err = %v, want non-retryable %s", err, ErrTypeNoKubernetes)
	}
}

func TestKubeadmUserDataJoinsWithTokenHashAndProviderID(t *testing.T) {
	in := Seed{
		VM: "web-1", Group: "web", NodeName: "web-1", ProviderID: "premiscale://web/0a1b",
		APIServerEndpoint: "10.0.0.10:6443", CACertHashes: []string{"sha256:" + strings.Repeat("ab", 32)},
		Labels: map[string]string{"tier": "web", "a": "b"},
		Taints: []Taint{{Key: "dedicated", Value: "web", Effect: "NoSchedule"}},
	}
	ud, err := KubeadmUserData(in, "abcdef.0123456789abcdef")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"#cloud-config\n",
		"- kubeadm\n  - join\n  - 10.0.0.10:6443\n  - --token\n  - abcdef.0123456789abcdef\n  - --discovery-token-ca-cert-hash\n  - sha256:abab",
		"--node-name\n  - web-1",
		`--provider-id=premiscale://web/0a1b --node-labels=a=b,premiscale.io/group=web,tier=web --register-with-taints=dedicated=web:NoSchedule`,
		"path: /etc/default/kubelet",
	} {
		if !strings.Contains(string(ud), want) {
			t.Errorf("user-data lacks %q:\n%s", want, ud)
		}
	}
	if _, err := KubeadmUserData(Seed{}, "abcdef.0123456789abcdef"); err == nil {
		t.Error("kubeadm user-data without endpoint and CA hash rendered")
	}
}

func TestSeedISOReadsBackWithLabelAndFiles(t *testing.T) {
	md, err := MetaData(Seed{InstanceID: "id-1", NodeName: "a"})
	if err != nil {
		t.Fatal(err)
	}
	iso, err := SeedISO([]byte("#cloud-config\nhostname: a\n"), md)
	if err != nil {
		t.Fatal(err)
	}
	files, label, err := ReadSeedISO(iso)
	if err != nil {
		t.Fatal(err)
	}
	if label != SeedLabel {
		t.Errorf("label %q, want %q", label, SeedLabel)
	}
	if files["user-data"] != "#cloud-config\nhostname: a\n" || files["meta-data"] != "instance-id: id-1\nlocal-hostname: a\n" {
		t.Errorf("files = %q", files)
	}
}

// drainCluster is a fake API server with one node and its pods, whose
// eviction API deletes the evicted pod unless blocked says a
// PodDisruptionBudget forbids it (429, as the real API server answers).
func drainCluster(t *testing.T, blocked func(pod string) bool) (*fake.Clientset, *atomic.Int32) {
	t.Helper()
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "web-1"}, Spec: corev1.NodeSpec{ProviderID: pid1}}
	pod := func(name string, owner string) *corev1.Pod {
		p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default"}, Spec: corev1.PodSpec{NodeName: "web-1"},
			Status: corev1.PodStatus{Phase: corev1.PodRunning}}
		if owner != "" {
			ctrl := true
			p.OwnerReferences = []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: owner, Name: owner + "-x", UID: types.UID("u-" + name), Controller: &ctrl}}
		}
		return p
	}
	ds := &appsv1.DaemonSet{ObjectMeta: metav1.ObjectMeta{Name: "DaemonSet-x", Namespace: "default"}}
	cs := fake.NewClientset(node, ds, pod("app-1", "ReplicaSet"), pod("app-2", "ReplicaSet"), pod("agent", "DaemonSet"))
	cs.Discovery().(*fakediscovery.FakeDiscovery).Resources = []*metav1.APIResourceList{
		{GroupVersion: "policy/v1", APIResources: []metav1.APIResource{{Name: "poddisruptionbudgets", Kind: "PodDisruptionBudget"}}},
		{GroupVersion: "v1", APIResources: []metav1.APIResource{{Name: "pods/eviction", Kind: "Eviction", Group: "policy", Version: "v1"}}},
	}
	var evicted atomic.Int32
	cs.PrependReactor("create", "pods", func(a k8stesting.Action) (bool, runtime.Object, error) {
		if a.GetSubresource() != "eviction" {
			return false, nil, nil
		}
		ev := a.(k8stesting.CreateAction).GetObject().(*policyv1.Eviction)
		if blocked(ev.Name) {
			return true, nil, apierrors.NewTooManyRequests("Cannot evict pod as it would violate the pod's disruption budget.", 1)
		}
		if err := cs.Tracker().Delete(schema.GroupVersionResource{Version: "v1", Resource: "pods"}, ev.Namespace, ev.Name); err != nil {
			return true, nil, err
		}
		evicted.Add(1)
		return true, nil, nil
	})
	return cs, &evicted
}

// Provider IDs of the members of group web (webMembers) in these tests.
const (
	pid1    = "premiscale://web/11111111-1111-4111-8111-111111111111"
	pid2    = "premiscale://web/22222222-2222-4222-8222-222222222222"
	pidNone = "premiscale://web/33333333-3333-4333-8333-333333333333"
	pidGone = "premiscale://web/44444444-4444-4444-8444-444444444444"
)

// fakeMembers is a GroupMembership of fixed members by group.
type fakeMembers map[string][]string

func (f fakeMembers) ProviderIDs(_ context.Context, group string) ([]string, error) {
	ids, ok := f[group]
	if !ok {
		return nil, temporal.NewNonRetryableApplicationError("group "+group+" has no workflow", ErrTypeNotOwned, nil)
	}
	return ids, nil
}

var webMembers = fakeMembers{"web": {pid1, pid2, pidNone, pidGone}}

// TestOnlyMembersNodesAreTouched: drain, cordon, uncordon, pod counts and
// node deletion refuse, without retry and before any request that changes
// the cluster, a Node whose provider ID is not PremiScale's, names a group
// that has no workflow, or a VM its group does not list; the victim Nodes
// stay as they were, and a worker with no way to read members refuses
// everything.
func TestOnlyMembersNodesAreTouched(t *testing.T) {
	cs, evicted := drainCluster(t, func(string) bool { return false })
	ctx := context.Background()
	victims := map[string]string{
		"victim-a": "kwok://victim-a",
		"victim-b": "premiscale://web/55555555-5555-4555-8555-555555555555", // no member has it
		"victim-c": "premiscale://other/66666666-6666-4666-8666-666666666666",
		"victim-d": "premiscale://web/not-a-uuid",
	}
	for name, id := range victims {
		if _, err := cs.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: corev1.NodeSpec{ProviderID: id}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	before := len(cs.Actions())
	for _, k := range []*Kubernetes{{Client: cs, Members: webMembers}, {Client: cs}} {
		for name, id := range victims {
			ref := NodeRef{ProviderID: id}
			_, derr := runDrain(t, k, DrainInput{ProviderID: id, Timeout: time.Second, Force: true, DeleteEmptyDirData: true})
			for what, err := range map[string]error{
				"drain":    derr,
				"cordon":   k.CordonNode(ctx, ref),
				"uncordon": k.UncordonNode(ctx, ref),
				"delete":   k.DeleteNode(ctx, ref),
			} {
				if !isType(err, ErrTypeNotOwned) {
					t.Errorf("%s of %s (%s), members %v: err = %v, want %s", what, name, id, k.Members != nil, err, ErrTypeNotOwned)
				}
			}
			if _, err := k.PodCounts(ctx, PodCountsInput{ProviderIDs: []string{pid1, id}}); !isType(err, ErrTypeNotOwned) {
				t.Errorf("pod counts with %s: err = %v, want %s", name, err, ErrTypeNotOwned)
			}
		}
	}
	for _, a := range cs.Actions()[before:] {
		if a.GetVerb() != "get" && a.GetVerb() != "list" && a.GetVerb() != "watch" {
			t.Errorf("a refused call made a %s of %s", a.GetVerb(), a.GetResource().Resource)
		}
	}
	for name := range victims {
		n, err := cs.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
		if err != nil || n.Spec.Unschedulable {
			t.Errorf("victim %s: %v, cordoned %v", name, err, err == nil && n.Spec.Unschedulable)
		}
	}
	if evicted.Load() != 0 {
		t.Errorf("%d pods evicted by refused drains", evicted.Load())
	}
	// A member's node is drained as before.
	if out, err := runDrain(t, &Kubernetes{Client: cs, Members: webMembers}, DrainInput{ProviderID: pid1, Timeout: 20 * time.Second, GracePeriodSeconds: -1, IgnoreDaemonSets: true}); err != nil || out.Node != "web-1" {
		t.Errorf("drain of a member's node: %+v %v", out, err)
	}
}

func runDrain(t *testing.T, k *Kubernetes, in DrainInput) (DrainOutput, error) {
	t.Helper()
	var s testsuite.WorkflowTestSuite
	env := s.NewTestActivityEnvironment()
	env.RegisterActivity(k)
	v, err := env.ExecuteActivity(k.DrainNode, in)
	var out DrainOutput
	if err == nil {
		err = v.Get(&out)
	}
	return out, err
}

func TestDrainNodeCordonsAndEvictsAllButDaemonSets(t *testing.T) {
	cs, evicted := drainCluster(t, func(string) bool { return false })
	k := &Kubernetes{Client: cs, Members: webMembers}
	out, err := runDrain(t, k, DrainInput{ProviderID: pid1, Timeout: 20 * time.Second, GracePeriodSeconds: -1, IgnoreDaemonSets: true, EvictRetryDelay: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if out.Node != "web-1" || evicted.Load() != 2 {
		t.Errorf("drain = %+v, %d evictions; want node web-1, 2 evictions", out, evicted.Load())
	}
	ctx := context.Background()
	n, _ := cs.CoreV1().Nodes().Get(ctx, "web-1", metav1.GetOptions{})
	if !n.Spec.Unschedulable {
		t.Error("node not cordoned")
	}
	pods, _ := cs.CoreV1().Pods("default").List(ctx, metav1.ListOptions{})
	if len(pods.Items) != 1 || pods.Items[0].Name != "agent" {
		t.Errorf("pods left: %v, want only the DaemonSet's", pods.Items)
	}
	// A node that is gone drains trivially.
	if out, err := runDrain(t, k, DrainInput{ProviderID: pidNone, Timeout: time.Second}); err != nil || out.Node != "" {
		t.Errorf("drain of a missing node: %+v %v", out, err)
	}
}

func TestDrainBlockedByPDBIsRetriedThenTimesOut(t *testing.T) {
	var attempts atomic.Int32
	cs, _ := drainCluster(t, func(pod string) bool {
		if pod == "app-2" {
			attempts.Add(1)
			return true
		}
		return false
	})
	k := &Kubernetes{Client: cs, Members: webMembers}
	start := time.Now()
	_, err := runDrain(t, k, DrainInput{ProviderID: pid1, Timeout: 2 * time.Second, GracePeriodSeconds: -1, IgnoreDaemonSets: true, EvictRetryDelay: 200 * time.Millisecond})
	var ae *temporal.ApplicationError
	if !errors.As(err, &ae) || ae.Type() != ErrTypeDrainTimeout {
		t.Fatalf("err = %v, want %s", err, ErrTypeDrainTimeout)
	}
	if n := attempts.Load(); n < 3 || n > 20 {
		t.Errorf("blocked eviction tried %d times in 2s with a 200ms retry delay; want a handful, neither one nor a spin", n)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("drain took %s, past its 2s timeout", d)
	}
	if err := k.UncordonNode(context.Background(), NodeRef{ProviderID: pid1}); err != nil {
		t.Fatal(err)
	}
	n, _ := cs.CoreV1().Nodes().Get(context.Background(), "web-1", metav1.GetOptions{})
	if n.Spec.Unschedulable {
		t.Error("node still cordoned after UncordonNode")
	}
}

// TestDrainAPIErrorSayingTimedOutIsNotADrainTimeout: an API server error
// whose text says "timed out" (etcd) before the drain's own deadline is an
// ordinary, retried error, never the DrainTimeout that, with
// drain.onTimeout force, destroys a VM with its pods still on it.
func TestDrainAPIErrorSayingTimedOutIsNotADrainTimeout(t *testing.T) {
	cs, _ := drainCluster(t, func(string) bool { return false })
	cs.PrependReactor("create", "pods", func(a k8stesting.Action) (bool, runtime.Object, error) {
		if a.GetSubresource() == "eviction" {
			return true, nil, apierrors.NewInternalError(errors.New("etcdserver: request timed out"))
		}
		return false, nil, nil
	})
	k := &Kubernetes{Client: cs, Members: webMembers}
	_, err := runDrain(t, k, DrainInput{ProviderID: pid1, Timeout: time.Minute, GracePeriodSeconds: -1, IgnoreDaemonSets: true, EvictRetryDelay: 50 * time.Millisecond})
	if err == nil || !strings.Contains(err.Error(), "request timed out") {
		t.Fatalf("err = %v, want the API server's error", err)
	}
	var ae *temporal.ApplicationError
	if errors.As(err, &ae) && ae.Type() == ErrTypeDrainTimeout {
		t.Fatalf("an API error saying %q was taken for the drain's timeout", "timed out")
	}
}

// TestNodeLookupsAndPodCountsDoNotListTheWholeCluster: finding VMs' nodes
// goes through one shared watch of the Nodes (after its first list, no
// more lists of nodes however many lookups), and pods are listed per node
// with a field selector, not for the whole cluster.
func TestNodeLookupsAndPodCountsDoNotListTheWholeCluster(t *testing.T) {
	cs, _ := drainCluster(t, func(string) bool { return false })
	other := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "other"}, Spec: corev1.NodeSpec{ProviderID: pid2}}
	if _, err := cs.CoreV1().Nodes().Create(context.Background(), other, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	var nodeLists, podLists atomic.Int32
	var podSelectors []string
	var mu sync.Mutex
	cs.PrependReactor("list", "nodes", func(k8stesting.Action) (bool, runtime.Object, error) {
		nodeLists.Add(1)
		return false, nil, nil
	})
	cs.PrependReactor("list", "pods", func(a k8stesting.Action) (bool, runtime.Object, error) {
		podLists.Add(1)
		mu.Lock()
		podSelectors = append(podSelectors, a.(k8stesting.ListAction).GetListRestrictions().Fields.String())
		mu.Unlock()
		return false, nil, nil
	})
	k := &Kubernetes{Client: cs, Members: webMembers}
	ctx := context.Background()
	for range 20 {
		st, err := k.NodeStatus(ctx, NodeRef{ProviderID: pid1})
		if err != nil || !st.Exists || st.Name != "web-1" {
			t.Fatalf("NodeStatus = %+v, %v; want node web-1", st, err)
		}
	}
	if n := nodeLists.Load(); n != 1 {
		t.Errorf("20 node lookups listed the nodes %d times, want once (the watch's first list)", n)
	}
	out, err := k.PodCounts(ctx, PodCountsInput{ProviderIDs: []string{pid1, pid2, pidGone}})
	if err != nil {
		t.Fatal(err)
	}
	if want := map[string]int{pid1: 2, pid2: 0, pidGone: 0}; !maps.Equal(out.Pods, want) {
		t.Errorf("pods = %v, want %v (DaemonSet pods not counted)", out.Pods, want)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(podSelectors) != 2 || !slices.Contains(podSelectors, "spec.nodeName=web-1") || !slices.Contains(podSelectors, "spec.nodeName=other") {
		t.Errorf("pod lists used field selectors %q, want one per existing node", podSelectors)
	}
}
