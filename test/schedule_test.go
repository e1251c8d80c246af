package test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"go.temporal.io/api/serviceerror"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"

	"github.com/premiscale/premiscale/config"
	"github.com/premiscale/premiscale/workflows"
)

// TestScheduleFiresOnTheEmbeddedServerAndRaisesTheGroup: a group's
// schedule becomes a Temporal Schedule on the embedded server; it fires
// at the next minute, its window raises the group's min and the group
// grows to it on the real libvirtd; a pause made in Temporal survives the
// controller ensuring the schedules again; a schedule removed from the
// configuration is deleted and its window closes.
func TestScheduleFiresOnTheEmbeddedServerAndRaisesTheGroup(t *testing.T) {
	requireLibvirt(t, testDriverURI)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	g := testDriverGroup("sched", 0, 3)
	two := 2
	g.Schedules = []config.Schedule{{Name: "every-minute", Cron: "* * * * *", Duration: 10 * time.Minute, Min: &two}}
	s, c := startInProcess(t, ctx, config.Prometheus{}, g)
	id := workflows.ScheduleID("sched", "every-minute")
	h := c.ScheduleClient().GetHandle(ctx, id)
	desc, err := h.Describe(ctx)
	if err != nil {
		t.Fatalf("schedule %s not created: %v", id, err)
	}
	if len(desc.Info.NextActionTimes) == 0 || time.Until(desc.Info.NextActionTimes[0]) > time.Minute {
		t.Fatalf("schedule %s next fires at %v, want within a minute", id, desc.Info.NextActionTimes)
	}
	first := desc.Info.NextActionTimes[0]

	deadline := first.Add(30 * time.Second)
	for {
		st, err := s.Status(ctx, "sched")
		if err != nil {
			t.Fatal(err)
		}
		if st.Min == 2 && st.Running == 2 && st.Settled() {
			if st.Schedule == nil || st.Schedule.Schedule != "every-minute" || !st.Schedule.Start.Equal(first) {
				t.Errorf("governing window %+v, want every-minute from %s", st.Schedule, first)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("30 s after the schedule fired (%s): %+v", first, st)
		}
		time.Sleep(250 * time.Millisecond)
	}
	if _, err := s.Scale(ctx, "sched", 1); err == nil {
		t.Error("scale to 1 accepted below the scheduled min 2")
	}
	checkScheduledRuns(t, ctx, c)

	// What status shows of the schedule: its last and next firing.
	scheds, err := s.Schedules(ctx, "sched")
	if err != nil {
		t.Fatal(err)
	}
	if len(scheds) != 1 || scheds[0].Name != "every-minute" || !scheds[0].Last.Equal(first) || !scheds[0].Next.After(first) || scheds[0].Paused || scheds[0].Error != "" {
		t.Errorf("schedules %+v, want every-minute last fired for %s, next after it, active", scheds, first)
	}

	// Paused in Temporal (UI or CLI): the controller ensuring its schedules
	// again (a restart) updates it but leaves it paused.
	if err := h.Pause(ctx, client.SchedulePauseOptions{Note: "maintenance"}); err != nil {
		t.Fatal(err)
	}
	if err := s.EnsureSchedules(ctx); err != nil {
		t.Fatal(err)
	}
	if desc, err := h.Describe(ctx); err != nil || !desc.Schedule.State.Paused {
		t.Fatalf("after ensuring again: %+v, %v; want the schedule still paused", desc, err)
	}
	if scheds, err := s.Schedules(ctx, "sched"); err != nil || len(scheds) != 1 || !scheds[0].Paused || scheds[0].Note != "maintenance" {
		t.Errorf("schedules after a pause: %+v, %v; want paused with note maintenance", scheds, err)
	}

	// Removed from the configuration: the schedule goes, its window closes.
	s.Config.Autoscale.Groups[0].Schedules = nil
	if err := s.EnsureGroups(ctx); err != nil {
		t.Fatal(err)
	}
	var nf *serviceerror.NotFound
	if _, err := h.Describe(ctx); !errors.As(err, &nf) {
		t.Errorf("schedule removed from the configuration still described: %v", err)
	}
	deadline = time.Now().Add(10 * time.Second)
	for {
		st, err := s.Status(ctx, "sched")
		if err != nil {
			t.Fatal(err)
		}
		if st.Min == 0 && st.Schedule == nil && len(st.Windows) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("schedule removed 10 s ago, group still %+v", st)
		}
		time.Sleep(100 * time.Millisecond)
	}
	recordHistories(t, c, "schedule")
}

// checkScheduledRuns fails the test unless every ScheduledWindow workflow
// the schedule started completed.
func checkScheduledRuns(t *testing.T, ctx context.Context, c client.Client) {
	t.Helper()
	resp, err := c.ListWorkflow(ctx, &workflowservice.ListWorkflowExecutionsRequest{
		Query: fmt.Sprintf("WorkflowType = '%s'", workflows.ScheduledWindowName),
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Executions) == 0 {
		t.Fatal("no ScheduledWindow workflow listed")
	}
	for _, e := range resp.Executions {
		var res workflows.ScheduleWindowResult
		if err := c.GetWorkflow(ctx, e.GetExecution().GetWorkflowId(), e.GetExecution().GetRunId()).Get(ctx, &res); err != nil {
			t.Errorf("scheduled run %s: %v", e.GetExecution().GetWorkflowId(), err)
		} else if res.Governing != "every-minute" || res.Min != 2 {
			t.Errorf("scheduled run %s returned %+v", e.GetExecution().GetWorkflowId(), res)
		}
	}
}
