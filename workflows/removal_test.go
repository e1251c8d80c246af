package workflows_test

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/mock"
	"go.temporal.io/sdk/testsuite"

	"github.com/premiscale/premiscale/workflows"
)

// endsByItself runs the group workflow and fails the test unless it
// completed on its own, without error, before the test's deadline.
func endsByItself(t *testing.T, env *testsuite.TestWorkflowEnvironment, in workflows.GroupInput) {
	t.Helper()
	env.ExecuteWorkflow(workflows.GroupWorkflowName, in)
	if !env.IsWorkflowCompleted() {
		t.Fatal("group workflow did not complete")
	}
	if err := env.GetWorkflowError(); err != nil {
		t.Fatalf("group workflow ended with %v, want it done", err)
	}
}

func TestRemovedGroupKeepsItsVMsUnmanagedAndEndsWhenTheyAreGone(t *testing.T) {
	f := newFake("h1")
	env := newEnv(t, f)
	env.RegisterDelayedCallback(func() {
		env.SignalWorkflow(workflows.SignalRemove, workflows.RemoveRequest{})
	}, time.Minute)
	env.RegisterDelayedCallback(func() {
		env.SignalWorkflow(workflows.SignalScale, workflows.DesiredRequest{Desired: 3})
		f.mu.Lock()
		delete(f.domains["h1"], "web-1") // deleted by hand
		f.mu.Unlock()
	}, 2*time.Minute)
	env.RegisterDelayedCallback(func() {
		st := status(t, env)
		if !st.Removed || st.RemoveDeletesVMs {
			t.Errorf("status removed=%v deletes=%v, want removed, keeping its VMs", st.Removed, st.RemoveDeletesVMs)
		}
		if got := f.running(); !slices.Equal(got, []string{"web-2"}) {
			t.Errorf("running = %v, want web-2 kept, web-1 not replaced, no scale-out", got)
		}
		if len(st.Members) != 1 || st.Members[0].Name != "web-2" {
			t.Errorf("members %+v, want web-2 only", st.Members)
		}
		f.mu.Lock()
		delete(f.domains["h1"], "web-2")
		f.mu.Unlock()
	}, 3*time.Minute)
	env.RegisterDelayedCallback(func() { t.Error("still running 10 minutes after its last VM went") }, 13*time.Minute)
	endsByItself(t, env, workflows.GroupInput{Spec: spec(2, 0, 3, "h1")})
	if n := f.volumeCount(); n != 2 {
		t.Errorf("volumes = %d, want the 2 kept (nothing of the removed group deleted)", n)
	}
}

func TestRemovedGroupAskedToDeleteDecommissionsEveryMemberThenEnds(t *testing.T) {
	f := newFake("h1")
	env := newEnv(t, f)
	env.RegisterDelayedCallback(func() {
		env.SignalWorkflow(workflows.SignalRemove, workflows.RemoveRequest{DeleteVMs: true})
	}, time.Minute)
	env.RegisterDelayedCallback(func() { t.Error("still running 10 minutes after removal") }, 11*time.Minute)
	endsByItself(t, env, workflows.GroupInput{Spec: spec(2, 2, 3, "h1")})
	if got := f.running(); len(got) != 0 || f.volumeCount() != 0 {
		t.Errorf("after removal: running %v, %d volumes; want none", got, f.volumeCount())
	}
}

func TestGroupConfiguredAgainIsManagedAgain(t *testing.T) {
	f := newFake("h1")
	env := newEnv(t, f)
	steps(env,
		func() { env.SignalWorkflow(workflows.SignalRemove, workflows.RemoveRequest{}) },
		func() { env.SignalWorkflow(workflows.SignalSpec, spec(3, 0, 3, "h1")) },
		func() {
			if st := status(t, env); st.Removed || st.Running != 3 {
				t.Errorf("configured again: removed=%v running=%d, want managed and at the new desired 3", st.Removed, st.Running)
			}
		},
	)
	runGroup(t, env, workflows.GroupInput{Spec: spec(1, 0, 3, "h1")})
}

// removedWorker makes env's worker answer remove signals with chk.
func removedWorker(env *testsuite.TestWorkflowEnvironment, chk workflows.RemoveCheck) {
	env.OnActivity(workflows.CheckRemoveName, mock.Anything, mock.Anything).Return(chk, nil)
}

// TestRemoveOfAGroupTheWorkerConfiguresIsRefused: a remove signal asking
// to delete every VM of a group the worker's configuration still has (a
// forged one: the controller sends it only for groups it no longer has)
// changes nothing but an event; the group keeps scaling.
func TestRemoveOfAGroupTheWorkerConfiguresIsRefused(t *testing.T) {
	f := newFake("h1")
	env := newEnv(t, f)
	removedWorker(env, workflows.RemoveCheck{Configured: true, DeleteVMs: true})
	steps(env,
		func() { env.SignalWorkflow(workflows.SignalRemove, workflows.RemoveRequest{DeleteVMs: true}) },
		func() {
			st := status(t, env)
			if st.Removed || st.Desired != 2 || st.Running != 2 {
				t.Errorf("after a forged remove: removed %v desired %d running %d; want not removed, 2, 2", st.Removed, st.Desired, st.Running)
			}
			if !slices.ContainsFunc(st.Events, func(e workflows.Event) bool {
				return strings.Contains(e.Message, "remove refused: group web is in this worker's configuration")
			}) {
				t.Errorf("no refusal among the events %v", st.Events)
			}
			setDesired(t, env, 3)
		},
		func() {
			if got := f.running(); len(got) != 3 {
				t.Errorf("running %v after a scale to 3: the group stopped scaling", got)
			}
		},
	)
	runGroup(t, env, workflows.GroupInput{Spec: spec(2, 0, 3, "h1")})
}

// TestRemoveKeepsTheVMsUnlessTheWorkerDeletesUnconfiguredGroups: a remove
// asking to delete the VMs, where the worker's
// autoscale.orphans.deleteUnconfiguredGroups is off, removes the group but
// keeps its VMs.
func TestRemoveKeepsTheVMsUnlessTheWorkerDeletesUnconfiguredGroups(t *testing.T) {
	f := newFake("h1")
	env := newEnv(t, f)
	removedWorker(env, workflows.RemoveCheck{})
	steps(env,
		func() { env.SignalWorkflow(workflows.SignalRemove, workflows.RemoveRequest{DeleteVMs: true}) },
		func() {
			st := status(t, env)
			if !st.Removed || st.RemoveDeletesVMs {
				t.Errorf("status removed=%v deletes=%v, want removed, keeping its VMs", st.Removed, st.RemoveDeletesVMs)
			}
			if got := f.running(); len(got) != 2 {
				t.Errorf("running %v, want both VMs kept", got)
			}
		},
	)
	runGroup(t, env, workflows.GroupInput{Spec: spec(2, 0, 3, "h1")})
}
