package embedded

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/client"
	sdklog "go.temporal.io/sdk/log"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"
	"go.temporal.io/server/common/log/tag"
)

const (
	taskQueue  = "embedded-test"
	updateName = "set-name"
)

// greetWorkflow waits for one Update carrying a name, greets it through an
// activity and returns the greeting.
func greetWorkflow(ctx workflow.Context) (string, error) {
	var name string
	if err := workflow.SetUpdateHandlerWithOptions(ctx, updateName,
		func(ctx workflow.Context, n string) (string, error) {
			name = n
			return "accepted " + n, nil
		},
		workflow.UpdateHandlerOptions{Validator: func(ctx workflow.Context, n string) error {
			if n == "" {
				return errors.New("empty name")
			}
			return nil
		}},
	); err != nil {
		return "", err
	}
	if err := workflow.Await(ctx, func() bool { return name != "" }); err != nil {
		return "", err
	}
	ctx = workflow.WithActivityOptions(ctx, workflow.ActivityOptions{StartToCloseTimeout: 10 * time.Second})
	var greeting string
	err := workflow.ExecuteActivity(ctx, greet, name).Get(ctx, &greeting)
	return greeting, err
}

func greet(ctx context.Context, name string) (string, error) {
	activity.GetLogger(ctx).Info("greeting", "name", name)
	return "hello " + name, nil
}

// startServer starts a server on dbPath and port and logs how long it took.
func startServer(t *testing.T, dbPath string, port int, what string) *Server {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	// Stderr, not t.Log: server goroutines may still log after the test ends.
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	began := time.Now()
	s, err := Start(ctx, Options{DBPath: dbPath, Port: port, Logger: logger})
	if err != nil {
		t.Fatalf("Start (%s): %v", what, err)
	}
	t.Logf("start (%s) took %v", what, time.Since(began))
	t.Cleanup(func() { _ = s.Stop() })
	return s
}

// connect dials the server and runs a worker for greetWorkflow; both are closed when the test ends or stop is called.
func connect(t *testing.T, s *Server) (c client.Client, stop func()) {
	t.Helper()
	c, err := client.Dial(client.Options{
		HostPort:  s.Address(),
		Namespace: DefaultNamespace,
		Logger:    sdklog.NewStructuredLogger(slog.New(slog.DiscardHandler)),
	})
	if err != nil {
		t.Fatalf("dial %s: %v", s.Address(), err)
	}
	w := worker.New(c, taskQueue, worker.Options{})
	w.RegisterWorkflow(greetWorkflow)
	w.RegisterActivity(greet)
	if err := w.Start(); err != nil {
		c.Close()
		t.Fatalf("start worker: %v", err)
	}
	var stopped bool
	stop = func() {
		if !stopped {
			stopped = true
			w.Stop()
			c.Close()
		}
	}
	t.Cleanup(stop)
	return c, stop
}

func update(ctx context.Context, t *testing.T, c client.Client, workflowID, name string) {
	t.Helper()
	h, err := c.UpdateWorkflow(ctx, client.UpdateWorkflowOptions{
		WorkflowID:   workflowID,
		UpdateName:   updateName,
		Args:         []any{name},
		WaitForStage: client.WorkflowUpdateStageCompleted,
	})
	if err != nil {
		t.Fatalf("update %s: %v", workflowID, err)
	}
	var ack string
	if err := h.Get(ctx, &ack); err != nil || ack != "accepted "+name {
		t.Fatalf("update %s result = %q, %v; want %q", workflowID, ack, err, "accepted "+name)
	}
}

// waitUntilAwaiting sends an Update the validator rejects: it returns once
// the worker has run the workflow up to its Await. Stopping the worker
// earlier would leave a started workflow task that only times out (10 s)
// after a restart.
func waitUntilAwaiting(ctx context.Context, t *testing.T, c client.Client, workflowID string) {
	t.Helper()
	h, err := c.UpdateWorkflow(ctx, client.UpdateWorkflowOptions{
		WorkflowID: workflowID, UpdateName: updateName, Args: []any{""},
		WaitForStage: client.WorkflowUpdateStageCompleted,
	})
	if err == nil {
		err = h.Get(ctx, nil)
	}
	if err == nil || !strings.Contains(err.Error(), "empty name") {
		t.Fatalf("update with empty name = %v, want rejection by the validator", err)
	}
}

func wantResult(ctx context.Context, t *testing.T, c client.Client, workflowID, want string) {
	t.Helper()
	var got string
	if err := c.GetWorkflow(ctx, workflowID, "").Get(ctx, &got); err != nil || got != want {
		t.Fatalf("workflow %s result = %q, %v; want %q", workflowID, got, err, want)
	}
}

func TestWorkflowsSurviveRestartOnSameDatabase(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a Temporal server twice")
	}
	dbPath := filepath.Join(t.TempDir(), "temporal.db")
	ports, err := freePorts(1)
	if err != nil {
		t.Fatal(err)
	}
	port := ports[0]
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	// First life: one workflow runs to completion through an Update and an
	// activity, a second one is left waiting for its Update.
	s := startServer(t, dbPath, port, "new database")
	if want := "127.0.0.1:" + strconv.Itoa(port); s.Address() != want {
		t.Fatalf("Address() = %q, want %q", s.Address(), want)
	}
	// The journal_mode pragma took effect, and the schema's scratch file is gone.
	if _, err := os.Stat(dbPath + "-wal"); err != nil {
		t.Fatalf("no WAL file next to the database: %v", err)
	}
	if left, _ := filepath.Glob(dbPath + ".init-*"); len(left) > 0 {
		t.Fatalf("schema scratch files left behind: %v", left)
	}
	c, stopWorker := connect(t, s)
	wfOpts := func(id string) client.StartWorkflowOptions {
		return client.StartWorkflowOptions{ID: id, TaskQueue: taskQueue}
	}
	if _, err := c.ExecuteWorkflow(ctx, wfOpts("done-before-restart"), greetWorkflow); err != nil {
		t.Fatalf("start workflow: %v", err)
	}
	began := time.Now()
	update(ctx, t, c, "done-before-restart", "ada")
	wantResult(ctx, t, c, "done-before-restart", "hello ada")
	t.Logf("update + activity + completion took %v", time.Since(began))

	if _, err := c.ExecuteWorkflow(ctx, wfOpts("waiting-across-restart"), greetWorkflow); err != nil {
		t.Fatalf("start workflow: %v", err)
	}
	waitUntilAwaiting(ctx, t, c, "waiting-across-restart")
	stopWorker()
	if err := s.Stop(); err != nil {
		t.Fatalf("Stop: %v", err)
	}

	// Second life on the same file and port: history is still there and the
	// waiting workflow carries on.
	s = startServer(t, dbPath, port, "existing database")
	c, _ = connect(t, s)
	desc, err := c.DescribeWorkflowExecution(ctx, "done-before-restart", "")
	if err != nil {
		t.Fatalf("describe after restart: %v", err)
	}
	if st := desc.GetWorkflowExecutionInfo().GetStatus(); st != enumspb.WORKFLOW_EXECUTION_STATUS_COMPLETED {
		t.Fatalf("status after restart = %v, want COMPLETED", st)
	}
	wantResult(ctx, t, c, "done-before-restart", "hello ada")

	began = time.Now()
	update(ctx, t, c, "waiting-across-restart", "grace")
	wantResult(ctx, t, c, "waiting-across-restart", "hello grace")
	t.Logf("update across restart took %v", time.Since(began))
}

func TestStartRejectsBadOptionsAtOnce(t *testing.T) {
	_, err := Start(context.Background(), Options{Port: 70000, Host: "localhost"})
	if err == nil {
		t.Fatal("Start with bad options succeeded")
	}
	for _, want := range []string{"DBPath or Postgres is required", "port 70000", `host "localhost"`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
}

func TestStartFailsWhenPortIsTaken(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = l.Close() }()
	port := l.Addr().(*net.TCPAddr).Port
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := Start(ctx, Options{DBPath: filepath.Join(t.TempDir(), "temporal.db"), Port: port})
	if err == nil {
		_ = s.Stop()
		t.Fatal("Start on a taken port succeeded")
	}
	if !strings.Contains(err.Error(), "embedded temporal: listen on 127.0.0.1:"+strconv.Itoa(port)) {
		t.Fatalf("error %q does not say which port failed", err)
	}
}

func TestServerFatalBecomesError(t *testing.T) {
	var buf strings.Builder
	logger := warnLogger{l: slog.New(slog.NewTextHandler(&buf, nil)), stopped: new(atomic.Bool)}
	err := recoverFatal(func() error {
		logger.Fatal("Failed to start gRPC listener", tag.Address("127.0.0.1:1"))
		return nil
	})
	want := "temporal server: Failed to start gRPC listener address=127.0.0.1:1"
	if err == nil || err.Error() != want {
		t.Fatalf("recoverFatal = %v, want %q", err, want)
	}
	if !strings.Contains(buf.String(), "level=ERROR") {
		t.Fatalf("fatal was not logged as an error: %q", buf.String())
	}
}

func TestStartReportsMissingDirectory(t *testing.T) {
	path := filepath.Join(t.TempDir(), "missing", "temporal.db")
	_, err := Start(context.Background(), Options{DBPath: path})
	if err == nil || !strings.Contains(err.Error(), "embedded temporal: open sqlite") {
		t.Fatalf("Start = %v, want an open sqlite error", err)
	}
}

// TestStartOnPostgreSQL: with a test PostgreSQL (PSTEST_POSTGRES_URL, set
// by make test), Start creates both databases with their schemas, serves,
// and starts again on them; a wrong password is reported as PostgreSQL's
// own error, naming the database.
func TestStartOnPostgreSQL(t *testing.T) {
	base := os.Getenv("PSTEST_POSTGRES_URL")
	if base == "" {
		t.Skip("no test PostgreSQL (PSTEST_POSTGRES_URL; make test starts one)")
	}
	u, err := url.Parse(base)
	if err != nil {
		t.Fatal(err)
	}
	password, _ := u.User.Password()
	pg := &Postgres{Addr: u.Host, User: u.User.Username(), Password: password,
		Database: fmt.Sprintf("embedded_%d", time.Now().UnixNano()%1_000_000_000), Params: map[string]string{"sslmode": "disable"}}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	wrong := *pg
	wrong.Password = "wrong"
	_, err = Start(ctx, Options{Postgres: &wrong, Port: freeTestPort(t)})
	if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("postgres database %q", pg.Database)) || !strings.Contains(err.Error(), "password authentication failed") {
		t.Fatalf("start with a wrong password: %v; want PostgreSQL's password error naming the database", err)
	}
	t.Logf("wrong password: %v", err)

	for i := range 2 { // the second start finds both databases set up
		srv, err := Start(ctx, Options{Postgres: pg, Port: freeTestPort(t)})
		if err != nil {
			t.Fatalf("start #%d: %v", i+1, err)
		}
		c, err := client.Dial(client.Options{HostPort: srv.Address()})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.WorkflowService().DescribeNamespace(ctx, &workflowservice.DescribeNamespaceRequest{Namespace: DefaultNamespace}); err != nil {
			t.Errorf("start #%d: describe namespace: %v", i+1, err)
		}
		c.Close()
		if err := srv.Stop(); err != nil {
			t.Fatal(err)
		}
	}
}

func freeTestPort(t *testing.T) int {
	t.Helper()
	ports, err := freePorts(1)
	if err != nil {
		t.Fatal(err)
	}
	return ports[0]
}
