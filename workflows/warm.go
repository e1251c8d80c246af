package workflows

import (
	"fmt"
	"slices"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/premiscale/premiscale/activities"
	"github.com/premiscale/premiscale/config"
	"github.com/premiscale/premiscale/workflows/policy"
)

// A group's warm pool (config.WarmPool) holds VMs outside its count,
// booted once and parked, so that a scale-out is a restore or a resume:
//
//	(refill) --ProvisionVM{Warm}--> warming --parked--> warm
//	                                                     |
//	   scale-out: ActivateVM (wake, running, [node Ready, uncordon])
//	                                                     v
//	                                              provisioning --> running
//
// A warm member that vanishes, runs, or is found in another state than it
// was parked in is decommissioned and the pool refilled; on a host
// unreachable past the grace period it is lost like a running member.
// Warm members of an older revision of the template, and any past the
// pool's size, are decommissioned.

// Workflow types of the warm pool: ActivateVM brings a warm VM into its
// group; ParkVM returns a scaled-in one to the pool (reuseOnScaleIn).
const (
	ActivateVMName = "ActivateVM"
	ParkVMName     = "ParkVM"
)

// ParkWorkflowID is the workflow ID of the return of a member to the pool.
func ParkWorkflowID(group, vm string) string {
	return GroupWorkflowID(group) + "/vm/" + vm + "/park"
}

// ActivateWorkflowID is the workflow ID of the activation of a warm VM.
func ActivateWorkflowID(group, vm string) string {
	return GroupWorkflowID(group) + "/vm/" + vm + "/activate"
}

// WarmSpec is how ProvisionVM readies and parks a VM for the warm pool.
type WarmSpec struct {
	// State is config.WarmHibernated, WarmPaused or WarmStopped.
	State string `json:"state"`
	// ConsoleLine, when set, is the serial console text that says the
	// guest is up; ReadyTimeout bounds the wait for it.
	ConsoleLine  string        `json:"consoleLine,omitempty"`
	ReadyTimeout time.Duration `json:"readyTimeout,omitempty"`
	// GracePeriod bounds the ACPI shutdown of WarmStopped.
	GracePeriod time.Duration `json:"gracePeriod,omitempty"`
}

// consoleOptions are the options of WaitConsoleLine: one attempt may take
// the whole readiness timeout; a lost worker is noticed by heartbeat.
func consoleOptions(ctx workflow.Context, timeout time.Duration) workflow.Context {
	if timeout <= 0 {
		timeout = config.DefaultWarmReadyTimeout
	}
	return workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout:    timeout,
		ScheduleToCloseTimeout: timeout,
		HeartbeatTimeout:       heartbeatTimeout,
		RetryPolicy:            retry,
		WaitForCancellation:    true,
	})
}

// park is ProvisionVM's last step for a warm VM: cordon its node, if it
// joins, then put the domain into the warm state.
func park(ctx workflow.Context, step *string, in ProvisionInput) error {
	var k *activities.Kubernetes
	opts := workflow.ActivityOptions{
		StartToCloseTimeout:    in.Warm.GracePeriod + 2*time.Minute,
		ScheduleToCloseTimeout: provisionStepDeadline + in.Warm.GracePeriod,
		HeartbeatTimeout:       heartbeatTimeout,
		RetryPolicy:            retry,
		WaitForCancellation:    true,
	}
	actx := workflow.WithActivityOptions(ctx, opts)
	if in.Kubernetes != nil {
		*step = "cordon"
		if err := workflow.ExecuteActivity(actx, k.CordonNode, activities.NodeRef{ProviderID: ProviderID(in.Group, in.UUID)}).Get(ctx, nil); err != nil {
			return fmt.Errorf("cordon: %w", err)
		}
	}
	*step = "park"
	return parkDomain(ctx, activities.DomainRef{Host: in.Host, Group: in.Group, VM: in.VM}, *in.Warm)
}

// parkDomain runs ParkDomain, its retries bounded like a provisioning
// step's plus the shutdown grace of WarmStopped.
func parkDomain(ctx workflow.Context, ref activities.DomainRef, warm WarmSpec) error {
	var a *activities.Libvirt
	actx := workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout:    warm.GracePeriod + 2*time.Minute,
		ScheduleToCloseTimeout: provisionStepDeadline + warm.GracePeriod,
		HeartbeatTimeout:       heartbeatTimeout,
		RetryPolicy:            retry,
		WaitForCancellation:    true,
	})
	return workflow.ExecuteActivity(actx, a.ParkDomain, activities.ParkDomainInput{
		Domain: ref, State: warm.State, GracePeriod: warm.GracePeriod,
	}).Get(ctx, nil)
}

// ParkInput asks for a member scaled in to be returned to the warm pool.
type ParkInput struct {
	Group string             `json:"group"`
	VM    string             `json:"vm"`
	Host  activities.HostRef `json:"host"`
	Warm  WarmSpec           `json:"warm"`
	// Kubernetes and ProviderID are set for a VM that joined the cluster:
	// its node is drained first and stays cordoned while warm.
	Kubernetes *KubernetesSpec `json:"kubernetes,omitempty"`
	ProviderID string          `json:"providerId,omitempty"`
}

// ParkVM returns a scaled-in member to the warm pool: for a node, cordon
// and drain it as a decommissioning would (an aborted drain fails with
// ErrTypeDrainAborted and the member serves on); then park the domain. It
// removes nothing: on failure the group decommissions the VM.
//
//	[drain] -> park -> done
func ParkVM(ctx workflow.Context, in ParkInput) error {
	if err := startedByGroup(ctx, in.Group); err != nil {
		return err
	}
	step := "drain"
	if err := workflow.SetQueryHandler(ctx, QueryStep, func() (string, error) { return step, nil }); err != nil {
		return err
	}
	if in.Kubernetes != nil && in.ProviderID != "" {
		if err := drainNode(ctx, DecommissionInput{Group: in.Group, VM: in.VM, Host: in.Host, Kubernetes: in.Kubernetes, ProviderID: in.ProviderID}); err != nil {
			return err
		}
	}
	step = "park"
	return parkDomain(ctx, activities.DomainRef{Host: in.Host, Group: in.Group, VM: in.VM}, in.Warm)
}

// reusable reports whether a scale-in may return m to the warm pool
// instead of deleting it: reuseOnScaleIn is on, the pool has room, and m
// is of the current template revision on a host that answers.
func (g *group) reusable(ctx workflow.Context, m *Member) bool {
	w := g.spec.WarmPool
	if w == nil || !w.ReuseOnScaleIn || m.Revision == "" || m.Revision != g.revision() || g.hostDown(m.Host) {
		return false
	}
	return g.count(MemberWarm, MemberWarming) < g.warmTarget(ctx)
}

// park starts the ParkVM child of a member scaled in; it is warming (not
// counted) until parked.
func (g *group) park(ctx workflow.Context, m *Member) {
	host, _ := g.host(m.Host)
	name, spec := m.Name, g.warmSpec()
	m.State, m.WarmState, m.UpdatedAt = MemberWarming, spec.State, workflow.Now(ctx)
	g.event(ctx, "scaling in: returning %s on %s to the warm pool (%s)", name, m.Host, spec.State)
	in := ParkInput{Group: g.spec.Name, VM: name, Host: host, Warm: *spec}
	if m.ProviderID != "" {
		in.Kubernetes, in.ProviderID = g.spec.Kubernetes, m.ProviderID
	}
	cctx := workflow.WithChildOptions(ctx, workflow.ChildWorkflowOptions{
		WorkflowID:            ParkWorkflowID(g.spec.Name, name),
		ParentClosePolicy:     enumspb.PARENT_CLOSE_POLICY_ABANDON,
		WorkflowIDReusePolicy: enumspb.WORKFLOW_ID_REUSE_POLICY_ALLOW_DUPLICATE,
	})
	f := workflow.ExecuteChildWorkflow(cctx, ParkVM, in)
	g.whenDone(ctx, f, name, func(ctx workflow.Context, m *Member, err error) {
		m.UpdatedAt = workflow.Now(ctx)
		switch {
		case isAppError(err, ErrTypeDrainAborted):
			m.State, m.WarmState, m.Error = MemberRunning, "", rootCause(err)
			g.fail(ctx, fmt.Sprintf("returning %s to the warm pool aborted: %s; it serves on", name, m.Error))
		case err != nil:
			g.fail(ctx, fmt.Sprintf("returning %s to the warm pool failed: %s; removing it", name, rootCause(err)))
			g.decommission(ctx, m)
		default:
			m.State, m.WarmSince, m.ActivatedAt = MemberWarm, m.UpdatedAt, time.Time{}
			g.event(ctx, "%s is warm (%s) on %s again", name, spec.State, m.Host)
		}
	})
}

// ActivateInput asks for a warm VM to enter its group.
type ActivateInput struct {
	Group string             `json:"group"`
	VM    string             `json:"vm"`
	Host  activities.HostRef `json:"host"`
	// BootTimeout bounds the wait for the domain to run; zero means
	// DefaultBootTimeout.
	BootTimeout time.Duration `json:"bootTimeout,omitempty"`
	// Kubernetes and ProviderID are set for a VM that joins the cluster:
	// its node must be Ready again, then it is uncordoned.
	Kubernetes *KubernetesSpec `json:"kubernetes,omitempty"`
	ProviderID string          `json:"providerId,omitempty"`
}

// ActivateOutput says how the VM came back.
type ActivateOutput struct {
	// From is the state it was found in ("shut-off", "paused", ...);
	// Action what woke it ("started" restores a managed save, "resumed").
	From   string `json:"from"`
	Action string `json:"action,omitempty"`
}

// ActivateVM brings a warm VM into its group: wake it (a hibernated one is
// restored from its managed save, a paused one resumed, a stopped one
// started), wait until it runs, and for a node wait until it is Ready and
// uncordon it. Every step is idempotent. It never removes anything: on
// failure the group decommissions the VM and provisions another.
//
//	wake -> wait running -> [node Ready -> uncordon] -> done
func ActivateVM(ctx workflow.Context, in ActivateInput) (out ActivateOutput, err error) {
	// Before anything else, the metrics included: a forged group name
	// makes no series.
	if err := startedByGroup(ctx, in.Group); err != nil {
		return ActivateOutput{}, err
	}
	start, step := workflow.Now(ctx), "wake"
	defer func() { finished(ctx, MetricActivateDuration, MetricActivateFailures, in.Group, step, start, err) }()
	if err := workflow.SetQueryHandler(ctx, QueryStep, func() (string, error) { return step, nil }); err != nil {
		return out, err
	}
	var a *activities.Libvirt
	ref := activities.DomainRef{Host: in.Host, Group: in.Group, VM: in.VM}
	quick := workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout:    quickActivityTimeout,
		ScheduleToCloseTimeout: provisionStepDeadline,
		HeartbeatTimeout:       heartbeatTimeout,
		RetryPolicy:            retry,
	})
	// A warm VM that does not wake within a few attempts (a save image
	// that does not restore) is cheaper to replace than to wait for.
	wake := workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: quickActivityTimeout,
		HeartbeatTimeout:    heartbeatTimeout,
		RetryPolicy:         &temporal.RetryPolicy{InitialInterval: time.Second, BackoffCoefficient: 2, MaximumAttempts: 3},
	})
	var rec activities.RecoverDomainOutput
	if err := workflow.ExecuteActivity(wake, a.RecoverDomain, ref).Get(ctx, &rec); err != nil {
		return out, fmt.Errorf("activate %s: wake: %w", in.VM, err)
	}
	out = ActivateOutput{From: rec.State, Action: rec.Action}
	bootTimeout := in.BootTimeout
	if bootTimeout <= 0 {
		bootTimeout = DefaultBootTimeout
	}
	boot := workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout:    bootTimeout,
		ScheduleToCloseTimeout: bootTimeout + time.Minute,
		HeartbeatTimeout:       heartbeatTimeout,
		RetryPolicy:            retry,
	})
	step = "boot"
	if err := workflow.ExecuteActivity(boot, a.WaitRunning, ref).Get(ctx, nil); err != nil {
		return out, fmt.Errorf("activate %s: %w", in.VM, err)
	}
	if in.Kubernetes != nil && in.ProviderID != "" {
		var k *activities.Kubernetes
		step = "node-ready"
		if err := waitReady(ctx, quick, in.VM, in.ProviderID, in.Kubernetes.ReadyTimeout); err != nil {
			return out, fmt.Errorf("activate %s: %w", in.VM, err)
		}
		step = "uncordon"
		if err := workflow.ExecuteActivity(quick, k.UncordonNode, activities.NodeRef{ProviderID: in.ProviderID}).Get(ctx, nil); err != nil {
			return out, fmt.Errorf("activate %s: uncordon: %w", in.VM, err)
		}
	}
	return out, nil
}

// warmTarget is how many VMs the group's pool should hold now: none for a
// group being removed.
func (g *group) warmTarget(ctx workflow.Context) int {
	if g.spec.WarmPool == nil || g.st.Removed {
		return 0
	}
	_, hi := g.bounds(ctx)
	return g.spec.WarmPool.Target(g.st.Desired, hi)
}

// warmSpec is the ProvisionVM input for a warm VM of this group.
func (g *group) warmSpec() *WarmSpec {
	w := g.spec.WarmPool
	return &WarmSpec{State: w.State, ConsoleLine: w.Ready.ConsoleLine, ReadyTimeout: w.Ready.Timeout, GracePeriod: g.template().ShutdownGrace()}
}

// takeWarm activates up to n warm members, oldest first, on hosts the
// last observation reached, of the group's current revision. It returns
// how many it took.
func (g *group) takeWarm(ctx workflow.Context, n int) int {
	var pick []*Member
	for i := range g.st.Members {
		m := &g.st.Members[i]
		if m.State == MemberWarm && !g.hostDown(m.Host) && m.Revision == g.revision() {
			pick = append(pick, m)
		}
	}
	slices.SortStableFunc(pick, func(a, b *Member) int { return a.WarmSince.Compare(b.WarmSince) })
	names := []string{}
	for _, m := range pick[:min(n, len(pick))] {
		names = append(names, m.Name)
	}
	for _, name := range names {
		g.activate(ctx, g.member(name))
	}
	return len(names)
}

// activate starts the ActivateVM child of a warm member, which then counts
// as provisioning: on success it runs in the group; on failure it is
// decommissioned (reconcile provisions another).
func (g *group) activate(ctx workflow.Context, m *Member) {
	host, _ := g.host(m.Host)
	name, was := m.Name, m.WarmState
	now := workflow.Now(ctx)
	m.State, m.UpdatedAt, m.ActivatedAt = MemberProvisioning, now, now
	g.event(ctx, "scaling out: activating warm %s (%s) on %s", name, was, m.Host)
	in := ActivateInput{Group: g.spec.Name, VM: name, Host: host}
	if m.ProviderID != "" {
		in.Kubernetes, in.ProviderID = g.spec.Kubernetes, m.ProviderID
	}
	cctx := workflow.WithChildOptions(ctx, workflow.ChildWorkflowOptions{
		WorkflowID:            ActivateWorkflowID(g.spec.Name, name),
		ParentClosePolicy:     enumspb.PARENT_CLOSE_POLICY_REQUEST_CANCEL,
		WorkflowIDReusePolicy: enumspb.WORKFLOW_ID_REUSE_POLICY_ALLOW_DUPLICATE,
	})
	f := workflow.ExecuteChildWorkflow(cctx, ActivateVM, in)
	g.whenDone(ctx, f, name, func(ctx workflow.Context, m *Member, err error) {
		m.UpdatedAt = workflow.Now(ctx)
		if err != nil {
			g.fail(ctx, fmt.Sprintf("activating warm %s on %s failed: %s; replacing it", name, m.Host, rootCause(err)))
			g.decommission(ctx, m)
			return
		}
		m.State, m.WarmState = MemberRunning, ""
		g.event(ctx, "%s is running on %s (from the warm pool, %s after the decision)", name, m.Host, m.UpdatedAt.Sub(m.ActivatedAt))
	})
}

// reconcileWarm keeps the warm pool at its size once the group itself is
// whole (every member running, none being provisioned or activated): it
// refills the pool (within the provisioning cap, placed like any
// new VM), and decommissions warm members past the size or of an older
// revision.
func (g *group) reconcileWarm(ctx workflow.Context) {
	if g.spec.WarmPool == nil && g.count(MemberWarm, MemberWarming) == 0 {
		return
	}
	target := g.warmTarget(ctx)
	var current, stale []*Member
	for i := range g.st.Members {
		m := &g.st.Members[i]
		switch {
		case m.State == MemberWarm && m.Revision != g.revision():
			stale = append(stale, m)
		case m.State == MemberWarm || m.State == MemberWarming:
			current = append(current, m)
		}
	}
	names := func(ms []*Member) []string {
		out := make([]string, len(ms))
		for i, m := range ms {
			out[i] = m.Name
		}
		return out
	}
	for _, name := range names(stale) {
		m := g.member(name)
		g.event(ctx, "warm %s was made from an older template revision; replacing it", name)
		g.decommission(ctx, m)
	}
	if excess := len(current) - target; excess > 0 {
		// Parked ones first, oldest first; one still warming is trimmed
		// once it is parked.
		var parked []*Member
		for _, m := range current {
			if m.State == MemberWarm {
				parked = append(parked, m)
			}
		}
		slices.SortStableFunc(parked, func(a, b *Member) int { return a.WarmSince.Compare(b.WarmSince) })
		for _, name := range names(parked[:min(excess, len(parked))]) {
			g.event(ctx, "warm pool holds more than %d: removing warm %s", target, name)
			g.decommission(ctx, g.member(name))
		}
		return
	}
	missing := target - len(current)
	if missing <= 0 || g.st.Paused || workflow.Now(ctx).Before(g.st.BackoffUntil) {
		return
	}
	if g.count(MemberRunning) < g.st.Desired || g.count(MemberProvisioning) > 0 {
		// The group itself first: a refill boots new guests, which on a
		// busy host slows the restores and boots the group is waiting for.
		return
	}
	n := min(missing, MaxProvisioning-g.count(MemberProvisioning, MemberWarming))
	if n <= 0 {
		return
	}
	hosts, seqs, err := g.placeMany(ctx, n)
	for i, h := range hosts {
		g.provisionWarm(ctx, h, seqs[i])
	}
	if err != nil {
		g.backoff(ctx, fmt.Sprintf("cannot place %d of %d warm VMs: %s", n-len(hosts), n, err))
	}
}

// provisionWarm starts provisioning one VM for the warm pool.
func (g *group) provisionWarm(ctx workflow.Context, hostName string, seq int) {
	g.startProvision(ctx, hostName, seq, g.warmSpec())
}

// warmCapacity charges a host's capacity with the group's warm members
// that its inventory does not show: the memory a hibernated VM's save
// image holds on disk (charged to the pool: both usually live on the
// host's one filesystem), and a warming VM not yet defined as in flight.
// A paused VM's memory is allocated on its host, so the inventory has it.
func (g *group) warmCapacity(hc *policy.HostCapacity, shape policy.VMShape, defined map[string]bool) {
	for _, m := range g.st.Members {
		if m.Host != hc.Name {
			continue
		}
		switch {
		case m.State == MemberWarming && !defined[m.Name]:
			hc.InFlightVCPUs += shape.VCPUs
			hc.InFlightMemoryBytes += shape.MemoryBytes
			hc.InFlightDiskBytes += shape.DiskBytes
		case m.State == MemberWarm && m.WarmState == config.WarmHibernated:
			hc.InFlightDiskBytes += shape.MemoryBytes
		}
	}
}

// observeWarm judges a warm member by what its host lists: gone, running,
// or in another state than it was parked in, it is decommissioned, and the
// pool refilled.
func (g *group) observeWarm(ctx workflow.Context, m *Member, d activities.DomainInfo, listed bool) {
	want := "shut-off"
	if m.WarmState == config.WarmPaused {
		want = "paused"
	}
	switch {
	case !listed:
		g.event(ctx, "warm %s vanished from host %s; replacing it", m.Name, m.Host)
		g.decommission(ctx, m)
	case d.State != want:
		g.event(ctx, "warm %s is %s on host %s, not %s as parked; replacing it", m.Name, d.State, m.Host, want)
		g.decommission(ctx, m)
	}
}

// warmState is how the group's warm VMs wait ("" without a pool).
func (g *group) warmState() string {
	if g.spec.WarmPool == nil {
		return ""
	}
	return g.spec.WarmPool.State
}
