package policy

import (
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/premiscale/premiscale/config"
)

// Decision actions.
const (
	ActionScaleOut = "scale-out"
	ActionScaleIn  = "scale-in"
	ActionNone     = "none"
	// ActionHeld: the recommendation was to scale in, but a failing check
	// or VMs still being provisioned forbid it.
	ActionHeld = "held"
	// ActionDryRun: a resize was decided but dry-run forbids applying it.
	ActionDryRun = "dry-run"
)

// eps absorbs float error so that 3 * 0.6 / 0.6 stays 3 under ceil.
const eps = 1e-9

func ceil(x float64) int { return int(math.Ceil(x - eps)) }

// Rule is how one check's value becomes a recommendation: its strategy
// (config.Strategy*) and that strategy's parameters, as the check sets them.
type Rule struct {
	Strategy   string
	Target     *float64
	Tolerance  *float64
	UpperBound *float64
	LowerBound *float64
	Delta      *int
	Percentage *float64
	Value      *int
}

// Recommend turns one check's value into the group size it asks for.
// running is how many VMs run (and so produce the metric); desired is the
// group's current target, which a check that has nothing to say returns.
//
//   - targetValue: ceil(max(running,1) * value / target), or desired while
//     |value/target - 1| <= tolerance (the HPA formula).
//   - threshold: while lowerBound <= value < upperBound, running + delta,
//     running +/- ceil(|running * percentage / 100|), or value; otherwise desired.
//   - passThrough: ceil(value).
func Recommend(c Rule, value float64, running, desired int) int {
	switch c.Strategy {
	case config.StrategyTargetValue:
		tol := config.DefaultTolerance
		if c.Tolerance != nil {
			tol = *c.Tolerance
		}
		ratio := value / *c.Target
		if math.Abs(ratio-1) <= tol+eps {
			return desired
		}
		return ceil(float64(max(running, 1)) * ratio)
	case config.StrategyThreshold:
		if (c.LowerBound != nil && value < *c.LowerBound) || (c.UpperBound != nil && value >= *c.UpperBound) {
			return desired
		}
		switch {
		case c.Delta != nil:
			return running + *c.Delta
		case c.Percentage != nil:
			step := ceil(math.Abs(float64(running) * *c.Percentage / 100))
			if *c.Percentage > 0 {
				return running + max(step, 1)
			}
			return running - step
		case c.Value != nil:
			return *c.Value
		}
		return desired
	case config.StrategyPassThrough:
		return ceil(value)
	}
	return desired
}

// CheckResult is one check's outcome in one evaluation.
type CheckResult struct {
	Name string `json:"name"`
	// Value is the query's value; meaningless when Error is set.
	Value float64 `json:"value"`
	// Error says why the query failed; empty on success.
	Error string `json:"error,omitempty"`
	// OnError is the check's config.OnError.
	OnError string `json:"onError"`
	// Recommendation is the size the check asks for, clamped to [min, max];
	// unset when Error is set.
	Recommendation int `json:"recommendation"`
}

// Combine merges the checks' recommendations the way nomad-autoscaler
// does: scale-out beats no change beats scale-in, and the larger size wins.
// Every recommendation is clamped to [lo, hi] first. A failing check with
// onError hold contributes "no scale-in" (desired) and its failure is
// returned as holdReason; with onError ignore it is left out. With no
// usable check the result is desired.
func Combine(rules []Rule, results []CheckResult, running, desired, lo, hi int) (rec int, out []CheckResult, holdReason string) {
	rec = math.MinInt
	var holds []string
	out = make([]CheckResult, len(results))
	for i, r := range results {
		out[i] = r
		if r.Error != "" {
			if r.OnError != config.OnErrorIgnore {
				holds = append(holds, fmt.Sprintf("check %s failed: %s", r.Name, r.Error))
			}
			continue
		}
		out[i].Recommendation = Clamp(Recommend(rules[i], r.Value, running, desired), lo, hi)
		rec = max(rec, out[i].Recommendation)
	}
	if rec == math.MinInt {
		rec = Clamp(desired, lo, hi)
	}
	if len(holds) > 0 {
		rec = max(rec, Clamp(desired, lo, hi))
		holdReason = strings.Join(holds, "; ")
	}
	return rec, out, holdReason
}

// Sample is one past recommendation, kept for stabilization windows.
type Sample struct {
	At   time.Time `json:"at"`
	Size int       `json:"size"`
}

// DirectionLimits are the parsed per-direction limits.
type DirectionLimits struct {
	Cooldown time.Duration
	Window   time.Duration
	// MaxCount caps one step by count; MaxPercent by percent of the current
	// desired size (at least 1). Zero means no cap.
	MaxCount   int
	MaxPercent float64
}

// Limits are one direction's limits as a group sets them; nil durations
// take the defaults.
type Limits struct {
	Cooldown *time.Duration
	Window   *time.Duration
	// MaxStep is a count ("2") or a percentage ("50%"); empty: no cap.
	MaxStep string
}

// LimitsFrom parses l with its defaults.
func LimitsFrom(l Limits, defCooldown, defWindow time.Duration) (DirectionLimits, error) {
	n, p, err := config.ParseMaxStep(l.MaxStep)
	if err != nil {
		return DirectionLimits{}, err
	}
	out := DirectionLimits{Cooldown: defCooldown, Window: defWindow, MaxCount: n, MaxPercent: p}
	if l.Cooldown != nil {
		out.Cooldown = *l.Cooldown
	}
	if l.Window != nil {
		out.Window = *l.Window
	}
	return out, nil
}

func (l DirectionLimits) maxStep(desired int) int {
	switch {
	case l.MaxCount > 0:
		return l.MaxCount
	case l.MaxPercent > 0:
		return max(1, ceil(float64(desired)*l.MaxPercent/100))
	}
	return math.MaxInt32 // no cap; small enough not to overflow desired +/- step
}

// DecideInput is everything Decide needs; nothing else is read.
type DecideInput struct {
	Now          time.Time
	Desired      int
	Provisioning int
	// Recommendation is Combine's result; HoldReason its holdReason.
	Recommendation int
	HoldReason     string
	Mode           string
	DryRun         bool
	ScaleOut       DirectionLimits
	ScaleIn        DirectionLimits
	// LastScaleAt is when the group was last resized, by metrics or by hand.
	LastScaleAt time.Time
	// History holds earlier recommendations, oldest first.
	History []Sample
}

// Decision is what one evaluation decided, and why.
type Decision struct {
	At     time.Time `json:"at"`
	From   int       `json:"from"`
	To     int       `json:"to"`
	Action string    `json:"action"`
	Reason string    `json:"reason"`
	// Cause is the rule that settled the decision (Cause* constants), a
	// small set fit for a metric label where Reason is prose.
	Cause string `json:"cause,omitempty"`
}

// Causes of a decision.
const (
	CauseAtSize         = "at-size"
	CauseHold           = "hold"
	CauseMode           = "mode"
	CauseInFlight       = "in-flight"
	CauseWindow         = "stabilization-window"
	CauseCooldown       = "cooldown"
	CauseRecommendation = "recommendation"
)

// Applies reports whether the decision changes the group's desired size.
func (d Decision) Applies() bool {
	return (d.Action == ActionScaleOut || d.Action == ActionScaleIn) && d.To != d.From
}

// Decide turns a combined recommendation into a decision, applying in
// order: mode, holds, VMs in flight, stabilization windows (HPA semantics:
// scale in only to the highest recommendation within the scale-in window,
// scale out only to the lowest within the scale-out window), cooldowns,
// maximum step, and dry-run. It returns the history to keep (this
// recommendation appended, samples older than both windows dropped).
//
//	rec < desired: mode? -> hold? -> in flight? -> window max -> cooldown -> step -> scale-in
//	rec > desired:                                window min -> cooldown -> step -> scale-out
func Decide(in DecideInput) (Decision, []Sample) {
	hist := append(append([]Sample(nil), in.History...), Sample{At: in.Now, Size: in.Recommendation})
	keep := max(in.ScaleIn.Window, in.ScaleOut.Window)
	for len(hist) > 0 && in.Now.Sub(hist[0].At) > keep {
		hist = hist[1:]
	}
	d := Decision{At: in.Now, From: in.Desired, To: in.Desired, Action: ActionNone}
	rec := in.Recommendation
	switch {
	case rec == in.Desired:
		d.Reason, d.Cause = fmt.Sprintf("recommendation is the current size %d", rec), CauseAtSize
		if in.HoldReason != "" {
			d.Action, d.Reason, d.Cause = ActionHeld, "held: "+in.HoldReason, CauseHold
		}
	case rec < in.Desired:
		switch {
		case in.Mode == config.ModeScaleOutOnly:
			d.Reason, d.Cause = fmt.Sprintf("mode scaleOutOnly: not scaling in %d -> %d", in.Desired, rec), CauseMode
			return d, hist
		case in.HoldReason != "":
			d.Action, d.Reason, d.Cause = ActionHeld, "held: "+in.HoldReason, CauseHold
			return d, hist
		case in.Provisioning > 0:
			d.Action, d.Reason, d.Cause = ActionHeld, fmt.Sprintf("held: %d VMs still provisioning", in.Provisioning), CauseInFlight
			return d, hist
		}
		target := rec
		for _, s := range hist {
			if in.Now.Sub(s.At) <= in.ScaleIn.Window {
				target = max(target, s.Size)
			}
		}
		if target >= in.Desired {
			d.Reason, d.Cause = fmt.Sprintf("stabilization window: highest recommendation in the last %s is %d", in.ScaleIn.Window, target), CauseWindow
			return d, hist
		}
		if until := in.LastScaleAt.Add(in.ScaleIn.Cooldown); in.Now.Before(until) {
			d.Reason, d.Cause = fmt.Sprintf("cooldown until %s (would scale in %d -> %d)", until.UTC().Format("15:04:05"), in.Desired, target), CauseCooldown
			return d, hist
		}
		target = max(target, in.Desired-in.ScaleIn.maxStep(in.Desired))
		d.To, d.Action = target, ActionScaleIn
		d.Reason, d.Cause = fmt.Sprintf("scale in %d -> %d (recommended %d)", in.Desired, target, rec), CauseRecommendation
	default:
		target := rec
		for _, s := range hist {
			if in.Now.Sub(s.At) <= in.ScaleOut.Window {
				target = min(target, s.Size)
			}
		}
		if target <= in.Desired {
			d.Reason, d.Cause = fmt.Sprintf("stabilization window: lowest recommendation in the last %s is %d", in.ScaleOut.Window, target), CauseWindow
			return d, hist
		}
		if until := in.LastScaleAt.Add(in.ScaleOut.Cooldown); in.Now.Before(until) {
			d.Reason, d.Cause = fmt.Sprintf("cooldown until %s (would scale out %d -> %d)", until.UTC().Format("15:04:05"), in.Desired, target), CauseCooldown
			return d, hist
		}
		target = min(target, in.Desired+in.ScaleOut.maxStep(in.Desired))
		d.To, d.Action = target, ActionScaleOut
		d.Reason, d.Cause = fmt.Sprintf("scale out %d -> %d (recommended %d)", in.Desired, target, rec), CauseRecommendation
	}
	if in.DryRun && d.Applies() {
		d.Action, d.Reason = ActionDryRun, fmt.Sprintf("dry run: would scale %d -> %d", d.From, d.To)
		d.To = d.From
	}
	return d, hist
}
