// Reconciliation: from the members observed to the desired size, by
// provisioning, scale-in (with its candidates' pods counted) and backoff.

package workflows

import (
	"errors"
	"fmt"
	"time"

	"go.temporal.io/sdk/workflow"

	"github.com/premiscale/premiscale/activities"
	"github.com/premiscale/premiscale/workflows/policy"
)

// reconcile starts provisionings or decommissionings to move the group
// toward its desired size, then keeps its warm pool. It never waits for
// them.
func (g *group) reconcile(ctx workflow.Context) {
	g.stepRefresh(ctx)
	g.reconcileGroup(ctx)
	g.reconcileWarm(ctx)
}

func (g *group) reconcileGroup(ctx workflow.Context) {
	active := g.count(MemberProvisioning, MemberRunning)
	now := workflow.Now(ctx)
	switch {
	case active < g.want():
		if now.Before(g.st.BackoffUntil) {
			return
		}
		n := g.want() - active
		if g.spec.WarmPool != nil || g.count(MemberWarm) > 0 {
			// Warm members first: a restore instead of a clone and boot.
			if n -= g.takeWarm(ctx, n); n <= 0 {
				return
			}
		}
		if workflow.GetVersion(ctx, changeCapStartsPerReconcile, workflow.DefaultVersion, 1) >= 1 {
			n = min(n, MaxProvisioning-g.count(MemberProvisioning))
			if n <= 0 {
				return
			}
		}
		if workflow.GetVersion(ctx, changePlacementByInventory, workflow.DefaultVersion, 1) >= 1 {
			hosts, seqs, err := g.placeMany(ctx, n)
			for i, h := range hosts {
				g.provisionOn(ctx, h, seqs[i])
			}
			g.st.NoCapacity = ""
			if errors.Is(err, policy.ErrNoCapacity) {
				g.st.NoCapacity = err.Error()
			}
			if err != nil {
				g.backoff(ctx, fmt.Sprintf("cannot place %d of %d new VMs: %s", n-len(hosts), n, err))
			}
			return
		}
		for range n {
			if !g.provision(ctx) {
				return
			}
		}
	case active > g.want():
		// Newest first among every active member: a VM still being
		// provisioned is newer than any running one, so it is the one to go
		// once it is up (decommissioning it mid-way would race its
		// provisioning); running members are removed only past those.
		countProvisioning := workflow.GetVersion(ctx, changeScaleInCountsProvisioning, workflow.DefaultVersion, 1) >= 1
		cands := g.scaleInCandidates(countProvisioning, now)
		selection := g.spec.Scaling.ScaleIn.Selection
		if selection == policy.SelectLeastPods {
			recheck := workflow.GetVersion(ctx, changeScaleInRechecksAfterPodCount, workflow.DefaultVersion, 1) >= 1
			g.countPods(ctx, cands)
			if recheck {
				// Counting blocked: children may have finished (members
				// removed or running) and desired may have changed meanwhile.
				pods := map[string]int{}
				for _, c := range cands {
					pods[c.Name] = c.Pods
				}
				cands = g.scaleInCandidates(countProvisioning, now)
				for i := range cands {
					cands[i].Pods = pods[cands[i].Name]
				}
				active = g.count(MemberProvisioning, MemberRunning)
			}
		}
		cancelProvisioning := workflow.GetVersion(ctx, changeScaleInCancelsProvisioning, workflow.DefaultVersion, 1) >= 1
		for _, name := range policy.ScaleInVictimsBy(cands, active-g.want(), selection) {
			m := g.member(name)
			switch {
			case m == nil:
				// Gone while the pods were counted (histories before
				// changeScaleInRechecksAfterPodCount).
			case m.State == MemberRunning && g.reusable(ctx, m):
				g.park(ctx, m)
			case m.State == MemberRunning:
				g.event(ctx, "scaling in: decommissioning %s on %s", m.Name, m.Host)
				g.decommission(ctx, m)
			case m.State == MemberProvisioning && cancelProvisioning && g.cancelProvision[name] != nil && !g.cancelling[name]:
				// Its own compensation removes whatever it created; waiting
				// could take a node's whole readyTimeout.
				g.event(ctx, "scaling in: cancelling the provisioning of %s on %s", m.Name, m.Host)
				g.cancelling[name] = true
				g.cancelProvision[name]()
			}
		}
	}
}

// scaleInCandidates lists the members a scale-in may choose: running ones
// and, with countProvisioning, those still being provisioned; never
// protected ones, nor ones whose drain aborted recently.
func (g *group) scaleInCandidates(countProvisioning bool, now time.Time) []policy.Candidate {
	var cands []policy.Candidate
	for _, m := range g.st.Members {
		if m.Protected || now.Before(m.DrainBackoffUntil) {
			continue
		}
		if m.State == MemberRunning || (countProvisioning && m.State == MemberProvisioning) {
			// Only while a refresh runs (histories from before refreshes
			// choose as they did).
			outdated := g.st.Refresh.running() && g.refreshReplaces(&m)
			cands = append(cands, policy.Candidate{Name: m.Name, Seq: m.Seq, CreatedAt: m.CreatedAt, Condemned: m.Condemned, Outdated: outdated})
		}
	}
	return cands
}

// countPods fills in each candidate's evictable pods from the cluster, for
// leastPods scale-in. If the cluster cannot be read the counts stay 0 and
// the choice falls back to newest first, with an event saying so.
func (g *group) countPods(ctx workflow.Context, cands []policy.Candidate) {
	var k *activities.Kubernetes
	in := activities.PodCountsInput{}
	for _, c := range cands {
		if m := g.member(c.Name); m != nil && m.ProviderID != "" {
			in.ProviderIDs = append(in.ProviderIDs, m.ProviderID)
		}
	}
	actx := workflow.WithActivityOptions(ctx, quickTwiceOptions)
	var out activities.PodCountsOutput
	if err := workflow.ExecuteActivity(actx, k.PodCounts, in).Get(ctx, &out); err != nil {
		g.event(ctx, "counting pods for leastPods scale-in failed, choosing newest first: %s", rootCause(err))
		return
	}
	for i := range cands {
		if m := g.member(cands[i].Name); m != nil {
			cands[i].Pods = out.Pods[m.ProviderID]
		}
	}
}

func (g *group) provision(ctx workflow.Context) bool {
	loads := make([]policy.HostLoad, 0, len(g.spec.Hosts))
	for _, h := range g.spec.Hosts {
		n := 0
		for _, m := range g.st.Members {
			if m.Host == h.Name && (m.State == MemberRunning || m.State == MemberProvisioning) {
				n++
			}
		}
		loads = append(loads, policy.HostLoad{Name: h.Name, Members: n, Reachable: !g.hostDown(h.Name)})
	}
	hostName, ok := policy.PickHost(loads)
	if !ok {
		g.fail(ctx, "no hosts configured")
		return false
	}
	g.provisionOn(ctx, hostName, g.st.NextSeq)
	return true
}

// backoff records a failure to grow and holds scale-out for a while,
// longer after each consecutive failure.
func (g *group) backoff(ctx workflow.Context, msg string) {
	g.st.Failures++
	d := policy.Backoff(g.st.Failures, g.spec.EvaluationInterval, 10*time.Minute)
	g.st.BackoffUntil = workflow.Now(ctx).Add(d)
	g.fail(ctx, fmt.Sprintf("%s (retrying after %s)", msg, d))
}
