package test

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"go.temporal.io/sdk/client"

	"github.com/premiscale/premiscale/config"
	"github.com/premiscale/premiscale/internal/externalgrpc"
	pb "github.com/premiscale/premiscale/internal/externalgrpc/protos"
	"github.com/premiscale/premiscale/starter"
	"github.com/premiscale/premiscale/workflows"
	"github.com/premiscale/premiscale/workflows/policy"
)

// TestClusterAutoscalerIsToldTheBoundsOfAnOpenScheduleWindow opens a
// schedule window (min 2 of a group configured 0..3) the way the group's
// Temporal Schedule does, by the group's own Update, and asks the provider
// for its node groups, as the autoscaler does every loop: they report the
// window's min, then the configured one once the window is closed early
// by the configuration dropping the schedule. Before, the provider always
// reported the configured bounds, so the autoscaler planned scale-ins the
// group refused.
//
// The group runs on the test driver with no join (the provider reads only
// its status); the provider's own configuration puts it in
// clusterAutoscaler mode.
func TestClusterAutoscalerIsToldTheBoundsOfAnOpenScheduleWindow(t *testing.T) {
	requireLibvirt(t, testDriverURI)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	const group = "cawin"
	g := testDriverGroup(group, 0, 3)
	two := 2
	g.Schedules = []config.Schedule{{Name: "burst", Cron: "0 0 1 1 *", Duration: time.Hour, Min: &two}}
	s, c := startInProcess(t, ctx, config.Prometheus{}, g)
	t.Cleanup(func() {
		cctx, ccancel := context.WithTimeout(context.Background(), time.Minute)
		defer ccancel()
		s.Config.Autoscale.Groups[0].Schedules = nil
		_ = s.EnsureGroups(cctx)
		_, _ = s.Scale(cctx, group, 0)
		_, _ = s.WaitSettled(cctx, group, 100*time.Millisecond)
	})
	caCfg := *s.Config
	caCfg.Autoscale.Groups = []config.Group{g}
	caCfg.Autoscale.Groups[0].Scaling.Mode = config.ModeClusterAutoscaler
	srv := &externalgrpc.Server{Starter: &starter.Starter{Client: c, Config: &caCfg}, Log: slog.New(slog.NewTextHandler(testLogWriter{t}, nil))}
	nodeGroup := func() *pb.NodeGroup {
		t.Helper()
		resp, err := srv.NodeGroups(ctx, &pb.NodeGroupsRequest{})
		if err != nil {
			t.Fatal(err)
		}
		if len(resp.GetNodeGroups()) != 1 {
			t.Fatalf("node groups %v, want %s alone", resp.GetNodeGroups(), group)
		}
		return resp.GetNodeGroups()[0]
	}
	if ng := nodeGroup(); ng.GetMinSize() != 0 || ng.GetMaxSize() != 3 {
		t.Fatalf("before any window: %v, want 0..3", ng)
	}

	now := time.Now()
	h, err := c.UpdateWorkflow(ctx, client.UpdateWorkflowOptions{
		WorkflowID: workflows.GroupWorkflowID(group), UpdateName: workflows.UpdateScheduleWindow,
		Args:         []any{policy.Window{Schedule: "burst", Start: now, Until: now.Add(time.Hour), Min: &two}},
		WaitForStage: client.WorkflowUpdateStageCompleted,
	})
	if err != nil {
		t.Fatal(err)
	}
	var res workflows.ScheduleWindowResult
	if err := h.Get(ctx, &res); err != nil || res.Governing != "burst" || res.Min != 2 {
		t.Fatalf("window Update: %+v, %v; want burst governing with min 2", res, err)
	}
	var ng *pb.NodeGroup
	waitFor(t, 15*time.Second, "the provider reporting the window's min", func() bool {
		ng = nodeGroup()
		return ng.GetMinSize() == 2
	})
	if ng.GetMaxSize() != 3 || !strings.Contains(ng.GetDebug(), "schedule burst") {
		t.Errorf("node group in the window: %v, want 2..3 with schedule burst named", ng)
	}

	// The schedule leaves the configuration: its window closes, and the
	// autoscaler is told the configured bounds again.
	s.Config.Autoscale.Groups[0].Schedules = nil
	if err := s.EnsureGroups(ctx); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 15*time.Second, "the provider reporting the configured min", func() bool {
		ng = nodeGroup()
		return ng.GetMinSize() == 0
	})
	if ng.GetMaxSize() != 3 || strings.Contains(ng.GetDebug(), "schedule") {
		t.Errorf("node group after the window: %v, want 0..3 and no schedule", ng)
	}
}
