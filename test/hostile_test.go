package test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/digitalocean/go-libvirt"
	"github.com/google/uuid"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"
	sdkworker "go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	bootstrapapi "k8s.io/cluster-bootstrap/token/api"

	"github.com/premiscale/premiscale/activities"
	"github.com/premiscale/premiscale/config"
	"github.com/premiscale/premiscale/starter"
	"github.com/premiscale/premiscale/test/k8s"
	"github.com/premiscale/premiscale/workflows"
)

// hostileCall is one activity a hostile workflow schedules on PremiScale's
// task queue, with raw input: whatever JSON an attacker likes.
type hostileCall struct {
	Activity string         `json:"activity"`
	Input    map[string]any `json:"input"`
}

// kubeadmTestDriverGroup runs PremiScale in this process, with the chart's
// identity id on the real API server, for one kubeadm group (0..3) on the
// test driver, cleared of what an earlier run left now and at the end.
func kubeadmTestDriverGroup(t *testing.T, ctx context.Context, lv *libvirt.Libvirt, kc *k8s.Cluster, id kubeIdentity, group string) (*starter.Starter, client.Client) {
	t.Helper()
	purgeGroup(t, lv, testPool, group)
	t.Cleanup(func() { purgeGroup(t, lv, testPool, group) })
	g := testDriverGroup(group, 0, 3)
	g.Kubernetes = config.GroupKubernetes{Join: config.JoinKubeadm}
	cfg := &config.Config{
		Version: config.Version,
		Controller: config.Controller{Kubernetes: config.Kubernetes{
			Kubeconfig: id.Kubeconfig, APIServerEndpoint: strings.TrimPrefix(kc.Server, "https://"), CACertHashes: []string{kc.CAHash},
		}},
		Autoscale: config.Autoscale{
			Hosts:  []config.Host{{Name: "testhost", URI: testDriverURI, Pool: testPool, CPUOvercommit: 16, MemoryOvercommit: 16}},
			Groups: []config.Group{g},
		},
	}
	return startInProcessConfig(t, ctx, cfg, id.Client)
}

// hostileWorkflow runs on the attacker's own worker and task queue, and
// schedules each call once on PremiScale's task queue, where PremiScale's
// worker executes it. It returns each call's error text ("" if it ran).
func hostileWorkflow(ctx workflow.Context, queue string, calls []hostileCall) ([]string, error) {
	ctx = workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		TaskQueue:           queue,
		StartToCloseTimeout: 30 * time.Second,
		RetryPolicy:         &temporal.RetryPolicy{MaximumAttempts: 1},
	})
	out := make([]string, len(calls))
	for i, c := range calls {
		if err := workflow.ExecuteActivity(ctx, c.Activity, c.Input).Get(ctx, nil); err != nil {
			out[i] = err.Error()
		}
	}
	return out, nil
}

// TestHostileClientGetsNoHypervisorThroughTemporal plays someone who can
// reach the Temporal frontend and nothing else: they start ProvisionVM, and
// run their own worker whose workflow schedules PremiScale's activities with
// inputs of their choosing (a foreign URI, an unknown group, a template that
// mounts the host's root filesystem, another VM's join token). Every one is
// refused by name, nothing is defined on the host, and no Secret is read:
// PremiScale only ever creates its own tokens.
func TestHostileClientGetsNoHypervisorThroughTemporal(t *testing.T) {
	lv := requireLibvirt(t, testDriverURI)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	kc := realKube(t)
	id := chartIdentity(t, ctx, kc, "ps-hostile")
	// Someone else's bootstrap token, in the cluster PremiScale joins.
	foreign := bootstrapapi.BootstrapTokenSecretPrefix + "h0st1l"
	if _, err := kc.Admin.CoreV1().Secrets(metav1.NamespaceSystem).Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: foreign, Namespace: metav1.NamespaceSystem},
		Type:       bootstrapapi.SecretTypeBootstrapToken,
		StringData: map[string]string{bootstrapapi.BootstrapTokenIDKey: "h0st1l", bootstrapapi.BootstrapTokenSecretKey: "0123456789abcdef"},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = kc.Admin.CoreV1().Secrets(metav1.NamespaceSystem).Delete(context.Background(), foreign, metav1.DeleteOptions{})
	})
	const group = "hw"
	s, c := kubeadmTestDriverGroup(t, ctx, lv, kc, id, group)
	queue := s.Config.Controller.Temporal.TaskQueue
	rev := s.Config.Autoscale.Groups[0].Revision()
	before := domainNames(t, lv)

	rootFS := `<filesystem type='mount' accessmode='passthrough'><source dir='/'/><target dir='hostroot'/></filesystem>`
	evilHost := map[string]any{"name": "evil", "uri": "qemu+tcp://attacker.example/system", "pool": "default"}
	ourHost := map[string]any{"name": "testhost", "uri": "qemu+tcp://attacker.example/system", "pool": "default"}
	evilTemplate := map[string]any{"memory": "64MiB", "domainType": "qemu", "extraDevicesXML": rootFS}

	// 1. ProvisionVM started straight through the frontend: refused, as
	// its group's workflow did not start it (and its activities would
	// refuse each of these, as 2 shows).
	provisions := []struct {
		name  string
		input map[string]any
		want  string
	}{
		{"foreign URI", map[string]any{"group": group, "vm": group + "-901", "host": evilHost, "revision": rev, "template": evilTemplate}, workflows.ErrTypeRefused},
		{"unknown group", map[string]any{"group": "evil", "vm": "evil-1", "host": ourHost, "revision": rev, "template": evilTemplate}, workflows.ErrTypeRefused},
		{"template with the host's root filesystem", map[string]any{"group": group, "vm": group + "-902", "host": ourHost, "template": evilTemplate}, workflows.ErrTypeRefused},
		{"a name that is not the group's", map[string]any{"group": group, "vm": "victim", "host": ourHost, "revision": rev}, workflows.ErrTypeRefused},
	}
	for _, p := range provisions {
		run, err := c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: "hostile-" + strings.ReplaceAll(p.name, " ", "-"), TaskQueue: queue},
			workflows.ProvisionVMName, p.input)
		if err != nil {
			t.Fatal(err)
		}
		if err = run.Get(ctx, nil); err == nil || !strings.Contains(err.Error(), "type: "+p.want+",") || strings.Contains(err.Error(), workflows.ErrTypeCleanupFailed) {
			t.Errorf("ProvisionVM with %s: err = %v, want it refused with %s", p.name, err, p.want)
		}
	}

	// 2. Activities scheduled by the attacker's own workflow and worker.
	w := sdkworker.New(c, "hostile", sdkworker.Options{})
	w.RegisterWorkflowWithOptions(hostileWorkflow, workflow.RegisterOptions{Name: "Hostile"})
	if err := w.Start(); err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	calls := []struct {
		call hostileCall
		want string
	}{
		{hostileCall{"CloneVolume", map[string]any{"host": evilHost, "group": group, "vm": group + "-903", "revision": rev}}, activities.ErrTypeUnknownHost},
		{hostileCall{"CloneVolume", map[string]any{"host": ourHost, "group": "evil", "vm": "evil-1", "revision": rev}}, activities.ErrTypeUnknownGroup},
		{hostileCall{"CloneVolume", map[string]any{"host": ourHost, "group": group, "vm": group + "-908"}}, activities.ErrTypeConfigMismatch},
		{hostileCall{"CloneVolume", map[string]any{"host": ourHost, "group": group, "vm": "victim", "revision": rev}}, activities.ErrTypeUnknownGroup},
		{hostileCall{"ListDomains", map[string]any{"host": evilHost}}, activities.ErrTypeUnknownHost},
		{hostileCall{"HostInventory", map[string]any{"host": evilHost}}, activities.ErrTypeUnknownHost},
		{hostileCall{"UndefineDomain", map[string]any{"host": evilHost, "group": group, "vm": group + "-1"}}, activities.ErrTypeUnknownHost},
		{hostileCall{"DefineDomain", map[string]any{"domain": map[string]any{"host": ourHost, "group": group, "vm": group + "-904"},
			"volume": activities.VolumeName(group + "-904"), "template": evilTemplate}}, activities.ErrTypeConfigMismatch},
		{hostileCall{"DefineDomain", map[string]any{"domain": map[string]any{"host": ourHost, "group": group, "vm": group + "-905"},
			"volume": "/etc/shadow", "revision": rev}}, activities.ErrTypeInvalidConfig},
		{hostileCall{"CreateJoinToken", map[string]any{"group": "evil", "vm": "evil-1", "revision": rev}}, activities.ErrTypeUnknownGroup},
		// Another token's ID is not even read: the seed would get a token
		// PremiScale creates for it (create is all it may do on Secrets;
		// the audit below shows no other verb), and the test driver then
		// refuses the upload.
		{hostileCall{"CreateSeedVolume", map[string]any{"host": ourHost, "group": group, "vm": group + "-906", "revision": rev,
			"instanceId": "5d1e6c8e-3f0b-4a36-9a57-0b6f7e3c2a11", "tokenId": "h0st1l"}}, activities.ErrTypeInvalidConfig},
		{hostileCall{"CreateSeedVolume", map[string]any{"host": evilHost, "group": group, "vm": group + "-907", "revision": rev,
			"instanceId": "5d1e6c8e-3f0b-4a36-9a57-0b6f7e3c2a11", "tokenId": "h0st1l"}}, activities.ErrTypeUnknownHost},
	}
	in := make([]hostileCall, len(calls))
	for i, c := range calls {
		in[i] = c.call
	}
	run, err := c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: "hostile-activities", TaskQueue: "hostile"}, "Hostile", queue, in)
	if err != nil {
		t.Fatal(err)
	}
	var errs []string
	if err := run.Get(ctx, &errs); err != nil {
		t.Fatal(err)
	}
	for i, c := range calls {
		if !strings.Contains(errs[i], "type: "+c.want+",") {
			t.Errorf("%s %v: err = %q, want it refused with %s", c.call.Activity, c.call.Input, errs[i], c.want)
		}
	}

	// 3. A spec signal that would make the group unbounded is refused.
	huge := workflows.GroupSpec{Name: group, Max: 2_000_000_000, Desired: 2_000_000_000, Hosts: []activities.HostRef{{Name: "testhost"}}, EvaluationInterval: 0}
	if err := c.SignalWorkflow(ctx, workflows.GroupWorkflowID(group), "", workflows.SignalSpec, huge); err != nil {
		t.Fatal(err)
	}
	st := waitStatus(t, s, group, 30*time.Second, "the spec signal refused", func(st workflows.GroupStatus) bool {
		return len(st.Events) > 0 && strings.Contains(st.Events[len(st.Events)-1].Message, "spec refused")
	})
	if st.Max != 3 || st.Desired != 0 {
		t.Errorf("after a hostile spec: max %d desired %d, want the configured 3 and 0", st.Max, st.Desired)
	}

	// Nothing was defined, and no Secret was read but by PremiScale's own
	// token labels: the API server's audit log of PremiScale's identity.
	if after := domainNames(t, lv); strings.Join(after, ",") != strings.Join(before, ",") {
		t.Errorf("domains on the host changed: before %v, after %v", before, after)
	}
	events, err := kc.Audit(id.User)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range events {
		if e.ObjectRef == nil || e.ObjectRef.Resource != "secrets" {
			continue
		}
		if e.Verb != "create" || e.ObjectRef.Name == foreign {
			t.Errorf("Secret %q: %s (%s), want create of its own tokens only", e.ObjectRef.Name, e.Verb, e.RequestURI)
		}
	}
	if _, err := kc.Admin.CoreV1().Secrets(metav1.NamespaceSystem).Get(ctx, foreign, metav1.GetOptions{}); err != nil {
		t.Errorf("the foreign token: %v", err)
	}
	checkExactRights(t, kc, id, false)
}

// domainNames lists every domain defined on the host, sorted.
func domainNames(t *testing.T, lv *libvirt.Libvirt) []string {
	t.Helper()
	doms, _, err := lv.ConnectListAllDomains(1, 0)
	if err != nil {
		t.Fatal(err)
	}
	names := make([]string, 0, len(doms))
	for _, d := range doms {
		names = append(names, d.Name)
	}
	slices.Sort(names)
	return names
}

// TestForgedDecommissionLeavesNodesItDoesNotOwnAlone plays someone who can
// start workflows on the frontend (the Temporal UI's Start Workflow is
// enough): DecommissionVM, started by hand with a VM name no member has,
// drain options force and deleteEmptyDirData, and the provider ID of a
// Node PremiScale never made (a kwok node, and one whose provider ID is
// premiscale://<the group>/<a UUID no member has>), each running a pod.
// Both workflows fail with an ownership error, with and without the drain
// step; the Nodes stay, uncordoned, their pods running; the audit log
// shows no write of PremiScale's identity to either Node or its pods.
func TestForgedDecommissionLeavesNodesItDoesNotOwnAlone(t *testing.T) {
	lv := requireLibvirt(t, testDriverURI)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	kc := realKube(t)
	id := chartIdentity(t, ctx, kc, "ps-forged")
	const group = "fd"
	s, c := kubeadmTestDriverGroup(t, ctx, lv, kc, id, group)
	queue := s.Config.Controller.Temporal.TaskQueue

	victims := map[string]string{
		"victim-a": "kwok://victim-a",
		"victim-b": "premiscale://" + group + "/" + uuid.NewString(),
	}
	for name, pid := range victims {
		registerNode(t, ctx, kc, name, pid, true)
		rs := webReplicaSet("app-"+name, name, 1)
		if _, err := kc.Admin.AppsV1().ReplicaSets("default").Create(ctx, rs, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			_ = kc.Admin.AppsV1().ReplicaSets("default").Delete(context.Background(), rs.Name, metav1.DeleteOptions{})
		})
	}
	for name := range victims {
		waitPodsRunning(t, ctx, kc.Admin, "default", "app=app-"+name, 1)
	}

	n := 0
	for name, pid := range victims {
		for _, withDrain := range []bool{true, false} {
			n++
			in := map[string]any{
				"group": group, "vm": fmt.Sprintf("%s-%d", group, 900+n), "host": map[string]any{"name": "testhost"},
				"providerId": pid,
			}
			if withDrain {
				in["kubernetes"] = map[string]any{"join": "kubeadm", "drain": map[string]any{"timeout": int64(30 * time.Second), "force": true, "deleteEmptyDirData": true}}
			}
			run, err := c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: fmt.Sprintf("forged-decommission-%d", n), TaskQueue: queue}, workflows.DecommissionVMName, in)
			if err != nil {
				t.Fatal(err)
			}
			if err := run.Get(ctx, nil); err == nil || !strings.Contains(err.Error(), "type: "+workflows.ErrTypeRefused+",") {
				t.Errorf("forged DecommissionVM of %s (drain %v): err = %v, want it refused with %s (not started by the group)", name, withDrain, err, workflows.ErrTypeRefused)
			}
		}
	}
	// The same Node steps, scheduled by the attacker's own workflow and
	// worker straight on PremiScale's task queue: each activity checks
	// ownership itself.
	w := sdkworker.New(c, "hostile-nodes", sdkworker.Options{})
	w.RegisterWorkflowWithOptions(hostileWorkflow, workflow.RegisterOptions{Name: "Hostile"})
	if err := w.Start(); err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	var calls []hostileCall
	for _, pid := range victims {
		calls = append(calls,
			hostileCall{"CordonNode", map[string]any{"providerId": pid}},
			hostileCall{"DrainNode", map[string]any{"providerId": pid, "timeout": int64(30 * time.Second), "force": true, "deleteEmptyDirData": true, "gracePeriodSeconds": 0}},
			hostileCall{"DeleteNode", map[string]any{"providerId": pid}},
			hostileCall{"UncordonNode", map[string]any{"providerId": pid}},
		)
	}
	run, err := c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: "hostile-node-activities", TaskQueue: "hostile-nodes"}, "Hostile", queue, calls)
	if err != nil {
		t.Fatal(err)
	}
	var errs []string
	if err := run.Get(ctx, &errs); err != nil {
		t.Fatal(err)
	}
	for i, call := range calls {
		if !strings.Contains(errs[i], "type: "+activities.ErrTypeNotOwned+",") {
			t.Errorf("%s %v: err = %q, want it refused with %s", call.Activity, call.Input, errs[i], activities.ErrTypeNotOwned)
		}
	}
	for name := range victims {
		node, err := kc.Admin.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
		if err != nil || node.Spec.Unschedulable {
			t.Errorf("victim %s after the forged decommissions: %v, cordoned %v", name, err, err == nil && node.Spec.Unschedulable)
		}
		waitPodsRunning(t, ctx, kc.Admin, "default", "app=app-"+name, 1)
	}
	events, err := kc.Audit(id.User)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range events {
		if e.ObjectRef == nil || e.Verb == "get" || e.Verb == "list" || e.Verb == "watch" {
			continue
		}
		if _, victim := victims[e.ObjectRef.Name]; victim || e.ObjectRef.Resource == "pods" {
			t.Errorf("PremiScale wrote to %s %s/%s: %s", e.ObjectRef.Resource, e.ObjectRef.Namespace, e.ObjectRef.Name, e.Verb)
		}
	}
}
