// Package workflows holds PremiScale's Temporal workflows: one long-running
// GroupWorkflow per autoscaling group, and the ProvisionVM and DecommissionVM
// child workflows it starts. Workflow code is deterministic: decisions come
// from package policy, side effects from activities.
package workflows

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/premiscale/premiscale/activities"
	"github.com/premiscale/premiscale/config"
	"github.com/premiscale/premiscale/workflows/policy"
)

// Names of the group workflow's interface, for the SDK and the temporal CLI.
const (
	GroupWorkflowName = "GroupWorkflow"
	// UpdateSetDesired sets the desired size: {"desired": N}. Its validator
	// rejects N outside [min, max].
	UpdateSetDesired = "set-desired"
	// SignalScale asks for a desired size: {"desired": N}, clamped to [min, max].
	SignalScale = "scale"
	// SignalPause stops scaling and reconciliation until SignalResume.
	SignalPause = "pause"
	// SignalResume undoes SignalPause.
	SignalResume = "resume"
	// UpdatePause and UpdateResume are SignalPause and SignalResume as
	// Updates, confirmed to the caller (PauseResult); the CLI uses these.
	// Signals too are applied in arrival order (see SignalOrder).
	UpdatePause  = "pause"
	UpdateResume = "resume"
	// SignalSpec delivers the group's configuration (GroupSpec) on controller start.
	SignalSpec = "spec"
	// SignalHostChange (activities.HostChange) tells the group that one of
	// its domains changed on a host: the workers' host watchers send it.
	// For a running member, or after a reconnection, the group observes
	// its hosts at once instead of at its next evaluation; a change of a
	// member it is provisioning or removing is its own doing and ignored.
	// Any number of them coalesce into one observation.
	SignalHostChange = "host-change"
	// QueryStatus returns GroupStatus.
	QueryStatus = "status"
)

// Change IDs for workflow.GetVersion: each names a change of decisions that
// running workflows recorded under the old code must keep replaying.
const (
	// changeScaleInCountsProvisioning: scale-in ranks VMs still being
	// provisioned as the newest (before: running members only).
	changeScaleInCountsProvisioning = "scale-in-counts-provisioning"
	// changePlacementByInventory: scale-out takes each host's inventory and
	// places by capacity (before: fewest members, no inventory).
	changePlacementByInventory = "placement-by-inventory"
	// changeObserveSnapshot: an observation no longer judges members that
	// changed state after its listings were requested (before: a member
	// that became running meanwhile could be taken for vanished).
	changeObserveSnapshot = "observe-snapshot"
	// changeScaleInCancelsProvisioning: a scale-in victim still being
	// provisioned has its provisioning cancelled (before: the group waited
	// for it to come up, then decommissioned it).
	changeScaleInCancelsProvisioning = "scale-in-cancels-provisioning"
	// changeScaleInRechecksAfterPodCount: leastPods scale-in chooses its
	// victims from the members as they are once the pods are counted
	// (before: as they were before, and a member removed meanwhile made
	// the workflow panic on every replay).
	changeScaleInRechecksAfterPodCount = "scale-in-rechecks-after-pod-count"
	// changeUnhealthyGrace: a member whose domain is defined but not running
	// is recovered (resumed, woken, started) and replaced only if it stays
	// so for the unhealthy grace period (before: replaced at first sight).
	changeUnhealthyGrace = "unhealthy-grace"
	// changeMembersOffConfig: a member on a host removed from the group's
	// hosts is decommissioned (still configured) or marked lost (no longer
	// configured) and replaced (before: counted as running forever, and
	// forgotten if it had to be decommissioned).
	changeMembersOffConfig = "members-off-config"
	// changeDrainAbortPerNode: a scale-in whose drain aborted keeps that
	// member out of scale-in for a backoff that grows with each abort, so
	// the next scale-in chooses another (before: a group-wide backoff that
	// held only scale-out, and the same node was chosen again at once).
	changeDrainAbortPerNode = "drain-abort-per-node"
	// changePlacementSkipsDownHosts: scale-out does not ask hosts the last
	// observation found unreachable for their inventory (before: it did,
	// and waited for each to time out).
	changePlacementSkipsDownHosts = "placement-skips-down-hosts"
	// changeHoldChildrenBeforeContinueAsNew: once the history is long, no
	// new child is started (no observation, evaluation or reconciliation)
	// until the ones in flight are done and the group continues as new
	// (before: it went on starting children, so a group with constant
	// churn never got to continue as new and grew toward the hard limit).
	changeHoldChildrenBeforeContinueAsNew = "hold-children-before-continue-as-new"
	// changeSignalsInArrivalOrder: signals that arrive together are applied
	// in the order they arrived, as SignalOrder reports it (before: all
	// specs, then scales, then pauses, then resumes).
	changeSignalsInArrivalOrder = "signals-in-arrival-order"
	// changeStableDomainUUID: a new VM's domain UUID (and provider ID)
	// derives from the workflow's first run ID (before: from the current
	// run's, which a reset changes, so members replayed after a reset got
	// provider IDs their nodes do not have, and their drains were skipped).
	changeStableDomainUUID = "stable-domain-uuid"
	// changeCapStartsPerReconcile: a group has at most MaxProvisioning VMs
	// being provisioned at once, so one reconciliation starts no more
	// (before: every missing one at once).
	changeCapStartsPerReconcile = "cap-starts-per-reconcile"
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

// DefaultHistoryLimit is the history length at which a group continues as new.
const DefaultHistoryLimit = 5000

// MinHistoryLimit is the least history limit a spec may set: below it a
// group would continue as new nearly every pass.
const MinHistoryLimit = 50

// maxEvents is how many recent events a group keeps for status.
const maxEvents = 20

// ErrTypeInvalidSpec fails a group workflow started with a spec that does
// not pass GroupSpec.Validate.
const ErrTypeInvalidSpec = "InvalidSpec"

// GroupWorkflowID is the workflow ID of a group's workflow.
func GroupWorkflowID(group string) string { return "premiscale/group/" + group }

// IsGroupWorkflowID reports whether id is GroupWorkflowID of some group
// name (one path segment): the workflows operators may signal and Update.
func IsGroupWorkflowID(id string) bool {
	name, ok := strings.CutPrefix(id, GroupWorkflowID(""))
	return ok && name != "" && !strings.Contains(name, "/")
}

// changeGroupChecksItsID: a group workflow refuses to run under an ID
// other than its group's GroupWorkflowID.
const changeGroupChecksItsID = "group-checks-its-id"

// GroupSpec is a group's configuration as the workflow uses it.
type GroupSpec struct {
	Name string `json:"name"`
	// Revision is config.Group.Revision of the configuration the spec was
	// made from; workers create VMs only for the revision they hold.
	Revision string `json:"revision"`
	Min      int    `json:"min"`
	Max      int    `json:"max"`
	// Desired is the configured size; it applies when the group is created
	// and whenever its value in the configuration changes.
	Desired            int                  `json:"desired"`
	Hosts              []activities.HostRef `json:"hosts"`
	Template           config.Template      `json:"template"`
	EvaluationInterval time.Duration        `json:"evaluationInterval"`
	// Scaling holds the checks and their limits; its EvaluationInterval is
	// the one above.
	Scaling config.Scaling `json:"scaling"`
	// Placement chooses each new VM's host.
	Placement config.Placement `json:"placement"`
	// HostFailureGracePeriod is how long a host may stay unreachable before
	// its members count as lost; zero means DefaultHostFailureGracePeriod.
	HostFailureGracePeriod time.Duration `json:"hostFailureGracePeriod,omitempty"`
	// UnhealthyGracePeriod is how long a member's domain may stay defined
	// but not running while the group tries to recover it; zero means
	// DefaultUnhealthyGracePeriod.
	UnhealthyGracePeriod time.Duration `json:"unhealthyGracePeriod,omitempty"`
	// CleanupTimeout bounds the retries of each step that removes a VM
	// (decommissioning, or a failed provisioning's cleanup) before the
	// member is reported failed; zero means 10m.
	CleanupTimeout time.Duration `json:"cleanupTimeout,omitempty"`
	// ResyncInterval, when set, is how often a quiet group (see quiet)
	// observes its hosts: host watchers signal it of changes meanwhile.
	// Zero: every evaluation interval, as a group without watchers must.
	ResyncInterval time.Duration `json:"resyncInterval,omitempty"`
	// HistoryLimit is the history length that triggers continue-as-new;
	// zero means DefaultHistoryLimit.
	HistoryLimit int `json:"historyLimit,omitempty"`
	// Kubernetes is set when the group's VMs join the cluster as nodes.
	Kubernetes *KubernetesSpec `json:"kubernetes,omitempty"`
	// RetiredHosts are the configured hosts that are not the group's: a
	// member left on one (its host was removed from groups[].hosts) is
	// decommissioned through it and replaced on the group's hosts.
	RetiredHosts []activities.HostRef `json:"retiredHosts,omitempty"`
	// Schedules names the group's configured schedules: only these may
	// open a window (UpdateScheduleWindow), and the windows of any other
	// close.
	Schedules []string `json:"schedules,omitempty"`
	// WarmPool, when set, keeps prepared VMs beside the group (warm.go).
	WarmPool *config.WarmPool `json:"warmPool,omitempty"`
	// Refresh holds the group's refresh settings when they are not the
	// defaults (manual, 90%, no batch cap); see refresh.go.
	Refresh *config.Refresh `json:"refresh,omitempty"`
}

// MemberState is where a member is in its life.
type MemberState string

// Member states.
const (
	MemberProvisioning    MemberState = "provisioning"
	MemberRunning         MemberState = "running"
	MemberDecommissioning MemberState = "decommissioning"
	// MemberFailed: its decommissioning failed; it is retried every evaluation.
	MemberFailed MemberState = "failed"
	// MemberLost: its host has been unreachable for longer than the grace
	// period; it no longer counts and is replaced elsewhere, and it is
	// decommissioned once its host answers again.
	MemberLost MemberState = "lost"
	// MemberWarming: being provisioned for the warm pool; not counted.
	MemberWarming MemberState = "warming"
	// MemberWarm: parked in the warm pool (WarmState); not counted. A
	// scale-out activates it (it is then provisioning).
	MemberWarm MemberState = "warm"
)

// Member is one VM of a group.
type Member struct {
	Name      string      `json:"name"`
	Seq       int         `json:"seq"`
	Host      string      `json:"host"`
	Volume    string      `json:"volume"`
	State     MemberState `json:"state"`
	CreatedAt time.Time   `json:"createdAt"`
	UpdatedAt time.Time   `json:"updatedAt"`
	Error     string      `json:"error,omitempty"`
	// ProviderID is the node's provider ID, for a VM that joins Kubernetes.
	ProviderID string `json:"providerId,omitempty"`
	// Condemned: the cluster-autoscaler asked for this node to be deleted;
	// it goes before any other at scale-in.
	Condemned bool `json:"condemned,omitempty"`
	// Protected members are never chosen by a scale-in (premiscale protect).
	Protected bool `json:"protected,omitempty"`
	// UnhealthySince is when the member's domain was first seen defined but
	// not running (zero while it runs); past the unhealthy grace period the
	// member is replaced.
	UnhealthySince time.Time `json:"unhealthySince,omitzero"`
	// DomainState is the state of such a domain as last seen.
	DomainState string `json:"domainState,omitempty"`
	// DrainAborts counts the scale-ins of this member whose drain aborted;
	// until DrainBackoffUntil no scale-in chooses it.
	DrainAborts       int       `json:"drainAborts,omitempty"`
	DrainBackoffUntil time.Time `json:"drainBackoffUntil,omitzero"`
	// Revision is the template revision the VM was made from (recorded
	// since warm pools; empty for older members).
	Revision string `json:"revision,omitempty"`
	// WarmState is how a warm member waits (config.WarmHibernated, ...),
	// WarmSince since when; ActivatedAt is when a scale-out took it.
	WarmState   string    `json:"warmState,omitempty"`
	WarmSince   time.Time `json:"warmSince,omitzero"`
	ActivatedAt time.Time `json:"activatedAt,omitzero"`
}

// Event is one line of a group's recent history, shown by status.
type Event struct {
	At      time.Time `json:"at"`
	Message string    `json:"message"`
}

// GroupState is what a group carries across continue-as-new.
type GroupState struct {
	Desired       int       `json:"desired"`
	ConfigDesired int       `json:"configDesired"`
	Paused        bool      `json:"paused"`
	NextSeq       int       `json:"nextSeq"`
	Members       []Member  `json:"members"`
	Failures      int       `json:"failures"`
	BackoffUntil  time.Time `json:"backoffUntil"`
	LastError     string    `json:"lastError,omitempty"`
	LastErrorAt   time.Time `json:"lastErrorAt"`
	Events        []Event   `json:"events"`
	// NoCapacity is why the last scale-out could not place every VM it
	// wanted ("" once one placed them all).
	NoCapacity string `json:"noCapacity,omitempty"`
	// LastScaleAt is when desired last changed (by metrics or by hand); the
	// cooldowns count from it.
	LastScaleAt time.Time `json:"lastScaleAt"`
	// Recommendations are the recent combined recommendations, for the
	// stabilization windows.
	Recommendations []policy.Sample `json:"recommendations,omitempty"`
	// Checks are the last evaluation's results.
	Checks []policy.CheckResult `json:"checks,omitempty"`
	// Decision is the last evaluation's decision; Decisions the last
	// maxEvents distinct ones.
	Decision  *policy.Decision  `json:"decision,omitempty"`
	Decisions []policy.Decision `json:"decisions,omitempty"`
	// HostsDown maps an unreachable host to when it was first seen so.
	HostsDown map[string]time.Time `json:"hostsDown,omitempty"`
	// Removed: the group is no longer in the configuration (SignalRemove);
	// RemoveDeletesVMs: its members are being decommissioned.
	Removed          bool `json:"removed,omitempty"`
	RemoveDeletesVMs bool `json:"removeDeletesVMs,omitempty"`
	// Windows are the schedule windows not yet over; Governing names the
	// one that governs (see policy.Governing) as last applied.
	Windows   []policy.Window `json:"windows,omitempty"`
	Governing string          `json:"governing,omitempty"`
	// Refresh is the running or last rolling refresh, RefreshSeq the
	// number of the last one (refresh.go).
	Refresh    *Refresh `json:"refresh,omitempty"`
	RefreshSeq int      `json:"refreshSeq,omitempty"`
	// Previous is the template revision in force before the last change
	// (what a rollback returns to); Pinned, set by a rollback, the one new
	// members are made from instead of the configuration's until the
	// configuration's revision changes.
	Previous *TemplateRevision `json:"previous,omitempty"`
	Pinned   *TemplateRevision `json:"pinned,omitempty"`
}

// GroupInput starts (or continues) a group workflow.
type GroupInput struct {
	Spec GroupSpec `json:"spec"`
	// State is nil for a new group and carried over on continue-as-new.
	State *GroupState `json:"state,omitempty"`
}

// PauseResult is what UpdatePause and UpdateResume return.
type PauseResult struct {
	Paused bool `json:"paused"`
	// Changed is false when the group already was so.
	Changed bool `json:"changed"`
}

// DesiredRequest is the payload of UpdateSetDesired and SignalScale.
type DesiredRequest struct {
	Desired int `json:"desired"`
}

// DesiredResult is what UpdateSetDesired returns.
type DesiredResult struct {
	Previous int `json:"previous"`
	Desired  int `json:"desired"`
}

// GroupStatus is the answer to QueryStatus.
type GroupStatus struct {
	Group            string    `json:"group"`
	Min              int       `json:"min"`
	Max              int       `json:"max"`
	Desired          int       `json:"desired"`
	Paused           bool      `json:"paused"`
	Running          int       `json:"running"`
	Provisioning     int       `json:"provisioning"`
	Decommissioning  int       `json:"decommissioning"`
	Failed           int       `json:"failed"`
	Lost             int       `json:"lost"`
	Members          []Member  `json:"members"`
	UnreachableHosts []string  `json:"unreachableHosts"`
	Strays           []string  `json:"strays"`
	LastError        string    `json:"lastError,omitempty"`
	NoCapacity       string    `json:"noCapacity,omitempty"`
	LastErrorAt      time.Time `json:"lastErrorAt"`
	BackoffUntil     time.Time `json:"backoffUntil"`
	LastObservedAt   time.Time `json:"lastObservedAt"`
	// NextPassAt is when the group's loop runs next unless a signal, an
	// Update or a host's change wakes it first: an evaluation interval
	// away, or a resync interval for a quiet group.
	NextPassAt    time.Time `json:"nextPassAt"`
	Events        []Event   `json:"events"`
	HistoryLength int       `json:"historyLength"`
	// Mode and DryRun are the group's scaling mode and dry-run flag.
	Mode   string `json:"mode"`
	DryRun bool   `json:"dryRun"`
	// Checks, Decision and Decisions show the metric evaluation.
	Checks      []policy.CheckResult `json:"checks"`
	Decision    *policy.Decision     `json:"decision,omitempty"`
	Decisions   []policy.Decision    `json:"decisions"`
	LastScaleAt time.Time            `json:"lastScaleAt"`
	// Removed: the group is no longer configured (see SignalRemove), and
	// RemoveDeletesVMs whether its VMs are being deleted or kept.
	Removed          bool `json:"removed,omitempty"`
	RemoveDeletesVMs bool `json:"removeDeletesVMs,omitempty"`
	// Epoch names this history of the group (its first run ID); the
	// domains it creates carry it in their mark.
	Epoch string `json:"epoch,omitempty"`
	// Min and Max above are the bounds in force: a schedule window's
	// (Schedule, the one that governs) or the configuration's
	// (ConfigMin, ConfigMax). Windows are the schedule windows not over.
	ConfigMin int             `json:"configMin"`
	ConfigMax int             `json:"configMax"`
	Schedule  *policy.Window  `json:"schedule,omitempty"`
	Windows   []policy.Window `json:"windows,omitempty"`
	// Warm and Warming count the warm pool's members (parked, and being
	// prepared); WarmTarget is the pool's size now and WarmState how its
	// VMs wait. The members themselves are in Members.
	Warm       int    `json:"warm,omitempty"`
	Warming    int    `json:"warming,omitempty"`
	WarmTarget int    `json:"warmTarget,omitempty"`
	WarmState  string `json:"warmState,omitempty"`
	// Revision is the template revision new members are made from;
	// ConfigRevision the configuration's (they differ after a rollback).
	// Outdated counts running members of another revision. Refresh is the
	// running or last rolling refresh.
	Revision       string   `json:"revision,omitempty"`
	ConfigRevision string   `json:"configRevision,omitempty"`
	Outdated       int      `json:"outdated,omitempty"`
	Refresh        *Refresh `json:"refresh,omitempty"`
}

// Settled reports whether the group holds exactly its desired size with
// nothing in flight.
func (s GroupStatus) Settled() bool {
	return s.Running == s.Desired && s.Provisioning == 0 && s.Decommissioning == 0 && s.Failed == 0
}

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
		case SignalRemove:
			var req RemoveRequest
			if removeCh.ReceiveAsync(&req) {
				g.remove(ctx, req)
			}
		}
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

func (g *group) registerHandlers(ctx workflow.Context) error {
	if err := workflow.SetQueryHandler(ctx, QueryStatus, func() (GroupStatus, error) {
		return g.status(ctx), nil
	}); err != nil {
		return err
	}
	if err := g.registerClusterAutoscalerUpdates(ctx); err != nil {
		return err
	}
	if err := g.registerScheduleUpdate(ctx); err != nil {
		return err
	}
	if err := g.registerRefreshUpdates(ctx); err != nil {
		return err
	}
	for _, u := range []struct {
		name  string
		pause bool
	}{{UpdatePause, true}, {UpdateResume, false}} {
		if err := workflow.SetUpdateHandler(ctx, u.name, func(ctx workflow.Context) (PauseResult, error) {
			changed := g.setPaused(ctx, u.pause)
			g.dirty = g.dirty || changed // wake the loop (signals wake it by being pending)
			return PauseResult{Paused: u.pause, Changed: changed}, nil
		}); err != nil {
			return err
		}
	}
	return workflow.SetUpdateHandlerWithOptions(ctx, UpdateSetDesired,
		func(ctx workflow.Context, req DesiredRequest) (DesiredResult, error) {
			prev := g.st.Desired
			if prev != req.Desired {
				g.st.Desired = req.Desired
				g.event(ctx, "desired %d -> %d (set-desired)", prev, req.Desired)
			}
			g.st.LastScaleAt = workflow.Now(ctx)
			g.dirty = true
			return DesiredResult{Previous: prev, Desired: req.Desired}, nil
		},
		workflow.UpdateHandlerOptions{Validator: func(ctx workflow.Context, req DesiredRequest) error {
			return g.checkDesired(ctx, req.Desired)
		}},
	)
}

// setPaused pauses or resumes the group and reports whether that changed it.
// hostChanged asks for an observation if the change may be one the group
// did not make: a running (or failed) member's domain, or a resync after a
// watcher's reconnection. A domain that is not a member (an orphan, or
// one already gone from the members) and a member in flight (its child
// sees to it) need none.
func (g *group) hostChanged(c activities.HostChange) {
	if c.Event == activities.EventResync || c.Event == activities.EventDisconnected {
		g.observeNow = true
		return
	}
	if m := g.member(c.Domain); m != nil && m.State != MemberProvisioning && m.State != MemberDecommissioning && m.State != MemberWarming {
		g.observeNow = true
	}
}

func (g *group) setPaused(ctx workflow.Context, paused bool) bool {
	if g.st.Paused == paused {
		return false
	}
	g.st.Paused = paused
	if paused {
		g.event(ctx, "paused")
	} else {
		g.event(ctx, "resumed")
	}
	return true
}

// checkDesired explains why n is not a valid desired size, naming the
// bound (a schedule window's while one governs).
func (g *group) checkDesired(ctx workflow.Context, n int) error {
	lo, hi := g.bounds(ctx)
	by := ""
	if w := g.governing(ctx); w != nil {
		by = fmt.Sprintf(", set by schedule %s until %s", w.Schedule, w.Until.UTC().Format(time.RFC3339))
	}
	if n < lo {
		return temporal.NewNonRetryableApplicationError(fmt.Sprintf("desired %d is below min (%d%s) of group %s", n, lo, by, g.spec.Name), "OutOfRange", nil)
	}
	if n > hi {
		return temporal.NewNonRetryableApplicationError(fmt.Sprintf("desired %d is above max (%d%s) of group %s", n, hi, by, g.spec.Name), "OutOfRange", nil)
	}
	return nil
}

func (g *group) scaleSignal(ctx workflow.Context, n int) {
	lo, hi := g.bounds(ctx)
	clamped := policy.Clamp(n, lo, hi)
	if clamped != n {
		g.event(ctx, "scale signal asked for %d, clamped to %d (min %d, max %d)", n, clamped, lo, hi)
	}
	if clamped != g.st.Desired {
		g.event(ctx, "desired %d -> %d (scale signal)", g.st.Desired, clamped)
		g.st.Desired = clamped
	}
	g.st.LastScaleAt = workflow.Now(ctx)
}

func (g *group) applySpec(ctx workflow.Context, spec GroupSpec) {
	if spec.Name != g.spec.Name {
		g.logger.Warn("ignoring spec for another group", "group", g.spec.Name, "spec_group", spec.Name)
		return
	}
	if err := spec.Validate(); err != nil {
		g.event(ctx, "spec refused, keeping the current one: %s", strings.ReplaceAll(err.Error(), "\n", "; "))
		return
	}
	if workflow.GetVersion(ctx, changeGroupSpecFromWorker, workflow.DefaultVersion, 1) >= 1 {
		refused, err := checkSpec(ctx, spec)
		if err != nil {
			g.event(ctx, "spec not checked by a worker, keeping the current one: %s", rootCause(err))
			return
		}
		if len(refused) > 0 {
			g.event(ctx, "%s; keeping the current one", refusedSpec(refused))
			return
		}
	}
	before, oldRevision := g.current(), g.spec.Revision
	g.spec = spec
	if g.st.Removed {
		g.st.Removed, g.st.RemoveDeletesVMs = false, false
		g.event(ctx, "group is in the configuration again")
	}
	g.applySpecRevision(ctx, before, oldRevision)
	desired := g.st.Desired
	if spec.Desired != g.st.ConfigDesired {
		desired = spec.Desired
		g.st.ConfigDesired = spec.Desired
	}
	g.pruneUnconfiguredWindows(ctx)
	lo, hi := g.bounds(ctx)
	desired = policy.Clamp(desired, lo, hi)
	if desired != g.st.Desired {
		g.event(ctx, "desired %d -> %d (configuration)", g.st.Desired, desired)
		g.st.Desired = desired
		g.st.LastScaleAt = workflow.Now(ctx)
	}
}

func (g *group) event(ctx workflow.Context, format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	g.logger.Info(msg, "group", g.spec.Name)
	g.st.Events = append(g.st.Events, Event{At: workflow.Now(ctx), Message: msg})
	if len(g.st.Events) > maxEvents {
		g.st.Events = g.st.Events[len(g.st.Events)-maxEvents:]
	}
}

func (g *group) fail(ctx workflow.Context, msg string) {
	g.st.LastError = msg
	g.st.LastErrorAt = workflow.Now(ctx)
	g.event(ctx, "%s", msg)
}

func (g *group) host(name string) (activities.HostRef, bool) {
	for _, h := range g.spec.Hosts {
		if h.Name == name {
			return h, true
		}
	}
	return activities.HostRef{}, false
}

func (g *group) member(name string) *Member {
	for i := range g.st.Members {
		if g.st.Members[i].Name == name {
			return &g.st.Members[i]
		}
	}
	return nil
}

func (g *group) removeMember(name string) {
	g.st.Members = slices.DeleteFunc(g.st.Members, func(m Member) bool { return m.Name == name })
}

func (g *group) count(states ...MemberState) int {
	n := 0
	for _, m := range g.st.Members {
		if slices.Contains(states, m.State) {
			n++
		}
	}
	return n
}

// observe asks every host which of the group's domains exist and run, then
// hands members whose domain vanished or stopped behind our back to
// decommissioning (which clears what is left), so reconcile replaces them.
func (g *group) observe(ctx workflow.Context) {
	var a *activities.Libvirt
	actx := workflow.WithActivityOptions(ctx, hostQueryOptions)
	// The listings are a snapshot from about now: a member that changed
	// state after this (e.g. became running while a slow host held the
	// observation up) is not judged by it.
	snapshot := workflow.Now(ctx)
	judgeOnlyOlder := workflow.GetVersion(ctx, changeObserveSnapshot, workflow.DefaultVersion, 1) >= 1
	futures := make([]workflow.Future, len(g.spec.Hosts))
	for i, h := range g.spec.Hosts {
		futures[i] = workflow.ExecuteActivity(actx, a.ListDomains, activities.ListDomainsInput{Host: h, Group: g.spec.Name})
	}
	seen := map[string]activities.DomainInfo{}
	reachable := map[string]bool{}
	var strays []string
	for i, f := range futures {
		var out activities.ListDomainsOutput
		if err := f.Get(ctx, &out); err != nil {
			g.logger.Warn("host unreachable", "group", g.spec.Name, "host", g.spec.Hosts[i].Name, "error", err)
			continue
		}
		reachable[g.spec.Hosts[i].Name] = true
		for _, d := range out.Domains {
			seen[d.Name] = d
			if g.member(d.Name) == nil {
				strays = append(strays, d.Name)
			}
		}
	}
	g.lastObservedAt = workflow.Now(ctx)
	g.trackHostFailures(ctx, reachable)
	slices.Sort(strays)
	g.strays = strays

	if g.keepsRemoved() {
		g.forgetVanished(ctx, seen, reachable)
		return
	}
	var recovering []string
	offConfig := !g.st.Paused && workflow.GetVersion(ctx, changeMembersOffConfig, workflow.DefaultVersion, 1) >= 1
	for i := range g.st.Members {
		m := &g.st.Members[i]
		if _, ours := g.host(m.Host); offConfig && !ours {
			g.offConfig(ctx, m)
			continue
		}
		if g.st.Paused || !reachable[m.Host] {
			continue
		}
		if judgeOnlyOlder && m.UpdatedAt.After(snapshot) {
			continue
		}
		switch m.State {
		case MemberLost:
			g.event(ctx, "host %s answers again; decommissioning lost member %s", m.Host, m.Name)
			g.decommission(ctx, m)
		case MemberRunning:
			d, ok := seen[m.Name]
			switch {
			case !ok:
				g.event(ctx, "member %s vanished from host %s; replacing it", m.Name, m.Host)
				g.decommission(ctx, m)
			case healthy(d):
				if !m.UnhealthySince.IsZero() {
					g.event(ctx, "member %s is running again on host %s", m.Name, m.Host)
					m.UnhealthySince, m.DomainState = time.Time{}, ""
				}
			case workflow.GetVersion(ctx, changeUnhealthyGrace, workflow.DefaultVersion, 1) >= 1:
				if _, configured := g.host(m.Host); configured && g.unhealthy(ctx, m, d.State) {
					recovering = append(recovering, m.Name)
				}
			default:
				g.event(ctx, "member %s is %s on host %s; replacing it", m.Name, d.State, m.Host)
				g.decommission(ctx, m)
			}
		case MemberFailed:
			g.event(ctx, "retrying decommissioning of %s", m.Name)
			g.decommission(ctx, m)
		case MemberWarm:
			d, ok := seen[m.Name]
			g.observeWarm(ctx, m, d, ok)
		}
	}
	if len(recovering) > 0 {
		g.recoverMembers(ctx, recovering)
	}
}

// offConfig handles a member whose host is no longer one of the group's:
// through a host still configured it is decommissioned (and so replaced);
// on a host no longer configured at all nothing can reach it, so it is
// marked lost (not counted, replaced, shown in status) and left untouched
// until the host is configured again.
func (g *group) offConfig(ctx workflow.Context, m *Member) {
	_, known := g.anyHost(m.Host)
	switch {
	case known && (m.State == MemberRunning || m.State == MemberLost || m.State == MemberFailed || m.State == MemberWarm):
		g.event(ctx, "host %s is no longer one of group %s's hosts; decommissioning %s", m.Host, g.spec.Name, m.Name)
		g.decommission(ctx, m)
	case !known && (m.State == MemberRunning || m.State == MemberWarm):
		m.State, m.UpdatedAt = MemberLost, workflow.Now(ctx)
		m.Error = fmt.Sprintf("host %s is no longer configured; the VM is left there untouched", m.Host)
		g.event(ctx, "member %s lost: %s; replacing it", m.Name, m.Error)
		g.dirty = true
	}
}

// anyHost finds a configured host by name: one of the group's, or a
// retired one.
func (g *group) anyHost(name string) (activities.HostRef, bool) {
	if h, ok := g.host(name); ok {
		return h, true
	}
	for _, h := range g.spec.RetiredHosts {
		if h.Name == name {
			return h, true
		}
	}
	return activities.HostRef{}, false
}

// DefaultUnhealthyGracePeriod is how long a member's domain may stay
// defined but not running before it is replaced.
const DefaultUnhealthyGracePeriod = 2 * time.Minute

// healthy reports whether a listed domain counts as a running member:
// running, or blocked (running, waiting on a resource).
func healthy(d activities.DomainInfo) bool { return d.Running || d.State == "blocked" }

// unhealthy handles a member whose domain is defined but not running
// (paused, suspended, shut off, crashed, shutting down). Within the grace
// period the group tries to bring it back, once per observation, through
// RecoverDomain: paused is resumed, suspended woken, shut off or crashed
// started; shutting down is waited out. Past the grace period, or if the
// domain is gone by then, the member is replaced like a vanished one.
//
//	running --seen not running--> unhealthy --recovered--> running
//	                                  |
//	                                  +--grace passed--> decommission + replace
func (g *group) unhealthy(ctx workflow.Context, m *Member, state string) (recover bool) {
	now := workflow.Now(ctx)
	grace := g.spec.UnhealthyGracePeriod
	if grace <= 0 {
		grace = DefaultUnhealthyGracePeriod
	}
	m.DomainState = state
	if m.UnhealthySince.IsZero() {
		m.UnhealthySince = now
		g.event(ctx, "member %s is %s on host %s; recovering it (replaced if not running within %s)", m.Name, state, m.Host, grace)
	} else if now.Sub(m.UnhealthySince) >= grace {
		g.event(ctx, "member %s still %s on host %s after %s; replacing it", m.Name, state, m.Host, grace)
		g.decommission(ctx, m)
		return false
	}
	return true
}

// recoverMembers runs RecoverDomain for the named members, in parallel,
// and records what each did. Members are looked up by name afterwards:
// children may have finished while the activities ran.
func (g *group) recoverMembers(ctx workflow.Context, names []string) {
	var a *activities.Libvirt
	actx := workflow.WithActivityOptions(ctx, quickTwiceOptions)
	futures := make([]workflow.Future, len(names))
	for i, name := range names {
		m := g.member(name)
		host, _ := g.host(m.Host)
		futures[i] = workflow.ExecuteActivity(actx, a.RecoverDomain, activities.DomainRef{Host: host, Group: g.spec.Name, VM: name})
	}
	for i, f := range futures {
		var out activities.RecoverDomainOutput
		err := f.Get(ctx, &out)
		m := g.member(names[i])
		switch {
		case m == nil || m.State != MemberRunning:
		case err != nil:
			g.logger.Warn("recovering a member failed", "group", g.spec.Name, "vm", m.Name, "host", m.Host, "error", err)
		case out.Action != "":
			g.event(ctx, "member %s was %s on host %s: %s", m.Name, out.State, m.Host, out.Action)
		}
	}
}

// hostDown reports whether the last observation could not reach the host.
func (g *group) hostDown(name string) bool {
	_, down := g.st.HostsDown[name]
	return down
}

// unreachableHosts lists the hosts the last observation could not reach, in
// configuration order.
func (g *group) unreachableHosts() []string {
	out := []string{}
	for _, h := range g.spec.Hosts {
		if g.hostDown(h.Name) {
			out = append(out, h.Name)
		}
	}
	return out
}

// DefaultHostFailureGracePeriod is how long a host may stay unreachable
// before its members are replaced elsewhere.
const DefaultHostFailureGracePeriod = 2 * time.Minute

// trackHostFailures records since when each host has been unreachable and,
// past the grace period, marks its running members lost so that reconcile
// replaces them on hosts that answer. A host that answers again is
// forgotten; observe then decommissions its lost members.
//
// This went in without GetVersion (commit 20f9bc8) and is deliberately not
// versioned after the fact: every run recorded since marks members lost
// with no marker, and a marker's DefaultVersion would now have to mean
// "never mark lost", which breaks those runs; runs recorded before it have
// continued as new long since (every 5,000 events). The replay tests hold
// a run that went through it (testdata/lost_host_*).
func (g *group) trackHostFailures(ctx workflow.Context, reachable map[string]bool) {
	now := workflow.Now(ctx)
	grace := g.spec.HostFailureGracePeriod
	if grace <= 0 {
		grace = DefaultHostFailureGracePeriod
	}
	for _, h := range g.spec.Hosts {
		if reachable[h.Name] {
			if _, was := g.st.HostsDown[h.Name]; was {
				g.event(ctx, "host %s answers again", h.Name)
				delete(g.st.HostsDown, h.Name)
			}
			continue
		}
		if g.st.HostsDown == nil {
			g.st.HostsDown = map[string]time.Time{}
		}
		since, was := g.st.HostsDown[h.Name]
		if !was {
			g.st.HostsDown[h.Name] = now
			g.event(ctx, "host %s unreachable; its members are replaced if it stays so for %s", h.Name, grace)
			continue
		}
		if now.Sub(since) < grace || g.st.Paused {
			continue
		}
		for i := range g.st.Members {
			m := &g.st.Members[i]
			if m.Host == h.Name && (m.State == MemberRunning || m.State == MemberWarm) {
				m.State, m.UpdatedAt = MemberLost, now
				g.event(ctx, "member %s lost: host %s unreachable since %s; replacing it", m.Name, h.Name, since.UTC().Format(time.TimeOnly))
				g.dirty = true
			}
		}
	}
}

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

// vmShape is what one VM of the template needs from a host.
func vmShape(t config.Template) policy.VMShape {
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
	rec, results, hold := policy.Combine(sc.Checks, results, g.count(MemberRunning), g.st.Desired, lo, hi)
	outLimits, oerr := policy.LimitsFrom(sc.ScaleOut, config.DefaultScaleOutCooldown, config.DefaultScaleOutWindow)
	inLimits, ierr := policy.LimitsFrom(sc.ScaleIn, config.DefaultScaleInCooldown, config.DefaultScaleInWindow)
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
