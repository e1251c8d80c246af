package workflows

import (
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/premiscale/premiscale/activities"
)

// A group removed from the configuration (SignalRemove, group_api.go):
//
//	configured --remove--> removed (keep) --all members gone--> ended
//	     ^                    |
//	     +------spec----------+
//	configured --remove{deleteVMs}--> removed (delete): desired 0 --no members--> ended

// changeRemoveFromWorker: a remove signal is checked by the worker
// (CheckRemoveName): refused for a group its configuration has, and its
// DeleteVMs taken only if the worker's
// autoscale.orphans.deleteUnconfiguredGroups is on.
const changeRemoveFromWorker = "remove-from-worker"

// CheckRemoveName is the registered name of the worker's local activity
// that answers, for a remove signal, whether the worker configures the
// group and whether it deletes unconfigured groups' VMs: input
// RemoveCheckInput, output RemoveCheck (worker.Authority).
const CheckRemoveName = "CheckRemove"

// RemoveCheckInput names the group a remove signal is for.
type RemoveCheckInput struct {
	Group string `json:"group"`
}

// RemoveCheck is what the worker's configuration says of a group's
// removal.
type RemoveCheck struct {
	// Configured: the group is in the worker's autoscale.groups, so it is
	// not removed.
	Configured bool `json:"configured"`
	// DeleteVMs is autoscale.orphans.deleteUnconfiguredGroups.
	DeleteVMs bool `json:"deleteVMs"`
}

// remove marks the group removed from the configuration, as far as the
// worker's configuration agrees (changeRemoveFromWorker).
func (g *group) remove(ctx workflow.Context, req RemoveRequest) {
	if g.st.Removed && g.st.RemoveDeletesVMs == req.DeleteVMs {
		return
	}
	if workflow.GetVersion(ctx, changeRemoveFromWorker, workflow.DefaultVersion, 1) >= 1 {
		lctx := workflow.WithLocalActivityOptions(ctx, workflow.LocalActivityOptions{
			StartToCloseTimeout: quickActivityTimeout,
			RetryPolicy:         &temporal.RetryPolicy{InitialInterval: time.Second, MaximumInterval: time.Minute},
		})
		var chk RemoveCheck
		if err := workflow.ExecuteLocalActivity(lctx, CheckRemoveName, RemoveCheckInput{Group: g.spec.Name}).Get(ctx, &chk); err != nil {
			g.event(ctx, "remove not checked by a worker, ignored: %s", rootCause(err))
			return
		}
		if chk.Configured {
			g.event(ctx, "remove refused: group %s is in this worker's configuration (autoscale.groups)", g.spec.Name)
			return
		}
		if req.DeleteVMs && !chk.DeleteVMs {
			g.event(ctx, "remove asked to delete the VMs, refused: this worker's autoscale.orphans.deleteUnconfiguredGroups is off; keeping them")
			req.DeleteVMs = false
			if g.st.Removed && !g.st.RemoveDeletesVMs {
				return
			}
		}
	}
	g.st.Removed, g.st.RemoveDeletesVMs = true, req.DeleteVMs
	if req.DeleteVMs {
		g.event(ctx, "group removed from the configuration: decommissioning its %d members, then ending", len(g.st.Members))
	} else {
		g.event(ctx, "group removed from the configuration: its %d VMs are kept and no longer managed; the workflow ends once they are gone", len(g.st.Members))
	}
	g.dirty = true
}

// keepsRemoved reports whether the group was removed and keeps its VMs:
// it neither scales, replaces nor recovers them.
func (g *group) keepsRemoved() bool { return g.st.Removed && !g.st.RemoveDeletesVMs }

// removedAndGone reports whether a removed group has nothing left to watch:
// no member and no child in flight.
func (g *group) removedAndGone() bool {
	return g.st.Removed && len(g.st.Members) == 0 && g.inflight == 0
}

// forgetVanished drops the members of a group that keeps its removed VMs
// whose domains are gone (deleted by hand, or by the orphan collector): the
// group does not replace them.
func (g *group) forgetVanished(ctx workflow.Context, seen map[string]activities.DomainInfo, reachable map[string]bool) {
	var gone []string
	for _, m := range g.st.Members {
		if _, ok := seen[m.Name]; !ok && reachable[m.Host] && m.State != MemberProvisioning && m.State != MemberDecommissioning && m.State != MemberWarming {
			gone = append(gone, m.Name)
		}
	}
	for _, name := range gone {
		g.event(ctx, "member %s of the removed group is gone", name)
		g.removeMember(name)
	}
}
