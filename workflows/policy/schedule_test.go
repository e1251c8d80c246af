package policy

import (
	"testing"
	"time"
)

func TestGoverningWindowIsTheLatestStartedThenTheLaterListed(t *testing.T) {
	t0 := time.Date(2026, 12, 1, 8, 0, 0, 0, time.UTC)
	n := func(v int) *int { return &v }
	day := Window{Schedule: "day", Order: 0, Start: t0, Until: t0.Add(11 * time.Hour), Min: n(20)}
	lunch := Window{Schedule: "lunch", Order: 1, Start: t0.Add(4 * time.Hour), Until: t0.Add(5 * time.Hour), Min: n(30)}
	twin := Window{Schedule: "twin", Order: 2, Start: t0, Until: t0.Add(time.Hour), Max: n(25)}
	tests := []struct {
		name string
		ws   []Window
		at   time.Duration
		want string
	}{
		{"none", nil, 0, ""},
		{"before it opens", []Window{day}, -time.Second, ""},
		{"at its start", []Window{day}, 0, "day"},
		{"at its end it no longer governs", []Window{day}, 11 * time.Hour, ""},
		{"a later start wins", []Window{day, lunch}, 4*time.Hour + time.Minute, "lunch"},
		{"listed order does not matter for different starts", []Window{lunch, day}, 4*time.Hour + time.Minute, "lunch"},
		{"the earlier one governs again when the later ends", []Window{day, lunch}, 5 * time.Hour, "day"},
		{"same start: the later listed wins", []Window{twin, day}, 30 * time.Minute, "twin"},
		{"same start, later listed ended", []Window{day, twin}, 2 * time.Hour, "day"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := ""
			if w := Governing(tt.ws, t0.Add(tt.at)); w != nil {
				got = w.Schedule
			}
			if got != tt.want {
				t.Errorf("governing %q, want %q", got, tt.want)
			}
		})
	}
}

func TestBoundsTakeTheWindowsOwnAndTheConfigurationsForTheRest(t *testing.T) {
	n := func(v int) *int { return &v }
	tests := []struct {
		name           string
		w              *Window
		wantLo, wantHi int
	}{
		{"no window", nil, 1, 10},
		{"min only", &Window{Min: n(5)}, 5, 10},
		{"max only", &Window{Max: n(3)}, 1, 3},
		{"both", &Window{Min: n(20), Max: n(40)}, 20, 40},
		{"desired only leaves the bounds", &Window{Desired: n(7)}, 1, 10},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			lo, hi := Bounds(tt.w, 1, 10)
			if lo != tt.wantLo || hi != tt.wantHi {
				t.Errorf("bounds %d..%d, want %d..%d", lo, hi, tt.wantLo, tt.wantHi)
			}
		})
	}
}

func TestNextWindowChangeAndPrune(t *testing.T) {
	t0 := time.Date(2026, 12, 1, 8, 0, 0, 0, time.UTC)
	ws := []Window{
		{Schedule: "a", Start: t0, Until: t0.Add(2 * time.Hour)},
		{Schedule: "b", Start: t0.Add(time.Hour), Until: t0.Add(90 * time.Minute)},
	}
	tests := []struct {
		at   time.Duration
		want time.Duration // from t0; -1 for none
	}{
		{-time.Minute, 0},
		{0, time.Hour},
		{time.Hour, 90 * time.Minute},
		{100 * time.Minute, 2 * time.Hour},
		{2 * time.Hour, -1},
	}
	for _, tt := range tests {
		got := NextWindowChange(ws, t0.Add(tt.at))
		if tt.want < 0 {
			if !got.IsZero() {
				t.Errorf("at +%s: next change %s, want none", tt.at, got)
			}
			continue
		}
		if !got.Equal(t0.Add(tt.want)) {
			t.Errorf("at +%s: next change %s, want +%s", tt.at, got, tt.want)
		}
	}
	if got := PruneWindows(ws, t0.Add(90*time.Minute)); len(got) != 1 || got[0].Schedule != "a" {
		t.Errorf("pruned at +90m: %+v, want a only", got)
	}
	if len(ws) != 2 || ws[1].Schedule != "b" {
		t.Errorf("pruning changed its input: %+v", ws)
	}
}
