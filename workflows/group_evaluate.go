// Evaluation of the group's metric checks into a scaling decision, through
// the pure policy package.

package workflows

import (
	"errors"
	"strings"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/premiscale/premiscale/activities"
	"github.com/premiscale/premiscale/config"
	"github.com/premiscale/premiscale/workflows/policy"
)

// metricsEnabled reports whether the group resizes itself by its checks.
func (g *group) metricsEnabled() bool {
	sc := g.spec.Scaling
	return len(sc.Checks) > 0 && sc.Mode != "" && sc.Mode != config.ModeOff
}

// evaluate runs the group's checks (one local activity, queries in
// parallel) and applies policy: combine, decide, and resize if decided.
func (g *group) evaluate(ctx workflow.Context) {
	var p *activities.Prometheus
	sc := g.spec.Scaling
	in := activities.QueryInput{Queries: make([]activities.NamedQuery, len(sc.Checks))}
	for i, c := range sc.Checks {
		in.Queries[i] = activities.NamedQuery{Name: c.Name, Query: c.Query}
	}
	lctx := workflow.WithLocalActivityOptions(ctx, workflow.LocalActivityOptions{
		StartToCloseTimeout: evaluationTimeout,
		RetryPolicy:         &temporal.RetryPolicy{MaximumAttempts: 1},
	})
	var out activities.QueryOutput
	err := workflow.ExecuteLocalActivity(lctx, p.Query, in).Get(ctx, &out)
	results := make([]policy.CheckResult, len(sc.Checks))
	for i, c := range sc.Checks {
		results[i] = policy.CheckResult{Name: c.Name, OnError: c.OnError}
		switch {
		case err != nil:
			results[i].Error = "evaluation failed: " + rootCause(err)
		case i < len(out.Results):
			results[i].Value, results[i].Error = out.Results[i].Value, out.Results[i].Error
		default:
			results[i].Error = "no result"
		}
	}
	lo, hi := g.bounds(ctx)
	rules := make([]policy.Rule, len(sc.Checks))
	for i, c := range sc.Checks {
		rules[i] = c.rule()
	}
	rec, results, hold := policy.Combine(rules, results, g.count(MemberRunning), g.st.Desired, lo, hi)
	outLimits, oerr := policy.LimitsFrom(sc.ScaleOut.limits(), config.DefaultScaleOutCooldown, config.DefaultScaleOutWindow)
	inLimits, ierr := policy.LimitsFrom(sc.ScaleIn.limits(), config.DefaultScaleInCooldown, config.DefaultScaleInWindow)
	if oerr != nil || ierr != nil {
		// Validation rejects these; an old spec that slipped through scales uncapped.
		g.logger.Warn("bad maxStep, ignoring it", "group", g.spec.Name, "scale_out", oerr, "scale_in", ierr)
	}
	now := workflow.Now(ctx)
	d, hist := policy.Decide(policy.DecideInput{
		Now: now, Desired: g.st.Desired, Provisioning: g.count(MemberProvisioning),
		Recommendation: rec, HoldReason: hold, Mode: string(sc.Mode), DryRun: sc.DryRun,
		ScaleOut: outLimits, ScaleIn: inLimits, LastScaleAt: g.st.LastScaleAt, History: g.st.Recommendations,
	})
	g.st.Recommendations = hist
	g.st.Checks = results
	g.st.Decision = &d
	direction := "none"
	if rec > g.st.Desired {
		direction = "out"
	} else if rec < g.st.Desired {
		direction = "in"
	}
	workflow.GetMetricsHandler(ctx).WithTags(map[string]string{
		"group": g.spec.Name, "action": d.Action, "direction": direction, "cause": d.Cause,
	}).Counter(MetricDecisions).Inc(1)
	if n := len(g.st.Decisions); n > 0 && sameDecision(g.st.Decisions[n-1], d) {
		g.st.Decisions[n-1] = d
	} else {
		g.st.Decisions = append(g.st.Decisions, d)
		if len(g.st.Decisions) > maxEvents {
			g.st.Decisions = g.st.Decisions[len(g.st.Decisions)-maxEvents:]
		}
	}
	if d.Applies() {
		g.event(ctx, "desired %d -> %d (metrics: %s)", d.From, d.To, d.Reason)
		g.st.Desired = d.To
		g.st.LastScaleAt = now
		g.dirty = true
	}
}

// sameDecision reports whether two decisions say the same, ignoring when.
func sameDecision(a, b policy.Decision) bool {
	return a.Action == b.Action && a.From == b.From && a.To == b.To && a.Reason == b.Reason
}

// rootCause strips Temporal's wrapping ("child workflow execution error ...:
// activity error ...") down to the innermost message.
func rootCause(err error) string {
	for next := errors.Unwrap(err); next != nil; next = errors.Unwrap(err) {
		err = next
	}
	return strings.TrimSpace(err.Error())
}
