package workflows_test

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"go.temporal.io/sdk/testsuite"

	"github.com/premiscale/premiscale/config"
	"github.com/premiscale/premiscale/workflows"
)

// refreshSpec is spec with a template revision; another revision is the
// same group with a template of more memory.
func refreshSpec(desired int, rev string) workflows.GroupSpec {
	s := spec(desired, 0, 10, "h1", "h2")
	s.Revision = rev
	if rev != "r1" {
		s.Template.Memory = "512MiB"
	}
	return s
}

// updateResult is a refresh Update's outcome, filled in once the workflow
// has handled it (the test environment delivers Updates with its next
// workflow task: read it in a later step).
type updateResult struct {
	r    workflows.Refresh
	err  error
	done bool
}

// updates numbers the Updates sent.
var updates int

// update sends a refresh Update (req nil: none).
func update(env *testsuite.TestWorkflowEnvironment, name string, req *workflows.RefreshRequest) *updateResult {
	u := &updateResult{}
	cb := &testsuite.TestUpdateCallback{
		OnAccept: func() {},
		OnReject: func(e error) { u.err, u.done = e, true },
		OnComplete: func(v any, e error) {
			u.done = true
			if e != nil {
				u.err = e
				return
			}
			u.r = v.(workflows.Refresh)
		},
	}
	updates++
	id := fmt.Sprintf("%s-%d", name, updates) // one ID is one Update
	if req == nil {
		env.UpdateWorkflow(name, id, cb)
	} else {
		env.UpdateWorkflow(name, id, cb, *req)
	}
	return u
}

// refused fails the test unless u was refused with an error containing want.
func (u *updateResult) refused(t *testing.T, what, want string) {
	t.Helper()
	if !u.done || u.err == nil || !strings.Contains(u.err.Error(), want) {
		t.Errorf("%s: done %v, err = %v; want a refusal containing %q", what, u.done, u.err, want)
	}
}

// ok returns u's refresh, failing the test if it was refused or is not in.
func (u *updateResult) ok(t *testing.T, what string) workflows.Refresh {
	t.Helper()
	if !u.done || u.err != nil {
		t.Fatalf("%s: done %v, err = %v", what, u.done, u.err)
	}
	return u.r
}

// sampleRunning queries status every second from `from` for `span` (virtual
// time) and records the fewest running members seen while a refresh ran,
// and the most members running or being provisioned.
type runningSamples struct{ fewest, most, samples int }

func sampleRunning(t *testing.T, env *testsuite.TestWorkflowEnvironment, from, span time.Duration) *runningSamples {
	s := &runningSamples{fewest: 1 << 30}
	for d := from; d < from+span; d += time.Second {
		env.RegisterDelayedCallback(func() {
			st := status(t, env)
			if st.Refresh == nil || st.Refresh.Status != workflows.RefreshRunning {
				return
			}
			s.samples++
			s.fewest = min(s.fewest, st.Running)
			s.most = max(s.most, st.Running+st.Provisioning)
		}, d)
	}
	return s
}

func revisions(st workflows.GroupStatus) map[string]int {
	out := map[string]int{}
	for _, m := range st.Members {
		out[m.Revision]++
	}
	return out
}

func TestRefreshReplacesOutdatedMembersInBatchesKeepingMinHealthy(t *testing.T) {
	f := newFake("h1", "h2")
	env := newEnv(t, f, 20*time.Second)
	env.SetTestTimeout(2 * time.Minute)
	samples := sampleRunning(t, env, time.Second, 9*time.Minute)
	var old []string
	var bad, good, second *updateResult
	steps(env,
		func() {
			st := status(t, env)
			if !st.Settled() || st.Running != 6 || st.Outdated != 0 {
				t.Fatalf("before: %+v, want 6 running of the current revision", st)
			}
			old = byState(st, workflows.MemberRunning)
			env.SignalWorkflow(workflows.SignalSpec, refreshSpec(6, "r2"))
		},
		func() {
			st := status(t, env)
			if st.Revision != "r2" || st.Outdated != 6 || st.Running != 6 || st.Refresh != nil {
				t.Errorf("after the template change: revision %s, %d outdated, %d running, refresh %+v; want r2, 6, 6 and no refresh (manual mode)", st.Revision, st.Outdated, st.Running, st.Refresh)
			}
			bad = update(env, workflows.UpdateRefresh, &workflows.RefreshRequest{MinHealthy: "101%"})
			good = update(env, workflows.UpdateRefresh, &workflows.RefreshRequest{MinHealthy: "66%"})
			second = update(env, workflows.UpdateRefresh, nil)
		},
		func() {
			bad.refused(t, "min-healthy 101%", "min-healthy")
			if r := good.ok(t, "refresh"); r.Total != 6 || r.MinHealthyPercent != 66 || r.Target != "r2" || r.ID != 1 {
				t.Errorf("refresh: %+v; want 6 to replace at 66%% with r2", r)
			}
			second.refused(t, "a second refresh", "is running")
		},
		func() {}, func() {}, func() {},
		func() {
			st := status(t, env)
			r := st.Refresh
			if r == nil || r.Status != workflows.RefreshDone || r.Replaced != 6 || r.Remaining != 0 {
				t.Fatalf("refresh not done: %+v", r)
			}
			if !st.Settled() || st.Running != 6 || st.Outdated != 0 {
				t.Errorf("after: %+v, want 6 running, none outdated", st)
			}
			if got := revisions(st); got["r2"] != 6 || len(got) != 1 {
				t.Errorf("member revisions = %v, want all 6 r2", got)
			}
			for _, name := range old {
				if slices.Contains(byState(st, workflows.MemberRunning), name) {
					t.Errorf("%s of the old revision is still a member", name)
				}
			}
		},
	)
	runGroup(t, env, workflows.GroupInput{Spec: refreshSpec(6, "r1")})
	// ceil(66% of 6) = 4: batches of 2, never fewer than 4 running, and
	// never more than desired (no surge).
	if samples.samples < 30 || samples.fewest != 4 || samples.most > 6 {
		t.Errorf("while refreshing (%d samples): fewest running %d, most running or provisioning %d; want 4 and <= 6", samples.samples, samples.fewest, samples.most)
	}
}

func TestRefreshOfAGroupOfOneLaunchesTheReplacementFirst(t *testing.T) {
	f := newFake("h1", "h2")
	env := newEnv(t, f, 20*time.Second)
	env.SetTestTimeout(2 * time.Minute)
	samples := sampleRunning(t, env, time.Second, 4*time.Minute)
	s2 := refreshSpec(1, "r2")
	s2.Refresh = &workflows.RefreshSettings{Mode: config.RefreshAuto}
	steps(env,
		func() { env.SignalWorkflow(workflows.SignalSpec, s2) },
		func() {}, func() {},
		func() {
			st := status(t, env)
			if r := st.Refresh; r == nil || !r.Auto || r.Status != workflows.RefreshDone || r.Replaced != 1 {
				t.Fatalf("automatic refresh: %+v, want done with 1 replaced", r)
			}
			if got := revisions(st); !st.Settled() || got["r2"] != 1 || len(got) != 1 {
				t.Errorf("after: %+v (revisions %v), want one r2 member", st, got)
			}
		},
	)
	runGroup(t, env, workflows.GroupInput{Spec: refreshSpec(1, "r1")})
	if samples.samples < 10 || samples.fewest != 1 || samples.most != 2 {
		t.Errorf("while refreshing (%d samples): fewest running %d, most %d; want 1 and 2 (a surge of one)", samples.samples, samples.fewest, samples.most)
	}
}

func TestRefreshCancelStopsBeforeTheNextBatch(t *testing.T) {
	f := newFake("h1", "h2")
	env := newEnv(t, f, 20*time.Second)
	var none, cancel *updateResult
	batch := 1
	steps(env,
		func() {
			env.SignalWorkflow(workflows.SignalSpec, refreshSpec(4, "r2"))
			none = update(env, workflows.UpdateRefreshCancel, nil)
		},
		func() {
			none.refused(t, "cancel with none running", "no refresh running")
			update(env, workflows.UpdateRefresh, &workflows.RefreshRequest{MinHealthy: "0%", Batch: &batch})
		},
		func() {
			// One batch of one every ~20 s: mid-way after a minute.
			cancel = update(env, workflows.UpdateRefreshCancel, nil)
		},
		func() {
			if r := cancel.ok(t, "cancel"); r.Status != workflows.RefreshCancelled || r.Replaced == 0 || r.Replaced >= 4 {
				t.Fatalf("cancel: %+v; want cancelled part-way", r)
			}
		},
		func() {},
		func() {
			st := status(t, env)
			if st.Refresh.Status != workflows.RefreshCancelled || st.Outdated == 0 || !st.Settled() {
				t.Errorf("after cancel: refresh %+v, %d outdated, settled %v; want cancelled with outdated members left", st.Refresh, st.Outdated, st.Settled())
			}
			if got := revisions(st); got["r1"] != st.Outdated || got["r2"] != 4-st.Outdated {
				t.Errorf("revisions %v with %d outdated", got, st.Outdated)
			}
		},
	)
	runGroup(t, env, workflows.GroupInput{Spec: refreshSpec(4, "r1")})
}

func TestRollbackReturnsToThePreviousTemplateAndStaysUntilTheConfigurationChanges(t *testing.T) {
	f := newFake("h1", "h2")
	env := newEnv(t, f, 10*time.Second)
	env.SetTestTimeout(time.Minute)
	var early, rollback *updateResult
	half := &workflows.RefreshRequest{MinHealthy: "50%"}
	steps(env,
		func() {
			early = update(env, workflows.UpdateRefreshRollback, half)
		},
		func() {
			early.refused(t, "rollback with no earlier revision", "no earlier template revision")
			env.SignalWorkflow(workflows.SignalSpec, refreshSpec(3, "r2"))
		},
		func() { update(env, workflows.UpdateRefresh, half) },
		func() {
			if got := revisions(status(t, env)); got["r2"] != 3 {
				t.Fatalf("refresh to r2: revisions %v", got)
			}
			rollback = update(env, workflows.UpdateRefreshRollback, half)
		},
		func() {
			if r := rollback.ok(t, "rollback"); !r.Rollback || r.Target != "r1" || r.Total != 3 {
				t.Fatalf("rollback: %+v; want 3 to replace with r1", r)
			}
		},
		func() {
			st := status(t, env)
			if got := revisions(st); got["r1"] != 3 || !st.Settled() || st.Refresh.Status != workflows.RefreshDone {
				t.Errorf("after rollback: revisions %v, refresh %+v", got, st.Refresh)
			}
			if st.Revision != "r1" || st.ConfigRevision != "r2" || st.Outdated != 0 {
				t.Errorf("after rollback: revision %s (configuration %s), %d outdated; want r1 (r2), 0", st.Revision, st.ConfigRevision, st.Outdated)
			}
			// A restart with the same file keeps the rollback.
			env.SignalWorkflow(workflows.SignalSpec, refreshSpec(3, "r2"))
			setDesired(t, env, 4)
		},
		func() {
			st := status(t, env)
			if got := revisions(st); got["r1"] != 4 || st.Revision != "r1" {
				t.Errorf("a new member after the rollback: revisions %v, revision %s; want all r1", got, st.Revision)
			}
			// A new revision in the file ends the rollback.
			env.SignalWorkflow(workflows.SignalSpec, refreshSpec(4, "r3"))
		},
		func() {
			if st := status(t, env); st.Revision != "r3" || st.Outdated != 4 {
				t.Errorf("after a new revision: revision %s, %d outdated; want r3, 4", st.Revision, st.Outdated)
			}
		},
	)
	runGroup(t, env, workflows.GroupInput{Spec: refreshSpec(3, "r1")})
}

func TestScaleInDuringARefreshTakesOutdatedMembersFirst(t *testing.T) {
	f := newFake("h1", "h2")
	env := newEnv(t, f, 50*time.Second)
	env.SetTestTimeout(time.Minute)
	batch := 1
	steps(env,
		func() { env.SignalWorkflow(workflows.SignalSpec, refreshSpec(4, "r2")) },
		func() {
			update(env, workflows.UpdateRefresh, &workflows.RefreshRequest{MinHealthy: "75%", Batch: &batch})
		},
		func() {
			// web-1 and web-2 replaced so far by web-5 (running) and web-6
			// (booting); web-3 and web-4 are still of r1. Newest first
			// would cancel web-6 and remove web-5, leaving the old ones
			// for the refresh to replace again.
			st := status(t, env)
			if got := byState(st, workflows.MemberRunning); !slices.Equal(got, []string{"web-3", "web-4", "web-5"}) {
				t.Fatalf("running before the scale-in: %v, want [web-3 web-4 web-5]", got)
			}
			setDesired(t, env, 2)
		},
		func() {},
		func() {
			st := status(t, env)
			if got := byState(st, workflows.MemberRunning); !slices.Equal(got, []string{"web-5", "web-6"}) || !st.Settled() {
				t.Errorf("after the scale-in: running %v (settled %v), want the new [web-5 web-6]", got, st.Settled())
			}
			if r := st.Refresh; r == nil || r.Status != workflows.RefreshDone || st.Outdated != 0 {
				t.Errorf("refresh %+v, %d outdated; want done, none", r, st.Outdated)
			}
		},
	)
	runGroup(t, env, workflows.GroupInput{Spec: refreshSpec(4, "r1")})
}

func TestRefreshWaitsAtCheckpointsUntilTheDelayOrContinue(t *testing.T) {
	f := newFake("h1", "h2")
	env := newEnv(t, f, 20*time.Second)
	env.SetTestTimeout(2 * time.Minute)
	var badOrder, delayAlone, early, good, cont, late *updateResult
	replaced := map[int]int{} // minute -> replaced
	waiting := map[int]bool{}
	var fns []func()
	for minute := 1; minute <= 20; minute++ {
		fns = append(fns, func() {
			if r := status(t, env).Refresh; r != nil {
				replaced[minute], waiting[minute] = r.Replaced, !r.WaitingUntil.IsZero()
			}
			switch minute {
			case 1:
				env.SignalWorkflow(workflows.SignalSpec, refreshSpec(10, "r2"))
				badOrder = update(env, workflows.UpdateRefresh, &workflows.RefreshRequest{Checkpoints: []int{50, 20}})
				delayAlone = update(env, workflows.UpdateRefresh, &workflows.RefreshRequest{NoCheckpoints: true, CheckpointDelay: "10m"})
				early = update(env, workflows.UpdateRefreshContinue, nil)
			case 2:
				badOrder.refused(t, "checkpoints 50,20", "checkpoints must be ascending")
				delayAlone.refused(t, "a delay without checkpoints", "checkpoint-delay needs checkpoints")
				early.refused(t, "continue with no refresh", "no refresh running")
				good = update(env, workflows.UpdateRefresh, &workflows.RefreshRequest{MinHealthy: "50%", Checkpoints: []int{20, 60, 100}, CheckpointDelay: "10m"})
			case 3:
				if r := good.ok(t, "refresh with checkpoints"); !slices.Equal(r.Checkpoints, []int{20, 60, 100}) || r.CheckpointDelay != 10*time.Minute {
					t.Errorf("refresh: %+v; want checkpoints 20, 60, 100 of 10m", r)
				}
			case 5:
				cont = update(env, workflows.UpdateRefreshContinue, nil)
			case 7:
				if r := cont.ok(t, "continue"); r.Replaced != 2 {
					t.Errorf("continued at %d replaced, want 2", r.Replaced)
				}
			case 19:
				late = update(env, workflows.UpdateRefreshContinue, nil)
			case 20:
				st := status(t, env)
				if r := st.Refresh; r.Status != workflows.RefreshDone || r.Stopped || st.Outdated != 0 {
					t.Errorf("after: refresh %+v, %d outdated; want done with none outdated", r, st.Outdated)
				}
			}
		})
	}
	steps(env, fns...)
	runGroup(t, env, workflows.GroupInput{Spec: refreshSpec(10, "r1")})
	// 20% of 10 is 2: one batch of 2 (the floor would allow 5), then a
	// wait that only continue ends (after minute 5); 60% is 6: one batch
	// of 4, then the full 10 minutes; then the last 4 and a wait at 100%
	// that continue ends at minute 19.
	for _, m := range []int{3, 4, 5} {
		if replaced[m] != 2 || !waiting[m] {
			t.Errorf("minute %d: %d replaced, waiting %v; want 2 and waiting at 20%%", m, replaced[m], waiting[m])
		}
	}
	for _, m := range []int{7, 10, 14} {
		if replaced[m] != 6 || !waiting[m] {
			t.Errorf("minute %d: %d replaced, waiting %v; want 6 and waiting at 60%%", m, replaced[m], waiting[m])
		}
	}
	if replaced[18] != 10 || !waiting[18] {
		t.Errorf("minute 18: %d replaced, waiting %v; want 10 and waiting at 100%%", replaced[18], waiting[18])
	}
	if r := late.ok(t, "continue at 100%"); r.Replaced != 10 {
		t.Errorf("continue at 100%%: %+v", r)
	}
}

func TestRefreshWhoseLastCheckpointIsUnder100StopsThere(t *testing.T) {
	f := newFake("h1", "h2")
	env := newEnv(t, f, 20*time.Second)
	steps(env,
		func() {
			s := refreshSpec(4, "r2")
			s.Refresh = &workflows.RefreshSettings{Mode: config.RefreshAuto, MinHealthy: "50%", Checkpoints: []int{50}}
			env.SignalWorkflow(workflows.SignalSpec, s)
		},
		func() {}, func() {},
		func() {
			st := status(t, env)
			r := st.Refresh
			if r == nil || r.Status != workflows.RefreshDone || !r.Stopped || r.Replaced != 2 || st.Outdated != 2 {
				t.Fatalf("canary refresh: %+v with %d outdated; want done, stopped at 2 of 4 replaced", r, st.Outdated)
			}
			if got := revisions(st); got["r1"] != 2 || got["r2"] != 2 || !st.Settled() {
				t.Errorf("revisions %v, settled %v; want 2 and 2, settled", got, st.Settled())
			}
		},
	)
	runGroup(t, env, workflows.GroupInput{Spec: refreshSpec(4, "r1")})
}
