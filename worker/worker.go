// Package worker builds the Temporal worker that runs PremiScale's workflows
// and activities. Workers hold no state of their own: run as many as you like
// against one Temporal cluster and task queue.
package worker

import (
	"context"
	"errors"
	"log/slog"

	historypb "go.temporal.io/api/history/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/interceptor"
	"go.temporal.io/sdk/log"
	sdkworker "go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/premiscale/premiscale/activities"
	"github.com/premiscale/premiscale/config"
	"github.com/premiscale/premiscale/internal/hostwatch"
	"github.com/premiscale/premiscale/workflows"
)

// New returns a worker on taskQueue with every PremiScale workflow and the
// libvirt, Prometheus, Kubernetes and group-reading activities registered;
// the latter read the group workflows through c. kube may have a nil
// Client: its activities then fail, without retry, for groups that join a
// cluster.
func New(c client.Client, taskQueue string, lv *activities.Libvirt, prom *activities.Prometheus, kube *activities.Kubernetes, opts sdkworker.Options) sdkworker.Worker {
	opts.Interceptors = append(opts.Interceptors, &workflows.SignalOrder{})
	w := sdkworker.New(c, taskQueue, opts)
	Register(w, lv, prom)
	if kube != nil && kube.Members == nil {
		kube.Members = Membership{Client: c}
	}
	w.RegisterActivity(kube)
	w.RegisterActivity(&activities.Groups{Client: c})
	auth := &Authority{Catalog: lv.Catalog}
	w.RegisterActivityWithOptions(auth.CheckGroupSpec, activity.RegisterOptions{Name: workflows.CheckGroupSpecName})
	w.RegisterActivityWithOptions(auth.CheckRemove, activity.RegisterOptions{Name: workflows.CheckRemoveName})
	w.RegisterActivityWithOptions(auth.CheckWindow, activity.RegisterOptions{Name: workflows.CheckWindowName})
	return w
}

// NewReplayer returns a workflow replayer with PremiScale's workflows and
// the interceptors every worker runs them with (see workflows.SignalOrder),
// then extra (a test's, watching what the workflows do while they replay).
func NewReplayer(extra ...interceptor.WorkerInterceptor) (sdkworker.WorkflowReplayer, error) {
	r, err := sdkworker.NewWorkflowReplayerWithOptions(sdkworker.WorkflowReplayerOptions{
		Interceptors: append([]interceptor.WorkerInterceptor{&workflows.SignalOrder{}}, extra...),
	})
	if err != nil {
		return nil, err
	}
	RegisterWorkflows(r)
	return r, nil
}

// WorkflowRegistry is where workflows are registered: a worker, a test
// environment, or a replayer.
type WorkflowRegistry interface {
	RegisterWorkflowWithOptions(w any, options workflow.RegisterOptions)
}

// Registry is where workflows and activities are registered: a worker, or a
// test environment.
type Registry interface {
	WorkflowRegistry
	RegisterActivity(a any)
}

// Register registers PremiScale's workflows and activities.
func Register(r Registry, lv *activities.Libvirt, prom *activities.Prometheus) {
	RegisterWorkflows(r)
	r.RegisterActivity(lv)
	r.RegisterActivity(prom)
}

// RegisterWorkflows registers PremiScale's workflows under stable names, so
// that the temporal CLI and the UI show them as documented.
func RegisterWorkflows(r WorkflowRegistry) {
	r.RegisterWorkflowWithOptions(workflows.GroupWorkflow, workflow.RegisterOptions{Name: workflows.GroupWorkflowName})
	r.RegisterWorkflowWithOptions(workflows.ProvisionVM, workflow.RegisterOptions{Name: workflows.ProvisionVMName})
	r.RegisterWorkflowWithOptions(workflows.DecommissionVM, workflow.RegisterOptions{Name: workflows.DecommissionVMName})
	r.RegisterWorkflowWithOptions(workflows.ActivateVM, workflow.RegisterOptions{Name: workflows.ActivateVMName})
	r.RegisterWorkflowWithOptions(workflows.ParkVM, workflow.RegisterOptions{Name: workflows.ParkVMName})
	r.RegisterWorkflowWithOptions(workflows.ScanOwned, workflow.RegisterOptions{Name: workflows.ScanWorkflowName})
	r.RegisterWorkflowWithOptions(workflows.OrphanCollector, workflow.RegisterOptions{Name: workflows.OrphanWorkflowName})
	r.RegisterWorkflowWithOptions(workflows.ScheduledWindow, workflow.RegisterOptions{Name: workflows.ScheduledWindowName})
}

// WatchHosts runs a host watcher (hostwatch.Watcher) over the hosts of
// cfg's groups until ctx ends: each change of a domain of a group is sent
// to the group's workflow as SignalHostChange. A group whose workflow does
// not exist (not ensured yet, or removed) is skipped. With
// controller.hostWatch.enabled false it returns at once.
func WatchHosts(ctx context.Context, c client.Client, cfg *config.Config, cat *activities.Catalog, logger *slog.Logger) {
	if !cfg.Controller.HostWatch.On() {
		logger.Info("host watchers are off: groups observe their hosts each evaluation interval")
		return
	}
	w := &hostwatch.Watcher{
		Catalog: cat, Hosts: hostwatch.WatchedHosts(cfg), Logger: logger,
		Notify: func(ctx context.Context, group string, change activities.HostChange) error {
			err := c.SignalWorkflow(ctx, workflows.GroupWorkflowID(group), "", workflows.SignalHostChange, change)
			var nf *serviceerror.NotFound
			if errors.As(err, &nf) {
				return nil
			}
			return err
		},
	}
	w.Run(ctx)
}

// Replay replays h with PremiScale's workflows (NewReplayer) under the
// workflow ID the history ran as, which the workflows check (a group's,
// the orphan collector's) and which a history does not record: it is
// derived from the workflow type and, for a group, the group's name in
// its input. The run ID is the history's own, as a worker sees it. It
// returns the replayer's error: nil when the current code reproduces h's
// commands. extra are passed to NewReplayer.
func Replay(logger log.Logger, h *historypb.History, extra ...interceptor.WorkerInterceptor) error {
	r, err := NewReplayer(extra...)
	if err != nil {
		return err
	}
	return r.ReplayWorkflowHistoryWithOptions(logger, h, sdkworker.ReplayWorkflowHistoryOptions{
		OriginalExecution: workflow.Execution{ID: OriginalWorkflowID(h)},
	})
}

// OriginalWorkflowID is the ID PremiScale gives the workflow whose history
// h is: GroupWorkflowID of the group in a GroupWorkflow's input, the
// orphan collector's fixed ID, or "replay" for the workflows that do not
// read theirs.
func OriginalWorkflowID(h *historypb.History) string {
	start := h.GetEvents()[0].GetWorkflowExecutionStartedEventAttributes()
	switch start.GetWorkflowType().GetName() {
	case workflows.GroupWorkflowName:
		var in struct {
			Spec struct {
				Name string `json:"name"`
			} `json:"spec"`
		}
		if p := start.GetInput().GetPayloads(); len(p) > 0 && converter.GetDefaultDataConverter().FromPayload(p[0], &in) == nil {
			return workflows.GroupWorkflowID(in.Spec.Name)
		}
	case workflows.OrphanWorkflowName:
		return workflows.OrphanWorkflowID
	}
	return "replay"
}
