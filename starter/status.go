// Reading groups' status: the status Query (retried), many at once, and
// waiting until a group settles.

package starter

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/converter"
	"golang.org/x/sync/errgroup"

	"github.com/premiscale/premiscale/workflows"
)

// Statuses queries the named groups' workflows, at most parallel at once,
// and returns their status in the order of names; the first error ends it.
func (s *Starter) Statuses(ctx context.Context, names []string, parallel int) ([]workflows.GroupStatus, error) {
	out := make([]workflows.GroupStatus, len(names))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(max(parallel, 1))
	for i, name := range names {
		g.Go(func() error {
			st, err := s.Status(gctx, name)
			out[i] = st
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	return out, nil
}

// Status queries a group's workflow: a configured group's, or a removed
// group's whose workflow still runs.
func (s *Starter) Status(ctx context.Context, name string) (workflows.GroupStatus, error) {
	if _, err := s.group(name); err != nil {
		removed, lerr := s.RemovedGroups(ctx)
		if lerr != nil || !slices.Contains(removed, name) {
			return workflows.GroupStatus{}, err
		}
	}
	v, err := s.queryStatus(ctx, name)
	if err != nil {
		return workflows.GroupStatus{}, s.explain(name, err)
	}
	var st workflows.GroupStatus
	if err := v.Get(&st); err != nil {
		return workflows.GroupStatus{}, fmt.Errorf("decode status of group %s: %w", name, err)
	}
	return st, nil
}

// queryAttempts is how many times a status Query the worker failed is
// asked.
const queryAttempts = 3

// queryStatus sends a group's status Query. A worker fails a Query with the
// workflow task it dropped (right after a restart the SDK at times panics
// on a task it already completed, drops it, and recovers with the next:
// TMPRL1100); the Query is asked again after a pause, queryAttempts times
// in all, so that a status read does not fail on that moment.
func (s *Starter) queryStatus(ctx context.Context, name string) (converter.EncodedValue, error) {
	for attempt := 1; ; attempt++ {
		v, err := s.Client.QueryWorkflow(ctx, workflows.GroupWorkflowID(name), "", workflows.QueryStatus)
		var failed *serviceerror.QueryFailed
		if err == nil || !errors.As(err, &failed) || attempt == queryAttempts {
			return v, err
		}
		select {
		case <-ctx.Done():
			return nil, err
		case <-time.After(time.Duration(attempt) * 300 * time.Millisecond):
		}
	}
}

// WaitSettled polls a group's status until it holds exactly its desired size
// with nothing in flight, or ctx ends.
func (s *Starter) WaitSettled(ctx context.Context, name string, poll time.Duration) (workflows.GroupStatus, error) {
	return s.WaitSettledWatching(ctx, name, poll, nil)
}

// WaitSettledWatching is WaitSettled calling watch with every status read
// before the group settles.
func (s *Starter) WaitSettledWatching(ctx context.Context, name string, poll time.Duration, watch func(workflows.GroupStatus)) (workflows.GroupStatus, error) {
	for {
		st, err := s.Status(ctx, name)
		if err == nil && st.Settled() {
			return st, nil
		}
		if err == nil && watch != nil {
			watch(st)
		}
		select {
		case <-ctx.Done():
			if err != nil {
				return st, err
			}
			return st, fmt.Errorf("group %s not settled: %d running, %d provisioning, %d decommissioning, desired %d: %w",
				name, st.Running, st.Provisioning, st.Decommissioning, st.Desired, ctx.Err())
		case <-time.After(poll):
		}
	}
}

// Steps asks each member of st in flight (provisioning or
// decommissioning) which step its VM workflow is at; a member whose
// workflow does not answer (finished meanwhile) is left out.
func (s *Starter) Steps(ctx context.Context, st workflows.GroupStatus) map[string]string {
	out := map[string]string{}
	for _, m := range st.Members {
		var id string
		switch {
		case m.State == workflows.MemberProvisioning && !m.ActivatedAt.IsZero():
			id = workflows.ActivateWorkflowID(st.Group, m.Name)
		case m.State == workflows.MemberProvisioning:
			id = workflows.ProvisionWorkflowID(st.Group, m.Name)
		case m.State == workflows.MemberDecommissioning:
			id = workflows.DecommissionWorkflowID(st.Group, m.Name)
		default:
			continue
		}
		qctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		v, err := s.Client.QueryWorkflow(qctx, id, "", workflows.QueryStep)
		cancel()
		var step string
		if err == nil && v.Get(&step) == nil {
			out[m.Name] = step
		}
	}
	return out
}
