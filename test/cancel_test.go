package test

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/client"
	sdkworker "go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/premiscale/premiscale/activities"
	"github.com/premiscale/premiscale/workflows"
)

// TestCancelledProvisioningCompensatesOnlyAfterTheStepInFlightStopped runs
// ProvisionVM on a real Temporal server (the test suite settles a
// cancelled activity at once, so it cannot show this) and cancels it while
// its clone is in flight. The clone learns of the cancellation through its
// heartbeat and takes a moment to return, as a libvirt call would;
// compensation (stop, undefine, delete volume) must start only after it
// returned, or it could delete a volume before the clone creates it.
func TestCancelledProvisioningCompensatesOnlyAfterTheStepInFlightStopped(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	logger := slog.New(slog.NewTextHandler(testLogWriter{t}, &slog.HandlerOptions{Level: slog.LevelError}))
	_, c := startServer(t, ctx, logger)

	var mu sync.Mutex
	var steps []string
	add := func(s string) { mu.Lock(); steps = append(steps, s); mu.Unlock() }
	cloneStarted := make(chan struct{})
	const queue = "cancel-test"
	w := sdkworker.New(c, queue, sdkworker.Options{})
	w.RegisterWorkflowWithOptions(workflows.ProvisionVM, workflow.RegisterOptions{Name: workflows.ProvisionVMName})
	// ProvisionVM runs only as a child of its group's workflow: this
	// stand-in starts it as the group does, then waits.
	w.RegisterWorkflowWithOptions(func(ctx workflow.Context, in workflows.ProvisionInput) error {
		cctx := workflow.WithChildOptions(ctx, workflow.ChildWorkflowOptions{WorkflowID: "provision-cancel"})
		return workflow.ExecuteChildWorkflow(cctx, workflows.ProvisionVMName, in).Get(ctx, nil)
	}, workflow.RegisterOptions{Name: "GroupStandIn"})
	reg := func(name string, fn any) { w.RegisterActivityWithOptions(fn, activity.RegisterOptions{Name: name}) }
	reg("CloneVolume", func(ctx context.Context, in activities.CloneVolumeInput) (activities.CloneVolumeOutput, error) {
		close(cloneStarted)
		for ctx.Err() == nil {
			activity.RecordHeartbeat(ctx)
			select {
			case <-ctx.Done():
			case <-time.After(200 * time.Millisecond):
			}
		}
		time.Sleep(time.Second) // the libvirt call in flight finishing
		add("clone-returned")
		return activities.CloneVolumeOutput{}, ctx.Err()
	})
	reg("StopDomain", func(context.Context, activities.StopDomainInput) error { add("stop"); return nil })
	reg("UndefineDomain", func(context.Context, activities.DomainRef) error { add("undefine"); return nil })
	reg("DeleteVolume", func(context.Context, activities.DeleteVolumeInput) error { add("delete-volume"); return nil })
	if err := w.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.Stop)

	if _, err := c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: workflows.GroupWorkflowID("web"), TaskQueue: queue}, "GroupStandIn",
		workflows.ProvisionInput{Group: "web", VM: "web-1", Host: activities.HostRef{Name: "h1"}}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-cloneStarted:
	case <-ctx.Done():
		t.Fatal("clone never started")
	}
	run := c.GetWorkflow(ctx, "provision-cancel", "")
	if err := c.CancelWorkflow(ctx, run.GetID(), ""); err != nil {
		t.Fatal(err)
	}
	err := run.Get(ctx, nil)
	if err == nil || errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("cancelled provisioning ended with %v, want its cancellation error", err)
	}
	mu.Lock()
	got := strings.Join(steps, " ")
	mu.Unlock()
	if want := "clone-returned stop undefine delete-volume"; got != want {
		t.Fatalf("steps = %q, want %q (compensation must wait for the clone)", got, want)
	}
}
