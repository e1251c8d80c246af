package test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"

	"github.com/premiscale/premiscale/config"
	"github.com/premiscale/premiscale/starter"
	"github.com/premiscale/premiscale/workflows"
)

// TestInstallationOnATemporalClusterIsGeneratedOnceAndShared plays several
// installations on one Temporal server standing in for a cluster (the
// address set, as a deployment against a real cluster has it): the
// processes of one installation, starting together, all resolve one fresh
// identity, and find it again after a restart; another task queue (another
// installation in the same namespace) gets another, as does a second
// server left on the same defaults; an installation whose
// group workflows already run (one from before identities were kept in
// the cluster) keeps the identity its VMs were marked with. Before, every
// installation on the defaults was "default.premiscale".
func TestInstallationOnATemporalClusterIsGeneratedOnceAndShared(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	logger := testLogger(t)
	srv, c := startServer(t, ctx, logger)
	resolve := func(queue string) string {
		t.Helper()
		cfg := &config.Config{Version: config.Version, Controller: config.Controller{Temporal: config.Temporal{Address: srv.Address(), TaskQueue: queue}}}
		cfg.ApplyDefaults()
		if err := cfg.ResolveInstallation(true); err != nil {
			t.Fatal(err)
		}
		if err := starter.ResolveInstallation(ctx, c, cfg); err != nil {
			t.Fatal(err)
		}
		return cfg.Controller.Installation
	}

	// A controller and four workers of one installation start together.
	ids := make([]string, 5)
	var wg sync.WaitGroup
	for i := range ids {
		wg.Go(func() { ids[i] = resolve("premiscale") })
	}
	wg.Wait()
	first := ids[0]
	if !strings.HasPrefix(first, "ps-") || !config.IsInstallation(first) {
		t.Fatalf("generated identity %q, want ps-<random>", first)
	}
	for _, id := range ids {
		if id != first {
			t.Fatalf("processes of one installation resolved %v, want one identity", ids)
		}
	}
	if again := resolve("premiscale"); again != first {
		t.Errorf("after a restart: %q, want %q", again, first)
	}
	if other := resolve("premiscale-2"); other == first || !strings.HasPrefix(other, "ps-") {
		t.Errorf("another installation (task queue premiscale-2) resolved %q; want its own, not %q", other, first)
	}
	// Another cluster, left on the same defaults (namespace default, task
	// queue premiscale): before, both were default.premiscale.
	srv2, c2 := startServer(t, ctx, logger)
	cfg2 := &config.Config{Version: config.Version, Controller: config.Controller{Temporal: config.Temporal{Address: srv2.Address()}}}
	cfg2.ApplyDefaults()
	if err := starter.ResolveInstallation(ctx, c2, cfg2); err != nil {
		t.Fatal(err)
	}
	if cfg2.Controller.Installation == first || !strings.HasPrefix(cfg2.Controller.Installation, "ps-") {
		t.Errorf("a second cluster on the same defaults resolved %q; want its own, not %q", cfg2.Controller.Installation, first)
	}

	// An installation from before: its group workflow runs (no worker
	// needed for that), and its VMs carry "<namespace>.<taskQueue>".
	if _, err := c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: workflows.GroupWorkflowID("old"), TaskQueue: "olderq"},
		workflows.GroupWorkflowName, workflows.GroupInput{Spec: workflows.GroupSpec{Name: "old"}}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "the old group listed as running", func() bool {
		resp, err := c.ListWorkflow(ctx, listRunningGroupsOn("olderq"))
		return err == nil && len(resp.GetExecutions()) == 1
	})
	if legacy := resolve("olderq"); legacy != "default.olderq" {
		t.Errorf("an installation from before resolved %q, want the identity its VMs carry, default.olderq", legacy)
	}
}

// listRunningGroupsOn lists the running group workflows on a task queue.
func listRunningGroupsOn(queue string) *workflowservice.ListWorkflowExecutionsRequest {
	return &workflowservice.ListWorkflowExecutionsRequest{
		Query: "WorkflowType = '" + workflows.GroupWorkflowName + "' AND ExecutionStatus = 'Running' AND TaskQueue = '" + queue + "'",
	}
}
