package activities

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"sync"
	"time"

	"github.com/digitalocean/go-libvirt"
)

// Hosts pools one libvirt connection per URI, shared by every activity that
// runs in this worker process, and redials a connection that dropped.
type Hosts struct {
	// DialTimeout bounds one dial; zero means 10 s.
	DialTimeout time.Duration
	Logger      *slog.Logger

	mu    sync.Mutex
	conns map[string]*hostConn
}

type hostConn struct {
	mu sync.Mutex // serializes dialing for one URI
	lv *libvirt.Libvirt
}

// NewHosts returns an empty connection pool.
func NewHosts(logger *slog.Logger) *Hosts {
	if logger == nil {
		logger = slog.Default()
	}
	return &Hosts{Logger: logger, conns: map[string]*hostConn{}}
}

// Conn returns a live connection to uri, dialing (or redialing) if needed.
// It blocks for at most DialTimeout or until ctx is done.
func (h *Hosts) Conn(ctx context.Context, uri string) (*libvirt.Libvirt, error) {
	h.mu.Lock()
	hc, ok := h.conns[uri]
	if !ok {
		hc = &hostConn{}
		h.conns[uri] = hc
	}
	h.mu.Unlock()

	hc.mu.Lock()
	defer hc.mu.Unlock()
	if hc.lv != nil && hc.lv.IsConnected() {
		return hc.lv, nil
	}
	if hc.lv != nil {
		h.Logger.Warn("libvirt connection dropped, redialing", "uri", uri)
		_ = hc.lv.Disconnect()
		hc.lv = nil
	}
	u, err := url.Parse(uri)
	if err != nil {
		return nil, fmt.Errorf("libvirt uri %q: %w", uri, err)
	}
	timeout := h.DialTimeout
	if timeout == 0 {
		timeout = 10 * time.Second
	}
	done := make(chan dialResult, 1)
	go func() {
		lv, err := libvirt.ConnectToURI(u)
		done <- dialResult{lv, err}
	}()
	select {
	case r := <-done:
		if r.err != nil {
			return nil, fmt.Errorf("connect %s: %w", uri, r.err)
		}
		hc.lv = r.lv
		return r.lv, nil
	case <-ctx.Done():
		go closeLate(done)
		return nil, fmt.Errorf("connect %s: %w", uri, ctx.Err())
	case <-time.After(timeout):
		go closeLate(done)
		return nil, fmt.Errorf("connect %s: timed out after %s", uri, timeout)
	}
}

type dialResult struct {
	lv  *libvirt.Libvirt
	err error
}

// closeLate disconnects a dial that finished after its caller gave up.
func closeLate(done chan dialResult) {
	if r := <-done; r.err == nil {
		_ = r.lv.Disconnect()
	}
}

// Close disconnects every pooled connection.
func (h *Hosts) Close() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	var errs []error
	for uri, hc := range h.conns {
		hc.mu.Lock()
		if hc.lv != nil {
			if err := hc.lv.Disconnect(); err != nil && hc.lv.IsConnected() {
				errs = append(errs, fmt.Errorf("disconnect %s: %w", uri, err))
			}
			hc.lv = nil
		}
		hc.mu.Unlock()
	}
	return errors.Join(errs...)
}
