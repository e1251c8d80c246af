package test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	historypb "go.temporal.io/api/history/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	sdklog "go.temporal.io/sdk/log"
	sdkworker "go.temporal.io/sdk/worker"
	"google.golang.org/protobuf/encoding/protojson"
	"k8s.io/client-go/kubernetes"

	"github.com/premiscale/premiscale/activities"
	"github.com/premiscale/premiscale/config"
	"github.com/premiscale/premiscale/internal/embedded"
	"github.com/premiscale/premiscale/internal/hostconn"
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

	if err := worker.Replay(sdklog.NewStructuredLogger(logger), hist); err != nil {
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
	cfg := testDriverConfig(groups...)
	cfg.Controller.Prometheus = prom
	return startInProcessConfig(tb, ctx, cfg, nil)
}

// testDriverConfig is the configuration startInProcess runs: the groups on
// the test driver's one host.
func testDriverConfig(groups ...config.Group) *config.Config {
	// The test driver's node is 16 CPUs and 3 GiB, and its own "test"
	// domain claims 8 GiB: overcommit so that placement finds room.
	hosts := []config.Host{{Name: "testhost", URI: testDriverURI, Pool: testPool, CPUOvercommit: 16, MemoryOvercommit: 16}}
	return &config.Config{Version: config.Version, Autoscale: config.Autoscale{Hosts: hosts, Groups: groups}}
}

// startInProcessOrphans is startInProcess whose worker collects orphans as
// o says (o may hold durations below what validation allows).
func startInProcessOrphans(tb testing.TB, ctx context.Context, o config.Orphans, groups ...config.Group) (*starter.Starter, client.Client) {
	tb.Helper()
	return startInProcessTuned(tb, ctx, testDriverConfig(groups...), nil, testLogger(tb), withOrphans(o))
}

// withOrphans is a startInProcessTuned tune that sets the orphan settings.
func withOrphans(o config.Orphans) func(*config.Config) {
	return func(c *config.Config) { c.Autoscale.Orphans = o }
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
	return startInProcessLogged(tb, ctx, cfg, kube, testLogger(tb))
}

// testLogger logs errors to the test's log.
func testLogger(tb testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(testLogWriter{tb}, &slog.HandlerOptions{Level: slog.LevelError}))
}

// startInProcessLogged is startInProcessConfig logging (server, client,
// worker and activities) to logger.
func startInProcessLogged(tb testing.TB, ctx context.Context, cfg *config.Config, kube kubernetes.Interface, logger *slog.Logger) (*starter.Starter, client.Client) {
	tb.Helper()
	return startInProcessTuned(tb, ctx, cfg, kube, logger, nil)
}

// startInProcessTuned is startInProcessLogged with tune, when not nil,
// applied to the configuration after validation and before the worker
// reads it: for settings tests shorten below what validation allows (an
// orphan grace period of seconds).
func startInProcessTuned(tb testing.TB, ctx context.Context, cfg *config.Config, kube kubernetes.Interface, logger *slog.Logger, tune func(*config.Config)) (*starter.Starter, client.Client) {
	tb.Helper()
	_, c := startServer(tb, ctx, logger)
	hosts := hostconn.NewHosts(logger)
	hosts.Limits = hostconn.HostLimits(cfg)
	tb.Cleanup(func() { _ = hosts.Close() })
	cfg.ApplyDefaults()
	if cfg.Controller.Installation == "" {
		cfg.Controller.Installation = fmt.Sprintf("test-%d", time.Now().UnixNano())
	}
	if err := cfg.Validate(); err != nil {
		tb.Fatalf("test config: %v", err)
	}
	const queue = "in-process"
	cfg.Controller.Temporal.TaskQueue = queue
	if tune != nil {
		tune(cfg)
	}
	pr, err := activities.NewPrometheus(cfg.Controller.Prometheus)
	if err != nil {
		tb.Fatal(err)
	}
	cat := activities.NewCatalog(cfg)
	w := worker.New(c, queue, &activities.Libvirt{Hosts: hosts, Catalog: cat}, pr, &activities.Kubernetes{Client: kube, Hosts: hosts, Catalog: cat}, sdkworker.Options{})
	if err := w.Start(); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(w.Stop)
	// Host watchers, as every worker process runs them.
	wctx, stopWatch := context.WithCancel(context.Background())
	watched := make(chan struct{})
	go func() { worker.WatchHosts(wctx, c, cfg, cat, logger); close(watched) }()
	tb.Cleanup(func() { stopWatch(); <-watched })
	s := &starter.Starter{Client: c, Config: cfg}
	if err := s.EnsureGroups(ctx); err != nil {
		tb.Fatal(err)
	}
	return s, c
}

// startServer starts an embedded Temporal server on a free port with its
// database in the test's temporary directory, and a client of it; both
// stop when the test ends.
func startServer(tb testing.TB, ctx context.Context, logger *slog.Logger) (*embedded.Server, client.Client) {
	tb.Helper()
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
	return srv, c
}

// recordHistories, with RECORD_HISTORIES=1, saves for each workflow type in
// the server the longest history (the run that went through the most) as
// workflows/testdata/<prefix>_<type>_history.json, which the workflows
// package then replays (whole and cut before every task) in its unit tests.
// Call it at the end of a test whose path the replay tests should cover;
// only, when given, limits it to those workflow types.
func recordHistories(t testing.TB, c client.Client, prefix string, only ...string) {
	t.Helper()
	if os.Getenv("RECORD_HISTORIES") != "1" {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	best := map[string]*historypb.History{}
	var token []byte
	for {
		resp, err := c.ListWorkflow(ctx, &workflowservice.ListWorkflowExecutionsRequest{PageSize: 1000, NextPageToken: token})
		if err != nil {
			t.Fatalf("record histories: %v", err)
		}
		for _, info := range resp.GetExecutions() {
			h := &historypb.History{}
			it := c.GetWorkflowHistory(ctx, info.GetExecution().GetWorkflowId(), info.GetExecution().GetRunId(), false, 0)
			for it.HasNext() {
				ev, err := it.Next()
				if err != nil {
					t.Fatalf("record histories: %v", err)
				}
				h.Events = append(h.Events, ev)
			}
			typ := info.GetType().GetName()
			if len(only) > 0 && !slices.Contains(only, typ) {
				continue
			}
			if len(h.Events) > len(best[typ].GetEvents()) {
				best[typ] = h
			}
		}
		if token = resp.GetNextPageToken(); len(token) == 0 {
			break
		}
	}
	for typ, h := range best {
		writeHistory(t, prefix+"_"+strings.ToLower(typ), h)
	}
}

// writeHistory saves h as workflows/testdata/NAME_history.json.
func writeHistory(t testing.TB, name string, h *historypb.History) {
	t.Helper()
	path := "../workflows/testdata/" + name + "_history.json"
	b, err := protojson.MarshalOptions{Multiline: true, Indent: "  "}.Marshal(h)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("wrote %s (%d events)", path, len(h.Events))
}

// TestContinueAsNewCarriesTheGroupOnARealServer lowers a group's history
// limit so that it continues as new while it scales, then checks that the
// first run ended so, that the new run holds the same members, and that
// the first run's history replays (RECORD_HISTORIES=1 saves it).
func TestContinueAsNewCarriesTheGroupOnARealServer(t *testing.T) {
	requireLibvirt(t, testDriverURI)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	const group = "can"
	s, c := startInProcess(t, ctx, config.Prometheus{}, testDriverGroup(group, 0, 3))
	first, err := c.DescribeWorkflowExecution(ctx, workflows.GroupWorkflowID(group), "")
	if err != nil {
		t.Fatal(err)
	}
	firstRun := first.GetWorkflowExecutionInfo().GetExecution().GetRunId()
	// The group has checked its start against the worker's configuration
	// (its first task) before the configuration changes under it.
	if _, err := s.WaitSettled(ctx, group, 100*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	// Observing each second (no host watcher, so no resync interval to
	// sleep on once quiet), so that the history grows past the limit; the
	// worker reads the same configuration, so it takes the spec.
	off := false
	s.Config.Controller.HostWatch.Enabled = &off
	spec := workflows.SpecFromConfig(s.Config, s.Config.Autoscale.Groups[0])
	spec.HistoryLimit = 60
	if err := c.SignalWorkflow(ctx, workflows.GroupWorkflowID(group), "", workflows.SignalSpec, spec); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Scale(ctx, group, 2); err != nil {
		t.Fatalf("%v (the group's workflow: %v)", err, c.GetWorkflow(ctx, workflows.GroupWorkflowID(group), "").Get(ctx, nil))
	}
	waitContinuedAsNew(t, ctx, c, group, firstRun)
	wctx, wcancel := context.WithTimeout(ctx, time.Minute)
	defer wcancel()
	st, err := s.WaitSettled(wctx, group, 100*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	if st.Desired != 2 || len(st.Members) != 2 {
		t.Fatalf("after continue-as-new: desired %d, members %+v; want the 2 carried over", st.Desired, st.Members)
	}
	hist := workflowHistory(t, ctx, c, group, firstRun)
	logger := slog.New(slog.NewTextHandler(testLogWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	if err := worker.Replay(sdklog.NewStructuredLogger(logger), hist); err != nil {
		t.Fatalf("replay of the run that continued as new: %v", err)
	}
	if os.Getenv("RECORD_HISTORIES") == "1" {
		writeHistory(t, "continue_as_new_groupworkflow", hist)
	}
	if _, err := s.Scale(ctx, group, 0); err != nil {
		t.Fatal(err)
	}
	wctx2, wcancel2 := context.WithTimeout(ctx, time.Minute)
	defer wcancel2()
	if _, err := s.WaitSettled(wctx2, group, 100*time.Millisecond); err != nil {
		t.Fatal(err)
	}
}

// TestGroupAPIPathsReplay drives one group through the paths of its API
// that the other recorded histories do not take, then replays both of its
// runs (RECORD_HISTORIES=1 saves them as api_first_run and
// api_second_run): scale-in protection set and cleared; a refresh of every
// member that waits at its checkpoint, is scaled in meanwhile (the
// outdated member goes, not the protected one nor the replacement) and is
// cancelled; continue-as-new while provisioning children are in flight;
// and the second run scaling in.
func TestGroupAPIPathsReplay(t *testing.T) {
	requireLibvirt(t, testDriverURI)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	const group = "api"
	s, c := startInProcess(t, ctx, config.Prometheus{}, testDriverGroup(group, 0, 6))
	settle := func() workflows.GroupStatus {
		t.Helper()
		wctx, wcancel := context.WithTimeout(ctx, time.Minute)
		defer wcancel()
		st, err := s.WaitSettled(wctx, group, 100*time.Millisecond)
		if err != nil {
			t.Fatal(err)
		}
		return st
	}
	scale := func(n int) {
		t.Helper()
		if _, err := s.Scale(ctx, group, n); err != nil {
			t.Fatal(err)
		}
	}
	scale(3)
	st := settle()
	if len(st.Members) != 3 {
		t.Fatalf("members %+v, want 3", st.Members)
	}
	protected := st.Members[0].Name
	if err := s.Protect(ctx, group, protected, true); err != nil {
		t.Fatal(err)
	}
	before := map[string]bool{}
	for _, m := range st.Members {
		before[m.Name] = true
	}

	// Every member is outdated; the protected one is left alone, and the
	// refresh waits at its first checkpoint once it has replaced one of
	// the other two.
	one := 1
	if _, err := s.Refresh(ctx, group, workflows.RefreshRequest{All: true, Batch: &one, MinHealthy: "50%", Checkpoints: []int{34, 67}, CheckpointDelay: "1h"}, false); err != nil {
		t.Fatal(err)
	}
	for {
		st, err := s.Status(ctx, group)
		if err != nil {
			t.Fatal(err)
		}
		if r := st.Refresh; r != nil && !r.WaitingUntil.IsZero() {
			break
		} else if r != nil && r.Status != workflows.RefreshRunning {
			t.Fatalf("refresh ended %s before its checkpoint: %+v", r.Status, r)
		}
		if ctx.Err() != nil {
			t.Fatalf("the refresh never reached its checkpoint: %+v", st.Refresh)
		}
		time.Sleep(100 * time.Millisecond)
	}
	st = settle()
	var outdated, replacement string
	for _, m := range st.Members {
		switch {
		case m.Name == protected:
		case before[m.Name]:
			outdated = m.Name
		default:
			replacement = m.Name
		}
	}
	if outdated == "" || replacement == "" || len(st.Members) != 3 {
		t.Fatalf("at the checkpoint: members %+v, want the protected one, one outdated and one replacement", st.Members)
	}
	// A scale-in while the refresh runs takes the outdated member.
	scale(2)
	st = settle()
	var names []string
	for _, m := range st.Members {
		names = append(names, m.Name)
	}
	slices.Sort(names)
	want := []string{protected, replacement}
	slices.Sort(want)
	if !slices.Equal(names, want) {
		t.Fatalf("scale-in during the refresh left %v, want %v (%s outdated)", names, want, outdated)
	}
	r, err := s.CancelRefresh(ctx, group)
	if err != nil {
		t.Fatal(err)
	}
	if r.Status != workflows.RefreshCancelled {
		t.Fatalf("refresh after cancel: %+v", r)
	}
	if err := s.Protect(ctx, group, protected, false); err != nil {
		t.Fatal(err)
	}

	// Continue-as-new while children are in flight: once the scale-out's
	// provisioning has started, the limit drops below what the history
	// holds.
	first, err := c.DescribeWorkflowExecution(ctx, workflows.GroupWorkflowID(group), "")
	if err != nil {
		t.Fatal(err)
	}
	firstRun := first.GetWorkflowExecutionInfo().GetExecution().GetRunId()
	scale(5)
	for {
		st, err := s.Status(ctx, group)
		if err != nil {
			t.Fatal(err)
		}
		provisioning := 0
		for _, m := range st.Members {
			if m.State == workflows.MemberProvisioning {
				provisioning++
			}
		}
		if provisioning > 0 {
			break
		}
		if ctx.Err() != nil {
			t.Fatal("the scale-out never started provisioning")
		}
		time.Sleep(10 * time.Millisecond)
	}
	spec := workflows.SpecFromConfig(s.Config, s.Config.Autoscale.Groups[0])
	spec.HistoryLimit = workflows.MinHistoryLimit
	if err := c.SignalWorkflow(ctx, workflows.GroupWorkflowID(group), "", workflows.SignalSpec, spec); err != nil {
		t.Fatal(err)
	}
	waitContinuedAsNew(t, ctx, c, group, firstRun)
	firstHist := workflowHistory(t, ctx, c, group, firstRun)
	inflight, atSignal := 0, -1
	for _, e := range firstHist.Events {
		switch e.GetEventType() {
		case enumspb.EVENT_TYPE_START_CHILD_WORKFLOW_EXECUTION_INITIATED:
			inflight++
		case enumspb.EVENT_TYPE_CHILD_WORKFLOW_EXECUTION_COMPLETED, enumspb.EVENT_TYPE_CHILD_WORKFLOW_EXECUTION_FAILED,
			enumspb.EVENT_TYPE_CHILD_WORKFLOW_EXECUTION_CANCELED, enumspb.EVENT_TYPE_CHILD_WORKFLOW_EXECUTION_TERMINATED,
			enumspb.EVENT_TYPE_CHILD_WORKFLOW_EXECUTION_TIMED_OUT, enumspb.EVENT_TYPE_START_CHILD_WORKFLOW_EXECUTION_FAILED:
			inflight--
		case enumspb.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED:
			if e.GetWorkflowExecutionSignaledEventAttributes().GetSignalName() == workflows.SignalSpec {
				atSignal = inflight // the last spec signal: the one lowering the limit
			}
		}
	}
	if atSignal <= 0 {
		t.Fatalf("no child was in flight when the limit was lowered (%d)", atSignal)
	}
	if inflight != 0 {
		t.Fatalf("the first run continued as new with %d children still in flight", inflight)
	}
	st = settle()
	if st.Desired != 5 || len(st.Members) != 5 {
		t.Fatalf("after continue-as-new: desired %d, members %+v; want 5", st.Desired, st.Members)
	}
	// The second run scales in.
	scale(1)
	settle()
	secondHist := workflowHistory(t, ctx, c, group, firstHist.Events[len(firstHist.Events)-1].GetWorkflowExecutionContinuedAsNewEventAttributes().GetNewExecutionRunId())
	logger := sdklog.NewStructuredLogger(slog.New(slog.NewTextHandler(testLogWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn})))
	for name, h := range map[string]*historypb.History{"api_first_run": firstHist, "api_second_run": secondHist} {
		if err := worker.Replay(logger, h); err != nil {
			t.Fatalf("replay of %s (%d events): %v", name, len(h.Events), err)
		}
		if os.Getenv("RECORD_HISTORIES") == "1" {
			writeHistory(t, name+"_groupworkflow", h)
		}
	}
}

// workflowHistory reads the whole history of one run of group's workflow.
func workflowHistory(t testing.TB, ctx context.Context, c client.Client, group, runID string) *historypb.History {
	t.Helper()
	h := &historypb.History{}
	it := c.GetWorkflowHistory(ctx, workflows.GroupWorkflowID(group), runID, false, 0)
	for it.HasNext() {
		ev, err := it.Next()
		if err != nil {
			t.Fatal(err)
		}
		h.Events = append(h.Events, ev)
	}
	return h
}

// waitContinuedAsNew waits until run of group's workflow has continued as
// new, and fails if it ends otherwise.
func waitContinuedAsNew(t testing.TB, ctx context.Context, c client.Client, group, run string) {
	t.Helper()
	for {
		d, err := c.DescribeWorkflowExecution(ctx, workflows.GroupWorkflowID(group), run)
		if err != nil {
			t.Fatal(err)
		}
		if st := d.GetWorkflowExecutionInfo().GetStatus(); st == enumspb.WORKFLOW_EXECUTION_STATUS_CONTINUED_AS_NEW {
			return
		} else if st != enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING {
			t.Fatalf("run %s ended %s (%v), want continued as new", run, st, c.GetWorkflow(ctx, workflows.GroupWorkflowID(group), run).Get(ctx, nil))
		}
		if ctx.Err() != nil {
			t.Fatal("the group never continued as new")
		}
		time.Sleep(100 * time.Millisecond)
	}
}
