// Package workflows holds PremiScale's Temporal workflows: one long-running
// GroupWorkflow per autoscaling group, and the ProvisionVM and DecommissionVM
// child workflows it starts. Workflow code is deterministic: decisions come
// from package policy, side effects from activities.
package workflows

import (
	"fmt"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/premiscale/premiscale/activities"
	"github.com/premiscale/premiscale/workflows/policy"
)

// hostQueryOptions are the options of the per-host listings and
// inventories the group's loop waits for: a host that does not answer
// (the worker closes a hung connection within ~10 s, and a new dial gives
// up after 5 s) delays an observation or a placement by at most
// ScheduleToCloseTimeout, and then counts as unreachable.
var hostQueryOptions = workflow.ActivityOptions{
	StartToCloseTimeout:    10 * time.Second,
	ScheduleToCloseTimeout: 15 * time.Second,
	RetryPolicy:            &temporal.RetryPolicy{InitialInterval: time.Second, MaximumAttempts: 2},
}

// evaluationTimeout bounds one evaluation of a group's checks; each query is
// bounded tighter by controller.prometheus.queryTimeout in the worker.
const evaluationTimeout = time.Minute

type group struct {
	spec  GroupSpec
	st    GroupState
	dirty bool
	// inflight counts child workflows whose result is still awaited.
	inflight       int
	strays         []string
	lastObservedAt time.Time
	// nextPassAt is when the loop's wait ends (status only).
	nextPassAt time.Time
	// observeNow asks for an observation before the next evaluation is
	// due (a host change).
	observeNow bool
	// cancelProvision cancels a member's ProvisionVM child while it runs;
	// cancelling marks those whose cancellation scale-in requested.
	cancelProvision map[string]workflow.CancelFunc
	cancelling      map[string]bool
	// published is the summary last put in the memo by this run.
	published *GroupSummary
	logger    interface {
		Info(string, ...any)
		Warn(string, ...any)
	}
}

// GroupWorkflow holds one group at its desired size for as long as it lives.
//
//	    +--------------------------------------------+
//	    v                                            |
//	wait (interval | signal | update | child done)   |
//	    |                                            |
//	observe libvirt (each interval) -> mark lost     |
//	    |                                            |
//	reconcile (unless paused): provision / decommission children
//	    |                                            |
//	history long? -> wait for children -> continue-as-new
//	    +--------------------------------------------+
func GroupWorkflow(ctx workflow.Context, in GroupInput) error {
	g := &group{spec: in.Spec, logger: workflow.GetLogger(ctx)}
	if workflow.GetVersion(ctx, changeGroupChecksItsID, workflow.DefaultVersion, 1) >= 1 {
		// Anyone who reaches the frontend can start a group workflow: one
		// under another ID would be a second group of the same name.
		if id := workflow.GetInfo(ctx).WorkflowExecution.ID; id != GroupWorkflowID(in.Spec.Name) {
			return temporal.NewNonRetryableApplicationError(fmt.Sprintf(
				"workflow ID %q: group %q runs only as %s; refusing", id, in.Spec.Name, GroupWorkflowID(in.Spec.Name)), ErrTypeRefused, nil)
		}
	}
	if in.State == nil {
		// A new group's spec may come from anyone who can start a workflow.
		if err := in.Spec.Validate(); err != nil {
			return temporal.NewNonRetryableApplicationError("invalid group spec: "+err.Error(), ErrTypeInvalidSpec, nil)
		}
	}
	if in.State != nil {
		g.st = *in.State
	} else {
		g.st = GroupState{
			Desired:       policy.Clamp(in.Spec.Desired, in.Spec.Min, in.Spec.Max),
			ConfigDesired: in.Spec.Desired,
			NextSeq:       1,
		}
		g.event(ctx, "group created with desired %d (min %d, max %d)", g.st.Desired, in.Spec.Min, in.Spec.Max)
	}
	if err := g.registerHandlers(ctx); err != nil {
		return err
	}
	// After the handlers, which must be in place before the workflow's
	// first blocking call, or an Update sent with the start is rejected.
	if in.State == nil && workflow.GetInfo(ctx).ContinuedExecutionRunID == "" &&
		workflow.GetVersion(ctx, changeGroupSpecFromWorker, workflow.DefaultVersion, 1) >= 1 {
		refused, err := checkSpec(ctx, in.Spec)
		if err != nil {
			return err
		}
		if len(refused) > 0 {
			return temporal.NewNonRetryableApplicationError(refusedSpec(refused), ErrTypeRefused, nil)
		}
	}
	scaleCh := workflow.GetSignalChannel(ctx, SignalScale)
	pauseCh := workflow.GetSignalChannel(ctx, SignalPause)
	resumeCh := workflow.GetSignalChannel(ctx, SignalResume)
	specCh := workflow.GetSignalChannel(ctx, SignalSpec)
	removeCh := workflow.GetSignalChannel(ctx, SignalRemove)
	hostCh := workflow.GetSignalChannel(ctx, SignalHostChange)
	pending := func() bool {
		return scaleCh.Len() > 0 || pauseCh.Len() > 0 || resumeCh.Len() > 0 || specCh.Len() > 0 || removeCh.Len() > 0 || hostCh.Len() > 0
	}
	orderCh := workflow.GetSignalChannel(ctx, signalOrderChannel)
	inOrder := workflow.DefaultVersion
	applyOne := func(name string) {
		switch name {
		case SignalSpec:
			var spec GroupSpec
			if specCh.ReceiveAsync(&spec) {
				g.applySpec(ctx, spec)
			}
		case SignalScale:
			var req DesiredRequest
			if scaleCh.ReceiveAsync(&req) {
				g.scaleSignal(ctx, req.Desired)
			}
		case SignalPause:
			if pauseCh.ReceiveAsync(nil) {
				g.setPaused(ctx, true)
			}
		case SignalResume:
			if resumeCh.ReceiveAsync(nil) {
				g.setPaused(ctx, false)
			}
		}
		// SignalRemove is not among orderedSignals: drain applies it
		// after the ordered ones.
	}
	drain := func() {
		// In arrival order first, as far as SignalOrder told it; whatever
		// is left (a worker without it, or histories from before) in the
		// fixed order below.
		for {
			var name string
			if !orderCh.ReceiveAsync(&name) {
				break
			}
			if inOrder == workflow.DefaultVersion {
				inOrder = workflow.GetVersion(ctx, changeSignalsInArrivalOrder, workflow.DefaultVersion, 1)
			}
			if inOrder >= 1 {
				applyOne(name)
			}
		}
		for {
			var spec GroupSpec
			if !specCh.ReceiveAsync(&spec) {
				break
			}
			g.applySpec(ctx, spec)
		}
		for {
			var req DesiredRequest
			if !scaleCh.ReceiveAsync(&req) {
				break
			}
			g.scaleSignal(ctx, req.Desired)
		}
		for pauseCh.ReceiveAsync(nil) {
			g.setPaused(ctx, true)
		}
		for resumeCh.ReceiveAsync(nil) {
			g.setPaused(ctx, false)
		}
		for {
			var req RemoveRequest
			if !removeCh.ReceiveAsync(&req) {
				break
			}
			g.remove(ctx, req)
		}
		for {
			var c activities.HostChange
			if !hostCh.ReceiveAsync(&c) {
				break
			}
			g.hostChanged(c)
		}
	}

	for {
		drain()
		g.applyWindows(ctx)
		if g.historyTooLong(ctx) && workflow.GetVersion(ctx, changeHoldChildrenBeforeContinueAsNew, workflow.DefaultVersion, 1) >= 1 {
			// Let the children in flight finish, start none, then continue
			// as new: the wait is bounded by the longest child.
			if g.inflight > 0 {
				if err := workflow.Await(ctx, func() bool { return g.inflight == 0 }); err != nil {
					return err
				}
			}
			if err := workflow.Await(ctx, func() bool { return workflow.AllHandlersFinished(ctx) }); err != nil {
				return err
			}
			drain()
			state := g.st
			return workflow.NewContinueAsNewError(ctx, GroupWorkflow, GroupInput{Spec: g.spec, State: &state})
		}
		if due := workflow.Now(ctx).Sub(g.lastObservedAt) >= g.observeInterval(ctx); due || g.observeNow {
			g.observeNow = false
			last := g.lastObservedAt
			g.observe(ctx)
			drain()
			if !due {
				// Off schedule: the next evaluation stays when it was due.
				g.lastObservedAt = last
			} else if g.metricsEnabled() && !g.st.Paused && !g.st.Removed {
				g.evaluate(ctx)
				drain()
			}
		}
		if g.st.Removed && g.st.RemoveDeletesVMs {
			g.st.Desired = 0
		}
		if !g.st.Paused && !g.keepsRemoved() {
			g.reconcile(ctx)
		}
		if g.removedAndGone() {
			g.event(ctx, "removed group has no VMs left; its workflow ends")
			return nil
		}
		if g.historyTooLong(ctx) && g.inflight == 0 {
			if err := workflow.Await(ctx, func() bool { return workflow.AllHandlersFinished(ctx) }); err != nil {
				return err
			}
			drain()
			if g.inflight == 0 {
				state := g.st
				return workflow.NewContinueAsNewError(ctx, GroupWorkflow, GroupInput{Spec: g.spec, State: &state})
			}
		}
		g.publish(ctx)
		wait := g.observeInterval(ctx) - workflow.Now(ctx).Sub(g.lastObservedAt)
		if w := g.untilWindowChange(ctx); w > 0 && w < wait {
			wait = w
		}
		if w := g.untilCheckpointEnds(ctx); w > 0 && w < wait {
			wait = w
		}
		g.nextPassAt = workflow.Now(ctx).Add(max(wait, 0))
		if wait > 0 {
			if _, err := workflow.AwaitWithTimeout(ctx, wait, func() bool { return g.dirty || pending() }); err != nil {
				return err
			}
		}
		g.dirty = false
	}
}

// observeInterval is how long the group goes between observations of its
// own: the evaluation interval, or for a quiet group with host watchers
// the (longer) resync interval.
func (g *group) observeInterval(ctx workflow.Context) time.Duration {
	if g.spec.ResyncInterval > g.spec.EvaluationInterval && g.quiet(ctx) {
		return g.spec.ResyncInterval
	}
	return g.spec.EvaluationInterval
}

// quiet reports whether only a change on a host could give the group work:
// no checks to evaluate, nothing in flight, every member running and
// healthy, no host unreachable, and as many members as desired. Host
// watchers signal such changes (SignalHostChange), so a quiet group need
// not poll its hosts. Anything else (a grace period running, a backoff, a
// failed member to retry) is looked at each evaluation interval.
func (g *group) quiet(ctx workflow.Context) bool {
	if g.metricsEnabled() || g.inflight > 0 || len(g.st.HostsDown) > 0 || g.st.Removed || g.st.Refresh.running() {
		return false
	}
	warm := 0
	for _, m := range g.st.Members {
		if m.State == MemberWarm {
			warm++
			continue
		}
		if m.State != MemberRunning || !m.UnhealthySince.IsZero() {
			return false
		}
	}
	return g.st.Paused || (len(g.st.Members)-warm == g.st.Desired && (g.spec.WarmPool == nil || warm == g.warmTarget(ctx)))
}

func (g *group) historyTooLong(ctx workflow.Context) bool {
	info := workflow.GetInfo(ctx)
	limit := g.spec.HistoryLimit
	if limit <= 0 {
		limit = DefaultHistoryLimit
	}
	return info.GetContinueAsNewSuggested() || info.GetCurrentHistoryLength() >= limit
}
