package workflows_test

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/mock"
	"go.temporal.io/sdk/testsuite"

	"github.com/premiscale/premiscale/activities"
	"github.com/premiscale/premiscale/config"
	"github.com/premiscale/premiscale/workflows"
)

// ParkDomain parks a fake domain: hibernated and stopped shut it off,
// paused lists it as paused.
func (f *fakeLibvirt) ParkDomain(_ context.Context, in activities.ParkDomainInput) (activities.ParkDomainOutput, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.record("park " + in.Domain.VM + " " + in.State)
	if _, ok := f.domains[in.Domain.Host.Name][in.Domain.VM]; !ok {
		return activities.ParkDomainOutput{}, errors.New("missing")
	}
	if in.State == config.WarmPaused {
		f.paused[in.Domain.VM] = true
		return activities.ParkDomainOutput{State: "paused"}, nil
	}
	f.domains[in.Domain.Host.Name][in.Domain.VM] = false
	return activities.ParkDomainOutput{State: "shut-off"}, nil
}

func warmEnv(t *testing.T, f *fakeLibvirt) *testsuite.TestWorkflowEnvironment {
	env := newEnv(t, f)
	var a *activities.Libvirt
	env.OnActivity(a.ParkDomain, mock.Anything, mock.Anything).Return(f.ParkDomain)
	return env
}

func warmSpec(desired, hi int, pool workflows.WarmPool, hosts ...string) workflows.GroupSpec {
	s := spec(desired, 0, hi, hosts...)
	s.Revision = "r1"
	if pool.State == "" {
		pool.State = config.WarmHibernated
	}
	s.WarmPool = &pool
	return s
}

// byState lists the status's members in state, sorted by name.
func byState(st workflows.GroupStatus, state workflows.MemberState) []string {
	var out []string
	for _, m := range st.Members {
		if m.State == state {
			out = append(out, m.Name)
		}
	}
	slices.Sort(out)
	return out
}

func (f *fakeLibvirt) called(call string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Contains(f.calls, call)
}

func TestWarmPoolFillsThenScaleOutActivatesWarmVMsAndRefills(t *testing.T) {
	f := newFake("h1", "h2")
	env := warmEnv(t, f)
	steps(env,
		func() {
			st := status(t, env)
			if st.Running != 1 || st.Warm != 2 || st.WarmTarget != 2 || st.Warming != 0 {
				t.Errorf("filled: running %d, warm %d (target %d), warming %d; want 1, 2 (2), 0", st.Running, st.Warm, st.WarmTarget, st.Warming)
			}
			if got := byState(st, workflows.MemberWarm); !slices.Equal(got, []string{"web-2", "web-3"}) {
				t.Errorf("warm members = %v, want [web-2 web-3]", got)
			}
			if got := f.running(); !slices.Equal(got, []string{"web-1"}) {
				t.Errorf("running domains = %v, want [web-1]: warm ones are parked", got)
			}
			if !f.called("park web-2 hibernated") || !f.called("park web-3 hibernated") {
				t.Errorf("warm VMs not hibernated: %v", f.calls)
			}
			setDesired(t, env, 3)
		},
		func() {
			st := status(t, env)
			if got := byState(st, workflows.MemberRunning); !slices.Equal(got, []string{"web-1", "web-2", "web-3"}) {
				t.Errorf("running members = %v, want the two warm ones taken: [web-1 web-2 web-3]", got)
			}
			if !f.called("recover web-2") || !f.called("recover web-3") {
				t.Errorf("warm VMs not woken: %v", f.calls)
			}
			if f.called("park web-4 hibernated") != true || f.called("park web-5 hibernated") != true {
				t.Errorf("pool not refilled with web-4 and web-5: %v", f.calls)
			}
			if got := byState(st, workflows.MemberWarm); !slices.Equal(got, []string{"web-4", "web-5"}) {
				t.Errorf("warm members after refill = %v, want [web-4 web-5]", got)
			}
			if !st.Settled() || st.Warm != 2 {
				t.Errorf("not settled with a full pool: %+v", st)
			}
			for _, m := range st.Members {
				if m.State == workflows.MemberRunning && m.WarmState != "" {
					t.Errorf("%s runs in the group but is still marked warm (%s)", m.Name, m.WarmState)
				}
			}
		},
	)
	runGroup(t, env, workflows.GroupInput{Spec: warmSpec(1, 5, workflows.WarmPool{Size: intp(2)}, "h1", "h2")})
}

func TestPausedWarmVMsAreNotTakenForUnhealthyMembers(t *testing.T) {
	f := newFake("h1")
	env := warmEnv(t, f)
	steps(env,
		func() {
			st := status(t, env)
			if st.Warm != 1 || !f.called("park web-2 paused") {
				t.Errorf("pool not filled with a paused VM: warm %d, calls %v", st.Warm, f.calls)
			}
		},
		func() {
			// Observed several times since: a paused warm VM is as parked,
			// not a member to recover or replace.
			st := status(t, env)
			if f.called("recover web-2") || f.called("stop web-2") {
				t.Errorf("paused warm VM was recovered or removed: %v", f.calls)
			}
			if got := byState(st, workflows.MemberWarm); !slices.Equal(got, []string{"web-2"}) {
				t.Errorf("warm = %v, want [web-2]", got)
			}
			setDesired(t, env, 2)
		},
		func() {
			st := status(t, env)
			if !f.called("recover web-2") || st.Running != 2 || st.Warm != 1 {
				t.Errorf("paused VM not resumed into the group and pool refilled: %+v, calls %v", st, f.calls)
			}
		},
	)
	runGroup(t, env, workflows.GroupInput{Spec: warmSpec(1, 5, workflows.WarmPool{Size: intp(1), State: config.WarmPaused}, "h1")})
}

func TestWarmVMThatVanishesOrRunsIsReplaced(t *testing.T) {
	f := newFake("h1")
	env := warmEnv(t, f)
	steps(env,
		func() {
			if st := status(t, env); st.Warm != 2 {
				t.Fatalf("pool not filled: %+v", st)
			}
			f.mu.Lock()
			delete(f.domains["h1"], "web-1") // deleted behind PremiScale's back
			f.domains["h1"]["web-2"] = true  // started by hand
			f.mu.Unlock()
		},
		func() {
			st := status(t, env)
			if got := byState(st, workflows.MemberWarm); !slices.Equal(got, []string{"web-3", "web-4"}) {
				t.Errorf("warm = %v, want [web-3 web-4]: both replaced", got)
			}
			if f.called("undefine web-2") != true {
				t.Errorf("the warm VM found running was not removed: %v", f.calls)
			}
			if st.Running != 0 {
				t.Errorf("a warm VM entered the group without a scale-out: %+v", st)
			}
		},
	)
	runGroup(t, env, workflows.GroupInput{Spec: warmSpec(0, 5, workflows.WarmPool{Size: intp(2)}, "h1")})
}

func TestWarmPoolFollowsMaxPreparedCapacity(t *testing.T) {
	f := newFake("h1")
	env := warmEnv(t, f)
	steps(env,
		func() {
			if st := status(t, env); st.Warm != 3 || st.WarmTarget != 3 {
				t.Errorf("prepared 4 at desired 1: warm %d (target %d), want 3", st.Warm, st.WarmTarget)
			}
			setDesired(t, env, 4)
		},
		func() {
			st := status(t, env)
			if st.Running != 4 || st.Warm != 0 || st.WarmTarget != 0 {
				t.Errorf("desired 4 of prepared 4: running %d, warm %d (target %d); want 4, 0, 0", st.Running, st.Warm, st.WarmTarget)
			}
			if f.called("clone web-5") {
				t.Errorf("a VM was cloned although three were warm: %v", f.calls)
			}
			setDesired(t, env, 2)
		},
		func() {
			if st := status(t, env); st.Running != 2 || st.Warm != 2 {
				t.Errorf("desired 2 of prepared 4: running %d, warm %d; want 2, 2", st.Running, st.Warm)
			}
		},
	)
	runGroup(t, env, workflows.GroupInput{Spec: warmSpec(1, 5, workflows.WarmPool{MaxPreparedSize: intp(4)}, "h1")})
}

func TestWarmVMThatFailsToWakeIsReplacedByAColdOne(t *testing.T) {
	f := newFake("h1")
	env := warmEnv(t, f)
	steps(env,
		func() {
			f.mu.Lock()
			f.stuck["web-1"] = true
			f.mu.Unlock()
			setDesired(t, env, 1)
		},
		func() {
			st := status(t, env)
			if st.Running != 1 || slices.Contains(byState(st, workflows.MemberRunning), "web-1") {
				t.Errorf("running = %v, want one VM that is not the stuck web-1", byState(st, workflows.MemberRunning))
			}
			if !f.called("undefine web-1") {
				t.Errorf("the warm VM that did not wake was not removed: %v", f.calls)
			}
			if st.Warm != 1 {
				t.Errorf("pool not refilled: warm %d", st.Warm)
			}
		},
	)
	runGroup(t, env, workflows.GroupInput{Spec: warmSpec(0, 5, workflows.WarmPool{Size: intp(1)}, "h1")})
}

func TestWarmVMOfAnOlderRevisionIsReplaced(t *testing.T) {
	f := newFake("h1")
	env := warmEnv(t, f)
	next := warmSpec(0, 5, workflows.WarmPool{Size: intp(1)}, "h1")
	next.Revision = "r2"
	steps(env,
		func() {
			if st := status(t, env); st.Warm != 1 {
				t.Fatalf("pool not filled: %+v", st)
			}
			env.SignalWorkflow(workflows.SignalSpec, next)
		},
		func() {
			st := status(t, env)
			if got := byState(st, workflows.MemberWarm); !slices.Equal(got, []string{"web-2"}) {
				t.Errorf("warm = %v, want [web-2] made from r2", got)
			}
			for _, m := range st.Members {
				if m.State == workflows.MemberWarm && m.Revision != "r2" {
					t.Errorf("warm %s of revision %q", m.Name, m.Revision)
				}
			}
			if !f.called("undefine web-1") {
				t.Errorf("the warm VM of r1 was not removed: %v", f.calls)
			}
		},
	)
	runGroup(t, env, workflows.GroupInput{Spec: warmSpec(0, 5, workflows.WarmPool{Size: intp(1)}, "h1")})
}

func TestWarmVMsOnAHostDownPastGraceAreLostAndRefilledElsewhere(t *testing.T) {
	f := newFake("h1", "h2")
	env := warmEnv(t, f)
	s := warmSpec(0, 5, workflows.WarmPool{Size: intp(2)}, "h1", "h2")
	s.HostFailureGracePeriod = 2 * time.Minute
	env.RegisterDelayedCallback(func() {
		st := status(t, env)
		if st.Warm != 2 {
			t.Errorf("pool not filled: %+v", st)
		}
		f.setDown("h2", true)
	}, time.Minute)
	env.RegisterDelayedCallback(func() {
		st := status(t, env)
		warmOn := map[string]int{}
		for _, m := range st.Members {
			if m.State == workflows.MemberWarm {
				warmOn[m.Host]++
			}
		}
		if warmOn["h1"] != 2 || st.Lost != 1 {
			t.Errorf("after h2 down past grace: warm per host %v, lost %d; want 2 on h1, 1 lost", warmOn, st.Lost)
		}
		env.CancelWorkflow()
	}, 6*time.Minute)
	runGroup(t, env, workflows.GroupInput{Spec: s})
}

func TestScaleInReturnsVMsToThePoolWhileItHasRoom(t *testing.T) {
	f := newFake("h1")
	env := warmEnv(t, f)
	steps(env,
		func() {
			if st := status(t, env); st.Warm != 3 {
				t.Errorf("prepared 4 at desired 1: warm %d, want 3", st.Warm)
			}
			setDesired(t, env, 3)
		},
		func() {
			if st := status(t, env); st.Running != 3 || st.Warm != 1 {
				t.Errorf("after scale-out: running %d, warm %d; want 3, 1", st.Running, st.Warm)
			}
			setDesired(t, env, 1)
		},
		func() {
			st := status(t, env)
			if st.Running != 1 || st.Warm != 3 {
				t.Errorf("after scale-in: running %d, warm %d; want 1, 3", st.Running, st.Warm)
			}
			for _, vm := range []string{"web-2", "web-3"} {
				if f.called("undefine " + vm) {
					t.Errorf("%s was deleted instead of returned to the pool: %v", vm, f.calls)
				}
			}
			if got := byState(st, workflows.MemberWarm); !slices.Equal(got, []string{"web-2", "web-3", "web-4"}) {
				t.Errorf("warm = %v, want [web-2 web-3 web-4]", got)
			}
		},
		func() {
			// Prepared 4 at desired 0: room for the last one too.
			setDesired(t, env, 0)
		},
		func() {
			if f.called("undefine web-1") {
				t.Errorf("web-1 deleted although the pool had room: %v", f.calls)
			}
			if st := status(t, env); st.Running != 0 || st.Warm != 4 {
				t.Errorf("at desired 0 of prepared 4: running %d, warm %d; want 0, 4", st.Running, st.Warm)
			}
		},
	)
	runGroup(t, env, workflows.GroupInput{Spec: warmSpec(1, 5, workflows.WarmPool{MaxPreparedSize: intp(4), ReuseOnScaleIn: true}, "h1")})
}

func TestScaleInDeletesVMsWhenThePoolIsFull(t *testing.T) {
	f := newFake("h1")
	env := warmEnv(t, f)
	steps(env,
		func() {
			if st := status(t, env); st.Running != 2 || st.Warm != 1 {
				t.Errorf("filled: running %d, warm %d; want 2, 1", st.Running, st.Warm)
			}
			setDesired(t, env, 1)
		},
		func() {
			st := status(t, env)
			if !f.called("undefine web-2") || st.Running != 1 || st.Warm != 1 {
				t.Errorf("scale-in with a full pool: running %d, warm %d, calls %v; want web-2 deleted", st.Running, st.Warm, f.calls)
			}
		},
	)
	runGroup(t, env, workflows.GroupInput{Spec: warmSpec(2, 5, workflows.WarmPool{Size: intp(1), ReuseOnScaleIn: true}, "h1")})
}
