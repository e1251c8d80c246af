package workflows_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/mock"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"

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
	env.ExecuteWorkflow(workflows.DecommissionVMName, workflows.DecommissionInput{Group: "web", VM: "web-1", Host: activities.HostRef{Name: "h1"}})
	if err := env.GetWorkflowError(); err != nil {
		t.Fatalf("decommission: %v, want done with the volume left in place", err)
	}
	if len(deletes) != 1 || !deletes[0].IfUnused {
		t.Fatalf("volume deletes %+v, want one with IfUnused", deletes)
	}
}
