package embedded

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"time"

	uiserver "github.com/temporalio/ui-server/v2/server"
	uiconfig "github.com/temporalio/ui-server/v2/server/config"
	"github.com/temporalio/ui-server/v2/server/server_options"
)

// UIOptions configure the Temporal Web UI served next to the embedded
// server.
type UIOptions struct {
	Host      string // listen address (loopback: the UI has no login)
	Port      int
	Frontend  string // host:port of the Temporal frontend it talks to
	Namespace string // the namespace it opens on
	// CAFile, CertFile and KeyFile, if set, are the TLS the UI uses to reach
	// a frontend that serves mutual TLS: a certificate with the role reader.
	CAFile, CertFile, KeyFile string
}

// UI is a running Temporal Web UI.
type UI struct {
	srv *uiserver.Server
	url string
}

// StartUI serves the Temporal Web UI (Temporal's own ui-server module, as
// `temporal server start-dev` does) and returns once it answers. The port is
// checked first: the UI server exits the process on a failed listen.
func StartUI(ctx context.Context, o UIOptions) (*UI, error) {
	addr := net.JoinHostPort(o.Host, strconv.Itoa(o.Port))
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("controller.temporal.embedded.ui: listen on %s: %w", addr, err)
	}
	_ = l.Close()
	cfg := &uiconfig.Config{
		Host:                o.Host,
		Port:                o.Port,
		TemporalGRPCAddress: o.Frontend,
		EnableUI:            true,
		DefaultNamespace:    o.Namespace,
		HideLogs:            true,
		DisableNewsFetch:    true,
		// Read-only: its certificate may only read anyway (Access), so
		// buttons that would start, signal, reset or terminate are hidden
		// and the UI server refuses such calls itself.
		DisableWriteActions: true,
		// Plain HTTP on loopback: the CSRF cookie cannot be Secure.
		CORS: uiconfig.CORS{CookieInsecure: true},
		TLS: uiconfig.TLS{
			CaFile: o.CAFile, CertFile: o.CertFile, KeyFile: o.KeyFile,
			EnableHostVerification: o.CAFile != "",
		},
	}
	srv := uiserver.NewServer(server_options.WithConfigProvider(cfg))
	go func() { _ = srv.Start() }()
	u := &UI{srv: srv, url: "http://" + addr}
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(u.url + "/healthz") //nolint:gosec // our own loopback listener
		if err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return u, nil
			}
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			srv.Stop()
			return nil, fmt.Errorf("controller.temporal.embedded.ui: not answering at %s: %v", u.url, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// URL is where the UI answers.
func (u *UI) URL() string { return u.url }

// Stop closes the UI's listener.
func (u *UI) Stop() { u.srv.Stop() }
