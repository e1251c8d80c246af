package test

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/digitalocean/go-libvirt"
	"go.temporal.io/sdk/client"
	appsv1 "k8s.io/api/apps/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	bootstrapapi "k8s.io/cluster-bootstrap/token/api"
	"libvirt.org/go/libvirtxml"

	"github.com/premiscale/premiscale/activities"
	"github.com/premiscale/premiscale/config"
	"github.com/premiscale/premiscale/starter"
	"github.com/premiscale/premiscale/test/k8s"
	"github.com/premiscale/premiscale/workflows"
)

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

// purgeGroup removes, straight through libvirt, whatever a failed earlier
// run left of a test group on a persistent (QEMU) host: its domains and
// its volumes.
func purgeGroup(t testing.TB, lv *libvirt.Libvirt, pool, group string) {
	t.Helper()
	v := viewGroupIn(t, lv, pool, group)
	for _, name := range v.defined {
		if d, err := lv.DomainLookupByName(name); err == nil {
			_ = lv.DomainDestroy(d)
			// A warm VM's managed save image goes with it.
			if lv.DomainUndefineFlags(d, libvirt.DomainUndefineManagedSave) != nil {
				_ = lv.DomainUndefine(d)
			}
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

// checkTokensCreateOnly: every join token of the group expires within ttl
// of now (the token cleaner ends it; PremiScale cannot), and the real
// authorizer denies PremiScale's identity list, watch, get and delete on
// Secrets in kube-system, a token it made included, while create is
// allowed.
func checkTokensCreateOnly(t *testing.T, ctx context.Context, kc *k8s.Cluster, id kubeIdentity, group string, ttl time.Duration) {
	t.Helper()
	l, err := kc.Admin.CoreV1().Secrets(metav1.NamespaceSystem).List(ctx, metav1.ListOptions{LabelSelector: activities.LabelGroup + "=" + group})
	if err != nil {
		t.Fatal(err)
	}
	if len(l.Items) == 0 {
		t.Fatalf("no join token of group %s in kube-system", group)
	}
	for _, s := range l.Items {
		exp, err := time.Parse(time.RFC3339, string(s.Data[bootstrapapi.BootstrapTokenExpirationKey]))
		if err != nil || exp.After(time.Now().Add(ttl)) {
			t.Errorf("token %s expires %q (%v), want within tokenTTL %s", s.Name, s.Data[bootstrapapi.BootstrapTokenExpirationKey], err, ttl)
		}
	}
	ns, _, _ := strings.Cut(strings.TrimPrefix(id.User, "system:serviceaccount:"), ":")
	groups := []string{"system:serviceaccounts", "system:serviceaccounts:" + ns, "system:authenticated"}
	for _, tc := range []struct {
		verb, name string
		allowed    bool
	}{
		{"create", "", true}, {"list", "", false}, {"watch", "", false},
		{"get", l.Items[0].Name, false}, {"get", "bootstrap-token-abcdef", false},
		{"delete", l.Items[0].Name, false}, {"update", l.Items[0].Name, false}, {"patch", l.Items[0].Name, false},
	} {
		r, err := kc.Admin.AuthorizationV1().SubjectAccessReviews().Create(ctx, &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{
			User: id.User, Groups: groups,
			ResourceAttributes: &authorizationv1.ResourceAttributes{Namespace: metav1.NamespaceSystem, Verb: tc.verb, Resource: "secrets", Name: tc.name},
		}}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if r.Status.Allowed != tc.allowed {
			t.Errorf("%s secrets %q in kube-system: allowed %v, want %v (%s)", tc.verb, tc.name, r.Status.Allowed, tc.allowed, r.Status.Reason)
		}
	}
}

// qemuConns connects to each host's QEMU driver and clears whatever an
// earlier failed run left of group on them, now and when the test ends.
func qemuConns(t *testing.T, hosts []libvirtHost, group string) map[string]*libvirt.Libvirt {
	t.Helper()
	conns := map[string]*libvirt.Libvirt{}
	for _, h := range hosts {
		conns[h.name] = connectURI(t, h.qemuURI())
		purgeGroup(t, conns[h.name], guestPool, group)
	}
	t.Cleanup(func() {
		for _, lv := range conns {
			purgeGroup(t, lv, guestPool, group)
		}
	})
	return conns
}

// downloadVolume reads a volume's content from its file: the test's
// libvirtd hosts share this machine. (Through a libvirt stream, go-libvirt's
// download deadlocked on a busy connection, digitalocean/go-libvirt#241,
// and on a connection of its own once returned no bytes at all while the
// file was whole.) An empty volume fails the test: PremiScale writes the
// seed before the domain is defined.
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
	path, err := lv.StorageVolGetPath(vol)
	if err != nil {
		t.Fatalf("volume %s: %v", name, err)
	}
	b, err := os.ReadFile(path)
	if err != nil || len(b) == 0 {
		t.Fatalf("volume %s (%s): %d bytes, %v", name, path, len(b), err)
	}
	return b
}

// joinMembers plays the kubelet of every member of group that is
// provisioning: once its domain runs, it reads the seed PremiScale wrote
// into the pool and joins with it (k8s.Cluster.Join: discovery, TLS
// bootstrap with the token, Node registration). It returns each joined
// member's kubelet by VM once the group has settled.
func joinMembers(t *testing.T, ctx context.Context, s *starter.Starter, lv *libvirt.Libvirt, kc *k8s.Cluster, group string) map[string]*k8s.Kubelet {
	t.Helper()
	joined := map[string]*k8s.Kubelet{}
	for {
		st, err := s.Status(ctx, group)
		if err != nil {
			t.Fatal(err)
		}
		if st.Settled() {
			return joined
		}
		for _, m := range st.Members {
			if m.State != workflows.MemberProvisioning || m.ProviderID == "" {
				continue
			}
			if _, ok := joined[m.Name]; ok {
				continue
			}
			d, err := lv.DomainLookupByName(m.Name)
			if err != nil {
				continue
			}
			if state, _, err := lv.DomainGetState(d, 0); err != nil || libvirt.DomainState(state) != libvirt.DomainRunning {
				continue
			}
			files, label, err := activities.ReadSeedISO(downloadVolume(t, lv, guestPool, activities.SeedVolumeName(m.Name)))
			if err != nil || label != "cidata" {
				t.Fatalf("seed of %s: label %q, %v", m.Name, label, err)
			}
			if !strings.Contains(files["meta-data"], "local-hostname: "+m.Name) {
				t.Errorf("meta-data = %q", files["meta-data"])
			}
			req, err := k8s.ParseUserData(files["user-data"])
			if err != nil {
				t.Fatalf("user-data of %s: %v\n%s", m.Name, err, files["user-data"])
			}
			if req.ProviderID != m.ProviderID || req.NodeName != m.Name {
				t.Fatalf("user-data of %s registers %s as %s, want %s", m.Name, req.NodeName, req.ProviderID, m.ProviderID)
			}
			kl, err := kc.Join(ctx, req)
			if err != nil {
				t.Fatalf("join of %s with its seed: %v", m.Name, err)
			}
			joined[m.Name] = kl
		}
		if ctx.Err() != nil {
			t.Fatalf("group %s never settled: %+v", group, st)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// TestNodeThatNeverTurnsReadyIsReplaced: a kubeadm VM whose kubelet
// registers its Node with the VM's token but never reports Ready is, past
// readyTimeout, removed with its Node, and replaced by a new VM with a
// token of its own that joins. The first VM's token, which PremiScale may
// not delete (create-only), expires after tokenTTL and then no longer
// joins.
func TestNodeThatNeverTurnsReadyIsReplaced(t *testing.T) {
	lv := requireLibvirt(t, qemuURI)
	kc := realKube(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	id := chartIdentity(t, ctx, kc, "ps-notready")
	const group = "kn"
	purgeGroup(t, lv, guestPool, group)
	t.Cleanup(func() { purgeGroup(t, lv, guestPool, group) })
	zero := time.Duration(0)
	cfg := &config.Config{
		Version: config.Version,
		Controller: config.Controller{Kubernetes: config.Kubernetes{
			Kubeconfig: id.Kubeconfig, APIServerEndpoint: strings.TrimPrefix(kc.Server, "https://"), CACertHashes: []string{kc.CAHash},
			TokenTTL: time.Minute,
		}},
		Autoscale: config.Autoscale{
			Hosts: []config.Host{{Name: "local", URI: qemuURI, Pool: guestPool, CPUOvercommit: 8, MemoryOvercommit: 4}},
			Groups: []config.Group{{
				Name: group, Max: 1,
				Scaling:    config.Scaling{EvaluationInterval: time.Second},
				Template:   config.Template{DiskSize: "16MiB", Memory: "64MiB", DomainType: "qemu", ShutdownTimeout: &zero},
				Kubernetes: config.GroupKubernetes{Join: config.JoinKubeadm, ReadyTimeout: time.Minute},
			}},
		},
	}
	s, c := startInProcessConfig(t, ctx, cfg, id.Client)
	t.Cleanup(func() { recordHistories(t, c, "notready") })
	t.Cleanup(func() {
		cctx, ccancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer ccancel()
		_, _ = s.Scale(cctx, group, 0)
		_, _ = s.WaitSettled(cctx, group, 200*time.Millisecond)
	})
	if _, err := s.Scale(ctx, group, 1); err != nil {
		t.Fatal(err)
	}
	first := waitSoleMember(t, ctx, s, group)
	req := seedJoin(t, ctx, lv, first.Name)
	req.NotReady = true
	if _, err := kc.Join(ctx, req); err != nil {
		t.Fatalf("join of %s: %v", first.Name, err)
	}
	registered := time.Now()

	// Past readyTimeout: a new member, and nothing of the first left.
	var next workflows.Member
	for next.Name == "" {
		st, err := s.Status(ctx, group)
		if err != nil || ctx.Err() != nil {
			t.Fatalf("no replacement for %s: %v %+v", first.Name, err, st)
		}
		for _, m := range st.Members {
			if m.Name != first.Name && m.ProviderID != "" {
				next = m
			}
		}
		time.Sleep(500 * time.Millisecond)
	}
	if waited := time.Since(registered); waited < 50*time.Second {
		t.Errorf("replaced %s after %s, before its readyTimeout of 1m", first.Name, waited)
	}
	if n := historyContains(t, ctx, c, workflows.ProvisionWorkflowID(group, first.Name), "not Ready within readyTimeout"); n == 0 {
		t.Errorf("the provisioning of %s does not say why it failed", first.Name)
	}
	for deadline := time.Now().Add(time.Minute); ; {
		v := viewGroupIn(t, lv, guestPool, group)
		_, nodeErr := kc.Admin.CoreV1().Nodes().Get(ctx, first.Name, metav1.GetOptions{})
		if !contains(v.defined, first.Name) && !contains(v.volumes, activities.VolumeName(first.Name)) &&
			!contains(v.volumes, activities.SeedVolumeName(first.Name)) && apierrors.IsNotFound(nodeErr) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not cleaned up: domains %v, volumes %v, node %v", first.Name, v.defined, v.volumes, nodeErr)
		}
		time.Sleep(500 * time.Millisecond)
	}
	// Its token is left to expire: wait out its expiry (a minute after it
	// was made, so at most moments from now).
	tokens, err := kc.Admin.CoreV1().Secrets("kube-system").List(ctx, metav1.ListOptions{LabelSelector: activities.LabelVM + "=" + first.Name})
	if err != nil {
		t.Fatal(err)
	}
	for _, tok := range tokens.Items {
		exp, err := time.Parse(time.RFC3339, string(tok.Data[bootstrapapi.BootstrapTokenExpirationKey]))
		if err != nil || exp.After(time.Now().Add(time.Minute)) {
			t.Fatalf("token %s of %s expires %q (%v), want within its tokenTTL of 1m", tok.Name, first.Name, tok.Data[bootstrapapi.BootstrapTokenExpirationKey], err)
		}
		time.Sleep(time.Until(exp) + time.Second)
	}
	again := req
	again.NodeName, again.NotReady, again.DiscoveryTimeout = first.Name+"-again", false, 5*time.Second
	if _, err := kc.Join(ctx, again); err == nil {
		t.Errorf("the token of the replaced %s still joins", first.Name)
	}

	// The replacement joins with its own token and runs.
	nreq := seedJoin(t, ctx, lv, next.Name)
	if nreq.Token == req.Token {
		t.Errorf("the replacement %s reuses %s's token", next.Name, first.Name)
	}
	if _, err := kc.Join(ctx, nreq); err != nil {
		t.Fatalf("join of %s: %v", next.Name, err)
	}
	st, err := s.WaitSettled(ctx, group, 200*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Members) != 1 || st.Members[0].Name != next.Name || st.Members[0].State != workflows.MemberRunning {
		t.Fatalf("settled as %+v, want %s running", st.Members, next.Name)
	}
	checkExactRights(t, kc, id, false)
}

// seedJoin waits for vm's domain to run and reads the join request from
// the seed PremiScale wrote for it.
func seedJoin(t *testing.T, ctx context.Context, lv *libvirt.Libvirt, vm string) k8s.JoinRequest {
	t.Helper()
	for {
		if d, err := lv.DomainLookupByName(vm); err == nil {
			if state, _, err := lv.DomainGetState(d, 0); err == nil && libvirt.DomainState(state) == libvirt.DomainRunning {
				break
			}
		}
		if ctx.Err() != nil {
			t.Fatalf("%s never ran", vm)
		}
		time.Sleep(200 * time.Millisecond)
	}
	files, _, err := activities.ReadSeedISO(downloadVolume(t, lv, guestPool, activities.SeedVolumeName(vm)))
	if err != nil {
		t.Fatalf("seed of %s: %v", vm, err)
	}
	req, err := k8s.ParseUserData(files["user-data"])
	if err != nil {
		t.Fatalf("user-data of %s: %v", vm, err)
	}
	return req
}

// TestKubeadmGroupOnARealAPIServer runs a kubeadm group on the real QEMU
// libvirtd against the real control plane, with PremiScale holding only
// the Helm chart's rights:
//   - join: each VM's seed carries a join token that works against the API
//     server (discovery by the CA hash, TLS bootstrap, Node registration
//     with the provider ID, labels and taints); a member runs once its Node
//     is Ready; its token expires after tokenTTL, PremiScale can neither
//     list Secrets in kube-system nor get one (its own or another's); the
//     token is nowhere in workflow history;
//   - leastPods: of three nodes holding 2, 0 and 1 pods, scale-in takes
//     the empty one;
//   - a PodDisruptionBudget that allows no eviction holds a drain: past
//     drain.timeout the node is uncordoned, the VM kept, status says why,
//     and the next scale-in drains another node instead;
//   - once the budget allows it, the drain evicts through the eviction API
//     (DaemonSet pods and a static pod's mirror stay, as with kubectl
//     drain), the Node is deleted, then the domain and its volumes;
//   - the audit log shows every request allowed and every granted verb used.
func TestKubeadmGroupOnARealAPIServer(t *testing.T) {
	lv := requireLibvirt(t, qemuURI)
	kc := realKube(t)
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	id := chartIdentity(t, ctx, kc, "ps-kubeadm")
	const group = "kr"
	purgeGroup(t, lv, guestPool, group)
	t.Cleanup(func() { purgeGroup(t, lv, guestPool, group) })
	zero := time.Duration(0)
	endpoint := strings.TrimPrefix(kc.Server, "https://")
	taint := config.Taint{Key: "premiscale.io/dedicated", Value: group, Effect: "NoSchedule"}
	cfg := &config.Config{
		Version: config.Version,
		Controller: config.Controller{Kubernetes: config.Kubernetes{
			Kubeconfig: id.Kubeconfig, APIServerEndpoint: endpoint, CACertHashes: []string{kc.CAHash},
		}},
		Autoscale: config.Autoscale{
			Hosts: []config.Host{{Name: "local", URI: qemuURI, Pool: guestPool, CPUOvercommit: 8, MemoryOvercommit: 4}},
			Groups: []config.Group{{
				Name: group, Max: 3,
				Scaling: config.Scaling{
					EvaluationInterval: time.Second,
					ScaleIn:            config.Direction{Selection: config.SelectLeastPods},
				},
				Template: config.Template{DiskSize: "16MiB", Memory: "64MiB", DomainType: "qemu", ShutdownTimeout: &zero},
				Kubernetes: config.GroupKubernetes{
					Join: config.JoinKubeadm, Labels: map[string]string{"tier": "web"}, Taints: []config.Taint{taint},
					ReadyTimeout: 2 * time.Minute, Drain: config.Drain{Timeout: 15 * time.Second},
				},
			}},
		},
	}
	s, c := startInProcessConfig(t, ctx, cfg, id.Client)
	t.Cleanup(func() { recordHistories(t, c, "kubeadm") })
	t.Cleanup(func() {
		cctx, ccancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer ccancel()
		_ = kc.Admin.PolicyV1().PodDisruptionBudgets("default").Delete(cctx, "web-c", metav1.DeleteOptions{})
		_, _ = s.Scale(cctx, group, 0)
		_, _ = s.WaitSettled(cctx, group, 200*time.Millisecond)
	})

	// Join: three VMs, each with its own token.
	if _, err := s.Scale(ctx, group, 3); err != nil {
		t.Fatal(err)
	}
	joined := joinMembers(t, ctx, s, lv, kc, group)
	if len(joined) != 3 {
		t.Fatalf("joined %d members, want 3", len(joined))
	}
	tokens := map[string]bool{}
	nodes := map[string]*corev1.Node{}
	for vm, kl := range joined {
		req := kl.Request
		tokens[req.Token] = true
		n, err := kc.Admin.CoreV1().Nodes().Get(ctx, vm, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		nodes[vm] = n
		if n.Spec.ProviderID != req.ProviderID || n.Labels["tier"] != "web" || n.Labels[activities.NodeLabelGroup] != group ||
			!slices.ContainsFunc(n.Spec.Taints, func(x corev1.Taint) bool { return x.Key == taint.Key && x.Value == group }) {
			t.Errorf("node %s: provider %q labels %v taints %v", vm, n.Spec.ProviderID, n.Labels, n.Spec.Taints)
		}
		dom, _ := lv.DomainLookupByName(vm)
		doc, _ := lv.DomainGetXMLDesc(dom, 0)
		var dx libvirtxml.Domain
		if err := dx.Unmarshal(doc); err != nil {
			t.Fatal(err)
		}
		if !strings.HasSuffix(req.ProviderID, "/"+dx.UUID) {
			t.Errorf("provider ID %s does not end in the domain's UUID %s", req.ProviderID, dx.UUID)
		}
		if !slices.ContainsFunc(dx.Devices.Disks, func(d libvirtxml.DomainDisk) bool {
			return d.Device == "cdrom" && d.ReadOnly != nil && d.Source != nil && d.Source.Volume != nil && d.Source.Volume.Volume == activities.SeedVolumeName(vm)
		}) {
			t.Errorf("domain %s has no read-only CD-ROM with the seed", vm)
		}
	}
	if len(tokens) != 3 {
		t.Errorf("%d distinct tokens for 3 VMs", len(tokens))
	}
	checkTokensCreateOnly(t, ctx, kc, id, group, config.DefaultTokenTTL)
	for vm, kl := range joined {
		_, secret, _ := strings.Cut(kl.Request.Token, ".")
		for _, wid := range []string{workflows.GroupWorkflowID(group), workflows.ProvisionWorkflowID(group, vm)} {
			if n := historyContains(t, ctx, c, wid, secret); n > 0 {
				t.Errorf("history of %s holds %s's token secret at event %d", wid, vm, n)
			}
		}
	}

	// Workload: 2 pods on the first node, none on the second, 1 on the
	// third; a DaemonSet everywhere; no disruption allowed for the third's.
	var vms []string
	for vm := range joined {
		vms = append(vms, vm)
	}
	slices.Sort(vms)
	a, b, cc := vms[0], vms[1], vms[2]
	for _, rs := range []*appsv1.ReplicaSet{webReplicaSet("web-a", a, 2), webReplicaSet("web-c", cc, 1)} {
		if _, err := kc.Admin.AppsV1().ReplicaSets("default").Create(ctx, rs, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	dsLabels := map[string]string{"app": "agent-" + group}
	ds := &appsv1.DaemonSet{
		ObjectMeta: metav1.ObjectMeta{Name: "agent-" + group, Namespace: "default"},
		Spec: appsv1.DaemonSetSpec{
			Selector: &metav1.LabelSelector{MatchLabels: dsLabels},
			Template: webPodTemplate("agent-"+group, map[string]string{"tier": "web"}),
		},
	}
	if _, err := kc.Admin.AppsV1().DaemonSets("default").Create(ctx, ds, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		bg := context.Background()
		_ = kc.Admin.AppsV1().ReplicaSets("default").Delete(bg, "web-a", metav1.DeleteOptions{})
		_ = kc.Admin.AppsV1().ReplicaSets("default").Delete(bg, "web-c", metav1.DeleteOptions{})
		_ = kc.Admin.AppsV1().DaemonSets("default").Delete(bg, ds.Name, metav1.DeleteOptions{})
	})
	one := intstr.FromInt32(1)
	pdb := &policyv1.PodDisruptionBudget{
		ObjectMeta: metav1.ObjectMeta{Name: "web-c", Namespace: "default"},
		Spec:       policyv1.PodDisruptionBudgetSpec{MinAvailable: &one, Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web-c"}}},
	}
	if _, err := kc.Admin.PolicyV1().PodDisruptionBudgets("default").Create(ctx, pdb, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// A static pod on the first node, whose mirror its kubelet creates.
	mirror, err := joined[a].MirrorPod(ctx, "etcd-"+group)
	if err != nil {
		t.Fatalf("mirror pod on %s: %v", a, err)
	}
	waitPodsRunning(t, ctx, kc.Admin, "default", "app=web-a", 2)
	waitPodsRunning(t, ctx, kc.Admin, "default", "app=web-c", 1)
	waitPodsRunning(t, ctx, kc.Admin, "default", "app=agent-"+group, 3)
	// The disruption controller has computed the budget: none allowed.
	for {
		p, err := kc.Admin.PolicyV1().PodDisruptionBudgets("default").Get(ctx, "web-c", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if p.Status.ObservedGeneration == p.Generation && p.Status.CurrentHealthy == 1 && p.Status.DisruptionsAllowed == 0 {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("PDB status never computed: %+v", p.Status)
		}
		time.Sleep(200 * time.Millisecond)
	}

	// leastPods: the empty node goes.
	if _, err := s.Scale(ctx, group, 2); err != nil {
		t.Fatal(err)
	}
	st, err := s.WaitSettled(ctx, group, 200*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	if names := memberNames(st); !slices.Equal(names, []string{a, cc}) {
		t.Fatalf("leastPods removed the wrong VM: members %v, want %v (%s had no pods)", names, []string{a, cc}, b)
	}
	if _, err := kc.Admin.CoreV1().Nodes().Get(ctx, b, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("node %s not deleted: %v", b, err)
	}

	// The budget holds the third node's drain: aborted past drain.timeout,
	// uncordoned, kept; then the other node is drained instead.
	if _, err := s.Scale(ctx, group, 1); err != nil {
		t.Fatal(err)
	}
	aborted := false
	for !aborted {
		st, err := s.Status(ctx, group)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range st.Members {
			if m.Name == cc && m.DrainAborts > 0 {
				aborted = true
				if !strings.Contains(st.LastError, "aborted") || !strings.Contains(m.Error, "disruption budget") {
					t.Errorf("status does not say why the scale-in of %s stopped: lastError %q, member error %q", cc, st.LastError, m.Error)
				}
			}
		}
		if ctx.Err() != nil {
			t.Fatalf("the drain of %s never aborted: %+v", cc, st)
		}
		time.Sleep(200 * time.Millisecond)
	}
	st, err = s.WaitSettled(ctx, group, 200*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	if names := memberNames(st); !slices.Equal(names, []string{cc}) {
		t.Fatalf("after the aborted drain of %s, members %v, want [%s] (%s drained instead)", cc, names, cc, a)
	}
	n, err := kc.Admin.CoreV1().Nodes().Get(ctx, cc, metav1.GetOptions{})
	if err != nil || n.Spec.Unschedulable {
		t.Errorf("node %s after the aborted drain: %v, unschedulable %v", cc, err, n.Spec.Unschedulable)
	}
	waitPodsRunning(t, ctx, kc.Admin, "default", "app=web-c", 1)

	// The budget lifted, the last node drains: its pod is evicted, the
	// DaemonSet's stays until the Node goes, and so do the VM and volumes.
	if err := kc.Admin.PolicyV1().PodDisruptionBudgets("default").Delete(ctx, "web-c", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Scale(ctx, group, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := s.WaitSettled(ctx, group, 200*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	for _, vm := range vms {
		if _, err := kc.Admin.CoreV1().Nodes().Get(ctx, vm, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			t.Errorf("node %s not deleted: %v", vm, err)
		}
		if _, err := lv.DomainLookupByName(vm); err == nil {
			t.Errorf("domain %s still defined", vm)
		}
	}
	p, _ := lv.StoragePoolLookupByName(guestPool)
	for _, vm := range vms {
		for _, name := range []string{activities.VolumeName(vm), activities.SeedVolumeName(vm)} {
			if _, err := lv.StorageVolLookupByName(p, name); err == nil {
				t.Errorf("volume %s left", name)
			}
		}
	}
	events, err := kc.Audit(id.User)
	if err != nil {
		t.Fatal(err)
	}
	evicted := map[string]bool{}
	for _, e := range events {
		if e.Verb == "create" && e.Resource() == "/pods/eviction" && e.ResponseStatus != nil && e.ResponseStatus.Code < 300 {
			evicted[e.ObjectRef.Name] = true
		}
		if e.Verb == "delete" && e.Resource() == "/pods" {
			t.Errorf("pod %s deleted instead of evicted", e.ObjectRef.Name)
		}
		if e.ObjectRef != nil && strings.HasPrefix(e.ObjectRef.Name, "agent-"+group) && e.Resource() == "/pods/eviction" {
			t.Errorf("DaemonSet pod %s evicted", e.ObjectRef.Name)
		}
		if e.ObjectRef != nil && e.ObjectRef.Name == mirror.Name && (e.Resource() == "/pods/eviction" || e.Verb == "delete") {
			t.Errorf("mirror pod %s: %s %s", mirror.Name, e.Verb, e.Resource())
		}
	}
	if len(evicted) != 3 {
		t.Errorf("%d pods evicted through the eviction API (%v), want 3: web-a's two and web-c's", len(evicted), evicted)
	}
	checkExactRights(t, kc, id, true)
}

// historyContains returns the ID of the first event of the workflow's
// history whose JSON holds s, or 0; it fails on an empty history.
func historyContains(t *testing.T, ctx context.Context, c client.Client, workflowID, s string) int64 {
	t.Helper()
	it := c.GetWorkflowHistory(ctx, workflowID, "", false, 0)
	n := 0
	for it.HasNext() {
		ev, err := it.Next()
		if err != nil {
			t.Fatal(err)
		}
		n++
		if b, _ := json.Marshal(ev); bytes.Contains(b, []byte(s)) {
			return ev.GetEventId()
		}
	}
	if n == 0 {
		t.Errorf("no history for %s", workflowID)
	}
	return 0
}
