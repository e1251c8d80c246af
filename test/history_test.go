package test

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	historypb "go.temporal.io/api/history/v1"
	"go.temporal.io/sdk/client"
	sdklog "go.temporal.io/sdk/log"
	sdkworker "go.temporal.io/sdk/worker"
	"google.golang.org/protobuf/encoding/protojson"
	"k8s.io/client-go/kubernetes"

	"github.com/premiscale/premiscale/activities"
	"github.com/premiscale/premiscale/config"
	"github.com/premiscale/premiscale/internal/embedded"
	"github.com/premiscale/premiscale/starter"
	"github.com/premiscale/premiscale/worker"
	"github.com/premiscale/premiscale/workflows"
)

// RECORD_HISTORY=NAME saves this run's history as
// workflows/testdata/NAME_history.json, which the workflows package replays
// in its unit tests from then on. Keep old files: they prove that running
// workflows recorded by older code still replay.

// TestGroupHistoryFromARealRunReplays drives a group on the embedded server
// and the test driver through scale-out, scale-in, pause and resume, then
// replays the recorded history against today's workflow code: any
// non-determinism fails here before it breaks running groups.
func TestGroupHistoryFromARealRunReplays(t *testing.T) {
	requireLibvirt(t, testDriverURI)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	s, c := startInProcess(t, ctx, config.Prometheus{}, testDriverGroup("hist", 0, 3))
	logger := slog.New(slog.NewTextHandler(testLogWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	settle := func(n int) {
		t.Helper()
		if _, err := s.Scale(ctx, "hist", n); err != nil {
			t.Fatal(err)
		}
		wctx, wcancel := context.WithTimeout(ctx, time.Minute)
		defer wcancel()
		if _, err := s.WaitSettled(wctx, "hist", 100*time.Millisecond); err != nil {
			t.Fatal(err)
		}
	}
	settle(3)
	settle(1)
	if err := s.Pause(ctx, "hist"); err != nil {
		t.Fatal(err)
	}
	if err := s.Resume(ctx, "hist"); err != nil {
		t.Fatal(err)
	}
	settle(0)
	time.Sleep(1500 * time.Millisecond) // one more evaluation tick in the history

	hist := &historypb.History{}
	it := c.GetWorkflowHistory(ctx, workflows.GroupWorkflowID("hist"), "", false, 0)
	for it.HasNext() {
		ev, err := it.Next()
		if err != nil {
			t.Fatal(err)
		}
		hist.Events = append(hist.Events, ev)
	}
	t.Logf("recorded %d events", len(hist.Events))

	replayer := sdkworker.NewWorkflowReplayer()
	worker.RegisterWorkflows(replayer)
	if err := replayer.ReplayWorkflowHistory(sdklog.NewStructuredLogger(logger), hist); err != nil {
		t.Fatalf("replay of a fresh history failed: %v", err)
	}
	if name := os.Getenv("RECORD_HISTORY"); name != "" {
		recordedHistory := "../workflows/testdata/" + name + "_history.json"
		b, err := protojson.MarshalOptions{Multiline: true, Indent: "  "}.Marshal(hist)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(recordedHistory, b, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("wrote %s", recordedHistory)
	}
}

type testLogWriter struct{ t testing.TB }

func (w testLogWriter) Write(p []byte) (int, error) {
	w.t.Log(string(p))
	return len(p), nil
}

// testDriverGroup is a group of tiny VMs on the test driver's host.
func testDriverGroup(name string, lo, hi int) config.Group {
	zero := time.Duration(0)
	return config.Group{
		Name: name, Hosts: []string{"testhost"}, Min: lo, Max: hi,
		Scaling:  config.Scaling{EvaluationInterval: time.Second},
		Template: config.Template{DiskSize: "64MiB", Memory: "64MiB", DomainType: "qemu", ShutdownTimeout: &zero},
	}
}

// startInProcess runs the embedded server and a worker in this process with
// the groups on the test driver, started and ready to scale.
func startInProcess(tb testing.TB, ctx context.Context, prom config.Prometheus, groups ...config.Group) (*starter.Starter, client.Client) {
	tb.Helper()
	// The test driver's node is 16 CPUs and 3 GiB, and its own "test"
	// domain claims 8 GiB: overcommit so that placement finds room.
	hosts := []config.Host{{Name: "testhost", URI: testDriverURI, Pool: testPool, CPUOvercommit: 16, MemoryOvercommit: 16}}
	return startInProcessOn(tb, ctx, prom, hosts, groups...)
}

// startInProcessOn is startInProcess with the given hosts.
func startInProcessOn(tb testing.TB, ctx context.Context, prom config.Prometheus, hostList []config.Host, groups ...config.Group) (*starter.Starter, client.Client) {
	tb.Helper()
	cfg := &config.Config{
		Version:    config.Version,
		Controller: config.Controller{Prometheus: prom},
		Autoscale:  config.Autoscale{Hosts: hostList, Groups: groups},
	}
	return startInProcessConfig(tb, ctx, cfg, nil)
}

// startInProcessConfig is startInProcess for a whole configuration (given
// without defaults), with kube as the workers' Kubernetes API.
func startInProcessConfig(tb testing.TB, ctx context.Context, cfg *config.Config, kube kubernetes.Interface) (*starter.Starter, client.Client) {
	tb.Helper()
	logger := slog.New(slog.NewTextHandler(testLogWriter{tb}, &slog.HandlerOptions{Level: slog.LevelError}))
	srv, err := embedded.Start(ctx, embedded.Options{DBPath: filepath.Join(tb.TempDir(), "temporal.db"), Port: freePort(tb), Logger: logger})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = srv.Stop() })
	c, err := client.Dial(client.Options{HostPort: srv.Address(), Logger: sdklog.NewStructuredLogger(logger)})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(c.Close)
	hosts := activities.NewHosts(logger)
	tb.Cleanup(func() { _ = hosts.Close() })
	cfg.ApplyDefaults()
	if err := cfg.Validate(); err != nil {
		tb.Fatalf("test config: %v", err)
	}
	const queue = "in-process"
	cfg.Controller.Temporal.TaskQueue = queue
	pr, err := activities.NewPrometheus(cfg.Controller.Prometheus)
	if err != nil {
		tb.Fatal(err)
	}
	w := worker.New(c, queue, &activities.Libvirt{Hosts: hosts}, pr, &activities.Kubernetes{Client: kube, Hosts: hosts}, sdkworker.Options{})
	if err := w.Start(); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(w.Stop)
	s := &starter.Starter{Client: c, Config: cfg}
	if err := s.EnsureGroups(ctx); err != nil {
		tb.Fatal(err)
	}
	return s, c
}
