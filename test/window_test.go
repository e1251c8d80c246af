package test

import (
	"testing"
	"time"

	"github.com/premiscale/premiscale/workflows"
)

// A "nothing happened" check proves nothing unless the loop that could
// have made it happen ran inside its window. These helpers watch a window
// and count the passes that ran in it: a group's observations and
// evaluations (each stamps its status), or the orphan collector's rounds.

// groupPass is the latest pass of a group's loop its status shows: its
// last observation or evaluation, whichever is later.
func groupPass(st workflows.GroupStatus) time.Time {
	last := st.LastObservedAt
	if st.Decision != nil && st.Decision.At.After(last) {
		last = st.Decision.At
	}
	return last
}

// groupHolds watches group for d, sampling its status every 200 ms: hold
// must accept every sample (it returns what is wrong, "" if nothing), and
// at least minPasses distinct passes of the group's loop (observations or
// evaluations) must have run after the window opened. It returns the last
// status.
func groupHolds(t *testing.T, status func() (workflows.GroupStatus, error), d time.Duration, minPasses int, hold func(workflows.GroupStatus) string) workflows.GroupStatus {
	t.Helper()
	opened := time.Now()
	passes := map[time.Time]bool{}
	var st workflows.GroupStatus
	for {
		var err error
		if st, err = status(); err != nil {
			t.Fatalf("status during the window: %v", err)
		}
		if msg := hold(st); msg != "" {
			t.Fatalf("%s after %s of the window (status %+v)", msg, time.Since(opened).Round(time.Millisecond), st)
		}
		// The workflow's clock is the server's, this one the test's:
		// both are this machine's.
		if p := groupPass(st); p.After(opened) {
			passes[p] = true
		}
		if time.Since(opened) >= d {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if len(passes) < minPasses {
		t.Fatalf("group %s ran %d passes of its loop in the %s window, want at least %d: the check proves nothing", st.Group, len(passes), d, minPasses)
	}
	return st
}

// collectorRounds runs during (which waits out a window) and fails unless
// the orphan collector finished at least min rounds meanwhile.
func collectorRounds(t *testing.T, status func() (workflows.OrphanStatus, error), min int, during func()) {
	t.Helper()
	before, err := status()
	if err != nil {
		t.Fatalf("orphan collector status: %v", err)
	}
	during()
	after, err := status()
	if err != nil {
		t.Fatalf("orphan collector status: %v", err)
	}
	// A continue-as-new starts the count again; the scan time still moves.
	n := after.Rounds - before.Rounds
	if after.Rounds < before.Rounds {
		n = after.Rounds
	}
	if n < min || !after.LastScanAt.After(before.LastScanAt) {
		t.Fatalf("the orphan collector ran %d rounds in the window (last scan %s, before %s), want at least %d: the check proves nothing", n, after.LastScanAt, before.LastScanAt, min)
	}
}

// statusOf is c.status as groupHolds reads it.
func (c *controller) statusOf(group string) func() (workflows.GroupStatus, error) {
	return func() (workflows.GroupStatus, error) { return c.status(group), nil }
}
