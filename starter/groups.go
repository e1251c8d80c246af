// Ensuring a workflow per configured group, and listing the running ones
// with their published summaries.

package starter

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"

	"github.com/premiscale/premiscale/config"
	"github.com/premiscale/premiscale/workflows"
)

// EnsureGroups starts the workflow of every configured group that is not
// running and hands its current configuration to every one that is
// (signal-with-start, so both cases are one atomic call).
func (s *Starter) EnsureGroups(ctx context.Context) error {
	var errs []error
	for _, g := range s.Config.Autoscale.Groups {
		spec := workflows.SpecFromConfig(s.Config, g)
		_, err := s.Client.SignalWithStartWorkflow(ctx, workflows.GroupWorkflowID(g.Name), workflows.SignalSpec, spec,
			client.StartWorkflowOptions{
				ID:        workflows.GroupWorkflowID(g.Name),
				TaskQueue: s.Config.Controller.Temporal.TaskQueue,
			},
			workflows.GroupWorkflowName, workflows.GroupInput{Spec: spec})
		if err != nil {
			errs = append(errs, fmt.Errorf("ensure group %s: %w", g.Name, err))
		}
	}
	// After the specs, so that each group knows its schedules before one
	// of them fires.
	if err := s.EnsureSchedules(ctx); err != nil {
		errs = append(errs, err)
	}
	removed, err := s.RemovedGroups(ctx)
	if err != nil {
		return errors.Join(append(errs, err)...)
	}
	req := workflows.RemoveRequest{DeleteVMs: s.Config.Autoscale.Orphans.DeleteUnconfiguredGroups}
	for _, name := range removed {
		if err := s.Client.SignalWorkflow(ctx, workflows.GroupWorkflowID(name), "", workflows.SignalRemove, req); err != nil {
			errs = append(errs, fmt.Errorf("tell removed group %s: %w", name, err))
		}
	}
	return errors.Join(errs...)
}

// RemovedGroups lists groups whose workflow still runs but that the
// configuration no longer holds (a removal that deletes VMs, or one that
// keeps them unmanaged until the group is configured again).
func (s *Starter) RemovedGroups(ctx context.Context) ([]string, error) {
	running, err := s.runningGroups(ctx)
	if err != nil {
		return nil, err
	}
	var names []string
	for name := range running {
		if _, configured := s.Config.Group(name); !configured {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	return names, nil
}

// runningGroups lists the running group workflows from Temporal's
// visibility store, each with the summary its memo holds (nil if none).
func (s *Starter) runningGroups(ctx context.Context) (map[string]*workflows.GroupSummary, error) {
	query := fmt.Sprintf("WorkflowType = '%s' AND ExecutionStatus = 'Running'", workflows.GroupWorkflowName)
	out := map[string]*workflows.GroupSummary{}
	var token []byte
	for {
		resp, err := s.Client.ListWorkflow(ctx, &workflowservice.ListWorkflowExecutionsRequest{
			Namespace: s.Config.Controller.Temporal.Namespace, Query: query, NextPageToken: token,
		})
		if err != nil {
			return nil, fmt.Errorf("list group workflows: %w", err)
		}
		for _, e := range resp.Executions {
			name, ok := strings.CutPrefix(e.GetExecution().GetWorkflowId(), workflows.GroupWorkflowID(""))
			if !ok {
				continue
			}
			var sum *workflows.GroupSummary
			if p := e.GetMemo().GetFields()[workflows.MemoSummary]; p != nil {
				var v workflows.GroupSummary
				// A summary that does not decode is as good as none: the
				// group is asked by Query.
				if converter.GetDefaultDataConverter().FromPayload(p, &v) == nil && v.Group == name {
					sum = &v
				}
			}
			if out[name] == nil {
				out[name] = sum
			}
		}
		if token = resp.NextPageToken; len(token) == 0 {
			break
		}
	}
	return out, nil
}

// PublishedSummaries returns the summaries the running group workflows
// publish, by group, from one listing of Temporal's visibility store: no
// workflow runs a task for it. A group whose workflow has not published
// one yet is absent.
func (s *Starter) PublishedSummaries(ctx context.Context) (map[string]workflows.GroupSummary, error) {
	running, err := s.runningGroups(ctx)
	if err != nil {
		return nil, err
	}
	out := make(map[string]workflows.GroupSummary, len(running))
	for name, sum := range running {
		if sum != nil {
			out[name] = *sum
		}
	}
	return out, nil
}

// Summaries returns every group's summary, the configured groups in the
// configuration's order and then the removed groups whose workflow still
// runs, by name. One listing of Temporal's visibility store reads them all
// without waking a single workflow; a group whose workflow has not
// published a summary yet (just started, or running code from before
// summaries) is asked by status Query, as is, to report why, a configured
// group with no running workflow. A summary lags the status Query by at
// most a pass of the group's loop and the visibility store's update.
func (s *Starter) Summaries(ctx context.Context) ([]workflows.GroupSummary, error) {
	running, err := s.runningGroups(ctx)
	if err != nil {
		return nil, err
	}
	names := s.Config.GroupNames()
	var removed []string
	for name := range running {
		if _, configured := s.Config.Group(name); !configured {
			removed = append(removed, name)
		}
	}
	slices.Sort(removed)
	names = append(names, removed...)
	out := make([]workflows.GroupSummary, 0, len(names))
	for _, name := range names {
		if sum := running[name]; sum != nil {
			out = append(out, *sum)
			continue
		}
		st, err := s.Status(ctx, name)
		if err != nil && !errors.Is(err, ErrUnreachable) && !s.runs(ctx, name) {
			// Not running (the listing can lag a termination), and so not
			// answering: a closed workflow's Query fails with the way it
			// closed.
			return nil, fmt.Errorf("group %s has no running workflow (%s); start the controller with this config: %w",
				name, workflows.GroupWorkflowID(name), err)
		}
		if err != nil {
			return nil, err
		}
		out = append(out, st.Summary())
	}
	return out, nil
}

// runs reports whether the group's workflow is known to be running.
func (s *Starter) runs(ctx context.Context, name string) bool {
	d, err := s.Client.DescribeWorkflowExecution(ctx, workflows.GroupWorkflowID(name), "")
	return err == nil && d.GetWorkflowExecutionInfo().GetStatus() == enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING
}

func (s *Starter) group(name string) (config.Group, error) {
	g, ok := s.Config.Group(name)
	if !ok {
		return config.Group{}, fmt.Errorf("%w %q (configured groups: %s)", ErrUnknownGroup, name, strings.Join(s.Config.GroupNames(), ", "))
	}
	return g, nil
}
