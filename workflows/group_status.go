// The status Query's answer, built from the group's state.

package workflows

import (
	"go.temporal.io/sdk/workflow"

	"github.com/premiscale/premiscale/workflows/policy"
)

func (g *group) status(ctx workflow.Context) GroupStatus {
	members := append([]Member{}, g.st.Members...)
	events := append([]Event{}, g.st.Events...)
	var refresh *Refresh
	if r := g.st.Refresh; r != nil {
		c := *r
		refresh = &c
	}
	lo, hi := g.bounds(ctx)
	return GroupStatus{
		Group:            g.spec.Name,
		Min:              lo,
		Max:              hi,
		ConfigMin:        g.spec.Min,
		ConfigMax:        g.spec.Max,
		Schedule:         g.governing(ctx),
		Windows:          append([]policy.Window{}, g.st.Windows...),
		Desired:          g.st.Desired,
		Paused:           g.st.Paused,
		Running:          g.count(MemberRunning),
		Provisioning:     g.count(MemberProvisioning),
		Decommissioning:  g.count(MemberDecommissioning),
		Failed:           g.count(MemberFailed),
		Lost:             g.count(MemberLost),
		Members:          members,
		UnreachableHosts: g.unreachableHosts(),
		Strays:           append([]string{}, g.strays...),
		LastError:        g.st.LastError,
		NoCapacity:       g.st.NoCapacity,
		LastErrorAt:      g.st.LastErrorAt,
		BackoffUntil:     g.st.BackoffUntil,
		LastObservedAt:   g.lastObservedAt,
		NextPassAt:       g.nextPassAt,
		Events:           events,
		HistoryLength:    workflow.GetInfo(ctx).GetCurrentHistoryLength(),
		Mode:             string(g.spec.Scaling.Mode),
		DryRun:           g.spec.Scaling.DryRun,
		Checks:           append([]policy.CheckResult{}, g.st.Checks...),
		Decision:         g.st.Decision,
		Decisions:        append([]policy.Decision{}, g.st.Decisions...),
		LastScaleAt:      g.st.LastScaleAt,
		Removed:          g.st.Removed,
		RemoveDeletesVMs: g.st.RemoveDeletesVMs,
		Epoch:            workflow.GetInfo(ctx).FirstRunID,
		Warm:             g.count(MemberWarm),
		Warming:          g.count(MemberWarming),
		WarmTarget:       g.warmTarget(ctx),
		WarmState:        g.warmState(),
		Revision:         g.revision(),
		ConfigRevision:   g.spec.Revision,
		Outdated:         g.countOutdated(),
		Refresh:          refresh,
	}
}
