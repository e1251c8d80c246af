package workflows

import (
	"slices"
	"time"

	"go.temporal.io/sdk/workflow"

	"github.com/premiscale/premiscale/workflows/policy"
)

// MemoSummary is the memo key under which a group's workflow publishes its
// GroupSummary. Temporal's visibility store keeps each workflow's memo, so
// a listing of the group workflows (ListWorkflowExecutions) reads every
// group's summary without a Query, that is without a workflow task on a
// worker per group. The Temporal UI shows it on the workflow's page.
const MemoSummary = "premiscale.summary"

// changePublishSummary: the group publishes its GroupSummary in its memo
// whenever the summary changes (before: status was only known by Query).
const changePublishSummary = "publish-summary"

// GroupSummary is what `premiscale status` shows of a group in the list of
// all groups: sizes and member counts, not the members. The workflow
// publishes it when it changes, at the end of a pass of its loop, so it
// lags the status Query by at most that pass and the visibility store's
// update (well under a second on an idle server). Its JSON names are those
// of the same fields in GroupStatus.
type GroupSummary struct {
	Group            string   `json:"group"`
	Min              int      `json:"min"`
	Max              int      `json:"max"`
	Desired          int      `json:"desired"`
	Paused           bool     `json:"paused"`
	Running          int      `json:"running"`
	Provisioning     int      `json:"provisioning"`
	Decommissioning  int      `json:"decommissioning"`
	Failed           int      `json:"failed"`
	Lost             int      `json:"lost"`
	UnreachableHosts []string `json:"unreachableHosts"`
	LastError        string   `json:"lastError,omitempty"`
	NoCapacity       string   `json:"noCapacity,omitempty"`
	Removed          bool     `json:"removed,omitempty"`
	RemoveDeletesVMs bool     `json:"removeDeletesVMs,omitempty"`
	// Schedule names the schedule whose window governs min and max.
	Schedule string `json:"schedule,omitempty"`
	// Warm and Warming count the warm pool; WarmTarget is its size now.
	Warm       int `json:"warm,omitempty"`
	Warming    int `json:"warming,omitempty"`
	WarmTarget int `json:"warmTarget,omitempty"`
	// ChangedAt is when the workflow published this summary: the last time
	// any field above changed (or the workflow continued as new).
	ChangedAt time.Time `json:"changedAt"`
}

// Summary is the part of a group's status that GroupSummary holds.
func (s GroupStatus) Summary() GroupSummary {
	sum := GroupSummary{
		Group: s.Group, Min: s.Min, Max: s.Max, Desired: s.Desired, Paused: s.Paused,
		Running: s.Running, Provisioning: s.Provisioning, Decommissioning: s.Decommissioning,
		Failed: s.Failed, Lost: s.Lost, UnreachableHosts: s.UnreachableHosts,
		LastError: s.LastError, NoCapacity: s.NoCapacity,
		Removed: s.Removed, RemoveDeletesVMs: s.RemoveDeletesVMs,
		Warm: s.Warm, Warming: s.Warming, WarmTarget: s.WarmTarget,
	}
	if s.Schedule != nil {
		sum.Schedule = s.Schedule.Schedule
	}
	return sum
}

// Status is the GroupStatus that a summary describes: the summary's fields
// set, the rest (members, events, checks) empty.
func (s GroupSummary) Status() GroupStatus {
	st := GroupStatus{
		Group: s.Group, Min: s.Min, Max: s.Max, Desired: s.Desired, Paused: s.Paused,
		Running: s.Running, Provisioning: s.Provisioning, Decommissioning: s.Decommissioning,
		Failed: s.Failed, Lost: s.Lost, UnreachableHosts: s.UnreachableHosts,
		LastError: s.LastError, NoCapacity: s.NoCapacity,
		Removed: s.Removed, RemoveDeletesVMs: s.RemoveDeletesVMs,
		Warm: s.Warm, Warming: s.Warming, WarmTarget: s.WarmTarget,
	}
	if s.Schedule != "" {
		st.Schedule = &policy.Window{Schedule: s.Schedule}
	}
	return st
}

// same reports whether two summaries differ in nothing but ChangedAt.
func (s GroupSummary) same(o GroupSummary) bool {
	return s.Group == o.Group && s.Min == o.Min && s.Max == o.Max && s.Desired == o.Desired &&
		s.Paused == o.Paused && s.Running == o.Running && s.Provisioning == o.Provisioning &&
		s.Decommissioning == o.Decommissioning && s.Failed == o.Failed && s.Lost == o.Lost &&
		slices.Equal(s.UnreachableHosts, o.UnreachableHosts) && s.LastError == o.LastError &&
		s.NoCapacity == o.NoCapacity && s.Removed == o.Removed && s.RemoveDeletesVMs == o.RemoveDeletesVMs &&
		s.Schedule == o.Schedule && s.Warm == o.Warm && s.Warming == o.Warming && s.WarmTarget == o.WarmTarget
}

// publish upserts the group's summary into its memo if it changed since it
// was last published by this run: one WorkflowPropertiesModified event per
// change, none for a group at rest.
func (g *group) publish(ctx workflow.Context) {
	sum := g.status(ctx).Summary()
	if g.published != nil && g.published.same(sum) {
		return
	}
	if workflow.GetVersion(ctx, changePublishSummary, workflow.DefaultVersion, 1) < 1 {
		return
	}
	sum.ChangedAt = workflow.Now(ctx)
	if err := workflow.UpsertMemo(ctx, map[string]any{MemoSummary: sum}); err != nil {
		g.logger.Warn("publish summary", "error", err)
		return
	}
	g.published = &sum
}
