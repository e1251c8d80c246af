package workflows_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/mock"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/workflow"

	"github.com/premiscale/premiscale/activities"
	"github.com/premiscale/premiscale/worker"
	"github.com/premiscale/premiscale/workflows"
)

// TestDecommissionOfANameSomeoneElseHoldsKeepsTheirVolume: the domain of
// the VM's name is not PremiScale's, so it is not touched, and the VM's
// volumes are deleted only if unused: one that their domain uses stays.
func TestDecommissionOfANameSomeoneElseHoldsKeepsTheirVolume(t *testing.T) {
	var s testsuite.WorkflowTestSuite
	env := s.NewTestWorkflowEnvironment()
	env.SetTestTimeout(30 * time.Second)
	worker.Register(env, &activities.Libvirt{}, &activities.Prometheus{})
	var a *activities.Libvirt
	notOwned := temporal.NewNonRetryableApplicationError("not ours", activities.ErrTypeNotOwned, nil)
	env.OnActivity(a.StopDomain, mock.Anything, mock.Anything).Return(notOwned)
	var deletes []activities.DeleteVolumeInput
	env.OnActivity(a.DeleteVolume, mock.Anything, mock.Anything).Return(func(_ context.Context, in activities.DeleteVolumeInput) error {
		deletes = append(deletes, in)
		return temporal.NewNonRetryableApplicationError("used by their domain", activities.ErrTypeInUse, nil)
	})
	runAsGroupChild(env, workflows.DecommissionVMName, workflows.DecommissionInput{Group: "web", VM: "web-1", Host: activities.HostRef{Name: "h1"}})
	if err := env.GetWorkflowError(); err != nil {
		t.Fatalf("decommission: %v, want done with the volume left in place", err)
	}
	if len(deletes) != 1 || !deletes[0].IfUnused {
		t.Fatalf("volume deletes %+v, want one with IfUnused", deletes)
	}
}

// groupStandIn stands in for group web's workflow: it runs the VM
// workflow name with in as its child, as the group does, and ends as the
// child did.
func groupStandIn(ctx workflow.Context, name string, in json.RawMessage) error {
	cctx := workflow.WithChildOptions(ctx, workflow.ChildWorkflowOptions{WorkflowID: "vm"})
	return workflow.ExecuteChildWorkflow(cctx, name, in).Get(ctx, nil)
}

// runAsGroupChild runs VM workflow name with in as a child of group web's
// workflow (VM workflows refuse to run otherwise); env's workflow error is
// the child's, wrapped.
func runAsGroupChild(env *testsuite.TestWorkflowEnvironment, name string, in any) {
	env.RegisterWorkflowWithOptions(groupStandIn, workflow.RegisterOptions{Name: "GroupStandIn"})
	env.SetStartWorkflowOptions(client.StartWorkflowOptions{ID: workflows.GroupWorkflowID("web")})
	env.ExecuteWorkflow("GroupStandIn", name, in)
}

// TestVMWorkflowsStartedByHandRefuse: a VM workflow that its group's
// workflow did not start (one started through the frontend, or as the
// child of another workflow) ends refused before any activity.
func TestVMWorkflowsStartedByHandRefuse(t *testing.T) {
	for _, tc := range []struct {
		name, workflow string
		in             any
		asChildOf      string
	}{
		{"provision by hand", workflows.ProvisionVMName, workflows.ProvisionInput{Group: "web", VM: "web-9", Host: activities.HostRef{Name: "h1"}}, ""},
		{"decommission by hand", workflows.DecommissionVMName, workflows.DecommissionInput{Group: "web", VM: "web-1", Host: activities.HostRef{Name: "h1"}}, ""},
		{"activate by hand", workflows.ActivateVMName, workflows.ActivateInput{Group: "web", VM: "web-1", Host: activities.HostRef{Name: "h1"}}, ""},
		{"park by hand", workflows.ParkVMName, workflows.ParkInput{Group: "web", VM: "web-1", Host: activities.HostRef{Name: "h1"}}, ""},
		{"provision from another group's workflow", workflows.ProvisionVMName, workflows.ProvisionInput{Group: "db", VM: "db-9", Host: activities.HostRef{Name: "h1"}}, "web"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var s testsuite.WorkflowTestSuite
			env := s.NewTestWorkflowEnvironment()
			env.SetTestTimeout(30 * time.Second)
			worker.Register(env, &activities.Libvirt{}, &activities.Prometheus{})
			var calls []string
			env.SetOnActivityStartedListener(func(info *activity.Info, _ context.Context, _ converter.EncodedValues) {
				calls = append(calls, info.ActivityType.Name)
			})
			if tc.asChildOf != "" {
				runAsGroupChild(env, tc.workflow, tc.in)
			} else {
				env.SetStartWorkflowOptions(client.StartWorkflowOptions{ID: "forged"})
				env.ExecuteWorkflow(tc.workflow, tc.in)
			}
			err := env.GetWorkflowError()
			var ae *temporal.ApplicationError
			if !errors.As(err, &ae) || ae.Type() != workflows.ErrTypeRefused || !strings.Contains(err.Error(), "not by the group's workflow") {
				t.Fatalf("err = %v, want it refused", err)
			}
			if len(calls) != 0 {
				t.Errorf("a refused VM workflow ran %v", calls)
			}
		})
	}
}
