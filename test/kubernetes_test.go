package test

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/digitalocean/go-libvirt"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	fakediscovery "k8s.io/client-go/discovery/fake"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	bootstrapapi "k8s.io/cluster-bootstrap/token/api"
	"libvirt.org/go/libvirtxml"

	"github.com/premiscale/premiscale/activities"
	"github.com/premiscale/premiscale/config"
	"github.com/premiscale/premiscale/starter"
	"github.com/premiscale/premiscale/workflows"
)

// fakeCluster is client-go's fake API server with the eviction API served
// (discovery lists pods/eviction) and evictions carried out: the evicted
// pod is deleted, as the kubelet and API server would do.
func fakeCluster(t *testing.T) *fake.Clientset {
	t.Helper()
	cs := fake.NewClientset()
	cs.Discovery().(*fakediscovery.FakeDiscovery).Resources = []*metav1.APIResourceList{
		{GroupVersion: "policy/v1", APIResources: []metav1.APIResource{{Name: "poddisruptionbudgets", Kind: "PodDisruptionBudget"}}},
		{GroupVersion: "v1", APIResources: []metav1.APIResource{{Name: "pods/eviction", Kind: "Eviction", Group: "policy", Version: "v1"}}},
	}
	cs.PrependReactor("create", "pods", func(a k8stesting.Action) (bool, runtime.Object, error) {
		if a.GetSubresource() != "eviction" {
			return false, nil, nil
		}
		ev := a.(k8stesting.CreateAction).GetObject().(*policyv1.Eviction)
		return true, nil, cs.Tracker().Delete(schema.GroupVersionResource{Version: "v1", Resource: "pods"}, ev.Namespace, ev.Name)
	})
	return cs
}

// waitSoleMember polls the group's status until it has one member with a
// provider ID (its domain is defined) and returns that member.
func waitSoleMember(t *testing.T, ctx context.Context, s *starter.Starter, group string) workflows.Member {
	t.Helper()
	for {
		st, err := s.Status(ctx, group)
		if err != nil || ctx.Err() != nil {
			t.Fatalf("status of %s: %v", group, err)
		}
		if len(st.Members) == 1 && st.Members[0].ProviderID != "" {
			return st.Members[0]
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// registerReadyNode does what the member's kubelet would: registers its
// Node, with the member's provider ID, as Ready.
func registerReadyNode(t *testing.T, ctx context.Context, cs *fake.Clientset, m workflows.Member) {
	t.Helper()
	if _, err := cs.CoreV1().Nodes().Create(ctx, &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: m.Name},
		Spec:       corev1.NodeSpec{ProviderID: m.ProviderID},
		Status:     corev1.NodeStatus{Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue}}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// purgeGroup removes, straight through libvirt, whatever a failed earlier
// run left of a test group on a persistent (QEMU) host: its domains and
// its volumes.
func purgeGroup(t *testing.T, lv *libvirt.Libvirt, pool, group string) {
	t.Helper()
	v := viewGroupIn(t, lv, pool, group)
	for _, name := range v.defined {
		if d, err := lv.DomainLookupByName(name); err == nil {
			_ = lv.DomainDestroy(d)
			_ = lv.DomainUndefine(d)
		}
	}
	p, err := lv.StoragePoolLookupByName(pool)
	if err != nil {
		return
	}
	for _, name := range v.volumes {
		if vol, err := lv.StorageVolLookupByName(p, name); err == nil {
			_ = lv.StorageVolDelete(vol, 0)
		}
	}
}

func downloadVolume(t *testing.T, lv *libvirt.Libvirt, pool, name string) []byte {
	t.Helper()
	p, err := lv.StoragePoolLookupByName(pool)
	if err != nil {
		t.Fatal(err)
	}
	vol, err := lv.StorageVolLookupByName(p, name)
	if err != nil {
		t.Fatalf("volume %s: %v", name, err)
	}
	var b bytes.Buffer
	if err := lv.StorageVolDownload(vol, &b, 0, 0, 0); err != nil {
		t.Fatalf("download %s: %v", name, err)
	}
	return b.Bytes()
}

// TestKubeadmJoinThenDrainOnRealLibvirt runs a group in kubeadm mode on
// the real QEMU libvirtd, with client-go's fake API server as the cluster:
// the VM gets a seed ISO whose user-data joins with a fresh token and the
// provider ID; it completes only when its Node turns Ready; its token
// Secret is then gone and the token appears nowhere in workflow history.
// Scale-in evicts its pods, deletes the Node, then the domain and volumes.
func TestKubeadmJoinThenDrainOnRealLibvirt(t *testing.T) {
	lv := requireLibvirt(t, qemuURI)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cs := fakeCluster(t)
	const group = "kj"
	purgeGroup(t, lv, guestPool, group)
	t.Cleanup(func() { purgeGroup(t, lv, guestPool, group) })
	zero := time.Duration(0)
	hash := "sha256:" + strings.Repeat("0f", 32)
	cfg := &config.Config{
		Version: config.Version,
		Controller: config.Controller{Kubernetes: config.Kubernetes{
			Kubeconfig: "(fake API in the test)", APIServerEndpoint: "127.0.0.1:6443", CACertHashes: []string{hash},
		}},
		Autoscale: config.Autoscale{
			Hosts: []config.Host{{Name: "local", URI: qemuURI, Pool: guestPool, CPUOvercommit: 4}},
			Groups: []config.Group{{
				Name: group, Max: 2,
				Scaling:  config.Scaling{EvaluationInterval: time.Second},
				Template: config.Template{DiskSize: "16MiB", Memory: "64MiB", DomainType: "qemu", ShutdownTimeout: &zero},
				Kubernetes: config.GroupKubernetes{
					Join: config.JoinKubeadm, Labels: map[string]string{"tier": "web"},
					ReadyTimeout: 2 * time.Minute, Drain: config.Drain{Timeout: 30 * time.Second},
				},
			}},
		},
	}
	s, c := startInProcessConfig(t, ctx, cfg, cs)
	t.Cleanup(func() { recordHistories(t, c, "kubernetes") })
	t.Cleanup(func() {
		cctx, ccancel := context.WithTimeout(context.Background(), time.Minute)
		defer ccancel()
		_, _ = s.Scale(cctx, group, 0)
		_, _ = s.WaitSettled(cctx, group, 200*time.Millisecond)
	})
	if _, err := s.Scale(ctx, group, 1); err != nil {
		t.Fatal(err)
	}
	vm := group + "-1"

	// Provisioning waits for the node; meanwhile the seed and token exist.
	var member workflows.Member
	for {
		st, err := s.Status(ctx, group)
		if err != nil {
			t.Fatal(err)
		}
		if len(st.Members) == 1 && st.Members[0].State == workflows.MemberProvisioning {
			if d, err := lv.DomainLookupByName(vm); err == nil {
				if state, _, err := lv.DomainGetState(d, 0); err == nil && libvirt.DomainState(state) == libvirt.DomainRunning {
					member = st.Members[0]
					break
				}
			}
		}
		if len(st.Members) == 1 && st.Members[0].State == workflows.MemberRunning {
			t.Fatal("member running before its node exists")
		}
		if ctx.Err() != nil {
			t.Fatalf("VM never ran: %+v", st)
		}
		time.Sleep(200 * time.Millisecond)
	}
	secrets, err := cs.CoreV1().Secrets("kube-system").List(ctx, metav1.ListOptions{})
	if err != nil || len(secrets.Items) != 1 {
		t.Fatalf("join token secrets: %v %v, want 1", secrets, err)
	}
	sec := secrets.Items[0]
	token := sec.StringData[bootstrapapi.BootstrapTokenIDKey] + "." + sec.StringData[bootstrapapi.BootstrapTokenSecretKey]
	if !strings.HasPrefix(member.ProviderID, "premiscale://"+group+"/") {
		t.Fatalf("provider ID %q", member.ProviderID)
	}
	files, label, err := activities.ReadSeedISO(downloadVolume(t, lv, guestPool, activities.SeedVolumeName(vm)))
	if err != nil {
		t.Fatal(err)
	}
	if label != "cidata" {
		t.Errorf("seed label %q, want cidata", label)
	}
	ud := files["user-data"]
	for _, want := range []string{"kubeadm\n  - join\n  - 127.0.0.1:6443\n  - --token\n  - " + token, hash, "--provider-id=" + member.ProviderID, "--node-labels=tier=web"} {
		if !strings.Contains(ud, want) {
			t.Errorf("user-data lacks %q:\n%s", want, ud)
		}
	}
	if !strings.Contains(files["meta-data"], "local-hostname: "+vm) {
		t.Errorf("meta-data = %q", files["meta-data"])
	}
	dom, _ := lv.DomainLookupByName(vm)
	doc, _ := lv.DomainGetXMLDesc(dom, 0)
	var dx libvirtxml.Domain
	if err := dx.Unmarshal(doc); err != nil {
		t.Fatal(err)
	}
	if !strings.HasSuffix(member.ProviderID, "/"+dx.UUID) {
		t.Errorf("provider ID %s does not end in the domain's UUID %s", member.ProviderID, dx.UUID)
	}
	cdrom := false
	for _, d := range dx.Devices.Disks {
		if d.Device == "cdrom" && d.ReadOnly != nil && d.Source != nil && d.Source.Volume != nil && d.Source.Volume.Volume == activities.SeedVolumeName(vm) {
			cdrom = true
		}
	}
	if !cdrom {
		t.Errorf("domain has no read-only CD-ROM with the seed:\n%s", doc)
	}

	// The kubelet registers the node and it turns Ready.
	registerReadyNode(t, ctx, cs, member)
	wctx, wcancel := context.WithTimeout(ctx, time.Minute)
	defer wcancel()
	if _, err := s.WaitSettled(wctx, group, 200*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if l, _ := cs.CoreV1().Secrets("kube-system").List(ctx, metav1.ListOptions{}); len(l.Items) != 0 {
		t.Errorf("%d join token secrets left once the node is Ready", len(l.Items))
	}

	// The token is nowhere in the histories of the group and its child.
	for _, id := range []string{workflows.GroupWorkflowID(group), workflows.GroupWorkflowID(group) + "/vm/" + vm + "/provision"} {
		it := c.GetWorkflowHistory(ctx, id, "", false, 0)
		n := 0
		for it.HasNext() {
			ev, err := it.Next()
			if err != nil {
				t.Fatal(err)
			}
			b, _ := json.Marshal(ev)
			if bytes.Contains(b, []byte(sec.StringData[bootstrapapi.BootstrapTokenSecretKey])) {
				t.Errorf("history of %s holds the token secret at event %d", id, ev.GetEventId())
			}
			n++
		}
		if n == 0 {
			t.Errorf("no history for %s", id)
		}
	}

	// Pods run on the node; scale-in evicts them, then removes it all.
	for _, name := range []string{"app-1", "app-2"} {
		ctrl := true
		p := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default", OwnerReferences: []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: "app", UID: "rs-1", Controller: &ctrl}}},
			Spec:       corev1.PodSpec{NodeName: vm},
			Status:     corev1.PodStatus{Phase: corev1.PodRunning},
		}
		if _, err := cs.CoreV1().Pods("default").Create(ctx, p, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.Scale(ctx, group, 0); err != nil {
		t.Fatal(err)
	}
	wctx2, wcancel2 := context.WithTimeout(ctx, 2*time.Minute)
	defer wcancel2()
	if _, err := s.WaitSettled(wctx2, group, 200*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if pods, _ := cs.CoreV1().Pods("default").List(ctx, metav1.ListOptions{}); len(pods.Items) != 0 {
		t.Errorf("%d pods not evicted", len(pods.Items))
	}
	if _, err := cs.CoreV1().Nodes().Get(ctx, vm, metav1.GetOptions{}); err == nil {
		t.Error("Node object not deleted")
	}
	var evictions int
	for _, a := range cs.Actions() {
		if a.GetVerb() == "create" && a.GetSubresource() == "eviction" {
			evictions++
		}
	}
	if evictions != 2 {
		t.Errorf("%d evictions, want 2 (through the eviction API)", evictions)
	}
	if _, err := lv.DomainLookupByName(vm); err == nil {
		t.Error("domain still defined")
	}
	p, _ := lv.StoragePoolLookupByName(guestPool)
	for _, name := range []string{activities.VolumeName(vm), activities.SeedVolumeName(vm)} {
		if _, err := lv.StorageVolLookupByName(p, name); err == nil {
			t.Errorf("volume %s left", name)
		}
	}
}
