package starter

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"

	"github.com/premiscale/premiscale/config"
	"github.com/premiscale/premiscale/workflows"
)

// EnsureSchedules makes the Temporal Schedules match the configured
// groups' schedules: it creates the missing ones, brings the others'
// calendar and action up to date (leaving them paused if someone paused
// them), and deletes PremiScale's schedules that no configured group has
// any more. A schedule fires even while no controller runs; its action
// waits for a worker.
func (s *Starter) EnsureSchedules(ctx context.Context) error {
	sc := s.Client.ScheduleClient()
	want := map[string]bool{}
	var errs []error
	for _, g := range s.Config.Autoscale.Groups {
		for i, cs := range g.Schedules {
			id := workflows.ScheduleID(g.Name, cs.Name)
			want[id] = true
			if err := s.ensureSchedule(ctx, sc, id, g.Name, i, cs); err != nil {
				errs = append(errs, fmt.Errorf("ensure schedule %s of group %s: %w", cs.Name, g.Name, err))
			}
		}
	}
	it, err := sc.List(ctx, client.ScheduleListOptions{})
	for err == nil && it.HasNext() {
		var e *client.ScheduleListEntry
		if e, err = it.Next(); err != nil {
			break
		}
		if !strings.HasPrefix(e.ID, workflows.GroupWorkflowID("")) || !strings.Contains(e.ID, "/schedule/") || want[e.ID] {
			continue
		}
		var nf *serviceerror.NotFound
		if err := sc.GetHandle(ctx, e.ID).Delete(ctx); err != nil && !errors.As(err, &nf) {
			errs = append(errs, fmt.Errorf("delete unconfigured schedule %s: %w", e.ID, err))
		}
	}
	// A server or credentials that cannot list schedules must not keep a
	// configuration without any from starting. A schedule left behind is
	// harmless: the group refuses windows of schedules it does not have.
	if err != nil && len(want) > 0 {
		errs = append(errs, fmt.Errorf("list schedules: %w", err))
	}
	return errors.Join(errs...)
}

// scheduleParts are a configured schedule's calendar and action.
func (s *Starter) scheduleParts(group string, order int, cs config.Schedule) (client.ScheduleSpec, *client.ScheduleWorkflowAction) {
	spec := client.ScheduleSpec{CronExpressions: []string{cs.Cron}, TimeZoneName: cs.TimeZone}
	action := &client.ScheduleWorkflowAction{
		ID:        workflows.ScheduleID(group, cs.Name),
		Workflow:  workflows.ScheduledWindowName,
		TaskQueue: s.Config.Controller.Temporal.TaskQueue,
		Args: []any{workflows.ScheduledWindowInput{
			Group: group, Schedule: cs.Name, Order: order, Duration: cs.Duration,
			Min: cs.Min, Max: cs.Max, Desired: cs.Desired,
		}},
		// A window that cannot be applied within its duration is of no use.
		WorkflowExecutionTimeout: cs.Duration,
		StaticSummary:            fmt.Sprintf("schedule %s of group %s", cs.Name, group),
	}
	return spec, action
}

func (s *Starter) ensureSchedule(ctx context.Context, sc client.ScheduleClient, id, group string, order int, cs config.Schedule) error {
	spec, action := s.scheduleParts(group, order, cs)
	_, err := sc.Create(ctx, client.ScheduleOptions{
		ID: id, Spec: spec, Action: action,
		// Every firing runs, even if an earlier one has not finished
		// (a worker was down): each is one idempotent Update.
		Overlap: enumspb.SCHEDULE_OVERLAP_POLICY_ALLOW_ALL,
		// A firing missed during an outage still applies for what is left
		// of its window, and not after.
		CatchupWindow: cs.Duration,
		Note:          "managed by PremiScale from autoscale.groups[].schedules; pause here to suspend it",
	})
	if err == nil {
		return nil
	}
	if !errors.Is(err, temporal.ErrScheduleAlreadyRunning) {
		return err
	}
	return sc.GetHandle(ctx, id).Update(ctx, client.ScheduleUpdateOptions{
		DoUpdate: func(in client.ScheduleUpdateInput) (*client.ScheduleUpdate, error) {
			sched := in.Description.Schedule
			sched.Spec = &spec
			sched.Action = action
			if sched.Policy == nil {
				sched.Policy = &client.SchedulePolicies{}
			}
			sched.Policy.Overlap = enumspb.SCHEDULE_OVERLAP_POLICY_ALLOW_ALL
			sched.Policy.CatchupWindow = cs.Duration
			// State (paused, its note) stays as the user left it.
			return &client.ScheduleUpdate{Schedule: &sched}, nil
		},
	})
}

// ScheduleState is what Temporal holds of one of a group's schedules.
type ScheduleState struct {
	Name string `json:"name"`
	ID   string `json:"id"`
	// Paused is set by whoever paused it (temporal CLI or UI), with Note.
	Paused bool   `json:"paused"`
	Note   string `json:"note,omitempty"`
	// Next is the next firing; Last the time the last one fired for.
	Next time.Time `json:"next,omitzero"`
	Last time.Time `json:"last,omitzero"`
	// Error says why the schedule could not be described (not created
	// yet, the server unreachable).
	Error string `json:"error,omitempty"`
}

// Schedules describes the configured schedules of a group from Temporal,
// in the configuration's order; one that cannot be described carries the
// reason instead.
func (s *Starter) Schedules(ctx context.Context, group string) ([]ScheduleState, error) {
	g, err := s.group(group)
	if err != nil {
		return nil, err
	}
	sc := s.Client.ScheduleClient()
	out := make([]ScheduleState, 0, len(g.Schedules))
	for _, cs := range g.Schedules {
		st := ScheduleState{Name: cs.Name, ID: workflows.ScheduleID(group, cs.Name)}
		d, err := sc.GetHandle(ctx, st.ID).Describe(ctx)
		if err != nil {
			st.Error = err.Error()
			out = append(out, st)
			continue
		}
		if state := d.Schedule.State; state != nil {
			st.Paused, st.Note = state.Paused, state.Note
		}
		if next := d.Info.NextActionTimes; len(next) > 0 {
			st.Next = next[0]
		}
		if recent := d.Info.RecentActions; len(recent) > 0 {
			st.Last = recent[len(recent)-1].ScheduleTime
		}
		out = append(out, st)
	}
	return out, nil
}
