package workflows_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/mock"
	"go.temporal.io/sdk/testsuite"

	"github.com/premiscale/premiscale/activities"
	"github.com/premiscale/premiscale/config"
	"github.com/premiscale/premiscale/workflows"
	"github.com/premiscale/premiscale/workflows/policy"
)

// fakeMetric is a Prometheus stand-in: one value per check name, or an
// error. With perVM set, a value is a total load spread over the running
// VMs, so that adding capacity lowers it as real load would.
type fakeMetric struct {
	mu     sync.Mutex
	values map[string]float64
	errs   map[string]string
	perVM  *fakeLibvirt
}

func (m *fakeMetric) set(name string, v float64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.values[name] = v
	delete(m.errs, name)
}

func (m *fakeMetric) fail(name, err string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.errs[name] = err
}

func (m *fakeMetric) Query(_ context.Context, in activities.QueryInput) (activities.QueryOutput, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := activities.QueryOutput{}
	for _, q := range in.Queries {
		r := activities.QueryResult{Name: q.Name, Value: m.values[q.Name]}
		if m.perVM != nil {
			r.Value /= float64(max(len(m.perVM.running()), 1))
		}
		if e, ok := m.errs[q.Name]; ok {
			r = activities.QueryResult{Name: q.Name, Error: e}
		}
		out.Results = append(out.Results, r)
	}
	return out, nil
}

// newMetricEnv is newEnv with Prometheus answering load from a fakeMetric;
// with perVM, load is spread over f's running VMs.
func newMetricEnv(t *testing.T, f *fakeLibvirt, load float64, perVM bool) (*testsuite.TestWorkflowEnvironment, *fakeMetric) {
	m := &fakeMetric{values: map[string]float64{"load": load}, errs: map[string]string{}}
	if perVM {
		m.perVM = f
	}
	env := newEnv(t, f)
	var p *activities.Prometheus
	env.OnActivity(p.Query, mock.Anything, mock.Anything).Return(m.Query)
	return env, m
}

func dur(d time.Duration) *time.Duration { return &d }
func fl(v float64) *float64              { return &v }

// metricSpec is a group min 1 max 6 with a targetValue check "load"
// (target 0.5) evaluated every 15s, cooldowns 30s, scale-in window 2m.
func metricSpec(edit func(*workflows.Scaling)) workflows.GroupSpec {
	s := spec(1, 1, 6, "h1")
	s.Scaling = workflows.Scaling{
		EvaluationInterval: interval,
		Mode:               config.ModeOn,
		Checks: []workflows.Check{{Name: "load", Query: "avg(load)", Strategy: config.StrategyTargetValue,
			Target: fl(0.5), Tolerance: fl(0.1), OnError: config.OnErrorHold}},
		ScaleOut: workflows.Direction{Cooldown: dur(30 * time.Second), StabilizationWindow: dur(0)},
		ScaleIn:  workflows.Direction{Cooldown: dur(30 * time.Second), StabilizationWindow: dur(2 * time.Minute)},
	}
	if edit != nil {
		edit(&s.Scaling)
	}
	return s
}

func TestLoadScalesOutThenInAfterTheWindow(t *testing.T) {
	f := newFake("h1")
	env, m := newMetricEnv(t, f, 0.5, true)

	env.RegisterDelayedCallback(func() { m.set("load", 1.5) }, time.Minute) // 3x what one VM should carry
	env.RegisterDelayedCallback(func() {
		st := status(t, env)
		if st.Desired != 3 || st.Running != 3 {
			t.Errorf("after load 3x target: desired %d running %d, want 3 and 3", st.Desired, st.Running)
		}
		m.set("load", 0.1)
	}, time.Minute+45*time.Second)
	env.RegisterDelayedCallback(func() {
		if st := status(t, env); st.Desired != 3 {
			t.Errorf("scaled in inside the 2m window: desired %d (%s)", st.Desired, st.Decision.Reason)
		} else if !strings.Contains(st.Decision.Reason, "stabilization window") {
			t.Errorf("decision while in the window = %q, want the window named", st.Decision.Reason)
		}
	}, 3*time.Minute)
	env.RegisterDelayedCallback(func() {
		st := status(t, env)
		if st.Desired != 1 || st.Running != 1 {
			t.Errorf("after the window: desired %d running %d, want 1 and 1", st.Desired, st.Running)
		}
		var actions []string
		for _, d := range st.Decisions {
			actions = append(actions, d.Action)
		}
		if !containsAll(strings.Join(actions, ","), policy.ActionScaleOut, policy.ActionScaleIn) {
			t.Errorf("decisions = %v, want a scale-out and a scale-in", actions)
		}
		env.CancelWorkflow()
	}, 6*time.Minute)
	runGroup(t, env, workflows.GroupInput{Spec: metricSpec(nil)})
}

func TestFailingCheckNeverScalesInAndSaysWhy(t *testing.T) {
	f := newFake("h1")
	env, m := newMetricEnv(t, f, 0.5, false)
	env.RegisterDelayedCallback(func() { setDesired(t, env, 4) }, 30*time.Second)
	env.RegisterDelayedCallback(func() { m.fail("load", "query returned no data") }, time.Minute)
	env.RegisterDelayedCallback(func() {
		st := status(t, env)
		if st.Desired != 4 || st.Running != 4 {
			t.Errorf("group shrank on a failing check: desired %d running %d, want 4", st.Desired, st.Running)
		}
		if st.Decision == nil || st.Decision.Action != policy.ActionHeld || !strings.Contains(st.Decision.Reason, "check load failed: query returned no data") {
			t.Errorf("decision = %+v, want held naming the check and its error", st.Decision)
		}
		if len(st.Checks) != 1 || st.Checks[0].Error == "" {
			t.Errorf("checks = %+v, want the error shown", st.Checks)
		}
		env.CancelWorkflow()
	}, 10*time.Minute)
	runGroup(t, env, workflows.GroupInput{Spec: metricSpec(nil)})
}

func TestDryRunDecidesButChangesNothing(t *testing.T) {
	f := newFake("h1")
	env, _ := newMetricEnv(t, f, 2.0, false)
	env.RegisterDelayedCallback(func() {
		st := status(t, env)
		if st.Desired != 1 || len(f.running()) != 1 {
			t.Errorf("dry run changed the group: desired %d, running %v", st.Desired, f.running())
		}
		if st.Decision == nil || st.Decision.Action != policy.ActionDryRun || !strings.Contains(st.Decision.Reason, "dry run: would scale 1 -> 4") {
			t.Errorf("decision = %+v, want dry run 1 -> 4", st.Decision)
		}
		env.CancelWorkflow()
	}, 2*time.Minute)
	runGroup(t, env, workflows.GroupInput{Spec: metricSpec(func(s *workflows.Scaling) { s.DryRun = true })})
}

func TestManualScaleStartsTheCooldown(t *testing.T) {
	f := newFake("h1")
	env, m := newMetricEnv(t, f, 0.5, false)
	spec := metricSpec(func(s *workflows.Scaling) {
		s.ScaleIn = workflows.Direction{Cooldown: dur(5 * time.Minute), StabilizationWindow: dur(0)}
	})
	env.RegisterDelayedCallback(func() {
		m.set("load", 0.25) // half the target at 4 VMs: recommends 2
		setDesired(t, env, 4)
	}, time.Minute)
	env.RegisterDelayedCallback(func() {
		st := status(t, env)
		if st.Desired != 4 || st.Decision == nil || !strings.Contains(st.Decision.Reason, "cooldown until") {
			t.Errorf("within cooldown of a manual scale: desired %d decision %+v, want 4 and the cooldown named", st.Desired, st.Decision)
		}
	}, 4*time.Minute)
	env.RegisterDelayedCallback(func() {
		if st := status(t, env); st.Desired != 2 {
			t.Errorf("after the cooldown: desired %d, want 2", st.Desired)
		}
		env.CancelWorkflow()
	}, 7*time.Minute)
	runGroup(t, env, workflows.GroupInput{Spec: spec})
}
