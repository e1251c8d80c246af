// Package telemetry is what an operator scrapes and probes: one Prometheus
// registry with the Temporal SDK's own metrics (client and worker, through
// the SDK's OpenTelemetry contrib handler), PremiScale's premiscale_
// metrics, and the /metrics, /healthz and /readyz endpoints.
package telemetry

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.temporal.io/sdk/client"
	temporalotel "go.temporal.io/sdk/contrib/opentelemetry"
)

// DurationBuckets (seconds) serve both the SDK's latencies (milliseconds to
// a minute) and provisioning times (seconds to readyTimeout).
var DurationBuckets = []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1200, 1800}

// Telemetry holds the registry and the readiness checks.
type Telemetry struct {
	// Registry holds every metric /metrics serves.
	Registry *prometheus.Registry
	sdk      client.MetricsHandler
	provider *sdkmetric.MeterProvider

	mu     sync.Mutex
	checks []namedCheck
	hosts  *HostChecks
}

// HostChecksPath serves the last host-check report of every host this
// process checked, as JSON (what `premiscale status` shows).
const HostChecksPath = "/hostchecks"

// ServeHostChecks makes HostChecksPath serve h's reports.
func (t *Telemetry) ServeHostChecks(h *HostChecks) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.hosts = h
}

type namedCheck struct {
	name  string
	check func(context.Context) error
}

// New builds the registry (Go runtime and process collectors included) and
// the SDK metrics handler that writes into it.
func New(log *slog.Logger) (*Telemetry, error) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	exp, err := otelprom.New(otelprom.WithRegisterer(reg), otelprom.WithoutScopeInfo(), otelprom.WithoutTargetInfo())
	if err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	provider := sdkmetric.NewMeterProvider(sdkmetric.WithReader(exp), sdkmetric.WithView(sdkmetric.NewView(
		sdkmetric.Instrument{Kind: sdkmetric.InstrumentKindHistogram},
		sdkmetric.Stream{Aggregation: sdkmetric.AggregationExplicitBucketHistogram{Boundaries: DurationBuckets}},
	)))
	sdk := temporalotel.NewMetricsHandler(temporalotel.MetricsHandlerOptions{
		Meter:                provider.Meter("premiscale"),
		UseMonotonicCounters: true,
		OnError: func(err error) {
			if log != nil {
				log.Warn("metrics: instrument refused", "error", err)
			}
		},
	})
	return &Telemetry{Registry: reg, sdk: sdk, provider: provider}, nil
}

// SDKHandler is the Temporal client's (and so its workers') metrics
// handler; workflows and activities reach it through
// workflow.GetMetricsHandler and activity.GetMetricsHandler.
func (t *Telemetry) SDKHandler() client.MetricsHandler { return t.sdk }

// AddReadyCheck adds a condition /readyz requires; name appears in its
// answer when the check fails.
func (t *Telemetry) AddReadyCheck(name string, check func(context.Context) error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.checks = append(t.checks, namedCheck{name, check})
}

// Ready runs every readiness check (each bounded by ctx) and joins the
// failures, each named.
func (t *Telemetry) Ready(ctx context.Context) error {
	t.mu.Lock()
	checks := append([]namedCheck{}, t.checks...)
	t.mu.Unlock()
	var errs []error
	for _, c := range checks {
		if err := c.check(ctx); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", c.name, err))
		}
	}
	return errors.Join(errs...)
}

// ReadyTimeout bounds one /readyz answer (all its checks); probes must
// wait longer than this (the chart's readiness probe waits 8 s).
const ReadyTimeout = 5 * time.Second

// Handler serves /metrics, /healthz (the process answers), /readyz
// (every readiness check passes; 503 with the failures otherwise) and
// HostChecksPath.
func (t *Telemetry) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(t.Registry, promhttp.HandlerOpts{Registry: t.Registry}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc(HostChecksPath, func(w http.ResponseWriter, _ *http.Request) {
		t.mu.Lock()
		h := t.hosts
		t.mu.Unlock()
		if h == nil {
			http.Error(w, "no host checks in this process (no worker)", http.StatusNotFound)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(h.Reports())
	})
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), ReadyTimeout)
		defer cancel()
		if err := t.Ready(ctx); err != nil {
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = fmt.Fprintf(w, "not ready:\n%v\n", err)
			return
		}
		_, _ = fmt.Fprintln(w, "ok")
	})
	return mux
}

// Serve listens on listen and serves Handler until ctx ends. The returned
// channel receives the server's end (nil after ctx ends).
func (t *Telemetry) Serve(ctx context.Context, listen string) (net.Addr, <-chan error, error) {
	l, err := net.Listen("tcp", listen)
	if err != nil {
		return nil, nil, fmt.Errorf("controller.metrics.listen %s: %w", listen, err)
	}
	srv := &http.Server{Handler: t.Handler(), ReadHeaderTimeout: 10 * time.Second}
	done := make(chan error, 1)
	go func() {
		err := srv.Serve(l)
		if errors.Is(err, http.ErrServerClosed) {
			err = nil
		}
		done <- err
	}()
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	return l.Addr(), done, nil
}

// Close flushes and stops the SDK metrics pipeline.
func (t *Telemetry) Close() error {
	return t.provider.Shutdown(context.Background())
}
