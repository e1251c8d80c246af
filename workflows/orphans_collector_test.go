package workflows_test

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/mock"
	tlog "go.temporal.io/sdk/log"
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
