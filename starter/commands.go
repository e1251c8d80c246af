// What the CLI and the cluster-autoscaler provider ask of a group: its
// size, pause and resume, protection, and rolling refreshes, each an Update.

package starter

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"

	"github.com/premiscale/premiscale/workflows"
)

// Scale sets a group's desired size through the set-desired Update and
// returns once the workflow accepted it. A size outside [min, max] is refused
// before anything is sent.
func (s *Starter) Scale(ctx context.Context, name string, desired int) (workflows.DesiredResult, error) {
	g, err := s.group(name)
	if err != nil {
		return workflows.DesiredResult{}, err
	}
	if desired < g.Min {
		return workflows.DesiredResult{}, fmt.Errorf("%w: %d is below min (%d) of group %s", ErrOutOfRange, desired, g.Min, name)
	}
	if desired > g.Max {
		return workflows.DesiredResult{}, fmt.Errorf("%w: %d is above max (%d) of group %s", ErrOutOfRange, desired, g.Max, name)
	}
	return s.Update(ctx, name, workflows.UpdateSetDesired, workflows.DesiredRequest{Desired: desired})
}

// ErrRefused is returned when a group's validator refuses an Update that
// names no bound (e.g. a node of another group).
var ErrRefused = errors.New("refused")

// Update sends the named Update to a group's workflow and waits for its
// result (the handlers record intent and return at once). A refusal by the
// validator is ErrOutOfRange (a bound) or ErrRefused, with its message.
func (s *Starter) Update(ctx context.Context, name, update string, arg any) (workflows.DesiredResult, error) {
	var res workflows.DesiredResult
	if err := s.update(ctx, name, update, []any{arg}, &res); err != nil {
		return workflows.DesiredResult{}, err
	}
	return res, nil
}

// update sends an Update with args and decodes its result into out.
func (s *Starter) update(ctx context.Context, name, update string, args []any, out any) error {
	if _, err := s.group(name); err != nil {
		return err
	}
	h, err := s.Client.UpdateWorkflow(ctx, client.UpdateWorkflowOptions{
		WorkflowID:   workflows.GroupWorkflowID(name),
		UpdateName:   update,
		Args:         args,
		WaitForStage: client.WorkflowUpdateStageCompleted,
	})
	if err != nil {
		return s.explain(name, err)
	}
	if err := h.Get(ctx, out); err != nil {
		var ae *temporal.ApplicationError
		if errors.As(err, &ae) {
			if ae.Type() == "OutOfRange" {
				return fmt.Errorf("%w: %s", ErrOutOfRange, ae.Message())
			}
			return fmt.Errorf("%w: %s", ErrRefused, ae.Message())
		}
		return s.explain(name, err)
	}
	return nil
}

// Refresh starts a rolling refresh of a group (UpdateRefresh); with
// rollback, a return to the template revision it had before
// (UpdateRefreshRollback).
func (s *Starter) Refresh(ctx context.Context, name string, req workflows.RefreshRequest, rollback bool) (workflows.Refresh, error) {
	update := workflows.UpdateRefresh
	if rollback {
		update = workflows.UpdateRefreshRollback
	}
	var r workflows.Refresh
	err := s.update(ctx, name, update, []any{req}, &r)
	return r, err
}

// CancelRefresh stops a group's running refresh.
func (s *Starter) CancelRefresh(ctx context.Context, name string) (workflows.Refresh, error) {
	var r workflows.Refresh
	err := s.update(ctx, name, workflows.UpdateRefreshCancel, nil, &r)
	return r, err
}

// ContinueRefresh ends the wait of a group's refresh at a checkpoint.
func (s *Starter) ContinueRefresh(ctx context.Context, name string) (workflows.Refresh, error) {
	var r workflows.Refresh
	err := s.update(ctx, name, workflows.UpdateRefreshContinue, nil, &r)
	return r, err
}

// WaitRefresh polls a group's status until refresh id has ended and the
// group is settled, calling watch (if set) with each status. A refresh
// that ended cancelled is an error.
func (s *Starter) WaitRefresh(ctx context.Context, name string, id int, poll time.Duration, watch func(workflows.GroupStatus)) (workflows.GroupStatus, error) {
	for {
		st, err := s.Status(ctx, name)
		if err == nil {
			if watch != nil {
				watch(st)
			}
			r := st.Refresh
			switch {
			case r == nil || r.ID != id:
				return st, fmt.Errorf("group %s: refresh %d is no longer the group's refresh", name, id)
			case r.Status == workflows.RefreshCancelled:
				return st, fmt.Errorf("group %s: refresh %d was cancelled after replacing %d of %d members", name, id, r.Replaced, r.Total)
			case r.Status == workflows.RefreshDone && st.Settled():
				return st, nil
			}
		}
		select {
		case <-ctx.Done():
			if err != nil {
				return st, err
			}
			return st, fmt.Errorf("group %s: refresh %d not done: %w", name, id, ctx.Err())
		case <-time.After(poll):
		}
	}
}

// Protect sets or clears a member's scale-in protection.
func (s *Starter) Protect(ctx context.Context, group, vm string, protected bool) error {
	_, err := s.Update(ctx, group, workflows.UpdateProtect, workflows.ProtectRequest{VM: vm, Protected: protected})
	return err
}

// Pause stops a group's scaling and reconciliation until Resume.
// It is an Update, so a pause and a resume sent one after the other are
// applied in that order.
func (s *Starter) Pause(ctx context.Context, name string) error {
	return s.pause(ctx, name, workflows.UpdatePause)
}

// Resume undoes Pause.
func (s *Starter) Resume(ctx context.Context, name string) error {
	return s.pause(ctx, name, workflows.UpdateResume)
}

func (s *Starter) pause(ctx context.Context, name, update string) error {
	if _, err := s.group(name); err != nil {
		return err
	}
	h, err := s.Client.UpdateWorkflow(ctx, client.UpdateWorkflowOptions{
		WorkflowID: workflows.GroupWorkflowID(name), UpdateName: update,
		WaitForStage: client.WorkflowUpdateStageCompleted,
	})
	if err == nil {
		err = h.Get(ctx, nil)
	}
	if err != nil {
		return s.explain(name, err)
	}
	return nil
}
