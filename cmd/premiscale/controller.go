package main

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	taskqueuepb "go.temporal.io/api/taskqueue/v1"
	"go.temporal.io/sdk/client"
	sdkworker "go.temporal.io/sdk/worker"

	"github.com/premiscale/premiscale/activities"
	"github.com/premiscale/premiscale/config"
	"github.com/premiscale/premiscale/internal/embedded"
	"github.com/premiscale/premiscale/internal/externalgrpc"
	"github.com/premiscale/premiscale/internal/hostconn"
	"github.com/premiscale/premiscale/internal/mtls"
	"github.com/premiscale/premiscale/internal/telemetry"
	"github.com/premiscale/premiscale/starter"
	"github.com/premiscale/premiscale/worker"
	"github.com/premiscale/premiscale/workflows"
)

// HostCheckInterval is how often a worker checks its hosts again after the
// check at start.
const HostCheckInterval = time.Hour

// TemporalDBFile is the embedded server's SQLite file under controller.stateDir.
const TemporalDBFile = "temporal.db"

// embeddedPostgres is the embedded server's PostgreSQL database, if a DSN
// is configured (validated) or dsnFile names one, with the password from
// passwordFile if given. Errors name the field and never repeat the DSN.
func embeddedPostgres(c config.EmbeddedPostgres) (*embedded.Postgres, error) {
	if !c.Set() {
		return nil, nil
	}
	dsn, field := c.DSN, "controller.temporal.embedded.postgres.dsn"
	if c.DSNFile != "" {
		field = "controller.temporal.embedded.postgres.dsnFile"
		b, err := os.ReadFile(c.DSNFile)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", field, err)
		}
		dsn = strings.TrimSpace(string(b))
	}
	d, err := config.ParsePostgresDSN(dsn)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", field, err)
	}
	if c.PasswordFile != "" {
		if d.Password != "" {
			return nil, fmt.Errorf("controller.temporal.embedded.postgres.passwordFile: %s already holds a password; set one or the other", field)
		}
		b, err := os.ReadFile(c.PasswordFile)
		if err != nil {
			return nil, fmt.Errorf("controller.temporal.embedded.postgres.passwordFile: %w", err)
		}
		d.Password = strings.TrimRight(string(b), "\r\n")
	}
	return &embedded.Postgres{Addr: d.Addr, User: d.User, Password: d.Password, Database: d.Database, Params: d.Params}, nil
}

// startEmbedded starts the embedded Temporal server, persisted under
// controller.stateDir, and its Web UI if enabled; stop stops both.
func startEmbedded(ctx context.Context, cfg *config.Config, logger *slog.Logger) (stop func(), err error) {
	t := cfg.Controller.Temporal
	warning, err := privateStateDir(cfg.Controller.StateDir)
	if err != nil {
		return nil, fmt.Errorf("controller.stateDir %s: %w", cfg.Controller.StateDir, err)
	}
	if warning != "" {
		logger.Warn(warning)
	}
	db := filepath.Join(cfg.Controller.StateDir, TemporalDBFile)
	etls, access, err := embeddedTLS(cfg, logger)
	if err != nil {
		return nil, err
	}
	pg, err := embeddedPostgres(t.Embedded.Postgres)
	if err != nil {
		return nil, err
	}
	if pg != nil {
		db = fmt.Sprintf("postgres://%s@%s/%s (and %s)", pg.User, pg.Addr, pg.Database, pg.VisibilityDatabase())
	}
	srv, err := embedded.Start(ctx, embedded.Options{
		DBPath:    db,
		Postgres:  pg,
		Host:      t.Embedded.Host,
		Port:      t.Embedded.Port,
		Namespace: t.Namespace,
		Logger:    logger,
		TLS:       etls,
		Access:    access,
	})
	if err != nil {
		return nil, err
	}
	stopServer := func() {
		if err := srv.Stop(); err != nil {
			logger.Warn("stopping embedded temporal server", "error", err)
		}
	}
	logger.Info("embedded temporal server started", "listen", net.JoinHostPort(t.Embedded.Host, strconv.Itoa(t.Embedded.Port)), "address", srv.Address(), "db", db)
	ui := t.Embedded.UI
	if !ui.On() {
		return stopServer, nil
	}
	ct := cfg.UIClientTLS()
	u, err := embedded.StartUI(ctx, embedded.UIOptions{
		Host: ui.Host, Port: ui.Port, Frontend: srv.Address(), Namespace: t.Namespace,
		CAFile: ct.CAFile, CertFile: ct.CertFile, KeyFile: ct.KeyFile,
	})
	if err != nil {
		stopServer()
		return nil, err
	}
	logger.Info("Temporal UI", "url", u.URL()+"/namespaces/"+t.Namespace+"/workflows")
	return func() { u.Stop(); stopServer() }, nil
}

// runServer runs the embedded Temporal server alone, with the health
// endpoints, until ctx ends.
func runServer(ctx context.Context, cfg *config.Config, logger *slog.Logger) error {
	stop, err := startEmbedded(ctx, cfg, logger)
	if err != nil {
		return err
	}
	defer stop()
	tel, err := telemetry.New(logger)
	if err != nil {
		return err
	}
	defer func() { _ = tel.Close() }()
	maddr, mdone, err := tel.Serve(ctx, cfg.Controller.Metrics.Listen)
	if err != nil {
		return err
	}
	logger.Info("metrics and probes listening", "address", maddr.String(), "paths", "/metrics /healthz /readyz")
	select {
	case err := <-mdone:
		if err != nil {
			return fmt.Errorf("metrics endpoint: %w", err)
		}
	case <-ctx.Done():
	}
	logger.Info("shutting down")
	return nil
}

// runController wires the controller: the embedded Temporal server when no
// address is configured (controller role only), a worker unless the role
// has none, and, in the controller role, one workflow per group. It
// returns when ctx ends.
func runController(ctx context.Context, cfg *config.Config, logger *slog.Logger, r role) error {
	t := cfg.Controller.Temporal
	controller := r.controller
	if controller && cfg.UsesEmbedded() {
		stop, err := startEmbedded(ctx, cfg, logger)
		if err != nil {
			return err
		}
		defer stop()
	}

	if err := cfg.ResolveInstallation(controller); err != nil {
		return err
	}

	tel, err := telemetry.New(logger)
	if err != nil {
		return err
	}
	defer func() { _ = tel.Close() }()
	// Every readiness check is in place before /readyz answers: until the
	// client is connected, they fail.
	var dialed atomic.Pointer[client.Client]
	tel.AddReadyCheck("temporal", func(ctx context.Context) error {
		c := dialed.Load()
		if c == nil {
			return errors.New("not connected yet")
		}
		_, err := (*c).CheckHealth(ctx, &client.CheckHealthRequest{})
		return err
	})
	if r.worker {
		tel.AddReadyCheck("worker", func(ctx context.Context) error {
			c := dialed.Load()
			if c == nil {
				return errors.New("not connected yet")
			}
			return workerPolling(*c, t.TaskQueue, starter.Identity())(ctx)
		})
	}
	var ensured atomic.Bool
	if controller {
		tel.AddReadyCheck("groups", func(context.Context) error {
			if !ensured.Load() {
				return errors.New("the group workflows are not ensured yet")
			}
			return nil
		})
	}
	maddr, mdone, err := tel.Serve(ctx, cfg.Controller.Metrics.Listen)
	if err != nil {
		return err
	}
	logger.Info("metrics and probes listening", "address", maddr.String(), "paths", "/metrics /healthz /readyz")

	c, err := starter.DialWithMetrics(ctx, cfg, logger, tel.SDKHandler())
	if err != nil {
		return err
	}
	defer c.Close()
	dialed.Store(&c)
	if err := starter.ResolveInstallation(ctx, c, cfg); err != nil {
		return err
	}
	logger.Info("installation", "id", cfg.Controller.Installation)

	if r.worker {
		hosts := hostconn.NewHosts(logger)
		hosts.Limits = hostconn.HostLimits(cfg)
		defer func() { _ = hosts.Close() }()
		prom, err := activities.NewPrometheus(cfg.Controller.Prometheus)
		if err != nil {
			return err
		}
		kc, err := activities.NewKubernetesClient(cfg.Controller.Kubernetes)
		if err != nil {
			return err
		}
		cat := activities.NewCatalog(cfg)
		if err := cat.KeepRevisions(cfg.Controller.StateDir, time.Now()); err != nil {
			// Rollbacks to a template this worker ran before need it;
			// everything else works without.
			logger.Warn("cannot keep template revisions for rollbacks", "error", err)
		}
		lv := &activities.Libvirt{Hosts: hosts, Catalog: cat}
		w := worker.New(c, t.TaskQueue, lv, prom, &activities.Kubernetes{Client: kc, Hosts: hosts, Catalog: cat}, sdkworker.Options{})
		if err := w.Start(); err != nil {
			return fmt.Errorf("start worker on task queue %s: %w", t.TaskQueue, err)
		}
		defer w.Stop()
		logger.Info("worker started", "address", cfg.TemporalAddress(), "namespace", t.Namespace, "task_queue", t.TaskQueue)
		wctx, stopWatch := context.WithCancel(ctx)
		watched := make(chan struct{})
		go func() { worker.WatchHosts(wctx, c, cfg, cat, logger); close(watched) }()
		defer func() { stopWatch(); <-watched }()
		// The preflight of `hosts check`, at start and every hour: in the
		// log and in premiscale_host_check_* before a scale-out fails.
		checks := telemetry.NewHostChecks(tel.Registry)
		tel.ServeHostChecks(checks)
		var names []string
		for _, h := range cfg.Autoscale.Hosts {
			names = append(names, h.Name)
		}
		checked := make(chan struct{})
		go func() { worker.CheckHosts(wctx, lv, names, HostCheckInterval, checks.Set, logger); close(checked) }()
		defer func() { stopWatch(); <-checked }()
	} else {
		logger.Info("no worker in this process: the group workflows run on 'premiscale worker' processes", "task_queue", t.TaskQueue)
	}

	if controller {
		s := &starter.Starter{Client: c, Config: cfg}
		if err := s.EnsureGroups(ctx); err != nil {
			return err
		}
		ensured.Store(true)
		go telemetry.NewGroups(tel.Registry).Run(ctx, groupSource{s}, cfg.Controller.Metrics.GroupPollInterval, logger)
		for _, g := range cfg.Autoscale.Groups {
			logger.Info("group ensured", "group", g.Name, "min", g.Min, "max", g.Max)
		}
		if err := s.EnsureOrphanCollector(ctx); err != nil {
			return err
		}
		o := cfg.Autoscale.Orphans
		logger.Info("orphans", "action", o.Action, "grace_period", o.GracePeriod, "scan_interval", o.ScanInterval)
		if ca := cfg.Controller.ClusterAutoscaler; ca.Listen != "" {
			errc := make(chan error, 1)
			go func() {
				errc <- externalgrpc.Serve(ctx, ca, &externalgrpc.Server{Starter: s, Log: logger, Metrics: tel.Registry})
			}()
			select {
			case err := <-errc:
				return fmt.Errorf("cluster-autoscaler provider: %w", err)
			case err := <-mdone:
				return fmt.Errorf("metrics endpoint: %w", err)
			case <-ctx.Done():
				return nil
			}
		}
	}
	select {
	case err := <-mdone:
		if err != nil {
			return fmt.Errorf("metrics endpoint: %w", err)
		}
	case <-ctx.Done():
	}
	logger.Info("shutting down")
	return nil
}

// workerPolling is ready once this process's worker polls both of the task
// queue's kinds (workflow and activity tasks): the server lists it among
// the queue's pollers.
func workerPolling(c client.Client, queue, identity string) func(context.Context) error {
	return func(ctx context.Context) error {
		for _, kind := range []enumspb.TaskQueueType{enumspb.TASK_QUEUE_TYPE_WORKFLOW, enumspb.TASK_QUEUE_TYPE_ACTIVITY} {
			resp, err := c.DescribeTaskQueue(ctx, queue, kind)
			if err != nil {
				return err
			}
			if !slices.ContainsFunc(resp.GetPollers(), func(p *taskqueuepb.PollerInfo) bool { return p.GetIdentity() == identity }) {
				return fmt.Errorf("no %s poller of this worker on task queue %s yet", strings.ToLower(strings.TrimPrefix(kind.String(), "TASK_QUEUE_TYPE_")), queue)
			}
		}
		return nil
	}
}

// groupSource reads the configured groups, their published summaries and
// status, and whether a worker serves them, for the group gauges.
type groupSource struct{ s *starter.Starter }

func (g groupSource) Groups(context.Context) (map[string]telemetry.GroupInfo, error) {
	out := map[string]telemetry.GroupInfo{}
	for _, grp := range g.s.Config.Autoscale.Groups {
		out[grp.Name] = telemetry.GroupInfo{Hosts: grp.Hosts, Checks: len(grp.Scaling.Checks) > 0}
	}
	return out, nil
}

func (g groupSource) Summaries(ctx context.Context) (map[string]workflows.GroupSummary, error) {
	return g.s.PublishedSummaries(ctx)
}

func (g groupSource) Status(ctx context.Context, group string) (workflows.GroupStatus, error) {
	return g.s.Status(ctx, group)
}

// servedWithin is how recently a worker must have polled the workflow task
// queue to count as serving it: a live worker's long poll returns within
// about a minute and polls again at once.
const servedWithin = 2 * time.Minute

func (g groupSource) Served(ctx context.Context) (bool, error) {
	resp, err := g.s.Client.DescribeTaskQueue(ctx, g.s.Config.Controller.Temporal.TaskQueue, enumspb.TASK_QUEUE_TYPE_WORKFLOW)
	if err != nil {
		return false, err
	}
	return slices.ContainsFunc(resp.GetPollers(), func(p *taskqueuepb.PollerInfo) bool {
		return time.Since(p.GetLastAccessTime().AsTime()) < servedWithin
	}), nil
}

// privateStateDir creates the state directory for the controller's user
// only (0700), and takes group and other access away from it and from the
// files in it that an older version left readable (the database, its WAL
// and shared memory).
//
// A directory this user does not own cannot be changed: the root of a
// Kubernetes volume is often root's, given to the pod's fsGroup, and
// only that pod mounts it. That is not an error: what is in it, which
// this user creates (umask 077), is still kept private, and the returned
// warning says so.
func privateStateDir(dir string) (warning string, err error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", err
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		if !errors.Is(err, fs.ErrPermission) {
			return "", err
		}
		fi, serr := os.Stat(dir)
		if serr != nil {
			return "", serr
		}
		warning = fmt.Sprintf("state dir %s is not this user's (mode %s); its files are kept 0600", dir, fi.Mode().Perm())
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return "", err
	}
	for _, e := range entries {
		if e.Type().IsRegular() {
			if err := os.Chmod(filepath.Join(dir, e.Name()), 0o600); err != nil {
				return "", err
			}
		}
	}
	return warning, nil
}

// embeddedTLS is the embedded frontend's mutual TLS and who may do what on
// it. With the generated CA, the CA and the certificates are created (or
// renewed) in <stateDir>/tls first.
func embeddedTLS(cfg *config.Config, logger *slog.Logger) (*embedded.TLS, *embedded.Access, error) {
	e := cfg.Controller.Temporal.Embedded
	srv := mtls.Server{
		CertFile: e.TLS.CertFile, KeyFile: e.TLS.KeyFile, ClientCAFile: e.TLS.ClientCAFile,
		AllowedClients: e.TLS.AllowedClients, Field: "controller.temporal.embedded.tls", Log: logger,
	}
	if e.TLS.Generated() {
		dir := filepath.Join(cfg.Controller.StateDir, config.GeneratedTLSDir)
		names := slices.Clone(e.TLS.ServerNames)
		if ip := net.ParseIP(e.Host); ip != nil && !ip.IsUnspecified() {
			names = append(names, e.Host)
		}
		if h, err := os.Hostname(); err == nil {
			names = append(names, h)
		}
		if err := mtls.Ensure(dir, names, time.Now()); err != nil {
			return nil, nil, fmt.Errorf("controller.temporal.embedded.tls: generate certificates in %s: %w", dir, err)
		}
		srv.CertFile = filepath.Join(dir, mtls.ServerCertFile)
		srv.KeyFile = filepath.Join(dir, mtls.ServerKeyFile)
		srv.ClientCAFile = filepath.Join(dir, mtls.CAFile)
		if len(srv.AllowedClients) > 0 {
			srv.AllowedClients = append(slices.Clone(srv.AllowedClients), mtls.ControllerName, mtls.UIName)
		}
		logger.Info("embedded temporal server: mutual TLS from the generated CA", "dir", dir, "server_names", names)
	}
	server, err := srv.Config()
	if err != nil {
		return nil, nil, err
	}
	client, err := starter.TLSConfig(cfg.EmbeddedClientTLS())
	if err != nil {
		return nil, nil, err
	}
	if len(client.Certificates) == 0 {
		return nil, nil, errors.New("controller.temporal.tls.certFile: the controller needs a client certificate for its own frontend")
	}
	leaf, err := x509.ParseCertificate(client.Certificates[0].Certificate[0])
	if err != nil {
		return nil, nil, fmt.Errorf("controller.temporal.tls.certFile: %w", err)
	}
	// The controller connects to its own frontend: its certificate must
	// be one the frontend lets in, or every start would hang on it.
	if len(srv.AllowedClients) > 0 && mtls.ClientIdentity(leaf, srv.AllowedClients) == "" {
		return nil, nil, fmt.Errorf("controller.temporal.tls.certFile: the controller's own certificate (CN %q) is not in controller.temporal.embedded.tls.allowedClients", leaf.Subject.CommonName)
	}
	access := &embedded.Access{
		Namespace: cfg.Controller.Temporal.Namespace,
		// The controller's own certificate is a worker's whatever it carries.
		Workers:          []string{leaf.Subject.CommonName},
		OperableWorkflow: workflows.IsGroupWorkflowID,
		OperableSchedule: workflows.IsScheduleID,
	}
	return &embedded.TLS{Server: server, Client: client}, access, nil
}
