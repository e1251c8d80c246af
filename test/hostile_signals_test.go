package test

import (
	"context"
	"strings"
	"testing"
	"time"

	"go.temporal.io/sdk/client"

	"github.com/premiscale/premiscale/activities"
	"github.com/premiscale/premiscale/config"
	"github.com/premiscale/premiscale/workflows"
)

// TestForgedSignalsUpdatesAndStartsStayWithinTheConfiguredBounds sends a
// group configured 1..3 (desired 2, a schedule "burst" with min 2) what a
// client of the frontend can send beyond the CLI's checks, and starts
// PremiScale's remaining workflow types by hand: a scale signal to 1000;
// set-desired, increase-size and decrease-target-size past the bounds;
// delete-nodes of a Node that is not a member; a host-change signal from
// a host the worker does not have; ScheduledWindow with other bounds than
// the schedule's; ScanOwned of a host the worker does not have. The
// Updates are refused, the signals clamp or change nothing, the
// workflows end refused or report the host unknown, and through several
// observations after the last of them the group keeps 1..3 and its VMs.
func TestForgedSignalsUpdatesAndStartsStayWithinTheConfiguredBounds(t *testing.T) {
	lv := requireLibvirt(t, testDriverURI)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	const group = "hs"
	g := testDriverGroup(group, 1, 3)
	two := 2
	g.Desired = &two
	g.Schedules = []config.Schedule{{Name: "burst", Cron: "0 0 1 1 *", Duration: time.Hour, Min: &two}}
	cfg := testDriverConfig(g)
	off := false
	cfg.Controller.HostWatch.Enabled = &off // observe each second: the window below is proven
	s, c := startInProcessConfig(t, ctx, cfg, nil)
	if _, err := s.WaitSettled(ctx, group, 100*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cctx, ccancel := context.WithTimeout(context.Background(), time.Minute)
		defer ccancel()
		s.Config.Autoscale.Groups[0].Min = 0
		_ = s.EnsureGroups(cctx)
		_, _ = s.Scale(cctx, group, 0)
		_, _ = s.WaitSettled(cctx, group, 100*time.Millisecond)
	})
	id := workflows.GroupWorkflowID(group)
	queue := s.Config.Controller.Temporal.TaskQueue

	if err := c.SignalWorkflow(ctx, id, "", workflows.SignalScale, workflows.DesiredRequest{Desired: 1000}); err != nil {
		t.Fatal(err)
	}
	for _, u := range []struct {
		name string
		arg  any
		want string
	}{
		{workflows.UpdateSetDesired, workflows.DesiredRequest{Desired: 1000}, "max"},
		{workflows.UpdateSetDesired, workflows.DesiredRequest{Desired: -5}, "min"},
		{workflows.UpdateIncreaseSize, workflows.DeltaRequest{Delta: 1000}, "max"},
		{workflows.UpdateDecreaseTargetSize, workflows.DeltaRequest{Delta: -1000}, "registered nodes"},
		{workflows.UpdateDeleteNodes, workflows.DeleteNodesRequest{ProviderIDs: []string{"kwok://victim"}}, "kwok://victim"},
	} {
		h, err := c.UpdateWorkflow(ctx, client.UpdateWorkflowOptions{WorkflowID: id, UpdateName: u.name, Args: []any{u.arg}, WaitForStage: client.WorkflowUpdateStageCompleted})
		if err == nil {
			err = h.Get(ctx, nil)
		}
		if err == nil || !strings.Contains(err.Error(), u.want) {
			t.Errorf("%s %+v: %v, want it refused naming %q", u.name, u.arg, err, u.want)
		}
	}
	if err := c.SignalWorkflow(ctx, id, "", workflows.SignalHostChange, activities.HostChange{Host: "evil", Domain: group + "-1", Event: "undefined"}); err != nil {
		t.Fatal(err)
	}

	three := 3
	sw, err := c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: "forged-window", TaskQueue: queue}, workflows.ScheduledWindowName,
		workflows.ScheduledWindowInput{Group: group, Schedule: "burst", Duration: 48 * time.Hour, Min: &three})
	if err != nil {
		t.Fatal(err)
	}
	if err := sw.Get(ctx, nil); err == nil || !strings.Contains(err.Error(), "min 3, configured 2") {
		t.Errorf("ScheduledWindow started by hand with min 3: %v, want it refused naming min", err)
	}
	scan, err := c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: "forged-scan", TaskQueue: queue}, workflows.ScanWorkflowName,
		workflows.ScanInput{Hosts: []activities.HostRef{{Name: "evil", URI: "qemu+tcp://attacker.example/system"}}})
	if err != nil {
		t.Fatal(err)
	}
	var out workflows.ScanOutput
	if err := scan.Get(ctx, &out); err != nil {
		t.Fatal(err)
	}
	if len(out.Hosts) != 1 || !strings.Contains(out.Hosts[0].Error, `host "evil" is not in this worker's configuration`) {
		t.Errorf("ScanOwned of an unconfigured host: %+v, want it refused by name", out.Hosts)
	}

	last := time.Now()
	var st workflows.GroupStatus
	waitFor(t, 30*time.Second, "three observations after the last forged call", func() bool {
		st, err = s.Status(ctx, group)
		return err == nil && st.LastObservedAt.After(last.Add(3*time.Second))
	})
	if st.Min != 1 || st.Max != 3 || st.Desired > 3 || st.Desired < 1 || len(st.Windows) != 0 {
		t.Errorf("after the forged calls: min %d max %d desired %d windows %v; want 1..3 with desired inside, no window", st.Min, st.Max, st.Desired, st.Windows)
	}
	if v := viewGroup(t, lv, group); len(v.defined) > 3 || len(v.defined) < 1 {
		t.Errorf("domains of %s: %v, want between 1 and 3", group, v.defined)
	}
}
