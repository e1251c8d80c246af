package test

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/digitalocean/go-libvirt"
	appsv1 "k8s.io/api/apps/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	bootstrapapi "k8s.io/cluster-bootstrap/token/api"

	"github.com/premiscale/premiscale/activities"
	"github.com/premiscale/premiscale/config"
	"github.com/premiscale/premiscale/test/k8s"
	"github.com/premiscale/premiscale/workflows"
)

var crashDrainKills = flag.Int("crash.drainkills", 8, "SIGKILLs of the controller in TestKillLoopDuringJoinsAndDrains")

// kubeletAgent plays the kubelet of every VM of group on the hosts: once a
// domain runs, it reads the seed PremiScale wrote next to it and joins with
// it (k8s.Cluster.Join), as the guest's kubeadm and kubelet would on boot.
// A VM destroyed while it was joining takes its registration with it, as a
// kubelet that dies with its VM cannot register: the agent deletes a Node
// it registered for a domain that no longer runs. It stops with ctx.
type kubeletAgent struct {
	kc     *k8s.Cluster
	conns  map[string]*libvirt.Libvirt
	pool   string
	group  string
	mu     sync.Mutex
	joined map[string]bool // domain UUIDs
	errs   []string
}

func (a *kubeletAgent) run(ctx context.Context) {
	for ctx.Err() == nil {
		for host, lv := range a.conns {
			doms, _, err := lv.ConnectListAllDomains(1, libvirt.ConnectListDomainsActive)
			if err != nil {
				continue
			}
			for _, d := range doms {
				if !strings.HasPrefix(d.Name, a.group+"-") {
					continue
				}
				uuid := fmt.Sprintf("%x", d.UUID)
				a.mu.Lock()
				done := a.joined[uuid]
				a.mu.Unlock()
				if !done {
					a.join(ctx, host, lv, d, uuid)
				}
			}
		}
		select {
		case <-ctx.Done():
		case <-time.After(300 * time.Millisecond):
		}
	}
}

func (a *kubeletAgent) join(ctx context.Context, host string, lv *libvirt.Libvirt, d libvirt.Domain, uuid string) {
	pool, err := lv.StoragePoolLookupByName(a.pool)
	if err != nil {
		return
	}
	vol, err := lv.StorageVolLookupByName(pool, activities.SeedVolumeName(d.Name))
	if err != nil {
		return
	}
	// Read from the pool's directory, not through a libvirt stream: a
	// stream whose volume is deleted mid-read (the VM cancelled) can leave
	// go-libvirt's router blocked on a reply nobody reads, and every later
	// call on the connection with it. The hosts share this machine.
	path, err := lv.StorageVolGetPath(vol)
	if err != nil {
		return
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return
	}
	files, _, err := activities.ReadSeedISO(b)
	if err != nil {
		return
	}
	req, err := k8s.ParseUserData(files["user-data"])
	if err != nil {
		a.fail("seed of %s on %s: %v", d.Name, host, err)
		return
	}
	req.DiscoveryTimeout = 5 * time.Second
	if _, err := a.kc.Join(ctx, req); err != nil && !apierrors.IsAlreadyExists(err) {
		return // a token cleaned up with a cancelled VM: its domain goes too
	}
	if state, _, err := lv.DomainGetState(d, 0); err != nil || libvirt.DomainState(state) != libvirt.DomainRunning {
		_ = a.kc.Admin.CoreV1().Nodes().Delete(ctx, req.NodeName, metav1.DeleteOptions{})
		return
	}
	a.mu.Lock()
	a.joined[uuid] = true
	a.mu.Unlock()
}

func (a *kubeletAgent) fail(format string, args ...any) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.errs = append(a.errs, fmt.Sprintf(format, args...))
}

// checkNodes asserts, for a settled group, that the cluster agrees with
// it: one Ready, schedulable Node per member (by provider ID), no Node of
// the group without a member, and no join token left behind.
func checkNodes(t *testing.T, ctx context.Context, kc *k8s.Cluster, st workflows.GroupStatus) string {
	t.Helper()
	nodes, err := kc.Admin.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{}
	for _, m := range st.Members {
		want[m.ProviderID] = m.Name
	}
	seen := 0
	for _, n := range nodes.Items {
		if !strings.HasPrefix(n.Spec.ProviderID, "premiscale://"+st.Group+"/") {
			continue
		}
		vm, ok := want[n.Spec.ProviderID]
		if !ok {
			t.Fatalf("node %s (%s) has no member: leaked", n.Name, n.Spec.ProviderID)
		}
		if n.Name != vm || n.Spec.Unschedulable {
			t.Fatalf("node %s of member %s: unschedulable %v", n.Name, vm, n.Spec.Unschedulable)
		}
		seen++
	}
	if seen != len(st.Members) {
		t.Fatalf("%d nodes for %d members", seen, len(st.Members))
	}
	// Join tokens are create-only: they stay until they expire, and none
	// may outlive the worker's tokenTTL from now.
	secrets, err := kc.Admin.CoreV1().Secrets("kube-system").List(ctx, metav1.ListOptions{LabelSelector: activities.LabelGroup + "=" + st.Group})
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range secrets.Items {
		exp, err := time.Parse(time.RFC3339, string(s.Data[bootstrapapi.BootstrapTokenExpirationKey]))
		if err != nil || exp.After(time.Now().Add(config.DefaultTokenTTL)) {
			t.Fatalf("join token %s (%s) expires %q, want within tokenTTL %s: %v", s.Name, s.Labels[activities.LabelVM], s.Data[bootstrapapi.BootstrapTokenExpirationKey], config.DefaultTokenTTL, err)
		}
	}
	return fmt.Sprintf("%d nodes", seen)
}

// TestKillLoopDuringJoinsAndDrains SIGKILLs the controller at random
// moments while a kubeadm group on three real QEMU hosts scales out (VMs
// join the real API server with their tokens) and in (nodes with pods are
// drained through the eviction API, then deleted), so that kills land
// during token creation, joins, drains and cleanups. After every settle:
// the libvirt invariants of the plain kill loop, one Ready schedulable Node
// per member and none without one, no join token that outlives tokenTTL, and no workflow
// task failed for non-determinism or a panic.
func TestKillLoopDuringJoinsAndDrains(t *testing.T) {
	hosts := requireHosts(t, 3)
	kc := realKube(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	id := chartIdentity(t, ctx, kc, "ps-crash")
	const group, max = "kk", 3
	conns := qemuConns(t, hosts, group)
	port := freePort(t)
	cfg, logPath := multiHostConfig(t, port, hosts, libvirtHost.qemuURI, guestPool, ", cpuOvercommit: 4, memoryOvercommit: 4",
		fmt.Sprintf(`    - name: %s
      max: %d
      scaling: {evaluationInterval: 1s}
      template: {diskSize: 16MiB, vcpus: 1, memory: 64MiB, domainType: qemu, shutdownTimeout: 0s}
      kubernetes:
        join: kubeadm
        readyTimeout: 2m
        drain: {timeout: 30s}
`, group, max))
	b, err := os.ReadFile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	kube := fmt.Sprintf("controller:\n  kubernetes: {kubeconfig: %s, apiServerEndpoint: %q, caCertHashes: [%q]}\n",
		id.Kubeconfig, strings.TrimPrefix(kc.Server, "https://"), kc.CAHash)
	if err := os.WriteFile(cfg, bytes.Replace(b, []byte("controller:\n"), []byte(kube), 1), 0o600); err != nil {
		t.Fatal(err)
	}

	// Pods for the drains to evict: spread over the group's nodes, moved
	// to the others at each drain.
	replicas := int32(4)
	labels := map[string]string{"app": "crash-web"}
	dep := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "crash-web", Namespace: "default"},
		Spec: appsv1.DeploymentSpec{
			Replicas: &replicas,
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: webPodTemplate("crash-web", nil),
		},
	}
	if _, err := kc.Admin.AppsV1().Deployments("default").Create(ctx, dep, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = kc.Admin.AppsV1().Deployments("default").Delete(context.Background(), dep.Name, metav1.DeleteOptions{})
	})

	// One pod of them may be down at a time: a drain of a node with two
	// waits for the first one's replacement before evicting the second.
	one := intstr.FromInt32(1)
	pdb := &policyv1.PodDisruptionBudget{
		ObjectMeta: metav1.ObjectMeta{Name: "crash-web", Namespace: "default"},
		Spec:       policyv1.PodDisruptionBudgetSpec{MaxUnavailable: &one, Selector: &metav1.LabelSelector{MatchLabels: labels}},
	}
	if _, err := kc.Admin.PolicyV1().PodDisruptionBudgets("default").Create(ctx, pdb, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = kc.Admin.PolicyV1().PodDisruptionBudgets("default").Delete(context.Background(), pdb.Name, metav1.DeleteOptions{})
	})

	agentCtx, stopAgent := context.WithCancel(ctx)
	agent := &kubeletAgent{kc: kc, conns: conns, pool: guestPool, group: group, joined: map[string]bool{}}
	agentDone := make(chan struct{})
	go func() { agent.run(agentCtx); close(agentDone) }()
	t.Cleanup(func() {
		stopAgent()
		select {
		case <-agentDone:
		case <-time.After(time.Minute):
			t.Error("the kubelet agent did not stop within a minute of being told to: a libvirt or API call hangs")
		}
	})

	c := &controller{t: t, config: cfg, log: logPath}
	c.start()
	t.Cleanup(func() { c.kill(syscall.SIGKILL) })
	t.Cleanup(func() { c.checkLogForPanics() })

	var settle []time.Duration
	began := time.Now()
	want, inDrain, inJoin := 0, 0, 0
	for i := 1; i <= *crashDrainKills; i++ {
		// Between 1 and max, a change every round: with no node left the
		// budget below would hold the last pods (as it should) until
		// drain.timeout.
		prev := want
		for want == prev {
			want = 1 + rand.IntN(max)
		}
		c.mustCLI("scale", group, strconv.Itoa(want))
		// Kill once the change is under way, at a random point of it. A
		// provisioning shows in status for 4-9 s here (the join is its
		// last ~2 s); a decommissioning (drain under the budget, shutdown,
		// cleanup) for only 2-2.5 s, so a scale-in is killed within its
		// first second: with the same 2.5 s window as a scale-out, half of
		// them were killed after the fact, and a run whose every scale-in
		// missed tested no drain at all.
		window := 2500
		if want < prev {
			window = 1000
		}
		for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); {
			st := c.status(group)
			if (want > prev && st.Provisioning > 0) || (want < prev && st.Decommissioning > 0) {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		time.Sleep(time.Duration(rand.IntN(window)) * time.Millisecond)
		st := c.status(group)
		if st.Decommissioning > 0 {
			inDrain++
		}
		if st.Provisioning > 0 {
			inJoin++
		}
		c.kill(syscall.SIGKILL)
		c.start()
		restarted := time.Now()
		st = c.waitSettled(group, want, 4*time.Minute)
		line := checkInvariant(t, conns, guestPool, st) + ", " + checkNodes(t, ctx, kc, st)
		settle = append(settle, time.Since(restarted))
		c.checkWorkflowTasks(port)
		t.Logf("kill %d/%d (%d -> %d): settled in %s: %s", i, *crashDrainKills, prev, want, settle[len(settle)-1].Round(time.Millisecond), line)
	}
	slices.Sort(settle)
	t.Logf("survived %d kills (%d during decommissionings, %d during provisionings) in %s; time to settle after restart: min %s, median %s, max %s",
		len(settle), inDrain, inJoin, time.Since(began).Round(time.Second), settle[0].Round(time.Millisecond),
		settle[len(settle)/2].Round(time.Millisecond), settle[len(settle)-1].Round(time.Millisecond))

	if inDrain == 0 || inJoin == 0 {
		t.Errorf("no kill landed during a decommissioning (%d) or a provisioning (%d): the loop tested less than it says", inDrain, inJoin)
	}
	// All the way down, the budget lifted.
	if err := kc.Admin.PolicyV1().PodDisruptionBudgets("default").Delete(ctx, pdb.Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	c.mustCLI("scale", group, "0")
	st := c.waitSettled(group, 0, 3*time.Minute)
	checkInvariant(t, conns, guestPool, st)
	checkNodes(t, ctx, kc, st)
	c.checkWorkflowTasks(port)
	stopAgent()
	<-agentDone
	if len(agent.errs) > 0 {
		t.Errorf("kubelet agent: %s", strings.Join(agent.errs, "; "))
	}
	checkExactRights(t, kc, id, false)
}
