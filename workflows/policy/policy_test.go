package policy

import (
	"reflect"
	"testing"
	"time"
)

func TestClamp(t *testing.T) {
	tests := []struct {
		name            string
		n, lo, hi, want int
	}{
		{"inside", 3, 0, 5, 3},
		{"below min", -1, 0, 5, 0},
		{"above max", 999, 0, 5, 5},
		{"at bounds", 5, 5, 5, 5},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Clamp(tt.n, tt.lo, tt.hi); got != tt.want {
				t.Errorf("Clamp(%d, %d, %d) = %d, want %d", tt.n, tt.lo, tt.hi, got, tt.want)
			}
		})
	}
}

func TestPickHostSpreadsByMembers(t *testing.T) {
	tests := []struct {
		name   string
		hosts  []HostLoad
		want   string
		wantOK bool
	}{
		{"no hosts", nil, "", false},
		{"fewest members wins", []HostLoad{{"a", 2, true}, {"b", 1, true}, {"c", 2, true}}, "b", true},
		{"tie goes to config order", []HostLoad{{"a", 1, true}, {"b", 1, true}}, "a", true},
		{"unreachable host skipped", []HostLoad{{"a", 0, false}, {"b", 3, true}}, "b", true},
		{"all unreachable still picks", []HostLoad{{"a", 2, false}, {"b", 1, false}}, "b", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := PickHost(tt.hosts)
			if got != tt.want || ok != tt.wantOK {
				t.Errorf("PickHost = %q, %v; want %q, %v", got, ok, tt.want, tt.wantOK)
			}
		})
	}
}

func TestScaleInVictimsNewestFirst(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	cands := []Candidate{
		{Name: "g-1", Seq: 1, CreatedAt: t0},
		{Name: "g-2", Seq: 2, CreatedAt: t0.Add(time.Minute)},
		{Name: "g-3", Seq: 3, CreatedAt: t0.Add(time.Minute)},
		{Name: "g-4", Seq: 4, CreatedAt: t0.Add(-time.Minute)},
	}
	tests := []struct {
		name string
		n    int
		want []string
	}{
		{"none", 0, nil},
		{"newest, seq breaks the tie", 1, []string{"g-3"}},
		{"two", 2, []string{"g-3", "g-2"}},
		{"more than there are", 9, []string{"g-3", "g-2", "g-1", "g-4"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := ScaleInVictims(cands, tt.n); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("ScaleInVictims(%d) = %v, want %v", tt.n, got, tt.want)
			}
		})
	}
}

func TestScaleInTakesOutdatedVMsAfterCondemnedOnesBeforeTheSelection(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	cands := []Candidate{
		{Name: "g-1", Seq: 1, CreatedAt: t0, Outdated: true, Pods: 9},
		{Name: "g-2", Seq: 2, CreatedAt: t0.Add(time.Minute), Outdated: true, Pods: 1},
		{Name: "g-3", Seq: 3, CreatedAt: t0.Add(2 * time.Minute), Pods: 0},
		{Name: "g-4", Seq: 4, CreatedAt: t0.Add(3 * time.Minute), Condemned: true},
	}
	for _, tt := range []struct {
		selection string
		n         int
		want      []string
	}{
		{SelectNewest, 2, []string{"g-4", "g-2"}},
		{SelectNewest, 3, []string{"g-4", "g-2", "g-1"}},
		{SelectOldest, 2, []string{"g-4", "g-1"}},
		{SelectLeastPods, 2, []string{"g-4", "g-2"}}, // g-3 has fewer pods, but is current
		{SelectLeastPods, 4, []string{"g-4", "g-2", "g-1", "g-3"}},
	} {
		if got := ScaleInVictimsBy(cands, tt.n, tt.selection); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("%s, %d: got %v, want %v", tt.selection, tt.n, got, tt.want)
		}
	}
}

func TestScaleInVictimsBySelection(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	cands := []Candidate{
		{Name: "g-1", Seq: 1, CreatedAt: t0, Pods: 5},
		{Name: "g-2", Seq: 2, CreatedAt: t0.Add(time.Minute), Pods: 0},
		{Name: "g-3", Seq: 3, CreatedAt: t0.Add(time.Minute), Pods: 3},
		{Name: "g-4", Seq: 4, CreatedAt: t0.Add(-time.Minute), Pods: 0},
	}
	tests := []struct {
		selection string
		n         int
		want      []string
	}{
		{SelectNewest, 2, []string{"g-3", "g-2"}},
		{SelectOldest, 2, []string{"g-4", "g-1"}},
		{SelectOldest, 3, []string{"g-4", "g-1", "g-2"}},
		{SelectLeastPods, 1, []string{"g-2"}}, // 0 pods, and newer than g-4
		{SelectLeastPods, 3, []string{"g-2", "g-4", "g-3"}},
		{"", 1, []string{"g-3"}},
	}
	for _, tt := range tests {
		t.Run(tt.selection, func(t *testing.T) {
			if got := ScaleInVictimsBy(cands, tt.n, tt.selection); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("ScaleInVictimsBy(%d, %q) = %v, want %v", tt.n, tt.selection, got, tt.want)
			}
		})
	}
}

func TestBackoffDoublesAndCaps(t *testing.T) {
	tests := []struct {
		failures int
		want     time.Duration
	}{
		{0, 0},
		{1, 10 * time.Second},
		{2, 20 * time.Second},
		{4, 80 * time.Second},
		{10, 5 * time.Minute},
		{1000, 5 * time.Minute},
	}
	for _, tt := range tests {
		if got := Backoff(tt.failures, 10*time.Second, 5*time.Minute); got != tt.want {
			t.Errorf("Backoff(%d) = %s, want %s", tt.failures, got, tt.want)
		}
	}
}
