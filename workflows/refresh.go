package workflows

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/premiscale/premiscale/config"
	"github.com/premiscale/premiscale/workflows/policy"
)

// Rolling refresh, as AWS instance refresh: the running members made from
// an older template revision are replaced a batch at a time. A batch is
// taken out of service (decommissioned: joined nodes are drained first)
// and the group's own reconciliation provisions its replacements from the
// current revision; the next batch starts only once they run (joined:
// their node is Ready) and nothing else is in flight, and a batch never
// takes the running members below MinHealthyPercent of desired. With no
// room above that floor, one replacement is launched first (a surge of
// one). Everything lives in the group's state, so a killed worker or
// controller resumes the refresh where it was.

// Refresh statuses.
const (
	RefreshRunning   = "running"
	RefreshDone      = "done"
	RefreshCancelled = "cancelled"
)

// TemplateRevision is a template as the group used it, with its revision
// (config.Group.Revision).
type TemplateRevision struct {
	Revision string   `json:"revision"`
	Template Template `json:"template"`
}

// Refresh is a rolling refresh's progress, in status and in the group's
// state across continue-as-new; the last one stays after it ends.
type Refresh struct {
	// ID counts the group's refreshes.
	ID     int    `json:"id"`
	Status string `json:"status"`
	// Target is the revision members are refreshed to; From the one in
	// force before it (what a rollback returns to).
	Target string `json:"target"`
	// Rollback: started by UpdateRefreshRollback; Auto: by a template
	// change with refresh mode auto.
	Rollback          bool `json:"rollback,omitempty"`
	Auto              bool `json:"auto,omitempty"`
	All               bool `json:"all,omitempty"`
	MinHealthyPercent int  `json:"minHealthyPercent"`
	Batch             int  `json:"batch,omitempty"`
	// BeforeSeq: with All, members numbered below it are replaced.
	BeforeSeq int `json:"beforeSeq,omitempty"`
	// Total is how many members were to be replaced when it started;
	// Replaced how many it has taken out of service so far; Remaining how
	// many are still to go (last step).
	Total     int `json:"total"`
	Replaced  int `json:"replaced"`
	Remaining int `json:"remaining"`
	// Surging: one replacement is being launched above desired before an
	// outdated member goes.
	Surging bool `json:"surging,omitempty"`
	// Protected counts outdated members left alone because they are
	// protected from scale-in (last step).
	Protected int `json:"protected,omitempty"`
	// Checkpoints (percentages of Total) at which the refresh waits
	// CheckpointDelay; NextCheckpoint indexes the next one to reach.
	Checkpoints     []int         `json:"checkpoints,omitempty"`
	CheckpointDelay time.Duration `json:"checkpointDelay,omitempty"`
	NextCheckpoint  int           `json:"nextCheckpoint,omitempty"`
	// WaitingUntil is set while the refresh waits at a checkpoint: when
	// it goes on, unless continued sooner.
	WaitingUntil time.Time `json:"waitingUntil,omitzero"`
	// Stopped: it ended at its last checkpoint, under 100%.
	Stopped   bool      `json:"stopped,omitempty"`
	StartedAt time.Time `json:"startedAt"`
	EndedAt   time.Time `json:"endedAt,omitzero"`
}

// running reports whether r is a refresh in progress.
func (r *Refresh) running() bool { return r != nil && r.Status == RefreshRunning }

// revision is the template revision new members are made from: the
// configuration's, or the one a rollback returned to.
func (g *group) revision() string {
	if g.st.Pinned != nil {
		return g.st.Pinned.Revision
	}
	return g.spec.Revision
}

// template is the template of revision().
func (g *group) template() Template {
	if g.st.Pinned != nil {
		return g.st.Pinned.Template
	}
	return g.spec.Template
}

// want is how many members the group holds: desired, and one more while a
// refresh surges.
func (g *group) want() int {
	if r := g.st.Refresh; r.running() && r.Surging {
		return g.st.Desired + 1
	}
	return g.st.Desired
}

// revisionChanged records a change of the template revision in force
// (from before to g's now) and, with refresh mode auto, starts a refresh.
func (g *group) revisionChanged(ctx workflow.Context, before TemplateRevision) {
	now := g.revision()
	if now == before.Revision {
		return
	}
	g.st.Previous = &before
	g.event(ctx, "template revision %s -> %s: new VMs use the new template", shortRev(before.Revision), shortRev(now))
	if r := g.st.Refresh; r.running() {
		g.event(ctx, "refresh %d now replaces members that are not of revision %s", r.ID, shortRev(now))
		r.Target = now
		return
	}
	if g.spec.Refresh != nil && g.spec.Refresh.Mode == config.RefreshAuto && !g.st.Removed {
		g.startRefresh(ctx, RefreshRequest{}, false, true)
	}
}

// applySpecRevision is applySpec's part for the template: a configuration
// that changes its revision ends a rollback's pin (the file now says what
// to run), and a change of the revision in force is recorded.
func (g *group) applySpecRevision(ctx workflow.Context, before TemplateRevision, oldSpecRevision string) {
	if g.spec.Revision != oldSpecRevision && g.st.Pinned != nil {
		g.st.Pinned = nil
	}
	g.revisionChanged(ctx, before)
}

// current is the template revision in force.
func (g *group) current() TemplateRevision {
	return TemplateRevision{Revision: g.revision(), Template: g.template()}
}

// refreshPlan is a refresh request resolved against the group's settings.
type refreshPlan struct {
	minHealthy, batch int
	checkpoints       []int
	delay             time.Duration
}

// refreshSettings resolves a request against the group's settings.
func (g *group) refreshSettings(req RefreshRequest) (p refreshPlan, err error) {
	var r RefreshSettings
	if g.spec.Refresh != nil {
		r = *g.spec.Refresh
	}
	p.minHealthy = r.MinHealthyPercent()
	if req.MinHealthy != "" {
		if p.minHealthy, err = config.ParsePercent(req.MinHealthy); err != nil {
			return p, fmt.Errorf("min-healthy %w", err)
		}
	}
	p.batch = r.Batch
	if req.Batch != nil {
		p.batch = *req.Batch
	}
	if p.batch < 0 || p.batch > config.MaxGroupSize {
		return p, fmt.Errorf("batch must be from 0 to %d, got %d", config.MaxGroupSize, p.batch)
	}
	p.checkpoints, p.delay = slices.Clone(r.Checkpoints), r.Delay()
	switch {
	case req.NoCheckpoints && len(req.Checkpoints) > 0:
		return p, fmt.Errorf("checkpoints: none, or %v, not both", req.Checkpoints)
	case req.NoCheckpoints:
		p.checkpoints = nil
	case len(req.Checkpoints) > 0:
		if err := config.CheckCheckpoints(req.Checkpoints); err != nil {
			return p, fmt.Errorf("checkpoints %w", err)
		}
		p.checkpoints = slices.Clone(req.Checkpoints)
	}
	if req.CheckpointDelay != "" {
		d, err := time.ParseDuration(req.CheckpointDelay)
		if err != nil {
			return p, fmt.Errorf("checkpoint-delay must be a duration such as 30m, got %q", req.CheckpointDelay)
		}
		if err := config.CheckCheckpointDelay(d, p.checkpoints); err != nil {
			return p, fmt.Errorf("checkpoint-delay %w", err)
		}
		p.delay = d
	}
	return p, nil
}

func (g *group) startRefresh(ctx workflow.Context, req RefreshRequest, rollback, auto bool) *Refresh {
	plan, _ := g.refreshSettings(req) // validated
	minHealthy, batch := plan.minHealthy, plan.batch
	g.st.RefreshSeq++
	r := &Refresh{
		ID: g.st.RefreshSeq, Status: RefreshRunning, Target: g.revision(),
		Rollback: rollback, Auto: auto, All: req.All, MinHealthyPercent: minHealthy, Batch: batch,
		StartedAt: workflow.Now(ctx),
	}
	if len(plan.checkpoints) > 0 {
		r.Checkpoints, r.CheckpointDelay = plan.checkpoints, plan.delay
	}
	if req.All {
		r.BeforeSeq = g.st.NextSeq
	}
	g.st.Refresh = r
	outdated, protected := g.outdated()
	r.Total, r.Remaining, r.Protected = len(outdated), len(outdated), protected
	how := "refresh"
	switch {
	case rollback:
		how = "rollback"
	case auto:
		how = "refresh (automatic, after a template change)"
	}
	g.event(ctx, "%s %d started: %d members to replace with revision %s, keeping %d%% of desired running, batch %s%s",
		how, r.ID, r.Total, shortRev(r.Target), minHealthy, batchText(batch), checkpointsText(r))
	g.dirty = true
	return r
}

func checkpointsText(r *Refresh) string {
	if len(r.Checkpoints) == 0 {
		return ""
	}
	ps := make([]string, len(r.Checkpoints))
	for i, p := range r.Checkpoints {
		ps[i] = fmt.Sprintf("%d%%", p)
	}
	return fmt.Sprintf(", waiting %s at checkpoints %s", r.CheckpointDelay, strings.Join(ps, ", "))
}

func batchText(n int) string {
	if n == 0 {
		return "as large as that allows"
	}
	return fmt.Sprint(n)
}

// outdated lists the running members a refresh replaces, oldest first, and
// counts the protected ones it leaves alone.
func (g *group) outdated() (ms []*Member, protected int) {
	for i := range g.st.Members {
		m := &g.st.Members[i]
		if m.State != MemberRunning || !g.refreshReplaces(m) {
			continue
		}
		if m.Protected {
			protected++
			continue
		}
		ms = append(ms, m)
	}
	slices.SortFunc(ms, func(a, b *Member) int { return cmp.Compare(a.Seq, b.Seq) })
	return ms, protected
}

// refreshReplaces reports whether the refresh (the running or last one)
// replaces m: it is not of the revision in force or, with All, it was there
// when the refresh started.
func (g *group) refreshReplaces(m *Member) bool {
	r := g.st.Refresh
	return m.Revision != g.revision() || (r != nil && r.All && m.Seq < r.BeforeSeq)
}

// stepRefresh takes the running refresh's next step (policy.NextRefreshStep):
// nothing while the last batch's replacements are still on their way, a
// batch of outdated members out of service, a surge of one, or the end.
func (g *group) stepRefresh(ctx workflow.Context) {
	r := g.st.Refresh
	if !r.running() {
		return
	}
	if g.st.Removed {
		r.Status, r.EndedAt = RefreshCancelled, workflow.Now(ctx)
		g.event(ctx, "refresh %d cancelled: the group was removed from the configuration", r.ID)
		return
	}
	outdated, protected := g.outdated()
	r.Remaining, r.Protected = len(outdated), protected
	if !r.WaitingUntil.IsZero() {
		if workflow.Now(ctx).Before(r.WaitingUntil) {
			return
		}
		r.WaitingUntil = time.Time{}
		g.event(ctx, "refresh %d goes on after its checkpoint wait", r.ID)
	}
	running := g.count(MemberRunning)
	inFlight := g.count(MemberProvisioning, MemberDecommissioning, MemberFailed)
	if r.Surging {
		if inFlight > 0 || running < g.st.Desired+1 {
			return
		}
		r.Surging = false
		if len(outdated) > 0 {
			g.replace(ctx, r, outdated[:1])
		}
		return
	}
	checkpoint := 0
	if r.NextCheckpoint < len(r.Checkpoints) {
		checkpoint = policy.CheckpointCount(r.Checkpoints[r.NextCheckpoint], r.Total)
	}
	step := policy.NextRefreshStep(policy.RefreshState{
		Desired: g.st.Desired, Running: running, InFlight: inFlight, Outdated: len(outdated),
		MinHealthyPercent: r.MinHealthyPercent, Batch: r.Batch, Checkpoint: checkpoint, Replaced: r.Replaced,
	})
	switch {
	case step.Checkpoint:
		g.reachCheckpoint(ctx, r)
	case step.Done:
		r.Status, r.EndedAt = RefreshDone, workflow.Now(ctx)
		msg := fmt.Sprintf("refresh %d done: %d members replaced", r.ID, r.Replaced)
		if protected > 0 {
			msg += fmt.Sprintf("; %d protected members left on older revisions", protected)
		}
		g.event(ctx, "%s", msg)
	case step.Surge:
		r.Surging = true
		g.event(ctx, "refresh %d: no room above %d%% of %d running, launching one replacement before an old member goes", r.ID, r.MinHealthyPercent, g.st.Desired)
	case step.Replace > 0:
		g.replace(ctx, r, outdated[:step.Replace])
	}
}

// reachCheckpoint records that refresh r reached its next checkpoint (the
// replacements up to it run): it waits there, or ends if that was its last
// checkpoint and under 100%.
func (g *group) reachCheckpoint(ctx workflow.Context, r *Refresh) {
	p := r.Checkpoints[r.NextCheckpoint]
	r.NextCheckpoint++
	now := workflow.Now(ctx)
	if r.NextCheckpoint == len(r.Checkpoints) && p < 100 {
		r.Status, r.EndedAt, r.Stopped = RefreshDone, now, true
		g.event(ctx, "refresh %d stopped at its last checkpoint, %d%%: %d of %d members replaced; the rest stay on older revisions until another refresh", r.ID, p, r.Replaced, r.Total)
		return
	}
	r.WaitingUntil = now.Add(r.CheckpointDelay)
	g.event(ctx, "refresh %d reached its checkpoint at %d%% (%d of %d members replaced): waiting %s, until %s, before it goes on",
		r.ID, p, r.Replaced, r.Total, r.CheckpointDelay, r.WaitingUntil.UTC().Format(time.RFC3339))
}

// untilCheckpointEnds is how long the running refresh still waits at a
// checkpoint; zero if it does not.
func (g *group) untilCheckpointEnds(ctx workflow.Context) time.Duration {
	if r := g.st.Refresh; r.running() && !r.WaitingUntil.IsZero() {
		return max(r.WaitingUntil.Sub(workflow.Now(ctx)), time.Millisecond)
	}
	return 0
}

// replace takes ms out of service for refresh r; the group's reconciliation
// provisions their replacements.
func (g *group) replace(ctx workflow.Context, r *Refresh, ms []*Member) {
	for _, m := range ms {
		r.Replaced++
		r.Remaining--
		g.event(ctx, "refresh %d: replacing %s (revision %s) on %s", r.ID, m.Name, shortRev(m.Revision), m.Host)
		g.decommission(ctx, m)
	}
}

// shortRev is a revision as status shows it.
func shortRev(rev string) string {
	if rev == "" {
		return "(unrecorded)"
	}
	return rev[:min(len(rev), 8)]
}

func (g *group) registerRefreshUpdates(ctx workflow.Context) error {
	if err := workflow.SetUpdateHandlerWithOptions(ctx, UpdateRefresh,
		func(ctx workflow.Context, req RefreshRequest) (Refresh, error) {
			return *g.startRefresh(ctx, req, false, false), nil
		},
		workflow.UpdateHandlerOptions{Validator: func(ctx workflow.Context, req RefreshRequest) error {
			return g.canRefresh(req)
		}},
	); err != nil {
		return err
	}
	if err := workflow.SetUpdateHandlerWithOptions(ctx, UpdateRefreshRollback,
		func(ctx workflow.Context, req RefreshRequest) (Refresh, error) {
			if r := g.st.Refresh; r.running() {
				r.Status, r.EndedAt = RefreshCancelled, workflow.Now(ctx)
				g.event(ctx, "refresh %d cancelled by a rollback", r.ID)
			}
			back, forth := *g.st.Previous, g.current()
			if back.Revision == g.spec.Revision {
				g.st.Pinned = nil // the configuration's own revision again
			} else {
				g.st.Pinned = &back
			}
			g.st.Previous = &forth
			g.event(ctx, "rollback: template revision %s -> %s", shortRev(forth.Revision), shortRev(back.Revision))
			return *g.startRefresh(ctx, req, true, false), nil
		},
		workflow.UpdateHandlerOptions{Validator: func(ctx workflow.Context, req RefreshRequest) error {
			if g.st.Previous == nil || g.st.Previous.Revision == g.revision() {
				return temporal.NewNonRetryableApplicationError(fmt.Sprintf("group %s has no earlier template revision to return to", g.spec.Name), "NoPreviousRevision", nil)
			}
			if g.st.Removed {
				return temporal.NewNonRetryableApplicationError(fmt.Sprintf("group %s was removed from the configuration", g.spec.Name), "Removed", nil)
			}
			_, err := g.refreshSettings(req)
			return invalidRefresh(err)
		}},
	); err != nil {
		return err
	}
	if err := workflow.SetUpdateHandlerWithOptions(ctx, UpdateRefreshContinue,
		func(ctx workflow.Context) (Refresh, error) {
			r := g.st.Refresh
			r.WaitingUntil = time.Time{}
			g.event(ctx, "refresh %d continued before its checkpoint wait ended", r.ID)
			g.dirty = true
			return *r, nil
		},
		workflow.UpdateHandlerOptions{Validator: func(ctx workflow.Context) error {
			r := g.st.Refresh
			if !r.running() {
				return temporal.NewNonRetryableApplicationError(fmt.Sprintf("group %s has no refresh running", g.spec.Name), "NoRefresh", nil)
			}
			if r.WaitingUntil.IsZero() {
				return temporal.NewNonRetryableApplicationError(fmt.Sprintf("refresh %d of group %s is not waiting at a checkpoint", r.ID, g.spec.Name), "NotAtCheckpoint", nil)
			}
			return nil
		}},
	); err != nil {
		return err
	}
	return workflow.SetUpdateHandlerWithOptions(ctx, UpdateRefreshCancel,
		func(ctx workflow.Context) (Refresh, error) {
			r := g.st.Refresh
			r.Status, r.EndedAt, r.Surging, r.WaitingUntil = RefreshCancelled, workflow.Now(ctx), false, time.Time{}
			g.event(ctx, "refresh %d cancelled after replacing %d of %d members", r.ID, r.Replaced, r.Total)
			g.dirty = true
			return *r, nil
		},
		workflow.UpdateHandlerOptions{Validator: func(ctx workflow.Context) error {
			if !g.st.Refresh.running() {
				return temporal.NewNonRetryableApplicationError(fmt.Sprintf("group %s has no refresh running", g.spec.Name), "NoRefresh", nil)
			}
			return nil
		}},
	)
}

// canRefresh explains why a refresh cannot start now.
func (g *group) canRefresh(req RefreshRequest) error {
	if r := g.st.Refresh; r.running() {
		return temporal.NewNonRetryableApplicationError(fmt.Sprintf("refresh %d of group %s is running (%d of %d replaced); cancel it first", r.ID, g.spec.Name, r.Replaced, r.Total), "RefreshRunning", nil)
	}
	if g.st.Removed {
		return temporal.NewNonRetryableApplicationError(fmt.Sprintf("group %s was removed from the configuration", g.spec.Name), "Removed", nil)
	}
	_, err := g.refreshSettings(req)
	return invalidRefresh(err)
}

func invalidRefresh(err error) error {
	if err == nil {
		return nil
	}
	return temporal.NewNonRetryableApplicationError(err.Error(), "InvalidArgument", nil)
}

// countOutdated counts the running members not of the revision in force.
func (g *group) countOutdated() int {
	n := 0
	for _, m := range g.st.Members {
		if m.State == MemberRunning && m.Revision != g.revision() {
			n++
		}
	}
	return n
}
