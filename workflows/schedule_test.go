package workflows_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/mock"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/workflow"

	"github.com/premiscale/premiscale/activities"
	"github.com/premiscale/premiscale/workflows"
	"github.com/premiscale/premiscale/workflows/policy"
)

func intp(v int) *int { return &v }

// openWindow sends UpdateScheduleWindow and returns the refusal (nil if
// accepted); the result goes to res when given.
func openWindow(env *testsuite.TestWorkflowEnvironment, w policy.Window, refused *error, res *workflows.ScheduleWindowResult) {
	env.UpdateWorkflow(workflows.UpdateScheduleWindow, w.Schedule+w.Start.String()+env.Now().String(), &testsuite.TestUpdateCallback{
		OnAccept: func() {},
		OnReject: func(err error) {
			if refused != nil {
				*refused = err
			}
		},
		OnComplete: func(v any, err error) {
			if r, ok := v.(workflows.ScheduleWindowResult); ok && res != nil {
				*res = r
			}
		},
	}, w)
}

// TestScheduleWindowsGovernBoundsByTheLatestStartAndEndOnTime drives a
// group through two overlapping schedule windows with time skipping: each
// raises min (and sets desired) while it governs, the later-started one
// wins, the earlier governs again when it ends, and at the end the
// configuration's bounds are back with desired left where it was.
func TestScheduleWindowsGovernBoundsByTheLatestStartAndEndOnTime(t *testing.T) {
	f := newFake("h1")
	env := newEnv(t, f)
	sp := spec(1, 1, 10, "h1")
	sp.Schedules = []string{"day", "lunch"}
	t0 := env.Now()
	var refusedLow, refusedUnknown, refusedBad error
	var res workflows.ScheduleWindowResult
	at := func(d time.Duration, fn func()) { env.RegisterDelayedCallback(fn, d) }

	at(time.Minute, func() {
		openWindow(env, policy.Window{Schedule: "day", Order: 0, Start: env.Now(), Until: env.Now().Add(2 * time.Hour), Min: intp(4), Desired: intp(5)}, nil, &res)
	})
	at(3*time.Minute, func() {
		st := status(t, env)
		if st.Min != 4 || st.Max != 10 || st.Desired != 5 || st.Running != 5 || st.Schedule == nil || st.Schedule.Schedule != "day" {
			t.Errorf("in day's window: min %d max %d desired %d running %d schedule %+v; want 4, 10, 5, 5, day", st.Min, st.Max, st.Desired, st.Running, st.Schedule)
		}
		if st.ConfigMin != 1 || st.ConfigMax != 10 {
			t.Errorf("config bounds %d..%d, want 1..10", st.ConfigMin, st.ConfigMax)
		}
		if res.Governing != "day" || res.Min != 4 || res.Desired != 5 {
			t.Errorf("update result %+v, want day governing with min 4 and desired 5", res)
		}
		env.UpdateWorkflow(workflows.UpdateSetDesired, "below-scheduled-min", &testsuite.TestUpdateCallback{
			OnAccept: func() { t.Error("set-desired 2 accepted below the scheduled min 4") }, OnReject: func(err error) { refusedLow = err }, OnComplete: func(any, error) {},
		}, workflows.DesiredRequest{Desired: 2})
		openWindow(env, policy.Window{Schedule: "night", Start: env.Now(), Until: env.Now().Add(time.Hour), Min: intp(2)}, &refusedUnknown, nil)
		openWindow(env, policy.Window{Schedule: "lunch", Start: env.Now(), Until: env.Now().Add(time.Hour), Min: intp(3), Desired: intp(11)}, &refusedBad, nil)
	})
	at(4*time.Minute, func() {
		if refusedLow == nil || !strings.Contains(refusedLow.Error(), "min (4, set by schedule day") {
			t.Errorf("set-desired 2 in day's window: %v, want refusal naming min (4, set by schedule day ...)", refusedLow)
		}
		if refusedUnknown == nil || !strings.Contains(refusedUnknown.Error(), "not among the group's configured schedules") {
			t.Errorf("window of an unconfigured schedule: %v, want refusal", refusedUnknown)
		}
		if refusedBad == nil || !strings.Contains(refusedBad.Error(), "desired 11 is outside [3, 10]") {
			t.Errorf("window with desired past max: %v, want refusal naming it", refusedBad)
		}
		// Lunch starts later than day: it governs while it lasts.
		openWindow(env, policy.Window{Schedule: "lunch", Order: 1, Start: env.Now(), Until: env.Now().Add(30 * time.Minute), Min: intp(7)}, nil, nil)
		// The same window again (a retried action) changes nothing.
		openWindow(env, policy.Window{Schedule: "day", Order: 0, Start: t0.Add(time.Minute), Until: t0.Add(time.Minute + 2*time.Hour), Min: intp(4), Desired: intp(5)}, nil, nil)
	})
	at(6*time.Minute, func() {
		st := status(t, env)
		if st.Min != 7 || st.Desired != 7 || st.Running != 7 || st.Schedule == nil || st.Schedule.Schedule != "lunch" || len(st.Windows) != 2 {
			t.Errorf("in lunch's window: min %d desired %d running %d schedule %+v windows %d; want 7, 7, 7, lunch, 2", st.Min, st.Desired, st.Running, st.Schedule, len(st.Windows))
		}
	})
	at(40*time.Minute, func() {
		// Lunch ended at +34m: day governs again; desired stays within it.
		st := status(t, env)
		if st.Min != 4 || st.Desired != 7 || st.Schedule == nil || st.Schedule.Schedule != "day" || len(st.Windows) != 1 {
			t.Errorf("after lunch: min %d desired %d schedule %+v windows %d; want 4, 7, day, 1", st.Min, st.Desired, st.Schedule, len(st.Windows))
		}
	})
	at(2*time.Hour+5*time.Minute, func() {
		st := status(t, env)
		if st.Min != 1 || st.Max != 10 || st.Desired != 7 || st.Schedule != nil || len(st.Windows) != 0 {
			t.Errorf("after every window: min %d max %d desired %d schedule %+v windows %d; want 1, 10, 7, none, 0", st.Min, st.Max, st.Desired, st.Schedule, len(st.Windows))
		}
		var ended bool
		for _, e := range st.Events {
			ended = ended || strings.Contains(e.Message, "no schedule window open: min 1, max 10")
		}
		if !ended {
			t.Errorf("no event says the windows ended: %+v", st.Events)
		}
	})
	at(2*time.Hour+10*time.Minute, env.CancelWorkflow)
	env.SetTestTimeout(time.Minute)
	runGroup(t, env, workflows.GroupInput{Spec: sp})
}

// TestRemovedScheduleStopsGoverning: a spec without the schedule (it was
// removed from the configuration) closes its window at once.
func TestRemovedScheduleStopsGoverning(t *testing.T) {
	f := newFake("h1")
	env := newEnv(t, f)
	sp := spec(1, 1, 10, "h1")
	sp.Schedules = []string{"day"}
	steps(env,
		func() {
			openWindow(env, policy.Window{Schedule: "day", Start: env.Now(), Until: env.Now().Add(time.Hour), Min: intp(3)}, nil, nil)
		},
		func() {
			if st := status(t, env); st.Min != 3 || st.Desired != 3 {
				t.Errorf("in the window: min %d desired %d, want 3, 3", st.Min, st.Desired)
			}
			next := spec(1, 1, 10, "h1")
			env.SignalWorkflow(workflows.SignalSpec, next)
		},
		func() {
			if st := status(t, env); st.Min != 1 || st.Schedule != nil || len(st.Windows) != 0 {
				t.Errorf("schedule removed: min %d schedule %+v windows %d, want 1, none, 0", st.Min, st.Schedule, len(st.Windows))
			}
		},
	)
	runGroup(t, env, workflows.GroupInput{Spec: sp})
}

// TestScheduledWindowStartsWhenTheScheduleFiredFor: the window a schedule's
// action opens starts at the time the schedule fired for (a firing caught
// up late still ends on time), and a group's refusal fails the workflow.
func TestScheduledWindowStartsWhenTheScheduleFiredFor(t *testing.T) {
	var s testsuite.WorkflowTestSuite
	fired := time.Date(2026, 12, 1, 8, 0, 0, 0, time.UTC)
	for _, refuse := range []bool{false, true} {
		env := s.NewTestWorkflowEnvironment()
		env.SetStartTime(fired.Add(10 * time.Minute)) // ran 10 minutes late
		key := temporal.NewSearchAttributeKeyTime("TemporalScheduledStartTime")
		if err := env.SetTypedSearchAttributesOnStart(temporal.NewSearchAttributes(key.ValueSet(fired))); err != nil {
			t.Fatal(err)
		}
		env.RegisterWorkflowWithOptions(workflows.ScheduledWindow, workflow.RegisterOptions{Name: workflows.ScheduledWindowName})
		var a *activities.Groups
		var sent policy.Window
		env.RegisterActivity(a)
		env.OnActivity(a.UpdateGroup, mock.Anything, mock.Anything).Return(func(_ context.Context, in activities.UpdateGroupInput) (activities.UpdateGroupOutput, error) {
			if in.WorkflowID != workflows.GroupWorkflowID("web") || in.UpdateName != workflows.UpdateScheduleWindow {
				t.Errorf("update %s of %s, want %s of the group", in.UpdateName, in.WorkflowID, workflows.UpdateScheduleWindow)
			}
			if err := json.Unmarshal(in.Arg, &sent); err != nil {
				t.Fatal(err)
			}
			if refuse {
				return activities.UpdateGroupOutput{}, temporal.NewNonRetryableApplicationError("refused", "InvalidWindow", nil)
			}
			out, _ := json.Marshal(workflows.ScheduleWindowResult{Governing: "day", Min: 4, Max: 10, Desired: 4})
			return activities.UpdateGroupOutput{Result: out}, nil
		})
		env.ExecuteWorkflow(workflows.ScheduledWindowName, workflows.ScheduledWindowInput{Group: "web", Schedule: "day", Order: 2, Duration: 11 * time.Hour, Min: intp(4)})
		if !env.IsWorkflowCompleted() {
			t.Fatal("ScheduledWindow did not complete")
		}
		if !sent.Start.Equal(fired) || !sent.Until.Equal(fired.Add(11*time.Hour)) || sent.Order != 2 || sent.Min == nil || *sent.Min != 4 {
			t.Errorf("window sent %+v, want day from %s for 11h with min 4, order 2", sent, fired)
		}
		err := env.GetWorkflowError()
		if refuse != (err != nil) {
			t.Errorf("refused=%v: workflow error %v", refuse, err)
		}
		if !refuse {
			var res workflows.ScheduleWindowResult
			if err := env.GetWorkflowResult(&res); err != nil || res.Governing != "day" {
				t.Errorf("result %+v, %v; want day governing", res, err)
			}
		}
	}
}

// TestWindowNotAsTheWorkerConfiguresItIsRefused: a window of a configured
// schedule whose values are not the worker's (min 50 for a schedule
// configured with 4: sent by hand) fails, named, and changes no bound.
func TestWindowNotAsTheWorkerConfiguresItIsRefused(t *testing.T) {
	f := newFake("h1")
	env := newEnv(t, f)
	env.OnActivity(workflows.CheckWindowName, mock.Anything, mock.Anything).Return(
		func(_ context.Context, in workflows.WindowCheckInput) (workflows.WindowCheck, error) {
			if in.Window.Min != nil && *in.Window.Min != 4 {
				return workflows.WindowCheck{Refused: []string{fmt.Sprintf("min %d, configured 4", *in.Window.Min)}}, nil
			}
			return workflows.WindowCheck{}, nil
		})
	sp := spec(1, 1, 60, "h1")
	sp.Schedules = []string{"day"}
	var failed error
	completed := false
	steps(env,
		func() {
			env.UpdateWorkflow(workflows.UpdateScheduleWindow, "forged", &testsuite.TestUpdateCallback{
				OnAccept: func() {}, OnReject: func(err error) { t.Errorf("validator rejected: %v", err) },
				OnComplete: func(_ any, err error) { completed, failed = true, err },
			}, policy.Window{Schedule: "day", Start: env.Now(), Until: env.Now().Add(time.Hour), Min: intp(50)})
		},
		func() {
			if !completed || failed == nil || !strings.Contains(failed.Error(), "min 50, configured 4") {
				t.Errorf("forged window: completed %v, %v; want it failed naming min", completed, failed)
			}
			st := status(t, env)
			if st.Min != 1 || st.Desired != 1 || len(st.Windows) != 0 || st.Running != 1 {
				t.Errorf("after the forged window: min %d desired %d windows %d running %d; want 1, 1, 0, 1", st.Min, st.Desired, len(st.Windows), st.Running)
			}
			openWindow(env, policy.Window{Schedule: "day", Start: env.Now(), Until: env.Now().Add(time.Hour), Min: intp(4)}, nil, nil)
		},
		func() {
			if st := status(t, env); st.Min != 4 || st.Running != 4 {
				t.Errorf("the configured window: min %d running %d, want 4, 4", st.Min, st.Running)
			}
		},
	)
	runGroup(t, env, workflows.GroupInput{Spec: sp})
}

func TestOperableIDsAreExactlyGroupWorkflowsAndTheirSchedules(t *testing.T) {
	for _, tc := range []struct {
		id              string
		group, schedule bool
	}{
		{workflows.GroupWorkflowID("demo"), true, false},
		{workflows.ScheduleID("demo", "business-hours"), false, true},
		{"premiscale/group/", false, false},
		{"premiscale/group/demo/extra", false, false},
		{"premiscale/orphans", false, false},
		{"premiscale/installation/premiscale", false, false},
		{workflows.ProvisionWorkflowID("demo", "demo-1"), false, false},
		{"premiscale/group//schedule/x", false, false},
		{"premiscale/group/demo/schedule/", false, false},
		{"premiscale/group/demo/schedule/x/y", false, false},
		{"other/premiscale/group/demo", false, false},
	} {
		if got := workflows.IsGroupWorkflowID(tc.id); got != tc.group {
			t.Errorf("workflows.IsGroupWorkflowID(%q) = %v", tc.id, got)
		}
		if got := workflows.IsScheduleID(tc.id); got != tc.schedule {
			t.Errorf("workflows.IsScheduleID(%q) = %v", tc.id, got)
		}
	}
}
