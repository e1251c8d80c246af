// Connecting to Temporal: the address, TLS and identity of every client
// PremiScale makes.

package starter

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"go.temporal.io/sdk/client"
	sdklog "go.temporal.io/sdk/log"

	"github.com/premiscale/premiscale/config"
)

// DialTimeout bounds the first connection to Temporal.
const DialTimeout = 5 * time.Second

// Dial connects to the Temporal service the configuration names (the
// embedded server's address when none is set).
func Dial(ctx context.Context, cfg *config.Config, logger *slog.Logger) (client.Client, error) {
	return DialWithMetrics(ctx, cfg, logger, nil)
}

// Identity is this process's identity towards Temporal: in pollers, in the
// history of every task it completes, and in readiness checks.
func Identity() string {
	host, _ := os.Hostname()
	return fmt.Sprintf("%d@%s@premiscale", os.Getpid(), host)
}

// DialWithMetrics is Dial with the SDK's metrics (client and the workers
// built on it) sent to metrics; nil sends them nowhere.
func DialWithMetrics(ctx context.Context, cfg *config.Config, logger *slog.Logger, metrics client.MetricsHandler) (client.Client, error) {
	t := cfg.Controller.Temporal
	opts := client.Options{
		HostPort:       cfg.TemporalAddress(),
		Namespace:      t.Namespace,
		Logger:         sdklog.NewStructuredLogger(logger),
		Identity:       Identity(),
		MetricsHandler: metrics,
	}
	if ct := cfg.ClientTLS(); ct.Enabled {
		if cfg.UsesEmbedded() && t.Embedded.TLS.Generated() {
			if _, err := os.Stat(ct.CAFile); errors.Is(err, os.ErrNotExist) {
				// The controller generates the CA at its first start.
				return nil, fmt.Errorf("%w at %s (namespace %s): no controller has run on controller.stateDir %s yet (no %s); start `premiscale -c CONFIG`",
					ErrUnreachable, opts.HostPort, opts.Namespace, cfg.Controller.StateDir, ct.CAFile)
			}
		}
		tc, err := TLSConfig(ct)
		if err != nil {
			return nil, err
		}
		opts.ConnectionOptions.TLS = tc
	}
	switch {
	case t.APIKey != "":
		opts.Credentials = client.NewAPIKeyStaticCredentials(t.APIKey)
	case t.APIKeyFile != "":
		// Read at each call, so that a rotated key is used without a restart.
		file := t.APIKeyFile
		opts.Credentials = client.NewAPIKeyDynamicCredentials(func(context.Context) (string, error) {
			b, err := os.ReadFile(file)
			if err != nil {
				return "", fmt.Errorf("controller.temporal.apiKeyFile: %w", err)
			}
			return strings.TrimSpace(string(b)), nil
		})
	}
	dctx, cancel := context.WithTimeout(ctx, DialTimeout)
	defer cancel()
	c, err := client.DialContext(dctx, opts)
	if err != nil {
		return nil, fmt.Errorf("%w at %s (namespace %s): is `premiscale -c CONFIG` running? %v",
			ErrUnreachable, opts.HostPort, opts.Namespace, err)
	}
	return c, nil
}

// TLSConfig is the client TLS that t describes (CA, client certificate,
// server name); an error names the field whose file does not load.
func TLSConfig(t config.TLS) (*tls.Config, error) {
	tc := &tls.Config{ServerName: t.ServerName, InsecureSkipVerify: t.InsecureSkipVerify, MinVersion: tls.VersionTLS12} //nolint:gosec // skip-verify is the user's explicit choice
	if t.CAFile != "" {
		pem, err := os.ReadFile(t.CAFile)
		if err != nil {
			return nil, fmt.Errorf("controller.temporal.tls.caFile: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("controller.temporal.tls.caFile: no certificate in %s", t.CAFile)
		}
		tc.RootCAs = pool
	}
	if t.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("controller.temporal.tls.certFile/keyFile: %w", err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return tc, nil
}

// ErrUnreachable is returned when no Temporal frontend answers.
var ErrUnreachable = errors.New("no PremiScale controller reachable")
