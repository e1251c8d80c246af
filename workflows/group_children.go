// The group's child workflows: placement of new VMs on hosts, starting
// ProvisionVM and DecommissionVM children, and taking their results.

package workflows

import (
	"fmt"
	"strconv"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/workflow"

	"github.com/premiscale/premiscale/activities"
	"github.com/premiscale/premiscale/config"
	"github.com/premiscale/premiscale/workflows/policy"
)

// vmShape is what one VM of the template needs from a host.
func vmShape(t Template) policy.VMShape {
	mem, _ := config.ParseSize(t.Memory) // validated
	var disk uint64
	if t.BaseVolume == "" && t.DiskSize != "" {
		disk, _ = config.ParseSize(t.DiskSize)
	}
	return policy.VMShape{VCPUs: t.VCPUs, MemoryBytes: mem, DiskBytes: disk}
}

// placeMany takes every host's inventory and places n new VMs by the
// group's strategy. A host whose inventory fails counts as unreachable.
// It returns the hosts chosen, the seq of each new VM (skipping every name
// any host has in use), and, if not all n fit, why.
func (g *group) placeMany(ctx workflow.Context, n int) ([]string, []int, error) {
	var a *activities.Libvirt
	actx := workflow.WithActivityOptions(ctx, hostQueryOptions)
	skipDown := workflow.GetVersion(ctx, changePlacementSkipsDownHosts, workflow.DefaultVersion, 1) >= 1
	futures := make([]workflow.Future, len(g.spec.Hosts))
	for i, h := range g.spec.Hosts {
		if skipDown && g.hostDown(h.Name) {
			continue // known unreachable: not asked, not placed on
		}
		futures[i] = workflow.ExecuteActivity(actx, a.HostInventory, activities.InventoryInput{Host: h})
	}
	shape := vmShape(g.template())
	caps := make([]policy.HostCapacity, len(g.spec.Hosts))
	taken := map[string]bool{}
	for i, h := range g.spec.Hosts {
		hc := policy.HostCapacity{
			Name: h.Name, ReservedCPUs: h.ReservedCPUs, ReservedMemoryBytes: h.ReservedMemoryBytes,
			CPUOvercommit: h.CPUOvercommit, MemoryOvercommit: h.MemoryOvercommit,
		}
		var inv activities.Inventory
		asked := futures[i] != nil // not when the last observation found it unreachable
		var err error
		if asked {
			err = futures[i].Get(ctx, &inv)
		}
		if err != nil {
			g.logger.Warn("host inventory failed", "group", g.spec.Name, "host", h.Name, "error", err)
		}
		if asked && err == nil {
			for _, name := range inv.Taken {
				taken[name] = true
			}
			hc.Reachable = true
			hc.CPUs, hc.MemoryBytes, hc.PoolAvailableBytes = inv.CPUs, inv.MemoryBytes, inv.PoolAvailableBytes
			hc.AllocatedVCPUs, hc.AllocatedMemoryBytes = inv.AllocatedVCPUs, inv.AllocatedMemoryBytes
			defined := map[string]bool{}
			for _, d := range inv.Owned {
				defined[d.Name] = true
			}
			g.warmCapacity(&hc, shape, defined)
			for _, m := range g.st.Members {
				if m.Host != h.Name || (m.State != MemberRunning && m.State != MemberProvisioning) {
					continue
				}
				hc.GroupMembers++
				if m.State == MemberProvisioning && !defined[m.Name] {
					hc.InFlightVCPUs += shape.VCPUs
					hc.InFlightMemoryBytes += shape.MemoryBytes
					hc.InFlightDiskBytes += shape.DiskBytes
				}
			}
		}
		caps[i] = hc
	}
	// Histories from before inventories listed Taken have none: the names
	// are then NextSeq on, as they were.
	seeds, seqs := policy.NewNames(g.spec.Name, g.st.NextSeq, n, func(name string) bool { return taken[name] || g.member(name) != nil })
	hosts, err := policy.PlaceMany(policy.PlaceInput{
		Strategy: g.spec.Placement.Strategy, Hosts: caps, VM: shape, MaxPerHost: g.spec.Placement.MaxPerHost,
	}, n, seeds)
	return hosts, seqs[:len(hosts)], err
}

// provisionOn starts provisioning one new member, number seq, on hostName.
func (g *group) provisionOn(ctx workflow.Context, hostName string, seq int) {
	g.startProvision(ctx, hostName, seq, nil)
}

// startProvision starts a ProvisionVM child for a new member, for the
// group or (warm set) for its warm pool.
func (g *group) startProvision(ctx workflow.Context, hostName string, seq int, warm *WarmSpec) {
	host, _ := g.host(hostName)
	g.st.NextSeq = max(g.st.NextSeq, seq+1)
	name := g.spec.Name + "-" + strconv.Itoa(seq)
	now := workflow.Now(ctx)
	in := ProvisionInput{Group: g.spec.Name, VM: name, Host: host, Revision: g.revision(), Epoch: workflow.GetInfo(ctx).FirstRunID, CleanupTimeout: g.spec.CleanupTimeout}
	var providerID string
	if g.spec.Kubernetes != nil {
		in.Kubernetes = g.spec.Kubernetes
		info := workflow.GetInfo(ctx)
		runID := info.WorkflowExecution.RunID
		if workflow.GetVersion(ctx, changeStableDomainUUID, workflow.DefaultVersion, 1) >= 1 {
			// The first run's ID stays through continue-as-new and
			// `temporal workflow reset`, so replaying a reset run
			// computes the provider IDs its members were created with.
			runID = info.FirstRunID
		}
		in.UUID = domainUUID(runID, name)
		providerID = ProviderID(g.spec.Name, in.UUID)
	}
	m := Member{
		Name: name, Seq: seq, Host: hostName, Volume: activities.VolumeName(name),
		State: MemberProvisioning, CreatedAt: now, UpdatedAt: now, ProviderID: providerID,
		Revision: g.revision(),
	}
	if warm != nil {
		in.Warm = warm
		m.State, m.WarmState = MemberWarming, warm.State
		g.event(ctx, "warm pool: provisioning %s on %s to park it %s", name, hostName, warm.State)
	} else {
		g.event(ctx, "scaling out: provisioning %s on %s", name, hostName)
	}
	g.st.Members = append(g.st.Members, m)
	cctx := workflow.WithChildOptions(ctx, workflow.ChildWorkflowOptions{
		WorkflowID:            ProvisionWorkflowID(g.spec.Name, name),
		ParentClosePolicy:     enumspb.PARENT_CLOSE_POLICY_REQUEST_CANCEL,
		WorkflowIDReusePolicy: enumspb.WORKFLOW_ID_REUSE_POLICY_ALLOW_DUPLICATE,
	})
	cctx, cancel := workflow.WithCancel(cctx)
	if g.cancelProvision == nil {
		g.cancelProvision, g.cancelling = map[string]workflow.CancelFunc{}, map[string]bool{}
	}
	g.cancelProvision[name] = cancel
	f := workflow.ExecuteChildWorkflow(cctx, ProvisionVM, in)
	g.whenDone(ctx, f, name, func(ctx workflow.Context, m *Member, err error) {
		m.UpdatedAt = workflow.Now(ctx)
		cancelled := g.cancelling[name]
		delete(g.cancelProvision, name)
		delete(g.cancelling, name)
		if isAppError(err, ErrTypeCleanupFailed) {
			// What it created may still exist: keep the member until a
			// decommissioning removes it (observe retries failed members).
			m.State, m.Error = MemberFailed, rootCause(err)
			if !cancelled {
				g.backoff(ctx, fmt.Sprintf("provisioning %s on %s failed and its cleanup too (retrying the cleanup): %s", name, hostName, m.Error))
			} else {
				g.fail(ctx, fmt.Sprintf("cleanup of the cancelled provisioning of %s failed (retrying it): %s", name, m.Error))
			}
			return
		}
		if cancelled {
			// Scale-in asked for it: the child compensated, nothing failed.
			// (If it finished first, it is removed like any victim.)
			if err == nil {
				m.State = MemberRunning
				return
			}
			g.removeMember(name)
			g.event(ctx, "provisioning of %s cancelled by scale-in; what it had created is removed", name)
			return
		}
		if err != nil {
			g.removeMember(name)
			g.backoff(ctx, fmt.Sprintf("provisioning %s on %s failed: %s", name, hostName, rootCause(err)))
			return
		}
		g.st.Failures = 0
		if warm != nil {
			m.State, m.WarmSince = MemberWarm, m.UpdatedAt
			g.event(ctx, "%s is warm (%s) on %s", name, warm.State, hostName)
			return
		}
		m.State = MemberRunning
		g.event(ctx, "%s is running on %s", name, hostName)
	})
}

// whenDone waits for a child workflow in a workflow goroutine, counting it
// as in flight meanwhile, then hands the member (if it is still one) and the
// child's error to done, and wakes the main loop.
func (g *group) whenDone(ctx workflow.Context, f workflow.ChildWorkflowFuture, name string, done func(workflow.Context, *Member, error)) {
	g.inflight++
	workflow.Go(ctx, func(ctx workflow.Context) {
		err := f.Get(ctx, nil)
		g.inflight--
		g.dirty = true
		if m := g.member(name); m != nil {
			done(ctx, m, err)
		}
	})
}

func (g *group) decommission(ctx workflow.Context, m *Member) {
	host, ok := g.host(m.Host)
	if !ok && workflow.GetVersion(ctx, changeMembersOffConfig, workflow.DefaultVersion, 1) >= 1 {
		if host, ok = g.anyHost(m.Host); !ok {
			// Nothing can reach the VM; never forget it silently.
			m.State, m.UpdatedAt = MemberLost, workflow.Now(ctx)
			m.Error = fmt.Sprintf("host %s is no longer configured; the VM is left there untouched", m.Host)
			g.fail(ctx, fmt.Sprintf("cannot decommission %s: %s", m.Name, m.Error))
			return
		}
	}
	if !ok {
		// The host left the configuration; nothing can reach the VM now.
		g.fail(ctx, fmt.Sprintf("member %s is on host %s, which is no longer configured; forgetting it", m.Name, m.Host))
		g.removeMember(m.Name)
		return
	}
	name := m.Name
	grace := g.template().ShutdownGrace()
	if m.State == MemberWarm || (m.State == MemberLost && m.WarmState != "") {
		grace = 0 // parked: nothing runs that a shutdown would let finish
	}
	m.State = MemberDecommissioning
	m.UpdatedAt = workflow.Now(ctx)
	cctx := workflow.WithChildOptions(ctx, workflow.ChildWorkflowOptions{
		WorkflowID:            DecommissionWorkflowID(g.spec.Name, name),
		ParentClosePolicy:     enumspb.PARENT_CLOSE_POLICY_ABANDON,
		WorkflowIDReusePolicy: enumspb.WORKFLOW_ID_REUSE_POLICY_ALLOW_DUPLICATE,
	})
	in := DecommissionInput{Group: g.spec.Name, VM: name, Host: host, GracePeriod: grace, CleanupTimeout: g.spec.CleanupTimeout}
	if m.ProviderID != "" {
		in.Kubernetes, in.ProviderID = g.spec.Kubernetes, m.ProviderID
	}
	f := workflow.ExecuteChildWorkflow(cctx, DecommissionVM, in)
	g.whenDone(ctx, f, name, func(ctx workflow.Context, m *Member, err error) {
		if isAppError(err, ErrTypeDrainAborted) {
			// The node stays, uncordoned: the member serves on.
			m.State = MemberRunning
			m.Error = rootCause(err)
			m.UpdatedAt = workflow.Now(ctx)
			if workflow.GetVersion(ctx, changeDrainAbortPerNode, workflow.DefaultVersion, 1) >= 1 {
				// Not this node again for a while: the next scale-in
				// chooses another victim (or waits, if none is left).
				m.DrainAborts++
				d := policy.Backoff(m.DrainAborts, g.spec.EvaluationInterval, 30*time.Minute)
				m.DrainBackoffUntil = m.UpdatedAt.Add(d)
				g.fail(ctx, fmt.Sprintf("scale-in of %s aborted: %s; not chosen again for %s", name, m.Error, d))
				return
			}
			g.backoff(ctx, fmt.Sprintf("scale-in of %s aborted: %s", name, m.Error))
			return
		}
		if err != nil {
			m.State = MemberFailed
			m.Error = rootCause(err)
			m.UpdatedAt = workflow.Now(ctx)
			g.fail(ctx, fmt.Sprintf("decommissioning %s failed (retrying next evaluation): %s", name, m.Error))
			return
		}
		g.removeMember(name)
		g.event(ctx, "%s decommissioned", name)
	})
}
