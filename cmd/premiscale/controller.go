package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"

	sdkworker "go.temporal.io/sdk/worker"

	"github.com/premiscale/premiscale/activities"
	"github.com/premiscale/premiscale/config"
	"github.com/premiscale/premiscale/internal/embedded"
	"github.com/premiscale/premiscale/internal/externalgrpc"
	"github.com/premiscale/premiscale/starter"
	"github.com/premiscale/premiscale/worker"
)

// TemporalDBFile is the embedded server's SQLite file under controller.stateDir.
const TemporalDBFile = "temporal.db"

// runController wires the controller: the embedded Temporal server when no
// address is configured (controller mode only), a worker, and, in controller
// mode, one workflow per group. It returns when ctx ends.
func runController(ctx context.Context, cfg *config.Config, logger *slog.Logger, controller bool) error {
	t := cfg.Controller.Temporal
	if controller && cfg.UsesEmbedded() {
		if err := privateStateDir(cfg.Controller.StateDir); err != nil {
			return fmt.Errorf("controller.stateDir %s: %w", cfg.Controller.StateDir, err)
		}
		db := filepath.Join(cfg.Controller.StateDir, TemporalDBFile)
		srv, err := embedded.Start(ctx, embedded.Options{
			DBPath:    db,
			Host:      t.Embedded.Host,
			Port:      t.Embedded.Port,
			Namespace: t.Namespace,
			Logger:    logger,
		})
		if err != nil {
			return err
		}
		defer func() {
			if err := srv.Stop(); err != nil {
				logger.Warn("stopping embedded temporal server", "error", err)
			}
		}()
		logger.Info("embedded temporal server started", "listen", net.JoinHostPort(t.Embedded.Host, strconv.Itoa(t.Embedded.Port)), "address", srv.Address(), "db", db)
	}

	if err := cfg.ResolveInstallation(controller); err != nil {
		return err
	}
	logger.Info("installation", "id", cfg.Controller.Installation)

	c, err := starter.Dial(ctx, cfg, logger)
	if err != nil {
		return err
	}
	defer c.Close()

	hosts := activities.NewHosts(logger)
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
	w := worker.New(c, t.TaskQueue, &activities.Libvirt{Hosts: hosts, Catalog: cat}, prom, &activities.Kubernetes{Client: kc, Hosts: hosts, Catalog: cat}, sdkworker.Options{})
	if err := w.Start(); err != nil {
		return fmt.Errorf("start worker on task queue %s: %w", t.TaskQueue, err)
	}
	defer w.Stop()
	logger.Info("worker started", "address", cfg.TemporalAddress(), "namespace", t.Namespace, "task_queue", t.TaskQueue)

	if controller {
		s := &starter.Starter{Client: c, Config: cfg}
		if err := s.EnsureGroups(ctx); err != nil {
			return err
		}
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
			go func() { errc <- externalgrpc.Serve(ctx, ca, &externalgrpc.Server{Starter: s, Log: logger}) }()
			select {
			case err := <-errc:
				return fmt.Errorf("cluster-autoscaler provider: %w", err)
			case <-ctx.Done():
				return nil
			}
		}
	}
	<-ctx.Done()
	logger.Info("shutting down")
	return nil
}

// privateStateDir creates the state directory for the controller's user
// only (0700), and takes group and other access away from it and from the
// files in it that an older version left readable (the database, its WAL
// and shared memory).
func privateStateDir(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		return err
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if e.Type().IsRegular() {
			if err := os.Chmod(filepath.Join(dir, e.Name()), 0o600); err != nil {
				return err
			}
		}
	}
	return nil
}
