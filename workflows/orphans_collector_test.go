package workflows_test

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/mock"
	"go.temporal.io/sdk/client"
	tlog "go.temporal.io/sdk/log"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"

	"github.com/premiscale/premiscale/activities"
	"github.com/premiscale/premiscale/worker"
	"github.com/premiscale/premiscale/workflows"
)

// TestOrphanCollectorDeletesNothingWhileMembersCannotBeRead runs the
// collector over a host holding one orphan domain. For its first three
// minutes the group cannot be queried: nothing may be deleted, however long
// the orphan has been seen. Once members read again, the orphan is deleted
// after a full grace period counted from the first round that saw it.
func TestOrphanCollectorDeletesNothingWhileMembersCannotBeRead(t *testing.T) {
	var s testsuite.WorkflowTestSuite
	s.SetLogger(tlog.NewStructuredLogger(slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelError + 4}))))
	env := s.NewTestWorkflowEnvironment()
	env.SetTestTimeout(30 * time.Second)
	worker.Register(env, &activities.Libvirt{}, &activities.Prometheus{})
	env.RegisterActivity(&activities.Groups{})
	var (
		a *activities.Libvirt
		g *activities.Groups
	)
	start := env.Now()
	var mu sync.Mutex
	var deletedAt time.Time
	var firstGoodRead time.Time
	env.OnActivity(g.GroupMembers, mock.Anything, mock.Anything).Return(
		func(context.Context, activities.GroupMembersInput) (activities.GroupMembersOutput, error) {
			mu.Lock()
			defer mu.Unlock()
			if env.Now().Sub(start) < 3*time.Minute {
				return activities.GroupMembersOutput{}, errors.New("group workflow unavailable")
			}
			if firstGoodRead.IsZero() {
				firstGoodRead = env.Now()
			}
			return activities.GroupMembersOutput{Members: map[string][]activities.MemberRef{"web": {{Name: "web-1"}}}}, nil
		})
	env.OnActivity(a.ListOwned, mock.Anything, mock.Anything).Return(activities.ListOwnedOutput{
		Domains: []activities.DomainInfo{
			{Name: "web-1", Owner: activities.Owner{Group: "web", VM: "web-1"}},
			{Name: "web-5", Owner: activities.Owner{Group: "web", VM: "web-5", Installation: "i1"}},
		},
		Volumes: []string{activities.VolumeName("web-1")},
	}, nil)
	env.OnActivity(a.UndefineDomain, mock.Anything, mock.Anything).Return(
		func(_ context.Context, ref activities.DomainRef) error {
			mu.Lock()
			defer mu.Unlock()
			if ref.VM != "web-5" || ref.Group != "web" {
				t.Errorf("collector undefined %s of %s", ref.VM, ref.Group)
			}
			if deletedAt.IsZero() {
				deletedAt = env.Now()
			}
			return nil
		})
	const grace = 2 * time.Minute
	spec := workflows.OrphanSpec{
		Hosts:  []activities.HostRef{{Name: "h1"}},
		Groups: []string{"web"}, Delete: true, GracePeriod: grace, ScanInterval: 10 * time.Second,
	}
	env.RegisterDelayedCallback(func() {
		off := spec
		off.Delete = false
		env.SignalWorkflow(workflows.SignalOrphanSpec, off)
	}, 10*time.Minute)
	env.OnActivity(a.OrphanPolicy, mock.Anything).Return(workerOrphanPolicy(spec), nil)
	env.SetStartWorkflowOptions(client.StartWorkflowOptions{ID: workflows.OrphanWorkflowID})
	env.ExecuteWorkflow(workflows.OrphanWorkflowName, workflows.OrphanInput{Spec: spec})
	if err := env.GetWorkflowError(); err != nil {
		t.Fatal(err)
	}
	if deletedAt.IsZero() {
		t.Fatal("the orphan was never deleted")
	}
	if deletedAt.Before(firstGoodRead.Add(grace)) {
		t.Errorf("orphan deleted %s after the first round that could read members, before the %s grace",
			deletedAt.Sub(firstGoodRead), grace)
	}
	if deletedAt.After(firstGoodRead.Add(grace + 20*time.Second)) {
		t.Errorf("orphan deleted %s after the first good round, long after the %s grace", deletedAt.Sub(firstGoodRead), grace)
	}
}

// workerOrphanPolicy is the worker configuration that allows exactly spec.
func workerOrphanPolicy(spec workflows.OrphanSpec) activities.OrphanPolicy {
	return activities.OrphanPolicy{Delete: spec.Delete, DeleteUnconfigured: spec.DeleteUnconfigured,
		GracePeriod: spec.GracePeriod, ScanInterval: spec.ScanInterval, Hosts: spec.Hosts, Groups: spec.Groups}
}

// forgedOrphanEnv is a collector environment over one host holding a
// member (web-1), an owned orphan of the configured group (web-5) and the
// VM of a group the worker does not configure (old-1). It fails the test
// on any deletion but web-5's, and counts scans.
func forgedOrphanEnv(t *testing.T, pol activities.OrphanPolicy) (*testsuite.TestWorkflowEnvironment, *int, *[]time.Time) {
	var s testsuite.WorkflowTestSuite
	s.SetLogger(tlog.NewStructuredLogger(slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelError + 4}))))
	env := s.NewTestWorkflowEnvironment()
	env.SetTestTimeout(30 * time.Second)
	worker.Register(env, &activities.Libvirt{}, &activities.Prometheus{})
	env.RegisterActivity(&activities.Groups{})
	var (
		a *activities.Libvirt
		g *activities.Groups
	)
	scans := new(int)
	deleted := new([]time.Time)
	env.OnActivity(a.OrphanPolicy, mock.Anything).Return(pol, nil)
	env.OnActivity(g.GroupMembers, mock.Anything, mock.Anything).Return(
		func(_ context.Context, in activities.GroupMembersInput) (activities.GroupMembersOutput, error) {
			out := activities.GroupMembersOutput{Members: map[string][]activities.MemberRef{}}
			for _, q := range in.Groups {
				if q.Name == "web" {
					out.Members["web"] = []activities.MemberRef{{Name: "web-1"}}
				}
			}
			return out, nil
		})
	env.OnActivity(a.ListOwned, mock.Anything, mock.Anything).Return(
		func(context.Context, activities.ListOwnedInput) (activities.ListOwnedOutput, error) {
			*scans++
			return activities.ListOwnedOutput{Domains: []activities.DomainInfo{
				{Name: "web-1", Owner: activities.Owner{Group: "web", VM: "web-1", Installation: "i1"}},
				{Name: "web-5", Owner: activities.Owner{Group: "web", VM: "web-5", Installation: "i1"}},
				{Name: "old-1", Owner: activities.Owner{Group: "old", VM: "old-1", Installation: "i1"}},
			}}, nil
		})
	env.OnActivity(a.UndefineDomain, mock.Anything, mock.Anything).Return(
		func(_ context.Context, ref activities.DomainRef) error {
			if ref.VM != "web-5" {
				t.Errorf("collector undefined %s of %s, which the worker's configuration keeps", ref.VM, ref.Group)
			}
			*deleted = append(*deleted, env.Now())
			return nil
		})
	return env, scans, deleted
}

// forgedSpec asks for everything: no configured groups (so every member
// would be an orphan of an unconfigured group), unconfigured groups
// deleted, no grace period, no scan interval.
var forgedSpec = workflows.OrphanSpec{Hosts: []activities.HostRef{{Name: "h1"}}, Delete: true, DeleteUnconfigured: true}

// TestOrphanCollectorRefusesAForgedStart: a start that asks beyond the
// worker's configuration, or under another workflow ID, fails with
// ErrTypeRefused naming the fields, before any scan.
func TestOrphanCollectorRefusesAForgedStart(t *testing.T) {
	pol := activities.OrphanPolicy{Delete: true, GracePeriod: 10 * time.Minute, ScanInterval: time.Minute,
		Hosts: []activities.HostRef{{Name: "h1"}}, Groups: []string{"web"}}
	for _, tc := range []struct {
		name, id string
		spec     workflows.OrphanSpec
		want     []string
	}{
		{"forged bounds", workflows.OrphanWorkflowID, forgedSpec, []string{"gracePeriod: 0s", "scanInterval: 0s", "deleteUnconfigured: true"}},
		{"another ID", "forged/orphans", workflows.OrphanSpec{Hosts: pol.Hosts, Groups: pol.Groups, Delete: true, GracePeriod: pol.GracePeriod, ScanInterval: pol.ScanInterval}, []string{`"forged/orphans"`}},
		{"unknown host", workflows.OrphanWorkflowID, workflows.OrphanSpec{Hosts: []activities.HostRef{{Name: "elsewhere"}}, Groups: pol.Groups, Delete: true, GracePeriod: pol.GracePeriod, ScanInterval: pol.ScanInterval}, []string{`hosts: "elsewhere"`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env, scans, _ := forgedOrphanEnv(t, pol)
			env.SetStartWorkflowOptions(client.StartWorkflowOptions{ID: tc.id})
			env.ExecuteWorkflow(workflows.OrphanWorkflowName, workflows.OrphanInput{Spec: tc.spec})
			if !env.IsWorkflowCompleted() {
				t.Fatal("collector did not end")
			}
			err := env.GetWorkflowError()
			var ae *temporal.ApplicationError
			if !errors.As(err, &ae) || ae.Type() != workflows.ErrTypeRefused || !ae.NonRetryable() {
				t.Fatalf("collector ended with %v, want a non-retryable %s", err, workflows.ErrTypeRefused)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not name %s", err, w)
				}
			}
			if *scans != 0 {
				t.Errorf("a refused collector scanned %d times", *scans)
			}
		})
	}
}

// TestOrphanCollectorKeepsTheWorkersBoundsAgainstAForgedSignal: a running
// collector sent a spec that asks for everything keeps the worker's
// configured groups, grace period and scan interval, deletes only the
// configured group's owned orphan after the grace period, and reports
// what it refused.
func TestOrphanCollectorKeepsTheWorkersBoundsAgainstAForgedSignal(t *testing.T) {
	const grace, interval = 10 * time.Minute, time.Minute
	pol := activities.OrphanPolicy{Delete: true, GracePeriod: grace, ScanInterval: interval,
		Hosts: []activities.HostRef{{Name: "h1"}}, Groups: []string{"web"}}
	env, scans, deleted := forgedOrphanEnv(t, pol)
	var atSignal, scansAtSignal int
	env.RegisterDelayedCallback(func() {
		scansAtSignal = *scans
		env.SignalWorkflow(workflows.SignalOrphanSpec, forgedSpec)
	}, 30*time.Second)
	var st workflows.OrphanStatus
	env.RegisterDelayedCallback(func() {
		v, err := env.QueryWorkflow(workflows.QueryOrphans)
		if err != nil {
			t.Error(err)
			return
		}
		if err := v.Get(&st); err != nil {
			t.Error(err)
		}
		atSignal = *scans - scansAtSignal
		env.SignalWorkflow(workflows.SignalOrphanSpec, workflows.OrphanSpec{})
	}, 5*time.Minute)
	env.SetStartWorkflowOptions(client.StartWorkflowOptions{ID: workflows.OrphanWorkflowID})
	env.ExecuteWorkflow(workflows.OrphanWorkflowName, workflows.OrphanInput{Spec: workflows.OrphanSpec{
		Hosts: pol.Hosts, Groups: pol.Groups, Delete: true, GracePeriod: grace, ScanInterval: interval}})
	if err := env.GetWorkflowError(); err != nil {
		t.Fatal(err)
	}
	// 4.5 minutes at one scan a minute: the forged 0s interval was not
	// taken (it would scan without pause).
	if atSignal < 3 || atSignal > 6 {
		t.Errorf("%d scans in the 4.5 minutes after the forged spec, want 4 or 5 at the worker's %s", atSignal, interval)
	}
	if len(*deleted) != 0 {
		t.Errorf("orphans deleted at %v, within the worker's %s grace period", *deleted, grace)
	}
	if st.Spec.GracePeriod != grace || st.Spec.ScanInterval != interval || st.Spec.DeleteUnconfigured || !slices.Equal(st.Spec.Groups, []string{"web"}) {
		t.Errorf("collector's spec after the forged signal: %+v", st.Spec)
	}
	for _, w := range []string{"gracePeriod", "scanInterval", "deleteUnconfigured"} {
		if !slices.ContainsFunc(st.Refused, func(r string) bool { return strings.HasPrefix(r, w+":") }) {
			t.Errorf("status refused %q, want %s named", st.Refused, w)
		}
	}
}

// TestOrphanCollectorEndsWhenTheWorkerDoesNotDelete: a collector started
// where the worker's configuration only reports ends after its first look
// at the policy, without a scan; the refusal names the action.
func TestOrphanCollectorEndsWhenTheWorkerDoesNotDelete(t *testing.T) {
	pol := activities.OrphanPolicy{GracePeriod: 10 * time.Minute, ScanInterval: time.Minute, Hosts: []activities.HostRef{{Name: "h1"}}, Groups: []string{"web"}}
	env, scans, _ := forgedOrphanEnv(t, pol)
	env.SetStartWorkflowOptions(client.StartWorkflowOptions{ID: workflows.OrphanWorkflowID})
	env.ExecuteWorkflow(workflows.OrphanWorkflowName, workflows.OrphanInput{Spec: workflows.OrphanSpec{
		Hosts: pol.Hosts, Groups: pol.Groups, Delete: true, GracePeriod: pol.GracePeriod, ScanInterval: pol.ScanInterval}})
	if !env.IsWorkflowCompleted() {
		t.Fatal("collector did not end")
	}
	if err := env.GetWorkflowError(); err == nil || !strings.Contains(err.Error(), "autoscale.orphans.action") {
		t.Errorf("collector ended with %v, want the action refused", err)
	}
	if *scans != 0 {
		t.Errorf("scanned %d times", *scans)
	}
}
