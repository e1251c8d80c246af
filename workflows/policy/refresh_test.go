package policy

import "testing"

func TestNextRefreshStepKeepsTheHealthyFloor(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   RefreshState
		want RefreshStep
	}{
		{"6 at 66%: 2 at a time", RefreshState{Desired: 6, Running: 6, Outdated: 6, MinHealthyPercent: 66}, RefreshStep{Replace: 2}},
		{"batch caps", RefreshState{Desired: 10, Running: 10, Outdated: 10, MinHealthyPercent: 50, Batch: 3}, RefreshStep{Replace: 3}},
		{"fewer outdated than room", RefreshState{Desired: 10, Running: 10, Outdated: 1, MinHealthyPercent: 50}, RefreshStep{Replace: 1}},
		{"waits for the batch in flight", RefreshState{Desired: 6, Running: 4, InFlight: 2, Outdated: 4, MinHealthyPercent: 66}, RefreshStep{}},
		{"waits for the group to be whole", RefreshState{Desired: 6, Running: 5, Outdated: 4, MinHealthyPercent: 50}, RefreshStep{}},
		{"90% rounds the floor up", RefreshState{Desired: 5, Running: 5, Outdated: 5, MinHealthyPercent: 90}, RefreshStep{Replace: 1, Surge: true}},
		{"100% surges by one", RefreshState{Desired: 3, Running: 3, Outdated: 3, MinHealthyPercent: 100}, RefreshStep{Replace: 1, Surge: true}},
		{"a group of one surges", RefreshState{Desired: 1, Running: 1, Outdated: 1, MinHealthyPercent: 90}, RefreshStep{Replace: 1, Surge: true}},
		{"0% replaces all at once", RefreshState{Desired: 4, Running: 4, Outdated: 4}, RefreshStep{Replace: 4}},
		{"done", RefreshState{Desired: 4, Running: 4, MinHealthyPercent: 90}, RefreshStep{Done: true}},
		{"not done while in flight", RefreshState{Desired: 4, Running: 4, InFlight: 1, MinHealthyPercent: 90}, RefreshStep{}},
		{"empty group is done", RefreshState{MinHealthyPercent: 90}, RefreshStep{Done: true}},
		{"a batch stops at the checkpoint", RefreshState{Desired: 10, Running: 10, Outdated: 10, MinHealthyPercent: 50, Checkpoint: 2}, RefreshStep{Replace: 2}},
		{"the rest of the way to the checkpoint", RefreshState{Desired: 10, Running: 10, Outdated: 9, MinHealthyPercent: 50, Checkpoint: 5, Replaced: 1}, RefreshStep{Replace: 4}},
		{"a checkpoint is reached once its replacements run", RefreshState{Desired: 10, Running: 10, Outdated: 8, MinHealthyPercent: 50, Checkpoint: 2, Replaced: 2}, RefreshStep{Checkpoint: true}},
		{"not while they are in flight", RefreshState{Desired: 10, Running: 8, InFlight: 2, Outdated: 8, MinHealthyPercent: 50, Checkpoint: 2, Replaced: 2}, RefreshStep{}},
		{"a checkpoint at 100% before done", RefreshState{Desired: 4, Running: 4, MinHealthyPercent: 50, Checkpoint: 4, Replaced: 4}, RefreshStep{Checkpoint: true}},
		{"a surge still respects the checkpoint", RefreshState{Desired: 1, Running: 1, Outdated: 1, MinHealthyPercent: 100, Checkpoint: 1}, RefreshStep{Replace: 1, Surge: true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := NextRefreshStep(tc.in); got != tc.want {
				t.Errorf("NextRefreshStep(%+v) = %+v, want %+v", tc.in, got, tc.want)
			}
			if got := NextRefreshStep(tc.in); got.Replace > 0 && !got.Surge && tc.in.Running-got.Replace < tc.in.MinHealthy() {
				t.Errorf("step %+v drops below the floor %d", got, tc.in.MinHealthy())
			}
		})
	}
}

func TestCheckpointCountRoundsUp(t *testing.T) {
	for _, tc := range []struct{ percent, total, want int }{
		{20, 6, 2}, {50, 6, 3}, {100, 6, 6}, {1, 6, 1}, {33, 3, 1}, {34, 3, 2}, {100, 0, 0}, {10, 1000, 100},
	} {
		if got := CheckpointCount(tc.percent, tc.total); got != tc.want {
			t.Errorf("CheckpointCount(%d, %d) = %d, want %d", tc.percent, tc.total, got, tc.want)
		}
	}
}
