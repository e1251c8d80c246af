package starter

import (
	"context"
	"errors"
	"fmt"

	"go.temporal.io/api/serviceerror"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/temporal"

	"github.com/premiscale/premiscale/config"
	"github.com/premiscale/premiscale/workflows"
)

// installationMemo is the memo field of the installation's schedule that
// holds its identity.
const installationMemo = "installation"

// installationRecordQueue is the task queue of the installation schedule's
// action, which never runs: no worker polls it.
const installationRecordQueue = "premiscale-installation-record"

// InstallationScheduleID is the Temporal Schedule in which an installation
// on a Temporal cluster keeps its identity: one per task queue, in the
// configured namespace.
func InstallationScheduleID(taskQueue string) string { return "premiscale/installation/" + taskQueue }

// ResolveInstallation fills in controller.installation, when it is not set,
// for an installation on a Temporal cluster: the identity is kept in the
// memo of a paused Temporal Schedule (InstallationScheduleID) that never
// fires, so every worker and controller of the installation finds the
// same one, and another installation (another cluster, namespace or task
// queue) has its own. The first process to start creates it, atomically
// (the schedule's ID is unique): a fresh identity, or, when group
// workflows already run on this task queue (an installation from before
// identities were kept), the identity they marked their VMs with
// (Config.LegacyInstallation). Deleting the schedule makes a new
// installation, which never touches the old one's VMs. With the embedded
// server, or an identity set in the configuration, it does nothing.
func ResolveInstallation(ctx context.Context, c client.Client, cfg *config.Config) error {
	if cfg.Controller.Installation != "" || cfg.UsesEmbedded() {
		return nil
	}
	id := InstallationScheduleID(cfg.Controller.Temporal.TaskQueue)
	read := func() (string, error) {
		desc, err := c.ScheduleClient().GetHandle(ctx, id).Describe(ctx)
		if err != nil {
			return "", err
		}
		var v string
		p := desc.Memo.GetFields()[installationMemo]
		if p == nil || converter.GetDefaultDataConverter().FromPayload(p, &v) != nil || !config.IsInstallation(v) {
			return "", fmt.Errorf("controller.installation: Temporal schedule %s holds no valid identity; delete it to generate a new one (the VMs of the old identity are then left alone), or set controller.installation", id)
		}
		return v, nil
	}
	v, err := read()
	var notFound *serviceerror.NotFound
	switch {
	case err == nil:
		cfg.Controller.Installation = v
		return nil
	case !errors.As(err, &notFound):
		return fmt.Errorf("controller.installation: read it from Temporal schedule %s: %w", id, err)
	}
	fresh, err := config.NewInstallation()
	if err != nil {
		return err
	}
	legacy, err := groupsRunOn(ctx, c, cfg)
	if err != nil {
		return fmt.Errorf("controller.installation: %w", err)
	}
	if legacy {
		fresh = cfg.LegacyInstallation()
	}
	_, err = c.ScheduleClient().Create(ctx, client.ScheduleOptions{
		ID:   id,
		Spec: client.ScheduleSpec{},
		Action: &client.ScheduleWorkflowAction{
			ID: id + "/never", Workflow: "PremiScaleInstallationRecord", TaskQueue: installationRecordQueue,
		},
		Paused: true,
		Note:   "PremiScale keeps this installation's identity in this schedule's memo; it never fires. Deleting it makes a new installation.",
		Memo:   map[string]any{installationMemo: fresh},
	})
	switch {
	case err == nil:
		cfg.Controller.Installation = fresh
		return nil
	case errors.Is(err, temporal.ErrScheduleAlreadyRunning):
		// Another process of the installation created it meanwhile.
		if v, err = read(); err != nil {
			return err
		}
		cfg.Controller.Installation = v
		return nil
	}
	return fmt.Errorf("controller.installation: keep it in Temporal schedule %s: %w", id, err)
}

// groupsRunOn reports whether any group workflow runs on cfg's task queue.
func groupsRunOn(ctx context.Context, c client.Client, cfg *config.Config) (bool, error) {
	t := cfg.Controller.Temporal
	resp, err := c.ListWorkflow(ctx, &workflowservice.ListWorkflowExecutionsRequest{
		Namespace: t.Namespace, PageSize: 1,
		Query: fmt.Sprintf("WorkflowType = '%s' AND ExecutionStatus = 'Running' AND TaskQueue = '%s'", workflows.GroupWorkflowName, t.TaskQueue),
	})
	if err != nil {
		return false, fmt.Errorf("list group workflows on task queue %s: %w", t.TaskQueue, err)
	}
	return len(resp.GetExecutions()) > 0, nil
}
