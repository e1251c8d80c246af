package workflows

import (
	"fmt"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"
)

// changeChildChecksItsParent: ProvisionVM, DecommissionVM, ActivateVM and
// ParkVM run only as children of their group's workflow.
const changeChildChecksItsParent = "child-checks-its-parent"

// startedByGroup refuses, for a VM workflow of group, to run unless the
// group's own workflow started it as its child. The server records a
// child's parent; a workflow started through the frontend has none, so a
// ProvisionVM or DecommissionVM started by hand (any number of times, with
// any input) does nothing: what the group creates and removes stays
// bounded by the group's spec, which its worker checked.
func startedByGroup(ctx workflow.Context, group string) error {
	if workflow.GetVersion(ctx, changeChildChecksItsParent, workflow.DefaultVersion, 1) < 1 {
		return nil
	}
	info := workflow.GetInfo(ctx)
	if p := info.ParentWorkflowExecution; p == nil || p.ID != GroupWorkflowID(group) {
		by := "no workflow (started by hand)"
		if p != nil {
			by = "workflow " + p.ID
		}
		return temporal.NewNonRetryableApplicationError(fmt.Sprintf("%s of group %s started by %s, not by the group's workflow %s; refusing",
			info.WorkflowType.Name, group, by, GroupWorkflowID(group)), ErrTypeRefused, nil)
	}
	return nil
}
