// The history format of a group's settings: the sections of config.Group
// a GroupSpec carries (template, scaling, placement, warm pool, refresh,
// drain), as plain structs with JSON names only. They are written into
// every group's history and continue-as-new input, so their JSON names
// are a format running workflows decode, not configuration: renaming one
// breaks them, and TestRecordedPayloadsDecode fails first. They are made
// from config only at the edge (SpecFromConfig); a renamed or retyped
// configuration field fails to compile there, where the old JSON name is
// kept. The rest of the format is in group_state.go (GroupInput, GroupSpec,
// GroupState), group_api.go (signal and Update payloads) and the inputs of
// vm.go, warm.go, orphans.go, scan.go and schedule.go.

package workflows

import (
	"time"

	"github.com/premiscale/premiscale/config"
	"github.com/premiscale/premiscale/workflows/policy"
)

// Template is the VM template of the group's revision (config.Template):
// the workflow reads its shape for placement and its shutdown timeout;
// workers make VMs from their own copy of the revision.
type Template struct {
	BaseVolume      string         `json:"baseVolume,omitempty"`
	DiskSize        string         `json:"diskSize,omitempty"`
	VCPUs           int            `json:"vcpus"`
	Memory          string         `json:"memory"`
	DomainType      string         `json:"domainType"`
	Arch            string         `json:"arch"`
	Machine         string         `json:"machine,omitempty"`
	Kernel          string         `json:"kernel,omitempty"`
	Initrd          string         `json:"initrd,omitempty"`
	Cmdline         string         `json:"cmdline,omitempty"`
	Network         Network        `json:"network"`
	ConsoleLog      bool           `json:"consoleLog,omitempty"`
	ExtraDevicesXML string         `json:"extraDevicesXML,omitempty"`
	ShutdownTimeout *time.Duration `json:"shutdownTimeout,omitempty"`
}

// Network is config.Network.
type Network struct {
	Type   string `json:"type"`
	Source string `json:"source,omitempty"`
	Model  string `json:"model,omitempty"`
}

// ShutdownGrace is config.Template.ShutdownGrace.
func (t Template) ShutdownGrace() time.Duration {
	if t.ShutdownTimeout == nil {
		return config.DefaultShutdownTimeout
	}
	return *t.ShutdownTimeout
}

// Scaling is config.Scaling: the checks and their limits.
type Scaling struct {
	EvaluationInterval time.Duration `json:"evaluationInterval"`
	// Mode is one of config.Mode*.
	Mode     string    `json:"mode"`
	DryRun   bool      `json:"dryRun,omitempty"`
	Checks   []Check   `json:"checks,omitempty"`
	ScaleOut Direction `json:"scaleOut"`
	ScaleIn  Direction `json:"scaleIn"`
}

// Check is config.Check: one metric check and how its value becomes a
// recommendation.
type Check struct {
	Name       string   `json:"name"`
	Query      string   `json:"query"`
	Strategy   string   `json:"strategy"`
	Target     *float64 `json:"target,omitempty"`
	Tolerance  *float64 `json:"tolerance,omitempty"`
	UpperBound *float64 `json:"upperBound,omitempty"`
	LowerBound *float64 `json:"lowerBound,omitempty"`
	Delta      *int     `json:"delta,omitempty"`
	Percentage *float64 `json:"percentage,omitempty"`
	Value      *int     `json:"value,omitempty"`
	OnError    string   `json:"onError"`
}

// Direction is config.Direction: the limits of scaling one way.
type Direction struct {
	Cooldown            *time.Duration `json:"cooldown,omitempty"`
	StabilizationWindow *time.Duration `json:"stabilizationWindow,omitempty"`
	MaxStep             string         `json:"maxStep,omitempty"`
	Selection           string         `json:"selection,omitempty"`
}

// limits is d for policy.LimitsFrom.
func (d Direction) limits() policy.Limits {
	return policy.Limits{Cooldown: d.Cooldown, Window: d.StabilizationWindow, MaxStep: d.MaxStep}
}

// rule is c for policy.Recommend.
func (c Check) rule() policy.Rule {
	return policy.Rule{
		Strategy: c.Strategy, Target: c.Target, Tolerance: c.Tolerance,
		UpperBound: c.UpperBound, LowerBound: c.LowerBound,
		Delta: c.Delta, Percentage: c.Percentage, Value: c.Value,
	}
}

// Placement is config.Placement.
type Placement struct {
	Strategy   string `json:"strategy"`
	MaxPerHost int    `json:"maxPerHost,omitempty"`
}

// WarmPool is config.WarmPool.
type WarmPool struct {
	Size            *int      `json:"size,omitempty"`
	MinSize         *int      `json:"minSize,omitempty"`
	MaxPreparedSize *int      `json:"maxPreparedSize,omitempty"`
	State           string    `json:"state"`
	ReuseOnScaleIn  bool      `json:"reuseOnScaleIn,omitempty"`
	Ready           WarmReady `json:"ready"`
}

// WarmReady is config.WarmReady.
type WarmReady struct {
	ConsoleLine string        `json:"consoleLine,omitempty"`
	Timeout     time.Duration `json:"timeout"`
}

// Target is config.WarmPool.Target.
func (w *WarmPool) Target(desired, max int) int {
	if w == nil {
		return 0
	}
	c := config.WarmPool{Size: w.Size, MinSize: w.MinSize, MaxPreparedSize: w.MaxPreparedSize}
	return c.Target(desired, max)
}

// RefreshSettings is config.Refresh (Refresh is a refresh's state).
type RefreshSettings struct {
	Mode            string         `json:"mode"`
	MinHealthy      string         `json:"minHealthy,omitempty"`
	Batch           int            `json:"batch,omitempty"`
	Checkpoints     []int          `json:"checkpoints,omitempty"`
	CheckpointDelay *time.Duration `json:"checkpointDelay,omitempty"`
}

// Delay is config.Refresh.Delay.
func (r RefreshSettings) Delay() time.Duration { return config.Refresh(r).Delay() }

// MinHealthyPercent is config.Refresh.MinHealthyPercent.
func (r RefreshSettings) MinHealthyPercent() int { return config.Refresh(r).MinHealthyPercent() }

// Drain is config.Drain: how a joined VM's node is emptied.
type Drain struct {
	Timeout            time.Duration  `json:"timeout"`
	GracePeriod        *time.Duration `json:"gracePeriod,omitempty"`
	IgnoreDaemonSets   *bool          `json:"ignoreDaemonSets,omitempty"`
	DeleteEmptyDirData bool           `json:"deleteEmptyDirData,omitempty"`
	Force              bool           `json:"force,omitempty"`
	OnTimeout          string         `json:"onTimeout"`
}

// Taint is config.Taint.
type Taint struct {
	Key    string `json:"key"`
	Value  string `json:"value,omitempty"`
	Effect string `json:"effect"`
}

// templateFrom, scalingFrom and warmPoolFrom convert the sections with
// nested types; the flat ones convert directly (Placement(p)), which
// compiles only while their fields match config's.
func templateFrom(t config.Template) Template {
	return Template{
		BaseVolume: t.BaseVolume, DiskSize: t.DiskSize, VCPUs: t.VCPUs, Memory: t.Memory,
		DomainType: t.DomainType, Arch: t.Arch, Machine: t.Machine,
		Kernel: t.Kernel, Initrd: t.Initrd, Cmdline: t.Cmdline,
		Network:    Network(t.Network),
		ConsoleLog: t.ConsoleLog, ExtraDevicesXML: t.ExtraDevicesXML, ShutdownTimeout: t.ShutdownTimeout,
	}
}

func scalingFrom(s config.Scaling) Scaling {
	out := Scaling{
		EvaluationInterval: s.EvaluationInterval, Mode: string(s.Mode), DryRun: s.DryRun,
		ScaleOut: Direction(s.ScaleOut), ScaleIn: Direction(s.ScaleIn),
	}
	for _, c := range s.Checks {
		out.Checks = append(out.Checks, Check(c))
	}
	return out
}

func warmPoolFrom(w *config.WarmPool) *WarmPool {
	if w == nil {
		return nil
	}
	return &WarmPool{
		Size: w.Size, MinSize: w.MinSize, MaxPreparedSize: w.MaxPreparedSize,
		State: w.State, ReuseOnScaleIn: w.ReuseOnScaleIn, Ready: WarmReady(w.Ready),
	}
}

func taintsFrom(ts []config.Taint) []Taint {
	var out []Taint
	for _, t := range ts {
		out = append(out, Taint(t))
	}
	return out
}
