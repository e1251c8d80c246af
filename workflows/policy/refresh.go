package policy

// RefreshState is what a rolling refresh step knows of its group.
type RefreshState struct {
	// Desired is the group's size.
	Desired int
	// Running counts the members running now, of any revision.
	Running int
	// InFlight counts members being provisioned, activated or removed.
	InFlight int
	// Outdated counts the running members made from an older revision.
	Outdated int
	// MinHealthyPercent (0..100) of Desired must stay running throughout.
	MinHealthyPercent int
	// Batch caps how many are replaced at once; 0: as many as the floor allows.
	Batch int
	// Checkpoint is how many replacements the refresh's next checkpoint
	// stands for (CheckpointCount); 0: no checkpoint ahead. Replaced is
	// how many it has made so far.
	Checkpoint int
	Replaced   int
}

// CheckpointCount is how many of total replacements a checkpoint at
// percent stands for: rounded up, so that a checkpoint is never reached
// with nothing replaced.
func CheckpointCount(percent, total int) int {
	return (percent*total + 99) / 100
}

// RefreshStep is what a rolling refresh does next.
type RefreshStep struct {
	// Replace is how many outdated members to take out of service now
	// (their replacements are then provisioned as for any missing member).
	Replace int
	// Surge: the floor leaves no room (MinHealthyPercent 100, or a group
	// of one), so one replacement is launched before an outdated member
	// goes: desired is exceeded by one until it runs.
	Surge bool
	// Done: no outdated member is left and nothing is in flight.
	Done bool
	// Checkpoint: the next checkpoint is reached (its replacements run
	// and nothing is in flight): the refresh waits there.
	Checkpoint bool
}

// MinHealthy is how many members a refresh keeps running: MinHealthyPercent
// of desired, rounded up.
func (s RefreshState) MinHealthy() int {
	return (s.Desired*s.MinHealthyPercent + 99) / 100
}

// NextRefreshStep decides a rolling refresh's next batch, as AWS instance
// refreshes do: a batch starts only once the previous one's replacements
// run (nothing in flight, the group at its desired size); it takes the
// outdated members above the healthy floor, at most Batch of them, and
// none past the next checkpoint, where it stops once they run. With no
// room above the floor it surges by one instead.
func NextRefreshStep(s RefreshState) RefreshStep {
	if s.InFlight > 0 || s.Running < s.Desired {
		return RefreshStep{}
	}
	if s.Checkpoint > 0 && s.Replaced >= s.Checkpoint {
		return RefreshStep{Checkpoint: true}
	}
	if s.Outdated == 0 {
		return RefreshStep{Done: true}
	}
	n := min(s.Outdated, s.Running-s.MinHealthy())
	if s.Batch > 0 {
		n = min(n, s.Batch)
	}
	if s.Checkpoint > 0 {
		n = min(n, s.Checkpoint-s.Replaced)
	}
	if n <= 0 {
		return RefreshStep{Replace: 1, Surge: true}
	}
	return RefreshStep{Replace: n}
}
