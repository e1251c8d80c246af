// What a group workflow carries from run to run (GroupInput, GroupSpec,
// GroupState with its Members and Events), and what its status Query
// returns (GroupStatus). GroupInput and GroupState are decoded from every
// recorded history and continue-as-new input: renaming a field changes
// what running groups read (TestRecordedPayloadsDecode fails). The
// configuration sections a GroupSpec carries have history types of their
// own, in spec_types.go.

package workflows

import (
	"time"

	"github.com/premiscale/premiscale/activities"
	"github.com/premiscale/premiscale/workflows/policy"
)

// DefaultHistoryLimit is the history length at which a group whose spec
// names none (specs from before HistoryLimit) continues as new, and the
// most a spec may name. Neither is reached in practice: groups get
// 3,000-4,000 (HistoryLimit), and Temporal suggests continue-as-new at
// 4,096 events, which historyTooLong takes as well.
const DefaultHistoryLimit = 5000

// MinHistoryLimit is the least history limit a spec may set: below it a
// group would continue as new nearly every pass.
const MinHistoryLimit = 50

// maxEvents is how many recent events a group keeps for status.
const maxEvents = 20

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
	Template           Template             `json:"template"`
	EvaluationInterval time.Duration        `json:"evaluationInterval"`
	// Scaling holds the checks and their limits; its EvaluationInterval is
	// the one above.
	Scaling Scaling `json:"scaling"`
	// Placement chooses each new VM's host.
	Placement Placement `json:"placement"`
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
	WarmPool *WarmPool `json:"warmPool,omitempty"`
	// Refresh holds the group's refresh settings when they are not the
	// defaults (manual, 90%, no batch cap); see refresh.go.
	Refresh *RefreshSettings `json:"refresh,omitempty"`
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
