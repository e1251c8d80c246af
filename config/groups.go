package config

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Autoscale lists the hypervisors and the groups of VMs kept on them.
type Autoscale struct {
	Hosts   []Host  `koanf:"hosts" json:"hosts"`
	Groups  []Group `koanf:"groups" json:"groups"`
	Orphans Orphans `koanf:"orphans" json:"orphans"`
}

// Orphans says what happens to PremiScale-marked domains and volumes that no
// member of any configured group owns.
type Orphans struct {
	// Action is OrphansReport (default) or OrphansDelete.
	Action string `koanf:"action" json:"action"`
	// GracePeriod is how long a resource must stay an orphan, seen by every
	// scan, before it is deleted.
	GracePeriod time.Duration `koanf:"gracePeriod" json:"gracePeriod"`
	// ScanInterval is how often the hosts are scanned when Action is delete.
	ScanInterval time.Duration `koanf:"scanInterval" json:"scanInterval"`
	// DeleteUnconfiguredGroups lets Action delete also remove the VMs of
	// groups that are no longer configured (by default they are reported
	// and kept: a group removed by mistake, or renamed, keeps its VMs).
	DeleteUnconfiguredGroups bool `koanf:"deleteUnconfiguredGroups" json:"deleteUnconfiguredGroups,omitempty"`
}

// Host is one libvirt hypervisor.
type Host struct {
	Name string `koanf:"name" json:"name"`
	// URI is a libvirt connection URI, e.g. qemu+tcp://10.0.0.5/system.
	URI string `koanf:"uri" json:"uri"`
	// Pool is the libvirt storage pool that holds base and VM volumes.
	Pool string `koanf:"pool" json:"pool"`
	// Reserved is kept for the host itself and never given to VMs.
	Reserved Reserved `koanf:"reserved" json:"reserved"`
	// CPUOvercommit is how many vCPUs each schedulable CPU may carry; 1
	// (the default) means none.
	CPUOvercommit float64 `koanf:"cpuOvercommit" json:"cpuOvercommit"`
	// MemoryOvercommit is how much VM memory each byte of schedulable host
	// memory may carry; 1 (the default) means none.
	MemoryOvercommit float64 `koanf:"memoryOvercommit" json:"memoryOvercommit"`
	// MaxConcurrentCalls bounds the libvirt calls each worker makes to the
	// host at once (restores, boots, clones, listings); 0: the default, 8.
	MaxConcurrentCalls int `koanf:"maxConcurrentCalls" json:"maxConcurrentCalls,omitempty"`
}

// MaxConcurrentCalls bounds autoscale.hosts[].maxConcurrentCalls.
const MaxConcurrentCalls = 64

// Reserved is host capacity kept out of placement.
type Reserved struct {
	Memory string `koanf:"memory" json:"memory,omitempty"`
	CPUs   int    `koanf:"cpus" json:"cpus,omitempty"`
}

// Group is an autoscaling group: VMs from one template held between Min and Max.
type Group struct {
	Name  string   `koanf:"name" json:"name"`
	Hosts []string `koanf:"hosts" json:"hosts"`
	Min   int      `koanf:"min" json:"min"`
	Max   int      `koanf:"max" json:"max"`
	// Desired is the size when the group is first created, or when this value
	// changes in the file; nil means Min.
	Desired   *int      `koanf:"desired" json:"desired,omitempty"`
	Scaling   Scaling   `koanf:"scaling" json:"scaling"`
	Placement Placement `koanf:"placement" json:"placement"`
	// HostFailureGracePeriod is how long a host may stay unreachable before
	// its members are replaced on other hosts.
	HostFailureGracePeriod time.Duration `koanf:"hostFailureGracePeriod" json:"hostFailureGracePeriod"`
	// UnhealthyGracePeriod is how long a member's domain may stay defined
	// but not running (paused, shut off, crashed, suspended) while the
	// group tries to bring it back, before it is replaced.
	UnhealthyGracePeriod time.Duration `koanf:"unhealthyGracePeriod" json:"unhealthyGracePeriod"`
	// CleanupTimeout bounds the retries of each step that removes a VM
	// before its member is reported failed (and retried each evaluation).
	CleanupTimeout time.Duration `koanf:"cleanupTimeout" json:"cleanupTimeout"`
	Template       Template      `koanf:"template" json:"template"`
	// Kubernetes makes the group's VMs nodes of the controller's cluster.
	Kubernetes GroupKubernetes `koanf:"kubernetes" json:"kubernetes"`
	// Schedules change the group's min, max or desired for windows of
	// time, each one a Temporal Schedule (see Schedule).
	Schedules []Schedule `koanf:"schedules" json:"schedules,omitempty"`
	// WarmPool keeps VMs booted and parked beside the group (see WarmPool).
	WarmPool *WarmPool `koanf:"warmPool" json:"warmPool,omitempty"`
	// Refresh says how a rolling refresh replaces VMs made from an older
	// template revision, and whether a template change starts one.
	Refresh Refresh `koanf:"refresh" json:"refresh"`
}

// Refresh modes.
const (
	// RefreshManual: a template change applies to new VMs only, until
	// premiscale refresh replaces the others.
	RefreshManual = "manual"
	// RefreshAuto: a template change starts a refresh.
	RefreshAuto = "auto"
)

// DefaultRefreshMinHealthy is AWS instance refresh's default.
const DefaultRefreshMinHealthy = 90

// Refresh is a group's rolling refresh settings, as AWS instance refresh
// preferences: members made from an older template revision are replaced
// in batches, each batch only once the previous one's replacements run,
// while MinHealthy percent of desired (rounded up) keep running.
type Refresh struct {
	// Mode is RefreshManual (default) or RefreshAuto.
	Mode string `koanf:"mode" json:"mode"`
	// MinHealthy is a percentage, "90%" or "90"; default 90%.
	MinHealthy string `koanf:"minHealthy" json:"minHealthy,omitempty"`
	// Batch caps the VMs replaced at once; 0: as many as MinHealthy allows.
	Batch int `koanf:"batch" json:"batch,omitempty"`
	// Checkpoints are percentages of the members to replace, ascending, at
	// which a refresh waits CheckpointDelay before it goes on, as AWS
	// instance refresh's checkpoints do. A refresh whose last checkpoint
	// is under 100 ends there (a canary).
	Checkpoints []int `koanf:"checkpoints" json:"checkpoints,omitempty"`
	// CheckpointDelay is the wait at each checkpoint; default 1h (AWS's).
	// Only with Checkpoints.
	CheckpointDelay *time.Duration `koanf:"checkpointDelay" json:"checkpointDelay,omitempty"`
}

// DefaultCheckpointDelay is AWS instance refresh's default.
const DefaultCheckpointDelay = time.Hour

// MaxCheckpointDelay is the longest wait at a checkpoint (AWS allows two
// days).
const MaxCheckpointDelay = 48 * time.Hour

// CheckCheckpoints explains what is wrong with refresh checkpoints, if
// anything: percentages from 1 to 100, ascending, each once.
func CheckCheckpoints(ps []int) error {
	for i, p := range ps {
		if p < 1 || p > 100 {
			return fmt.Errorf("must be percentages from 1 to 100, got %d", p)
		}
		if i > 0 && p <= ps[i-1] {
			return fmt.Errorf("must be ascending, each once, got %d after %d", p, ps[i-1])
		}
	}
	return nil
}

// CheckCheckpointDelay explains what is wrong with a checkpoint delay
// given with the checkpoints ps, if anything.
func CheckCheckpointDelay(d time.Duration, ps []int) error {
	switch {
	case len(ps) == 0:
		return fmt.Errorf("needs checkpoints to wait at")
	case d < 0 || d > MaxCheckpointDelay:
		return fmt.Errorf("must be from 0s to %s, got %s", MaxCheckpointDelay, d)
	}
	return nil
}

// Delay is the wait at each checkpoint.
func (r Refresh) Delay() time.Duration {
	if r.CheckpointDelay == nil {
		return DefaultCheckpointDelay
	}
	return *r.CheckpointDelay
}

// ParsePercent reads a percentage of 0 to 100, written "66%" or "66".
func ParsePercent(s string) (int, error) {
	n, err := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(s), "%"))
	if err != nil || n < 0 || n > 100 {
		return 0, fmt.Errorf("must be a percentage from 0%% to 100%%, got %q", s)
	}
	return n, nil
}

// MinHealthyPercent is MinHealthy as a number (validated).
func (r Refresh) MinHealthyPercent() int {
	if r.MinHealthy == "" {
		return DefaultRefreshMinHealthy
	}
	n, _ := ParsePercent(r.MinHealthy)
	return n
}

// Warm pool states: how a warm VM waits.
const (
	// WarmHibernated: managed save (memory written to disk, domain shut
	// off); back, already booted, in about two seconds. Holds disk.
	WarmHibernated = "hibernated"
	// WarmPaused: suspended in memory; back in well under a second. Holds
	// the VM's memory on its host.
	WarmPaused = "paused"
	// WarmStopped: shut down; entering the group is a boot (without the
	// clone, define and first-boot work). Holds only its disk.
	WarmStopped = "stopped"
)

// WarmPool is a group's pool of prepared VMs, as AWS warm pools: each is
// created, booted until its guest is up (Ready), then parked in State and
// kept outside the group's count. A scale-out takes warm VMs first, which
// is a restore or resume instead of a clone and boot, and the pool is
// refilled afterwards. Its size is Size, or with MinSize/MaxPreparedSize
// max(MinSize, MaxPreparedSize - desired): the VMs in the group and in
// the pool together stay at MaxPreparedSize (default: the group's max)
// while at least MinSize stay warm.
type WarmPool struct {
	Size            *int `koanf:"size" json:"size,omitempty"`
	MinSize         *int `koanf:"minSize" json:"minSize,omitempty"`
	MaxPreparedSize *int `koanf:"maxPreparedSize" json:"maxPreparedSize,omitempty"`
	// State is WarmHibernated (default), WarmPaused or WarmStopped.
	State string `koanf:"state" json:"state"`
	// ReuseOnScaleIn returns scaled-in VMs to the pool (while it has room)
	// instead of deleting them.
	ReuseOnScaleIn bool `koanf:"reuseOnScaleIn" json:"reuseOnScaleIn,omitempty"`
	// Ready says when a new warm VM's guest is up and may be parked.
	Ready WarmReady `koanf:"ready" json:"ready"`
}

// WarmReady is the readiness signal of a warm VM's guest. A VM that joins
// Kubernetes is ready once its node is Ready (it is cordoned while warm);
// any VM with ConsoleLine set, once a line of its serial console contains
// it; otherwise, once its domain runs.
type WarmReady struct {
	ConsoleLine string        `koanf:"consoleLine" json:"consoleLine,omitempty"`
	Timeout     time.Duration `koanf:"timeout" json:"timeout"`
}

// Target is how many VMs the pool holds when the group's desired size is
// desired and its max is max.
func (w *WarmPool) Target(desired, max int) int {
	if w == nil {
		return 0
	}
	if w.Size != nil {
		return *w.Size
	}
	lo, prepared := 0, max
	if w.MinSize != nil {
		lo = *w.MinSize
	}
	if w.MaxPreparedSize != nil {
		prepared = *w.MaxPreparedSize
	}
	return maxInt(lo, prepared-desired)
}

func maxInt(a, b int) int {
	if a > b {
		return a
	}
	return b
}

// Schedule is scheduled capacity: each time Cron fires (in TimeZone), the
// group's min and max become the ones set here for Duration, then return
// to the configuration's; desired is set as the window opens (and kept
// within the bounds while it lasts). Overlapping windows: the one that fired
// last governs (of two that fired together, the one listed later), as
// workflows/policy.Window documents. Each schedule is a Temporal Schedule,
// premiscale/group/<group>/schedule/<name>, which can be paused, triggered
// and inspected with the temporal CLI and UI.
type Schedule struct {
	Name string `koanf:"name" json:"name"`
	// Cron is a five-field cron expression (minute hour day-of-month
	// month day-of-week) or @hourly, @daily, @weekly, @monthly, @yearly.
	Cron string `koanf:"cron" json:"cron"`
	// TimeZone is an IANA zone name (Europe/Berlin); empty means UTC.
	TimeZone string `koanf:"timeZone" json:"timeZone,omitempty"`
	// Duration is how long each window lasts.
	Duration time.Duration `koanf:"duration" json:"duration"`
	// Min, Max and Desired apply during the window; unset ones stay the
	// configuration's. At least one must be set.
	Min     *int `koanf:"min" json:"min,omitempty"`
	Max     *int `koanf:"max" json:"max,omitempty"`
	Desired *int `koanf:"desired" json:"desired,omitempty"`
}

// GroupKubernetes is how a group's VMs join the cluster and leave it.
type GroupKubernetes struct {
	// Join is JoinNone (default), JoinKubeadm or JoinUserData.
	Join string `koanf:"join" json:"join"`
	// NodeName is a Go template of the node name; fields .VM and .Group.
	NodeName string `koanf:"nodeName" json:"nodeName"`
	// Labels and Taints are registered by the kubelet with the node.
	Labels map[string]string `koanf:"labels" json:"labels,omitempty"`
	Taints []Taint           `koanf:"taints" json:"taints,omitempty"`
	// UserData is the cloud-init user-data template for JoinUserData (or
	// UserDataFile, read when the config loads); fields .VM, .Group,
	// .NodeName, .ProviderID.
	UserData     string `koanf:"userData" json:"userData,omitempty"`
	UserDataFile string `koanf:"userDataFile" json:"userDataFile,omitempty"`
	// ReadyTimeout bounds the wait for the node to be Ready; past it the VM
	// counts as failed and is replaced.
	ReadyTimeout time.Duration `koanf:"readyTimeout" json:"readyTimeout"`
	Drain        Drain         `koanf:"drain" json:"drain"`
}

// Taint is one node taint.
type Taint struct {
	Key    string `koanf:"key" json:"key"`
	Value  string `koanf:"value" json:"value,omitempty"`
	Effect string `koanf:"effect" json:"effect"`
}

// Drain is how a joined VM's node is emptied before the VM is destroyed.
type Drain struct {
	// Timeout bounds the drain; past it OnTimeout applies.
	Timeout time.Duration `koanf:"timeout" json:"timeout"`
	// GracePeriod is each pod's termination grace period; -1s means each
	// pod's own.
	GracePeriod        *time.Duration `koanf:"gracePeriod" json:"gracePeriod,omitempty"`
	IgnoreDaemonSets   *bool          `koanf:"ignoreDaemonSets" json:"ignoreDaemonSets,omitempty"`
	DeleteEmptyDirData bool           `koanf:"deleteEmptyDirData" json:"deleteEmptyDirData,omitempty"`
	// Force also deletes pods no controller manages.
	Force bool `koanf:"force" json:"force,omitempty"`
	// OnTimeout is DrainAbort (default) or DrainForce.
	OnTimeout string `koanf:"onTimeout" json:"onTimeout"`
}

// Placement strategies a group may use.
const (
	PlacementSpread  = "spread"
	PlacementVacancy = "vacancy"
	PlacementBinpack = "binpack"
	PlacementRandom  = "random"
)

// Placement chooses the host of each new VM.
type Placement struct {
	// Strategy is spread (default), vacancy, binpack or random.
	Strategy string `koanf:"strategy" json:"strategy"`
	// MaxPerHost caps the group's VMs on one host; 0 means no cap.
	MaxPerHost int `koanf:"maxPerHost" json:"maxPerHost,omitempty"`
}

// ScalingMode is a group's scaling mode (Mode* constants). In a file, the
// YAML 1.1 booleans that tools such as Helm, PyYAML and yq make of an
// unquoted on and off read as ModeOn and ModeOff.
type ScalingMode string

// Scaling configures how a group is evaluated and resized by its checks.
type Scaling struct {
	EvaluationInterval time.Duration `koanf:"evaluationInterval" json:"evaluationInterval"`
	// Mode is ModeOn, ModeScaleOutOnly, ModeOff or ModeClusterAutoscaler.
	Mode ScalingMode `koanf:"mode" json:"mode"`
	// DryRun computes and shows decisions without changing the group.
	DryRun   bool      `koanf:"dryRun" json:"dryRun,omitempty"`
	Checks   []Check   `koanf:"checks" json:"checks,omitempty"`
	ScaleOut Direction `koanf:"scaleOut" json:"scaleOut"`
	ScaleIn  Direction `koanf:"scaleIn" json:"scaleIn"`
}

// Check is one Prometheus query and the strategy that turns its value into a
// recommended group size. The strategy's parameters sit beside it.
type Check struct {
	Name     string `koanf:"name" json:"name"`
	Query    string `koanf:"query" json:"query"`
	Strategy string `koanf:"strategy" json:"strategy"`
	// targetValue: the per-VM value to hold, and the relative band around
	// it in which nothing changes.
	Target    *float64 `koanf:"target" json:"target,omitempty"`
	Tolerance *float64 `koanf:"tolerance" json:"tolerance,omitempty"`
	// threshold: the check acts while lowerBound <= value < upperBound
	// (a missing bound is open), by exactly one of Delta, Percentage or Value.
	UpperBound *float64 `koanf:"upperBound" json:"upperBound,omitempty"`
	LowerBound *float64 `koanf:"lowerBound" json:"lowerBound,omitempty"`
	Delta      *int     `koanf:"delta" json:"delta,omitempty"`
	Percentage *float64 `koanf:"percentage" json:"percentage,omitempty"`
	Value      *int     `koanf:"value" json:"value,omitempty"`
	// OnError is OnErrorHold or OnErrorIgnore.
	OnError string `koanf:"onError" json:"onError"`
}

// Direction limits scaling in one direction.
type Direction struct {
	// Cooldown is the quiet time after any resize (by metrics or by hand)
	// before the checks may resize the group in this direction.
	Cooldown *time.Duration `koanf:"cooldown" json:"cooldown,omitempty"`
	// StabilizationWindow: scale-in goes only to the highest (scale-out only
	// to the lowest) recommendation seen within the window, as in the
	// Kubernetes HPA.
	StabilizationWindow *time.Duration `koanf:"stabilizationWindow" json:"stabilizationWindow,omitempty"`
	// MaxStep caps one resize: a count ("2") or a percentage of the current
	// size ("50%"). Empty means no cap.
	MaxStep string `koanf:"maxStep" json:"maxStep,omitempty"`
	// Selection (scaleIn only) picks the members a scale-in removes:
	// SelectNewest (default), SelectOldest or SelectLeastPods.
	Selection string `koanf:"selection" json:"selection,omitempty"`
}

// CooldownOr returns the cooldown, or def when unset.
func (d Direction) CooldownOr(def time.Duration) time.Duration {
	if d.Cooldown == nil {
		return def
	}
	return *d.Cooldown
}

// WindowOr returns the stabilization window, or def when unset.
func (d Direction) WindowOr(def time.Duration) time.Duration {
	if d.StabilizationWindow == nil {
		return def
	}
	return *d.StabilizationWindow
}

// Template describes the VMs of a group.
type Template struct {
	// BaseVolume names a volume in the host's pool that each VM's disk
	// overlays (qcow2 backing store). Empty means a blank disk of DiskSize.
	BaseVolume string `koanf:"baseVolume" json:"baseVolume,omitempty"`
	// DiskSize is the VM disk's virtual size ("10GiB"); empty means the base
	// volume's size.
	DiskSize   string  `koanf:"diskSize" json:"diskSize,omitempty"`
	VCPUs      int     `koanf:"vcpus" json:"vcpus"`
	Memory     string  `koanf:"memory" json:"memory"`
	DomainType string  `koanf:"domainType" json:"domainType"`
	Arch       string  `koanf:"arch" json:"arch"`
	Machine    string  `koanf:"machine" json:"machine,omitempty"`
	Kernel     string  `koanf:"kernel" json:"kernel,omitempty"`
	Initrd     string  `koanf:"initrd" json:"initrd,omitempty"`
	Cmdline    string  `koanf:"cmdline" json:"cmdline,omitempty"`
	Network    Network `koanf:"network" json:"network"`
	// ConsoleLog, when true, logs the serial console to
	// /var/log/libvirt/qemu/<vm>-console.log on the host.
	ConsoleLog bool `koanf:"consoleLog" json:"consoleLog,omitempty"`
	// ExtraDevicesXML is libvirt domain XML for extra <devices> children.
	ExtraDevicesXML string `koanf:"extraDevicesXML" json:"extraDevicesXML,omitempty"`
	// ShutdownTimeout bounds a graceful ACPI shutdown before the VM is
	// destroyed; 0s destroys at once. Unset means DefaultShutdownTimeout.
	ShutdownTimeout *time.Duration `koanf:"shutdownTimeout" json:"shutdownTimeout,omitempty"`
}

// ShutdownGrace is the effective ShutdownTimeout.
func (t Template) ShutdownGrace() time.Duration {
	if t.ShutdownTimeout == nil {
		return DefaultShutdownTimeout
	}
	return *t.ShutdownTimeout
}

// Network is a VM's single network interface.
type Network struct {
	Type   string `koanf:"type" json:"type"`
	Source string `koanf:"source" json:"source,omitempty"`
	Model  string `koanf:"model" json:"model,omitempty"`
}
