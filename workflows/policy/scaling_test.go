package policy

import (
	"strings"
	"testing"
	"time"

	"github.com/premiscale/premiscale/config"
)

func f(v float64) *float64 { return &v }
func n(v int) *int         { return &v }

func TestRecommendTargetValue(t *testing.T) {
	c := Rule{Strategy: config.StrategyTargetValue, Target: f(0.6), Tolerance: f(0.1)}
	tests := []struct {
		name                   string
		value                  float64
		running, desired, want int
	}{
		{"on target", 0.6, 3, 3, 3},
		{"inside tolerance above", 0.65, 3, 3, 3},
		{"inside tolerance below", 0.55, 3, 3, 3},
		{"double load doubles", 1.2, 3, 3, 6},
		{"ceil rounds up", 0.9, 3, 3, 5},
		{"half load halves", 0.3, 4, 4, 2},
		{"exact multiple does not overshoot", 1.2, 5, 5, 10},
		{"zero running uses one as base", 1.8, 0, 0, 3},
		{"booting VMs not counted twice", 0.9, 3, 5, 5},
		{"tolerance returns desired, not running", 0.6, 3, 5, 5},
		{"zero load", 0, 4, 4, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Recommend(c, tt.value, tt.running, tt.desired); got != tt.want {
				t.Errorf("Recommend(%v, running %d, desired %d) = %d, want %d", tt.value, tt.running, tt.desired, got, tt.want)
			}
		})
	}
}

func TestRecommendThreshold(t *testing.T) {
	tests := []struct {
		name                   string
		c                      Rule
		value                  float64
		running, desired, want int
	}{
		{"above upper: out of range, no change", Rule{LowerBound: f(80), Delta: n(2)}, 50, 3, 3, 3},
		{"delta inside open-ended range", Rule{LowerBound: f(80), Delta: n(2)}, 90, 3, 3, 5},
		{"negative delta", Rule{UpperBound: f(20), Delta: n(-1)}, 10, 3, 3, 2},
		{"upper bound is exclusive", Rule{UpperBound: f(20), Delta: n(-1)}, 20, 3, 3, 3},
		{"lower bound is inclusive", Rule{LowerBound: f(80), Delta: n(1)}, 80, 3, 3, 4},
		{"both bounds", Rule{LowerBound: f(50), UpperBound: f(80), Delta: n(1)}, 60, 3, 3, 4},
		{"percentage up rounds up", Rule{LowerBound: f(80), Percentage: f(50)}, 90, 3, 3, 5},
		{"percentage up from zero adds one", Rule{LowerBound: f(80), Percentage: f(50)}, 90, 0, 0, 1},
		{"percentage down", Rule{UpperBound: f(20), Percentage: f(-25)}, 10, 4, 4, 3},
		{"exact value", Rule{LowerBound: f(0), Value: n(7)}, 1, 3, 3, 7},
		{"delta relative to running, not desired", Rule{LowerBound: f(80), Delta: n(1)}, 90, 3, 4, 4},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.c.Strategy = config.StrategyThreshold
			if got := Recommend(tt.c, tt.value, tt.running, tt.desired); got != tt.want {
				t.Errorf("Recommend = %d, want %d", got, tt.want)
			}
		})
	}
}

func TestRecommendPassThrough(t *testing.T) {
	c := Rule{Strategy: config.StrategyPassThrough}
	for _, tt := range []struct {
		value float64
		want  int
	}{{3, 3}, {2.1, 3}, {0, 0}, {-4, -4}} {
		if got := Recommend(c, tt.value, 1, 1); got != tt.want {
			t.Errorf("passThrough(%v) = %d, want %d", tt.value, got, tt.want)
		}
	}
}

func TestCombineScaleOutBeatsNoneBeatsScaleInLargerWins(t *testing.T) {
	pass := Rule{Strategy: config.StrategyPassThrough}
	cfg := []Rule{pass, pass, pass}
	res := func(vals ...float64) []CheckResult {
		out := make([]CheckResult, len(vals))
		for i, v := range vals {
			out[i] = CheckResult{Name: string(rune('a' + i)), Value: v, OnError: config.OnErrorHold}
		}
		return out
	}
	tests := []struct {
		name     string
		results  []CheckResult
		desired  int
		want     int
		wantHold bool
	}{
		{"two scale-outs: larger wins", res(5, 7, 4), 4, 7, false},
		{"scale-out beats scale-in", res(2, 6, 4), 4, 6, false},
		{"no change beats scale-in", res(2, 4, 3), 4, 4, false},
		{"two scale-ins: larger size wins", res(2, 3, 1), 4, 3, false},
		{"clamped to max first", res(50, 1, 1), 4, 10, false},
		{"clamped to min first", res(0, 0, 0), 4, 1, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, _, hold := Combine(cfg, tt.results, tt.desired, tt.desired, 1, 10)
			if got != tt.want || (hold != "") != tt.wantHold {
				t.Errorf("Combine = %d, hold %q; want %d, hold %v", got, hold, tt.want, tt.wantHold)
			}
		})
	}
}

func TestCombineFailedCheckHoldsScaleInButNotScaleOut(t *testing.T) {
	pass := Rule{Strategy: config.StrategyPassThrough}
	cfg := []Rule{pass, pass}
	tests := []struct {
		name     string
		results  []CheckResult
		want     int
		wantHold string
	}{
		{"hold: healthy check wants scale-in, held at desired", []CheckResult{
			{Name: "cpu", Error: "query returned no data", OnError: config.OnErrorHold},
			{Name: "mem", Value: 1, OnError: config.OnErrorHold},
		}, 4, "check cpu failed: query returned no data"},
		{"hold: healthy scale-out still allowed", []CheckResult{
			{Name: "cpu", Error: "timeout", OnError: config.OnErrorHold},
			{Name: "mem", Value: 8, OnError: config.OnErrorHold},
		}, 8, "check cpu failed: timeout"},
		{"ignore: failing check left out", []CheckResult{
			{Name: "cpu", Error: "timeout", OnError: config.OnErrorIgnore},
			{Name: "mem", Value: 2, OnError: config.OnErrorHold},
		}, 2, ""},
		{"all failing: desired", []CheckResult{
			{Name: "cpu", Error: "x", OnError: config.OnErrorIgnore},
			{Name: "mem", Error: "y", OnError: config.OnErrorIgnore},
		}, 4, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, _, hold := Combine(cfg, tt.results, 4, 4, 1, 10)
			if got != tt.want || hold != tt.wantHold {
				t.Errorf("Combine = %d, %q; want %d, %q", got, hold, tt.want, tt.wantHold)
			}
		})
	}
}

func TestDecide(t *testing.T) {
	t0 := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	out := DirectionLimits{Cooldown: time.Minute}
	in := DirectionLimits{Cooldown: 5 * time.Minute, Window: 5 * time.Minute}
	base := DecideInput{Now: t0, Desired: 4, Mode: config.ModeOn, ScaleOut: out, ScaleIn: in, LastScaleAt: t0.Add(-time.Hour)}
	tests := []struct {
		name       string
		edit       func(*DecideInput)
		wantAction string
		wantTo     int
		wantReason string
	}{
		{"no change", func(d *DecideInput) { d.Recommendation = 4 }, ActionNone, 4, "current size"},
		{"scale out", func(d *DecideInput) { d.Recommendation = 6 }, ActionScaleOut, 6, "scale out 4 -> 6"},
		{"scale out capped by count step", func(d *DecideInput) { d.Recommendation = 9; d.ScaleOut.MaxCount = 2 }, ActionScaleOut, 6, ""},
		{"scale out capped by percent step", func(d *DecideInput) { d.Recommendation = 9; d.ScaleOut.MaxPercent = 50 }, ActionScaleOut, 6, ""},
		{"scale out in cooldown", func(d *DecideInput) { d.Recommendation = 6; d.LastScaleAt = t0.Add(-30 * time.Second) }, ActionNone, 4, "cooldown until 12:00:30"},
		{"scale out window takes the lowest", func(d *DecideInput) {
			d.Recommendation = 8
			d.ScaleOut.Window = time.Minute
			d.History = []Sample{{t0.Add(-30 * time.Second), 6}}
		}, ActionScaleOut, 6, ""},
		{"scale in held by window", func(d *DecideInput) {
			d.Recommendation = 2
			d.History = []Sample{{t0.Add(-4 * time.Minute), 4}}
		}, ActionNone, 4, "highest recommendation in the last 5m0s is 4"},
		{"scale in to window max", func(d *DecideInput) {
			d.Recommendation = 1
			d.History = []Sample{{t0.Add(-4 * time.Minute), 3}, {t0.Add(-2 * time.Minute), 2}}
		}, ActionScaleIn, 3, "scale in 4 -> 3"},
		{"samples older than the window do not count", func(d *DecideInput) {
			d.Recommendation = 1
			d.History = []Sample{{t0.Add(-6 * time.Minute), 4}}
		}, ActionScaleIn, 1, ""},
		{"scale in in cooldown after a manual scale", func(d *DecideInput) { d.Recommendation = 2; d.LastScaleAt = t0.Add(-time.Minute) }, ActionNone, 4, "cooldown until 12:04:00"},
		{"scale in capped by step", func(d *DecideInput) { d.Recommendation = 1; d.ScaleIn.MaxCount = 1 }, ActionScaleIn, 3, ""},
		{"scale in held by failing check", func(d *DecideInput) { d.Recommendation = 2; d.HoldReason = "check cpu failed: no data" }, ActionHeld, 4, "held: check cpu failed: no data"},
		{"hold visible even without a scale-in", func(d *DecideInput) { d.Recommendation = 4; d.HoldReason = "check cpu failed: x" }, ActionHeld, 4, "held: check cpu failed"},
		{"scale in held while VMs boot", func(d *DecideInput) { d.Recommendation = 2; d.Provisioning = 2 }, ActionHeld, 4, "2 VMs still provisioning"},
		{"scaleOutOnly never scales in", func(d *DecideInput) { d.Recommendation = 1; d.Mode = config.ModeScaleOutOnly }, ActionNone, 4, "mode scaleOutOnly"},
		{"scaleOutOnly still scales out", func(d *DecideInput) { d.Recommendation = 5; d.Mode = config.ModeScaleOutOnly }, ActionScaleOut, 5, ""},
		{"dry run", func(d *DecideInput) { d.Recommendation = 6; d.DryRun = true }, ActionDryRun, 4, "dry run: would scale 4 -> 6"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := base
			tt.edit(&d)
			got, _ := Decide(d)
			if got.Action != tt.wantAction || got.To != tt.wantTo || !strings.Contains(got.Reason, tt.wantReason) {
				t.Errorf("Decide = %+v; want action %s, to %d, reason containing %q", got, tt.wantAction, tt.wantTo, tt.wantReason)
			}
			if got.Applies() != (tt.wantAction == ActionScaleOut || tt.wantAction == ActionScaleIn) {
				t.Errorf("Applies = %v for %s", got.Applies(), got.Action)
			}
		})
	}
}

func TestDecideKeepsOnlyHistoryInsideTheWindows(t *testing.T) {
	t0 := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	_, hist := Decide(DecideInput{
		Now: t0, Desired: 3, Recommendation: 3, Mode: config.ModeOn,
		ScaleIn: DirectionLimits{Window: time.Minute},
		History: []Sample{{t0.Add(-2 * time.Minute), 5}, {t0.Add(-30 * time.Second), 4}},
	})
	if len(hist) != 2 || hist[0].Size != 4 || hist[1].Size != 3 {
		t.Errorf("history = %+v, want the 30s-old sample and this one", hist)
	}
}

// TestDecideNamesTheRuleThatSettledIt: each decision carries the cause a
// metric can count by (the reason stays prose).
func TestDecideNamesTheRuleThatSettledIt(t *testing.T) {
	t0 := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	base := DecideInput{Now: t0, Desired: 4, Mode: config.ModeOn, ScaleOut: DirectionLimits{Cooldown: time.Minute},
		ScaleIn: DirectionLimits{Cooldown: 5 * time.Minute, Window: 5 * time.Minute}, LastScaleAt: t0.Add(-time.Hour)}
	tests := []struct {
		name string
		edit func(*DecideInput)
		want string
	}{
		{"at size", func(d *DecideInput) { d.Recommendation = 4 }, CauseAtSize},
		{"scale out", func(d *DecideInput) { d.Recommendation = 6 }, CauseRecommendation},
		{"dry run keeps the cause", func(d *DecideInput) { d.Recommendation = 6; d.DryRun = true }, CauseRecommendation},
		{"cooldown", func(d *DecideInput) { d.Recommendation = 6; d.LastScaleAt = t0.Add(-30 * time.Second) }, CauseCooldown},
		{"window", func(d *DecideInput) { d.Recommendation = 2; d.History = []Sample{{t0.Add(-time.Minute), 4}} }, CauseWindow},
		{"hold", func(d *DecideInput) { d.Recommendation = 2; d.HoldReason = "check cpu failed" }, CauseHold},
		{"in flight", func(d *DecideInput) { d.Recommendation = 2; d.Provisioning = 1 }, CauseInFlight},
		{"mode", func(d *DecideInput) { d.Recommendation = 2; d.Mode = config.ModeScaleOutOnly }, CauseMode},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := base
			tt.edit(&in)
			if d, _ := Decide(in); d.Cause != tt.want {
				t.Errorf("cause %q (%s), want %q", d.Cause, d.Reason, tt.want)
			}
		})
	}
}
