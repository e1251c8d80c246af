package test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"

	"github.com/premiscale/premiscale/config"
	"github.com/premiscale/premiscale/workflows"
	"github.com/premiscale/premiscale/workflows/policy"
)

// TestForgedGroupSpecAndStartAreRefused plays a client of the frontend
// against a group configured 0..3 with one VM: a spec signal asking for
// max 1000, desired 20 and bigger VMs, a remove asking to delete its VMs,
// a window of its schedule with other bounds and duration, and a fresh
// workflow for a group the configuration does not have. The worker checks both against its own
// configuration: the signal is refused with the fields named in the
// group's events and the group keeps its bounds and its one VM through
// several observations, as it does after the refused remove; the start
// ends refused naming the group, and no VM of it is made. Before, the spec
// was taken (20 VMs), the remove deleted the group's VMs below its min, and
// the start ran a group of its own.
func TestForgedGroupSpecAndStartAreRefused(t *testing.T) {
	lv := requireLibvirt(t, testDriverURI)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	const group = "bounded"
	g := testDriverGroup(group, 0, 3)
	two := 2
	g.Schedules = []config.Schedule{{Name: "burst", Cron: "0 0 1 1 *", Duration: time.Hour, Min: &two}}
	// No host watcher: the group observes its host each second, so that
	// its observations prove the windows below.
	cfg := testDriverConfig(g)
	off := false
	cfg.Controller.HostWatch.Enabled = &off
	s, c := startInProcessConfig(t, ctx, cfg, nil)
	// The new sides of group-spec-from-worker, group-checks-its-id,
	// remove-from-worker, window-from-worker and child-checks-its-parent.
	t.Cleanup(func() { recordHistories(t, c, "spec_refused", workflows.GroupWorkflowName, workflows.ProvisionVMName) })
	if _, err := s.Scale(ctx, group, 1); err != nil {
		t.Fatal(err)
	}
	if _, err := s.WaitSettled(ctx, group, 100*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cctx, ccancel := context.WithTimeout(context.Background(), time.Minute)
		defer ccancel()
		_, _ = s.Scale(cctx, group, 0)
		_, _ = s.WaitSettled(cctx, group, 100*time.Millisecond)
		purgeGroup(t, lv, testPool, "ghostgroup")
	})

	forged := workflows.SpecFromConfig(s.Config, s.Config.Autoscale.Groups[0])
	forged.Max, forged.Desired = 1000, 20
	forged.Template.VCPUs = 8
	if err := c.SignalWorkflow(ctx, workflows.GroupWorkflowID(group), "", workflows.SignalSpec, forged); err != nil {
		t.Fatal(err)
	}
	var refusedAt time.Time
	waitFor(t, 30*time.Second, "the forged spec refused in the group's events", func() bool {
		st, err := s.Status(ctx, group)
		if err != nil {
			return false
		}
		for _, e := range st.Events {
			if strings.Contains(e.Message, "refused by this worker") {
				for _, want := range []string{"max: 1000", "desired: 20", `"vcpus":8`} {
					if !strings.Contains(e.Message, want) {
						t.Errorf("refusal %q does not name %s", e.Message, want)
					}
				}
				refusedAt = e.At
				return true
			}
		}
		return false
	})
	// Three observations after the refusal: the loop ran in the window.
	var st workflows.GroupStatus
	waitFor(t, 30*time.Second, "three observations after the refusal", func() bool {
		var err error
		st, err = s.Status(ctx, group)
		return err == nil && st.LastObservedAt.After(refusedAt.Add(3*time.Second))
	})
	if st.Max != 3 || st.Desired != 1 || st.Running != 1 || st.Provisioning != 0 {
		t.Errorf("after the forged spec: max %d desired %d running %d provisioning %d; want 3, 1, 1, 0", st.Max, st.Desired, st.Running, st.Provisioning)
	}
	if v := viewGroup(t, lv, group); !slices.Equal(v.defined, []string{group + "-1"}) {
		t.Errorf("domains of %s after the forged spec: %v, want %s-1 alone", group, v.defined, group)
	}

	// A remove asking to delete every VM of the configured group.
	if err := c.SignalWorkflow(ctx, workflows.GroupWorkflowID(group), "", workflows.SignalRemove, workflows.RemoveRequest{DeleteVMs: true}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "the forged remove refused and three observations after it", func() bool {
		st, err := s.Status(ctx, group)
		if err != nil {
			return false
		}
		for _, e := range st.Events {
			if strings.Contains(e.Message, "remove refused") {
				return st.LastObservedAt.After(e.At.Add(3 * time.Second))
			}
		}
		return false
	})
	if st, err := s.Status(ctx, group); err != nil || st.Removed || st.Desired != 1 || st.Running != 1 {
		t.Errorf("after the forged remove: %+v, %v; want the group managed with its one VM", st, err)
	}
	if v := viewGroup(t, lv, group); !slices.Equal(v.running, []string{group + "-1"}) {
		t.Errorf("running %v after the forged remove, want %s-1", v.running, group)
	}

	// A window of the configured schedule, but not as configured: min 3
	// for two days.
	three := 3
	now := time.Now()
	h, err := c.UpdateWorkflow(ctx, client.UpdateWorkflowOptions{
		WorkflowID: workflows.GroupWorkflowID(group), UpdateName: workflows.UpdateScheduleWindow,
		Args:         []any{policy.Window{Schedule: "burst", Start: now, Until: now.Add(48 * time.Hour), Min: &three}},
		WaitForStage: client.WorkflowUpdateStageCompleted,
	})
	if err == nil {
		err = h.Get(ctx, nil)
	}
	if err == nil || !strings.Contains(err.Error(), "min 3, configured 2") || !strings.Contains(err.Error(), "duration 48h0m0s, configured 1h0m0s") {
		t.Errorf("forged schedule window: %v, want it refused naming min and duration", err)
	}
	if st, err := s.Status(ctx, group); err != nil || st.Min != 0 || len(st.Windows) != 0 || st.Desired != 1 {
		t.Errorf("after the forged window: %+v, %v; want min 0, no window, desired 1", st, err)
	}

	ghost := forged
	ghost.Name, ghost.Max, ghost.Desired = "ghostgroup", 3, 2
	run, err := c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: workflows.GroupWorkflowID("ghostgroup"), TaskQueue: s.Config.Controller.Temporal.TaskQueue},
		workflows.GroupWorkflowName, workflows.GroupInput{Spec: ghost})
	if err != nil {
		t.Fatal(err)
	}
	rctx, rcancel := context.WithTimeout(ctx, 30*time.Second)
	defer rcancel()
	err = run.Get(rctx, nil)
	var ae *temporal.ApplicationError
	if !errors.As(err, &ae) || ae.Type() != workflows.ErrTypeRefused || !strings.Contains(err.Error(), `group "ghostgroup" is not in this worker's configuration`) {
		t.Errorf("forged group ended with %v, want it refused naming the group", err)
	}
	if v := viewGroup(t, lv, "ghostgroup"); len(v.defined) != 0 || len(v.volumes) != 0 {
		t.Errorf("the refused group made domains %v, volumes %v", v.defined, v.volumes)
	}
}
