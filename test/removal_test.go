package test

import (
	"context"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/premiscale/premiscale/config"
	"github.com/premiscale/premiscale/starter"
	"github.com/premiscale/premiscale/workflows"
)

// waitFor polls cond every 200 ms until it holds or d passes.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s", what, d)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// TestGroupRemovedFromTheConfigIsKeptThenDeletedWhenAsked: the controller
// restarts with a file that no longer has a group. Its workflow stops
// managing the group and keeps its VM running, status lists it as removed,
// and its VM is neither an orphan nor deleted, even with orphan deletion
// on; resizing the other group does not touch it. Once the user opts in
// (orphans.deleteUnconfiguredGroups), the VM is decommissioned and the
// workflow ends.
func TestGroupRemovedFromTheConfigIsKeptThenDeletedWhenAsked(t *testing.T) {
	lv := requireLibvirt(t, testDriverURI)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	// One worker plays both controllers'; it collects orphans as the
	// restarted controller asks.
	s, c := startInProcessOrphans(t, ctx, config.Orphans{Action: config.OrphansDelete, GracePeriod: 2 * time.Second, ScanInterval: time.Second},
		testDriverGroup("stay", 0, 3), testDriverGroup("gone", 0, 3))
	for _, g := range []string{"stay", "gone"} {
		if _, err := s.Scale(ctx, g, 1); err != nil {
			t.Fatal(err)
		}
		if _, err := s.WaitSettled(ctx, g, 100*time.Millisecond); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		cctx, ccancel := context.WithTimeout(context.Background(), time.Minute)
		defer ccancel()
		_, _ = s.Scale(cctx, "stay", 0)
		_, _ = s.WaitSettled(cctx, "stay", 100*time.Millisecond)
		purgeGroup(t, lv, testPool, "gone")
	})

	// The controller restarts without "gone" (same server and worker: the
	// worker's configuration is the same file, changed in place).
	next := s.Config
	next.Autoscale.Groups = []config.Group{s.Config.Autoscale.Groups[0]}
	next.Autoscale.Orphans = config.Orphans{Action: config.OrphansDelete, GracePeriod: 2 * time.Second, ScanInterval: time.Second}
	s2 := &starter.Starter{Client: c, Config: next}
	waitFor(t, 30*time.Second, "gone listed as removed", func() bool {
		removed, err := s2.RemovedGroups(ctx)
		return err == nil && slices.Equal(removed, []string{"gone"})
	})
	if err := s2.EnsureGroups(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s2.EnsureOrphanCollector(ctx); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "gone's status says removed", func() bool {
		st, err := s2.Status(ctx, "gone")
		return err == nil && st.Removed && !st.RemoveDeletesVMs
	})
	if _, err := s2.Scale(ctx, "gone", 2); err == nil {
		t.Error("a removed group was scaled")
	}
	if _, err := s2.Scale(ctx, "stay", 2); err != nil {
		t.Fatal(err)
	}
	// Two grace periods of the collector (rounds every second, grace 2s).
	collectorRounds(t, func() (workflows.OrphanStatus, error) { return s2.OrphanCollectorStatus(ctx) }, 4, func() { time.Sleep(5 * time.Second) })
	if _, err := s2.WaitSettled(ctx, "stay", 100*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if v := viewGroup(t, lv, "gone"); !slices.Equal(v.running, []string{"gone-1"}) {
		t.Fatalf("removed group's VMs: running %v, want gone-1 kept", v.running)
	}
	rep, err := s2.Orphans(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range rep.Orphans {
		if o.Group == "gone" {
			t.Errorf("removed group's %s %s reported as an orphan (%s)", o.Kind, o.Name, o.Reason)
		}
	}

	// The user opts in: its VMs go, then its workflow ends.
	next.Autoscale.Orphans.DeleteUnconfiguredGroups = true
	if err := s2.EnsureGroups(ctx); err != nil {
		t.Fatal(err)
	}
	run := c.GetWorkflow(ctx, workflows.GroupWorkflowID("gone"), "")
	wctx, wcancel := context.WithTimeout(ctx, time.Minute)
	defer wcancel()
	if err := run.Get(wctx, nil); err != nil {
		t.Fatalf("removed group's workflow: %v, want it done", err)
	}
	if os.Getenv("RECORD_HISTORIES") == "1" {
		writeHistory(t, "removal_groupworkflow", workflowHistory(t, ctx, c, "gone", run.GetRunID()))
	}
	if v := viewGroup(t, lv, "gone"); len(v.defined) != 0 || len(v.volumes) != 0 {
		t.Errorf("after deletion was asked: defined %v, volumes %v; want nothing", v.defined, v.volumes)
	}
	waitFor(t, 30*time.Second, "gone no longer listed", func() bool {
		removed, err := s2.RemovedGroups(ctx)
		return err == nil && len(removed) == 0
	})
}
