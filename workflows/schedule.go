package workflows

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/premiscale/premiscale/activities"
	"github.com/premiscale/premiscale/config"
	"github.com/premiscale/premiscale/workflows/policy"
)

// Scheduled capacity. Each configured schedule of a group is a Temporal
// Schedule (ScheduleID) whose action starts a ScheduledWindow workflow; that
// workflow sends the group the Update UpdateScheduleWindow, so that the
// group's own validation decides and its history records the change. The
// group keeps the open windows in its state and applies the one that
// governs (policy.Governing) until it ends.
//
//	Temporal Schedule ──fires──▶ ScheduledWindow ──Update──▶ GroupWorkflow
//	                                                          keeps windows,
//	                                                          wakes at each end

// ScheduledWindowName is the registered name of ScheduledWindow.
const ScheduledWindowName = "ScheduledWindow"

// ScheduleID is the ID of the Temporal Schedule of a group's schedule.
func ScheduleID(group, schedule string) string {
	return GroupWorkflowID(group) + "/schedule/" + schedule
}

// IsScheduleID reports whether id is ScheduleID of some group and schedule
// names: the schedules operators may pause, unpause and trigger.
func IsScheduleID(id string) bool {
	rest, ok := strings.CutPrefix(id, GroupWorkflowID(""))
	group, name, ok2 := strings.Cut(rest, "/schedule/")
	return ok && ok2 && group != "" && name != "" && !strings.Contains(group, "/") && !strings.Contains(name, "/")
}

// ScheduledWindowInput is what a schedule's action starts ScheduledWindow
// with: the group, and the window's schedule, order and values as
// configured when the schedule was last ensured.
type ScheduledWindowInput struct {
	Group    string        `json:"group"`
	Schedule string        `json:"schedule"`
	Order    int           `json:"order"`
	Duration time.Duration `json:"duration"`
	Min      *int          `json:"min,omitempty"`
	Max      *int          `json:"max,omitempty"`
	Desired  *int          `json:"desired,omitempty"`
}

// ScheduleWindowResult is what UpdateScheduleWindow returns: the window
// that governs after it (empty: none, or this one was over) and the
// group's min, max and desired then.
type ScheduleWindowResult struct {
	Governing string `json:"governing,omitempty"`
	Min       int    `json:"min"`
	Max       int    `json:"max"`
	Desired   int    `json:"desired"`
}

// scheduledStartTime is the search attribute in which a Temporal Schedule
// gives the workflows it starts the time they were scheduled for.
var scheduledStartTime = temporal.NewSearchAttributeKeyTime("TemporalScheduledStartTime")

// ScheduledWindow applies one firing of a group's schedule: the window
// starts at the time the schedule fired for (not when this ran: a firing
// caught up after an outage ends when it would have) and lasts the
// schedule's duration. It fails, visibly in the schedule's recent actions,
// when the group refuses the window.
func ScheduledWindow(ctx workflow.Context, in ScheduledWindowInput) (ScheduleWindowResult, error) {
	start, ok := workflow.GetTypedSearchAttributes(ctx).GetTime(scheduledStartTime)
	if !ok {
		start = workflow.GetInfo(ctx).WorkflowStartTime
	}
	w := policy.Window{
		Schedule: in.Schedule, Order: in.Order, Start: start, Until: start.Add(in.Duration),
		Min: in.Min, Max: in.Max, Desired: in.Desired,
	}
	// encoding/json of plain data is deterministic (fields in order, map
	// keys sorted); workflowcheck only sees its reflection.
	raw, err := json.Marshal(w) //workflowcheck:ignore
	if err != nil {
		return ScheduleWindowResult{}, temporal.NewNonRetryableApplicationError("encode window: "+err.Error(), "InvalidInput", err)
	}
	var a *activities.Groups
	actx := workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: 30 * time.Second,
		// Until the window is over: a group that cannot be reached for
		// longer has no use for it.
		ScheduleToCloseTimeout: max(in.Duration, time.Minute),
	})
	var out activities.UpdateGroupOutput
	if err := workflow.ExecuteActivity(actx, a.UpdateGroup, activities.UpdateGroupInput{
		Group: in.Group, WorkflowID: GroupWorkflowID(in.Group), UpdateName: UpdateScheduleWindow, Arg: raw,
	}).Get(ctx, &out); err != nil {
		return ScheduleWindowResult{}, err
	}
	var res ScheduleWindowResult
	err = json.Unmarshal(out.Result, &res) //workflowcheck:ignore
	if err != nil {
		return ScheduleWindowResult{}, temporal.NewNonRetryableApplicationError("decode result: "+err.Error(), "InvalidResult", err)
	}
	return res, nil
}

// governing is the window that governs the group now, or nil.
func (g *group) governing(ctx workflow.Context) *policy.Window {
	return policy.Governing(g.st.Windows, workflow.Now(ctx))
}

// bounds are the group's min and max now: the governing window's, or the
// configuration's.
func (g *group) bounds(ctx workflow.Context) (lo, hi int) {
	return policy.Bounds(g.governing(ctx), g.spec.Min, g.spec.Max)
}

// windowKey names a window by its schedule and start.
func windowKey(w *policy.Window) string {
	if w == nil {
		return ""
	}
	return w.Schedule + "@" + w.Start.UTC().Format(time.RFC3339)
}

// applyWindows drops the windows that ended and, if the governing window
// changed, says so and keeps desired within the new bounds. (A window's
// own desired is applied once, when it opens: see registerScheduleUpdate.)
func (g *group) applyWindows(ctx workflow.Context) {
	if len(g.st.Windows) == 0 && g.st.Governing == "" {
		return
	}
	now := workflow.Now(ctx)
	g.st.Windows = policy.PruneWindows(g.st.Windows, now)
	w := g.governing(ctx)
	key := windowKey(w)
	if key == g.st.Governing {
		return
	}
	g.st.Governing = key
	lo, hi := g.bounds(ctx)
	desired := g.st.Desired
	if w == nil {
		g.event(ctx, "no schedule window open: min %d, max %d from the configuration", lo, hi)
	} else {
		g.event(ctx, "schedule %s governs until %s: min %d, max %d", w.Schedule, w.Until.UTC().Format(time.RFC3339), lo, hi)
	}
	desired = policy.Clamp(desired, lo, hi)
	if desired != g.st.Desired {
		g.event(ctx, "desired %d -> %d (schedule)", g.st.Desired, desired)
		g.st.Desired = desired
		g.st.LastScaleAt = now
	}
	g.dirty = true
}

// untilWindowChange is how long until a window opens or ends (zero: none
// will), so that the loop wakes then.
func (g *group) untilWindowChange(ctx workflow.Context) time.Duration {
	now := workflow.Now(ctx)
	next := policy.NextWindowChange(g.st.Windows, now)
	if next.IsZero() {
		return 0
	}
	return next.Sub(now)
}

// checkWindow explains why a window cannot be opened in this group.
func (g *group) checkWindow(w policy.Window) error {
	refuse := func(format string, args ...any) error {
		return temporal.NewNonRetryableApplicationError(fmt.Sprintf("group %s: schedule %s: ", g.spec.Name, w.Schedule)+fmt.Sprintf(format, args...), "InvalidWindow", nil)
	}
	if !slices.Contains(g.spec.Schedules, w.Schedule) {
		return refuse("not among the group's configured schedules %v", g.spec.Schedules)
	}
	if !w.Until.After(w.Start) {
		return refuse("window ends (%s) before it starts (%s)", w.Until, w.Start)
	}
	if w.Min == nil && w.Max == nil && w.Desired == nil {
		return refuse("sets none of min, max, desired")
	}
	lo, hi := policy.Bounds(&w, g.spec.Min, g.spec.Max)
	switch {
	case lo < 0:
		return refuse("min %d is negative", lo)
	case hi > config.MaxGroupSize:
		return refuse("max %d is above %d", hi, config.MaxGroupSize)
	case hi < lo:
		return refuse("max %d is below min %d during the window", hi, lo)
	case w.Desired != nil && (*w.Desired < lo || *w.Desired > hi):
		return refuse("desired %d is outside [%d, %d] during the window", *w.Desired, lo, hi)
	}
	return nil
}

// changeWindowFromWorker: a schedule window is opened only as the worker's
// configuration has its schedule (CheckWindowName): the same min, max,
// desired, order and duration. Before, any window of a configured
// schedule's name was taken.
const changeWindowFromWorker = "window-from-worker"

// CheckWindowName is the registered name of the worker's local activity
// that compares a window with the group's schedule of that name in the
// worker's configuration: input WindowCheckInput, output WindowCheck
// (worker.Authority).
const CheckWindowName = "CheckWindow"

// WindowCheckInput is a window a group is asked to open.
type WindowCheckInput struct {
	Group  string        `json:"group"`
	Window policy.Window `json:"window"`
}

// WindowCheck lists what in the window differs from the configured
// schedule (none: it matches).
type WindowCheck struct {
	Refused []string `json:"refused,omitempty"`
}

// checkWindowWithWorker asks the worker whether w is what its
// configuration has for the schedule; an error only when no worker can
// answer for good.
func (g *group) checkWindowWithWorker(ctx workflow.Context, w policy.Window) ([]string, error) {
	lctx := workflow.WithLocalActivityOptions(ctx, workflow.LocalActivityOptions{
		StartToCloseTimeout: quickActivityTimeout,
		RetryPolicy:         &temporal.RetryPolicy{InitialInterval: time.Second, MaximumInterval: time.Minute},
	})
	var out WindowCheck
	err := workflow.ExecuteLocalActivity(lctx, CheckWindowName, WindowCheckInput{Group: g.spec.Name, Window: w}).Get(ctx, &out)
	return out.Refused, err
}

// registerScheduleUpdate registers UpdateScheduleWindow.
func (g *group) registerScheduleUpdate(ctx workflow.Context) error {
	return workflow.SetUpdateHandlerWithOptions(ctx, UpdateScheduleWindow,
		func(ctx workflow.Context, w policy.Window) (ScheduleWindowResult, error) {
			if workflow.GetVersion(ctx, changeWindowFromWorker, workflow.DefaultVersion, 1) >= 1 {
				refused, err := g.checkWindowWithWorker(ctx, w)
				if err == nil && len(refused) > 0 {
					err = fmt.Errorf("not as this worker's configuration has it: %s", strings.Join(refused, "; "))
				}
				if err != nil {
					g.event(ctx, "schedule %s: window refused: %s", w.Schedule, rootCause(err))
					return ScheduleWindowResult{}, temporal.NewNonRetryableApplicationError(
						fmt.Sprintf("group %s: schedule %s: window refused: %s", g.spec.Name, w.Schedule, rootCause(err)), "InvalidWindow", nil)
				}
			}
			now := workflow.Now(ctx)
			known := slices.ContainsFunc(g.st.Windows, func(o policy.Window) bool {
				return o.Schedule == w.Schedule && o.Start.Equal(w.Start)
			})
			switch {
			case !w.Until.After(now):
				g.event(ctx, "schedule %s: window from %s was over before it arrived", w.Schedule, w.Start.UTC().Format(time.RFC3339))
			case !known:
				g.st.Windows = append(g.st.Windows, w)
			}
			g.applyWindows(ctx)
			lo, hi := g.bounds(ctx)
			// Its desired applies once, as it opens, if it governs then
			// (not when it governs again after a later window ends, and
			// not for a late firing that a newer window outranks).
			if gw := g.governing(ctx); !known && w.Desired != nil && gw != nil && gw.Schedule == w.Schedule && gw.Start.Equal(w.Start) {
				if d := policy.Clamp(*w.Desired, lo, hi); d != g.st.Desired {
					g.event(ctx, "desired %d -> %d (schedule %s)", g.st.Desired, d, w.Schedule)
					g.st.Desired = d
				}
				g.st.LastScaleAt = workflow.Now(ctx)
				g.dirty = true
			}
			res := ScheduleWindowResult{Min: lo, Max: hi, Desired: g.st.Desired}
			if gw := g.governing(ctx); gw != nil {
				res.Governing = gw.Schedule
			}
			return res, nil
		},
		workflow.UpdateHandlerOptions{Validator: func(ctx workflow.Context, w policy.Window) error {
			return g.checkWindow(w)
		}},
	)
}

// pruneUnconfiguredWindows closes the windows of schedules the spec no
// longer has: a schedule removed from the configuration stops governing.
func (g *group) pruneUnconfiguredWindows(ctx workflow.Context) {
	kept := g.st.Windows[:0:0]
	for _, w := range g.st.Windows {
		if slices.Contains(g.spec.Schedules, w.Schedule) {
			kept = append(kept, w)
		} else {
			g.event(ctx, "schedule %s is no longer configured: its window closes", w.Schedule)
		}
	}
	g.st.Windows = kept
	g.applyWindows(ctx)
}
