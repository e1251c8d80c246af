// The group's Update and signal handling: registration of the handlers,
// pause and resume, desired size, and a new spec.

package workflows

import (
	"fmt"
	"strings"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/premiscale/premiscale/activities"
	"github.com/premiscale/premiscale/workflows/policy"
)

func (g *group) registerHandlers(ctx workflow.Context) error {
	if err := workflow.SetQueryHandler(ctx, QueryStatus, func() (GroupStatus, error) {
		return g.status(ctx), nil
	}); err != nil {
		return err
	}
	if err := g.registerClusterAutoscalerUpdates(ctx); err != nil {
		return err
	}
	if err := g.registerScheduleUpdate(ctx); err != nil {
		return err
	}
	if err := g.registerRefreshUpdates(ctx); err != nil {
		return err
	}
	for _, u := range []struct {
		name  string
		pause bool
	}{{UpdatePause, true}, {UpdateResume, false}} {
		if err := workflow.SetUpdateHandler(ctx, u.name, func(ctx workflow.Context) (PauseResult, error) {
			changed := g.setPaused(ctx, u.pause)
			g.dirty = g.dirty || changed // wake the loop (signals wake it by being pending)
			return PauseResult{Paused: u.pause, Changed: changed}, nil
		}); err != nil {
			return err
		}
	}
	return workflow.SetUpdateHandlerWithOptions(ctx, UpdateSetDesired,
		func(ctx workflow.Context, req DesiredRequest) (DesiredResult, error) {
			prev := g.st.Desired
			if prev != req.Desired {
				g.st.Desired = req.Desired
				g.event(ctx, "desired %d -> %d (set-desired)", prev, req.Desired)
			}
			g.st.LastScaleAt = workflow.Now(ctx)
			g.dirty = true
			return DesiredResult{Previous: prev, Desired: req.Desired}, nil
		},
		workflow.UpdateHandlerOptions{Validator: func(ctx workflow.Context, req DesiredRequest) error {
			return g.checkDesired(ctx, req.Desired)
		}},
	)
}

// setPaused pauses or resumes the group and reports whether that changed it.
// hostChanged asks for an observation if the change may be one the group
// did not make: a running (or failed) member's domain, or a resync after a
// watcher's reconnection. A domain that is not a member (an orphan, or
// one already gone from the members) and a member in flight (its child
// sees to it) need none.
func (g *group) hostChanged(c activities.HostChange) {
	if c.Event == activities.EventResync || c.Event == activities.EventDisconnected {
		g.observeNow = true
		return
	}
	if m := g.member(c.Domain); m != nil && m.State != MemberProvisioning && m.State != MemberDecommissioning && m.State != MemberWarming {
		g.observeNow = true
	}
}

func (g *group) setPaused(ctx workflow.Context, paused bool) bool {
	if g.st.Paused == paused {
		return false
	}
	g.st.Paused = paused
	if paused {
		g.event(ctx, "paused")
	} else {
		g.event(ctx, "resumed")
	}
	return true
}

// checkDesired explains why n is not a valid desired size, naming the
// bound (a schedule window's while one governs).
func (g *group) checkDesired(ctx workflow.Context, n int) error {
	lo, hi := g.bounds(ctx)
	by := ""
	if w := g.governing(ctx); w != nil {
		by = fmt.Sprintf(", set by schedule %s until %s", w.Schedule, w.Until.UTC().Format(time.RFC3339))
	}
	if n < lo {
		return temporal.NewNonRetryableApplicationError(fmt.Sprintf("desired %d is below min (%d%s) of group %s", n, lo, by, g.spec.Name), "OutOfRange", nil)
	}
	if n > hi {
		return temporal.NewNonRetryableApplicationError(fmt.Sprintf("desired %d is above max (%d%s) of group %s", n, hi, by, g.spec.Name), "OutOfRange", nil)
	}
	return nil
}

func (g *group) scaleSignal(ctx workflow.Context, n int) {
	lo, hi := g.bounds(ctx)
	clamped := policy.Clamp(n, lo, hi)
	if clamped != n {
		g.event(ctx, "scale signal asked for %d, clamped to %d (min %d, max %d)", n, clamped, lo, hi)
	}
	if clamped != g.st.Desired {
		g.event(ctx, "desired %d -> %d (scale signal)", g.st.Desired, clamped)
		g.st.Desired = clamped
	}
	g.st.LastScaleAt = workflow.Now(ctx)
}

func (g *group) applySpec(ctx workflow.Context, spec GroupSpec) {
	if spec.Name != g.spec.Name {
		g.logger.Warn("ignoring spec for another group", "group", g.spec.Name, "spec_group", spec.Name)
		return
	}
	if err := spec.Validate(); err != nil {
		g.event(ctx, "spec refused, keeping the current one: %s", strings.ReplaceAll(err.Error(), "\n", "; "))
		return
	}
	if workflow.GetVersion(ctx, changeGroupSpecFromWorker, workflow.DefaultVersion, 1) >= 1 {
		refused, err := checkSpec(ctx, spec)
		if err != nil {
			g.event(ctx, "spec not checked by a worker, keeping the current one: %s", rootCause(err))
			return
		}
		if len(refused) > 0 {
			g.event(ctx, "%s; keeping the current one", refusedSpec(refused))
			return
		}
	}
	before, oldRevision := g.current(), g.spec.Revision
	g.spec = spec
	if g.st.Removed {
		g.st.Removed, g.st.RemoveDeletesVMs = false, false
		g.event(ctx, "group is in the configuration again")
	}
	g.applySpecRevision(ctx, before, oldRevision)
	desired := g.st.Desired
	if spec.Desired != g.st.ConfigDesired {
		desired = spec.Desired
		g.st.ConfigDesired = spec.Desired
	}
	g.pruneUnconfiguredWindows(ctx)
	lo, hi := g.bounds(ctx)
	desired = policy.Clamp(desired, lo, hi)
	if desired != g.st.Desired {
		g.event(ctx, "desired %d -> %d (configuration)", g.st.Desired, desired)
		g.st.Desired = desired
		g.st.LastScaleAt = workflow.Now(ctx)
	}
}
