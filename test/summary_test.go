package test

import (
	"context"
	"strings"
	"testing"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"

	"github.com/premiscale/premiscale/config"
	"github.com/premiscale/premiscale/starter"
	"github.com/premiscale/premiscale/workflows"
)

// TestStatusOfAllGroupsComesFromTheVisibilityStore: each group workflow
// publishes its summary in its memo when it changes, one listing reads
// every group's, and a group at rest publishes nothing however often it
// ticks.
func TestStatusOfAllGroupsComesFromTheVisibilityStore(t *testing.T) {
	requireLibvirt(t, testDriverURI)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	// Without host watchers, so that the groups poll their host every
	// second even at rest.
	off := false
	s, c := startInProcessConfig(t, ctx, &config.Config{
		Version:    config.Version,
		Controller: config.Controller{HostWatch: config.HostWatch{Enabled: &off}},
		Autoscale: config.Autoscale{
			Hosts:  []config.Host{{Name: "testhost", URI: testDriverURI, Pool: testPool, CPUOvercommit: 16, MemoryOvercommit: 16}},
			Groups: []config.Group{testDriverGroup("suma", 0, 3), testDriverGroup("sumb", 1, 3)},
		},
	}, nil)
	if _, err := s.Scale(ctx, "suma", 2); err != nil {
		t.Fatal(err)
	}
	wctx, wcancel := context.WithTimeout(ctx, time.Minute)
	defer wcancel()
	want, err := s.WaitSettled(wctx, "suma", 100*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.WaitSettled(wctx, "sumb", 100*time.Millisecond); err != nil {
		t.Fatal(err)
	}

	// The listing catches up with the Query within a few seconds.
	var got []workflows.GroupSummary
	deadline := time.Now().Add(10 * time.Second)
	for {
		got, err = s.Summaries(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) == 2 && got[0].Running == 2 && got[1].Running == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("summaries %+v, want suma running 2 and sumb running 1", got)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if got[0].Group != "suma" || got[1].Group != "sumb" {
		t.Fatalf("summaries in order %s, %s; want the configuration's suma, sumb", got[0].Group, got[1].Group)
	}
	wantSum := want.Summary()
	if got[0].Desired != wantSum.Desired || got[0].Min != wantSum.Min || got[0].Max != wantSum.Max || got[0].Provisioning != 0 || got[0].ChangedAt.IsZero() {
		t.Errorf("summary of suma %+v, status Query says %+v", got[0], wantSum)
	}

	// It came from the memo, not from a Query: the workflow's memo holds it.
	desc, err := c.DescribeWorkflowExecution(ctx, workflows.GroupWorkflowID("suma"), "")
	if err != nil {
		t.Fatal(err)
	}
	var memo workflows.GroupSummary
	p := desc.GetWorkflowExecutionInfo().GetMemo().GetFields()[workflows.MemoSummary]
	if p == nil {
		t.Fatalf("suma's memo has no %s: %v", workflows.MemoSummary, desc.GetWorkflowExecutionInfo().GetMemo())
	}
	if err := converter.GetDefaultDataConverter().FromPayload(p, &memo); err != nil {
		t.Fatal(err)
	}
	if memo.Running != 2 || memo.Desired != 2 {
		t.Errorf("memo of suma %+v, want running 2 of 2", memo)
	}

	// At rest: ten evaluation ticks later, no summary was published again.
	before := countEvents(t, ctx, c, "suma", enumspb.EVENT_TYPE_WORKFLOW_PROPERTIES_MODIFIED)
	ticks := countEvents(t, ctx, c, "suma", enumspb.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED)
	time.Sleep(10 * time.Second)
	if n := countEvents(t, ctx, c, "suma", enumspb.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED); n < ticks+5 {
		t.Fatalf("suma observed its host %d times in 10 s at a 1 s interval; the test proves nothing (status %+v)", n-ticks, mustStatus(t, ctx, s, "suma"))
	}
	if after := countEvents(t, ctx, c, "suma", enumspb.EVENT_TYPE_WORKFLOW_PROPERTIES_MODIFIED); after != before {
		t.Errorf("suma at rest published its summary %d more times", after-before)
	}
	if before < 2 {
		t.Errorf("suma published %d summaries through creation and a scale-out to 2; want one per change", before)
	}
}

// TestStatusOfAllGroupsNamesAGroupWithoutWorkflow: a configured group
// whose workflow does not run has no summary; the status of all groups
// says which group and why instead of leaving it out.
func TestStatusOfAllGroupsNamesAGroupWithoutWorkflow(t *testing.T) {
	requireLibvirt(t, testDriverURI)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	s, c := startInProcess(t, ctx, config.Prometheus{}, testDriverGroup("sumc", 0, 3))
	if err := c.TerminateWorkflow(ctx, workflows.GroupWorkflowID("sumc"), "", "test"); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, err := s.Summaries(ctx)
		if err != nil {
			if !strings.Contains(err.Error(), "group sumc has no running workflow") {
				t.Fatalf("error %q does not say that group sumc has no running workflow", err)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("status of all groups succeeded 10 s after sumc's workflow was terminated")
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func countEvents(t *testing.T, ctx context.Context, c client.Client, group string, kind enumspb.EventType) int {
	t.Helper()
	n := 0
	it := c.GetWorkflowHistory(ctx, workflows.GroupWorkflowID(group), "", false, 0)
	for it.HasNext() {
		ev, err := it.Next()
		if err != nil {
			t.Fatal(err)
		}
		if ev.GetEventType() == kind {
			n++
		}
	}
	return n
}

func mustStatus(t *testing.T, ctx context.Context, s *starter.Starter, group string) workflows.GroupStatus {
	t.Helper()
	st, err := s.Status(ctx, group)
	if err != nil {
		t.Fatal(err)
	}
	return st
}
