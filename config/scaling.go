package config

import (
	"fmt"
	"math"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Scaling modes of a group.
const (
	// ModeOn scales out and in by the group's checks.
	ModeOn = "on"
	// ModeScaleOutOnly never scales in by metrics.
	ModeScaleOutOnly = "scaleOutOnly"
	// ModeOff ignores the checks: the group changes size only by hand.
	ModeOff = "off"
	// ModeClusterAutoscaler: the Kubernetes cluster-autoscaler sizes the
	// group through the externalgrpc provider (and people by hand); checks
	// are not allowed.
	ModeClusterAutoscaler = "clusterAutoscaler"
)

// Strategies a check may use.
const (
	StrategyTargetValue = "targetValue"
	StrategyThreshold   = "threshold"
	StrategyPassThrough = "passThrough"
)

// What a group does when a check fails.
const (
	// OnErrorHold forbids any scale-in while the check fails.
	OnErrorHold = "hold"
	// OnErrorIgnore leaves the failing check out of the decision.
	OnErrorIgnore = "ignore"
)

// Which members a scale-in removes first.
const (
	SelectNewest    = "newest"
	SelectOldest    = "oldest"
	SelectLeastPods = "leastPods"
)

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

func (v *validator) scaling(p string, sc Scaling) {
	v.oneOf(p+".mode", string(sc.Mode), modes)
	names := map[string]bool{}
	for i, c := range sc.Checks {
		cp := fmt.Sprintf("%s.checks[%d]", p, i)
		if !checkRE.MatchString(c.Name) {
			v.add(cp+".name", "must be 1-63 letters, digits, '_', '.' or '-', got %q", c.Name)
		}
		if names[c.Name] {
			v.add(cp+".name", "duplicate check name %q", c.Name)
		}
		names[c.Name] = true
		if strings.TrimSpace(c.Query) == "" {
			v.add(cp+".query", "must be a PromQL query")
		}
		v.oneOf(cp+".onError", c.OnError, onErrors)
		v.check(cp, c)
	}
	for _, d := range []struct {
		name string
		dir  Direction
	}{{"scaleOut", sc.ScaleOut}, {"scaleIn", sc.ScaleIn}} {
		dp := p + "." + d.name
		if d.dir.Cooldown != nil && *d.dir.Cooldown < 0 {
			v.add(dp+".cooldown", "must be >= 0, got %s", *d.dir.Cooldown)
		}
		if d.dir.StabilizationWindow != nil && *d.dir.StabilizationWindow < 0 {
			v.add(dp+".stabilizationWindow", "must be >= 0, got %s", *d.dir.StabilizationWindow)
		}
		if _, _, err := ParseMaxStep(d.dir.MaxStep); err != nil {
			v.add(dp+".maxStep", "%v", err)
		}
	}
	if sc.ScaleOut.Selection != "" {
		v.add(p+".scaleOut.selection", "is not a scale-out setting (see scaleIn.selection)")
	}
	v.oneOf(p+".scaleIn.selection", sc.ScaleIn.Selection, []string{SelectNewest, SelectOldest, SelectLeastPods})
}

// check validates one check's strategy and the parameters beside it.
func (v *validator) check(cp string, c Check) {
	set := map[string]bool{
		"target": c.Target != nil, "tolerance": c.Tolerance != nil,
		"upperBound": c.UpperBound != nil, "lowerBound": c.LowerBound != nil,
		"delta": c.Delta != nil, "percentage": c.Percentage != nil, "value": c.Value != nil,
	}
	allowed := map[string][]string{
		StrategyTargetValue: {"target", "tolerance"},
		StrategyThreshold:   {"upperBound", "lowerBound", "delta", "percentage", "value"},
		StrategyPassThrough: {},
	}
	params, ok := allowed[c.Strategy]
	if !ok {
		v.add(cp+".strategy", "must be one of %s, got %q", strings.Join(strategies, ", "), c.Strategy)
		return
	}
	for _, k := range []string{"target", "tolerance", "upperBound", "lowerBound", "delta", "percentage", "value"} {
		if set[k] && !slices.Contains(params, k) {
			v.add(cp+"."+k, "is not a parameter of strategy %s", c.Strategy)
		}
	}
	switch c.Strategy {
	case StrategyTargetValue:
		switch {
		case c.Target == nil:
			v.add(cp+".target", "must be set for strategy targetValue")
		case !(*c.Target > 0) || math.IsInf(*c.Target, 0):
			v.add(cp+".target", "must be a positive number, got %v", *c.Target)
		}
		if c.Tolerance != nil && (*c.Tolerance < 0 || *c.Tolerance >= 1 || math.IsNaN(*c.Tolerance)) {
			v.add(cp+".tolerance", "must be in [0, 1), got %v", *c.Tolerance)
		}
	case StrategyThreshold:
		if c.UpperBound == nil && c.LowerBound == nil {
			v.add(cp, "threshold needs upperBound, lowerBound or both")
		}
		if c.UpperBound != nil && c.LowerBound != nil && !(*c.LowerBound < *c.UpperBound) {
			v.add(cp+".lowerBound", "must be < upperBound (%v), got %v", *c.UpperBound, *c.LowerBound)
		}
		n := 0
		for _, k := range []string{"delta", "percentage", "value"} {
			if set[k] {
				n++
			}
		}
		if n != 1 {
			v.add(cp, "threshold needs exactly one of delta, percentage or value, got %d", n)
		}
		if c.Delta != nil && *c.Delta == 0 {
			v.add(cp+".delta", "must not be 0")
		}
		if c.Percentage != nil && (*c.Percentage == 0 || *c.Percentage <= -100 || math.IsNaN(*c.Percentage) || math.IsInf(*c.Percentage, 0)) {
			v.add(cp+".percentage", "must be non-zero and > -100, got %v", *c.Percentage)
		}
		if c.Value != nil && *c.Value < 0 {
			v.add(cp+".value", "must be >= 0, got %d", *c.Value)
		}
	}
}

// ParseMaxStep parses a maxStep: "" (no cap), a count ("2") or a
// percentage ("50%").
func ParseMaxStep(s string) (count int, percent float64, err error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return 0, 0, nil
	}
	if p, ok := strings.CutSuffix(s, "%"); ok {
		f, err := strconv.ParseFloat(strings.TrimSpace(p), 64)
		if err != nil || !(f > 0) || math.IsInf(f, 0) {
			return 0, 0, fmt.Errorf("must be a count or a positive percentage like 50%%, got %q", s)
		}
		return 0, f, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 {
		return 0, 0, fmt.Errorf("must be a count >= 1 or a percentage like 50%%, got %q", s)
	}
	return n, 0, nil
}

var (
	modes      = []string{ModeOn, ModeScaleOutOnly, ModeOff, ModeClusterAutoscaler}
	strategies = []string{StrategyTargetValue, StrategyThreshold, StrategyPassThrough}
	onErrors   = []string{OnErrorHold, OnErrorIgnore}
	checkRE    = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$`)
)

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
