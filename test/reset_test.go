package test

import (
	"context"
	"fmt"
	"testing"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/workflowservice/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/premiscale/premiscale/config"
	"github.com/premiscale/premiscale/workflows"
)

// TestWorkflowResetKeepsProviderIDs: `temporal workflow reset` of a group
// whose VM joined Kubernetes replays its history in a new run; the member
// keeps the provider ID its node registered with, and the scale-in after
// it finds and drains that node.
func TestWorkflowResetKeepsProviderIDs(t *testing.T) {
	lv := requireLibvirt(t, qemuURI)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	kc := realKube(t)
	kid := chartIdentity(t, ctx, kc, "ps-reset")
	const group = "rst"
	purgeGroup(t, lv, guestPool, group)
	t.Cleanup(func() { purgeGroup(t, lv, guestPool, group) })
	zero := time.Duration(0)
	cfg := &config.Config{
		Version:    config.Version,
		Controller: config.Controller{Kubernetes: config.Kubernetes{Kubeconfig: kid.Kubeconfig}},
		Autoscale: config.Autoscale{
			Hosts: []config.Host{{Name: "local", URI: qemuURI, Pool: guestPool, CPUOvercommit: 4}},
			Groups: []config.Group{{
				Name: group, Max: 2,
				Scaling:  config.Scaling{EvaluationInterval: time.Second},
				Template: config.Template{DiskSize: "16MiB", Memory: "64MiB", DomainType: "qemu", ShutdownTimeout: &zero},
				Kubernetes: config.GroupKubernetes{
					Join: config.JoinUserData, UserData: "#cloud-config\nhostname: {{.NodeName}}\n",
					ReadyTimeout: 2 * time.Minute, Drain: config.Drain{Timeout: 30 * time.Second},
				},
			}},
		},
	}
	s, c := startInProcessConfig(t, ctx, cfg, kid.Client)
	if _, err := s.Scale(ctx, group, 1); err != nil {
		t.Fatal(err)
	}
	member := waitSoleMember(t, ctx, s, group)
	registerNode(t, ctx, kc, member.Name, member.ProviderID, true)
	wctx, wcancel := context.WithTimeout(ctx, 2*time.Minute)
	defer wcancel()
	if _, err := s.WaitSettled(wctx, group, 200*time.Millisecond); err != nil {
		t.Fatal(err)
	}

	// Reset to the last completed workflow task.
	id := workflows.GroupWorkflowID(group)
	var resetTo int64
	iter := c.GetWorkflowHistory(ctx, id, "", false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	for iter.HasNext() {
		e, err := iter.Next()
		if err != nil {
			t.Fatal(err)
		}
		if e.GetEventType() == enumspb.EVENT_TYPE_WORKFLOW_TASK_COMPLETED {
			resetTo = e.GetEventId()
		}
	}
	desc, err := c.DescribeWorkflowExecution(ctx, id, "")
	if err != nil {
		t.Fatal(err)
	}
	before := desc.GetWorkflowExecutionInfo().GetExecution().GetRunId()
	if _, err := c.ResetWorkflowExecution(ctx, &workflowservice.ResetWorkflowExecutionRequest{
		Namespace:                 s.Config.Controller.Temporal.Namespace,
		WorkflowExecution:         desc.GetWorkflowExecutionInfo().GetExecution(),
		Reason:                    "test",
		WorkflowTaskFinishEventId: resetTo,
		RequestId:                 fmt.Sprintf("reset-%d", time.Now().UnixNano()),
	}); err != nil {
		t.Fatal(err)
	}
	for {
		desc, err := c.DescribeWorkflowExecution(ctx, id, "")
		if err == nil && desc.GetWorkflowExecutionInfo().GetExecution().GetRunId() != before {
			break
		}
		if ctx.Err() != nil {
			t.Fatal("the reset run never appeared")
		}
		time.Sleep(100 * time.Millisecond)
	}
	st, err := s.Status(ctx, group)
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Members) != 1 || st.Members[0].ProviderID != member.ProviderID {
		t.Fatalf("after the reset: members %+v, want %s with provider ID %s", st.Members, member.Name, member.ProviderID)
	}

	// The scale-in finds the node by that provider ID: it is drained and deleted.
	if _, err := s.Scale(ctx, group, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := s.WaitSettled(wctx, group, 200*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if _, err := kc.Admin.CoreV1().Nodes().Get(ctx, member.Name, metav1.GetOptions{}); err == nil {
		t.Error("the node is still there: the scale-in after the reset did not find it")
	}
}
