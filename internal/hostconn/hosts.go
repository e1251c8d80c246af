// Package hostconn holds a worker process's libvirt connections: a pool of
// connections per host (Hosts) that bounds how many calls a host carries
// at once and closes a connection that stops answering, and Dial for the
// callers that keep a connection of their own (host watchers, console
// watchers). It is not an activity: activities, the host watchers and the
// CLI's host checks use it.
package hostconn

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/digitalocean/go-libvirt"
	"github.com/digitalocean/go-libvirt/socket"
	"github.com/digitalocean/go-libvirt/socket/dialers"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/premiscale/premiscale/config"
)

// Defaults of Hosts.
const (
	// DefaultDialTimeout bounds one dial, handshake included.
	DefaultDialTimeout = 5 * time.Second
	// DefaultPingInterval is how often an idle or busy connection is
	// checked with a cheap call.
	DefaultPingInterval = 5 * time.Second
	// DefaultPingTimeout is how long that call may take before the
	// connection counts as hung and is closed.
	DefaultPingTimeout = 5 * time.Second
	// DefaultMaxPerHost is how many activities may use one host at once.
	DefaultMaxPerHost = 8
	// callsPerConn is how many activities share one connection. libvirtd
	// serves at most max_client_requests (default 5) calls of one client
	// at a time and queues the rest behind them, so a fifth long call (a
	// restore from a managed save takes seconds) would wait for the first
	// four; four leaves room for the pinger's check.
	callsPerConn = 4
)

// Hosts pools libvirt connections per URI, shared by every activity that
// runs in this worker process: one connection for every callsPerConn of the
// host's MaxPerHost slots, dialed when first needed.
//
// go-libvirt calls take no context and wait for the daemon's answer, so a
// host that stops answering (libvirtd stuck on a dead NFS pool, a machine
// powered off behind an open socket, SIGSTOP) would hold every caller, and
// its worker slot, for good. Hosts bounds that three ways:
//   - every connection is pinged (ConnectGetLibVersion) each PingInterval;
//     one that does not answer within PingTimeout is closed, which fails
//     every call waiting on it, and the next caller dials again;
//   - dialing happens outside any lock, and waiting for another caller's
//     dial, or for a slot, gives up when the caller's context is done;
//   - at most MaxPerHost activities use one host at a time, so a slow or
//     hung host holds at most that many activity slots.
type Hosts struct {
	// DialTimeout bounds one dial; zero means DefaultDialTimeout.
	DialTimeout time.Duration
	// PingInterval and PingTimeout: see Hosts; zero means the defaults.
	PingInterval, PingTimeout time.Duration
	// MaxPerHost bounds concurrent users of one host; zero means
	// DefaultMaxPerHost. Limits, by URI, overrides it for a host
	// (config.Host.MaxConcurrentCalls; HostLimits).
	MaxPerHost int
	Limits     map[string]int
	Logger     *slog.Logger

	mu     sync.Mutex
	conns  map[string]*hostConns
	closed bool
}

// hostConns is one URI's slots and connections. Slot i uses conns[i /
// callsPerConn], so no connection carries more than callsPerConn
// activities' calls.
type hostConns struct {
	// free holds the indices of the slots not in use.
	free  chan int
	conns []*hostConn
}

// hostConn is one connection of a URI.
type hostConn struct {
	mu sync.Mutex
	lv *libvirt.Libvirt
	// raw closes lv's socket without a round trip to the daemon.
	raw *RawDialer
	// dialing is closed when the dial in progress ends; nil when none is.
	dialing chan struct{}
	dialErr error
	// stopPing stops the pinger of lv.
	stopPing chan struct{}
}

// NewHosts returns an empty connection pool.
func NewHosts(logger *slog.Logger) *Hosts {
	if logger == nil {
		logger = slog.Default()
	}
	return &Hosts{Logger: logger, conns: map[string]*hostConns{}}
}

// HostLimits is Hosts.Limits for the hosts of cfg that set
// maxConcurrentCalls.
func HostLimits(cfg *config.Config) map[string]int {
	out := map[string]int{}
	for _, h := range cfg.Autoscale.Hosts {
		if h.MaxConcurrentCalls > 0 {
			out[h.URI] = h.MaxConcurrentCalls
		}
	}
	return out
}

func orDefault[T int | time.Duration](v, def T) T {
	if v > 0 {
		return v
	}
	return def
}

func (h *Hosts) host(uri string) (*hostConns, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return nil, errors.New("libvirt connection pool closed")
	}
	if h.conns == nil {
		h.conns = map[string]*hostConns{}
	}
	hs, ok := h.conns[uri]
	if !ok {
		slots := orDefault(h.Limits[uri], orDefault(h.MaxPerHost, DefaultMaxPerHost))
		hs = &hostConns{free: make(chan int, slots)}
		for i := range slots {
			hs.free <- i
		}
		for range (slots + callsPerConn - 1) / callsPerConn {
			hs.conns = append(hs.conns, &hostConn{})
		}
		h.conns[uri] = hs
	}
	return hs, nil
}

// Acquire takes one of the host's slots and returns a live connection to
// uri, dialing if needed; release gives the slot back and must be called
// when the caller is done with the connection. It gives up when ctx is done.
// Errors name the host by name, never by URI (which may hold credentials).
func (h *Hosts) Acquire(ctx context.Context, name, uri string) (lv *libvirt.Libvirt, release func(), err error) {
	hs, err := h.host(uri)
	if err != nil {
		return nil, nil, err
	}
	var slot int
	select {
	case slot = <-hs.free:
	case <-ctx.Done():
		return nil, nil, fmt.Errorf("host %s: waiting for a free connection slot (%d in use): %w", name, cap(hs.free), ctx.Err())
	}
	release = func() { hs.free <- slot }
	lv, err = h.conn(ctx, hs.conns[slot/callsPerConn], name, uri)
	if err != nil {
		release()
		return nil, nil, err
	}
	return lv, release, nil
}

// Conn returns a live connection to uri (its first) without taking a
// slot, for callers that hold one already or do a single short call.
func (h *Hosts) Conn(ctx context.Context, uri string) (*libvirt.Libvirt, error) {
	hs, err := h.host(uri)
	if err != nil {
		return nil, err
	}
	return h.conn(ctx, hs.conns[0], "", uri)
}

func (h *Hosts) conn(ctx context.Context, hc *hostConn, name, uri string) (*libvirt.Libvirt, error) {
	if name == "" {
		name = redactedURI(uri)
	}
	for {
		hc.mu.Lock()
		if hc.lv != nil && hc.lv.IsConnected() {
			lv := hc.lv
			hc.mu.Unlock()
			return lv, nil
		}
		if hc.lv != nil {
			h.Logger.Warn("libvirt connection dropped, redialing", "host", name)
			h.dropLocked(hc)
		}
		wait := hc.dialing
		if wait == nil {
			// This caller dials; the others wait for it below.
			wait = make(chan struct{})
			hc.dialing = wait
			go h.dial(hc, name, uri, wait)
		}
		hc.mu.Unlock()
		select {
		case <-wait:
		case <-ctx.Done():
			return nil, fmt.Errorf("connect to host %s: %w", name, ctx.Err())
		}
		hc.mu.Lock()
		err := hc.dialErr
		ok := hc.lv != nil && hc.lv.IsConnected()
		hc.mu.Unlock()
		if err != nil {
			return nil, err
		}
		if ok {
			continue // returns it above
		}
		// Connected and dropped at once: dial again, unless ctx is done.
		if ctx.Err() != nil {
			return nil, fmt.Errorf("connect to host %s: %w", name, ctx.Err())
		}
	}
}

// dial connects to uri (bounded by DialTimeout), installs the connection
// and its pinger, and closes done.
func (h *Hosts) dial(hc *hostConn, name, uri string, done chan struct{}) {
	lv, raw, err := Dial(uri, orDefault(h.DialTimeout, DefaultDialTimeout))
	if err != nil {
		err = fmt.Errorf("connect to host %s: %w", name, err)
	}
	hc.mu.Lock()
	hc.dialing, hc.dialErr = nil, err
	if err == nil {
		h.mu.Lock()
		closed := h.closed
		h.mu.Unlock()
		if closed {
			_ = lv.Disconnect()
			hc.dialErr = errors.New("libvirt connection pool closed")
		} else {
			hc.lv, hc.raw, hc.stopPing = lv, raw, make(chan struct{})
			go h.ping(hc, name, lv, hc.stopPing)
		}
	}
	hc.mu.Unlock()
	close(done)
}

// Dial connects to uri within timeout. A dial that does not finish by
// then (its TCP connect succeeded but the daemon never answered the
// handshake) has its socket closed.
func Dial(uri string, timeout time.Duration) (*libvirt.Libvirt, *RawDialer, error) {
	u, err := url.Parse(uri)
	if err != nil {
		// url.Error repeats the URI, which may hold credentials.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, nil, fmt.Errorf("libvirt uri does not parse: %v", err)
	}
	raw, err := rawDialerFor(u)
	if err != nil {
		return nil, nil, err
	}
	done := make(chan error, 1)
	var lv *libvirt.Libvirt
	if raw != nil {
		lv = libvirt.NewWithDialer(raw)
		go func() { done <- lv.ConnectToURI(libvirt.RemoteURI(u)) }()
	} else {
		go func() {
			var err error
			lv, err = libvirt.ConnectToURI(u)
			done <- err
		}()
	}
	select {
	case err := <-done:
		if err != nil {
			return nil, nil, explainDialError(err)
		}
		return lv, raw, nil
	case <-time.After(timeout):
		if raw != nil {
			raw.Close()
		}
		go func() {
			if err := <-done; err == nil {
				_ = lv.Disconnect()
			}
		}()
		return nil, nil, fmt.Errorf("no answer within %s", timeout)
	}
}

// explainDialError adds what to do to the errors of a dial whose cause an
// operator cannot tell from the SSH library's words.
func explainDialError(err error) error {
	var keyErr *knownhosts.KeyError
	if errors.As(err, &keyErr) && len(keyErr.Want) > 0 {
		// The SSH client takes the host key type the server offers first;
		// known_hosts lines of other types count as a mismatch.
		return fmt.Errorf("%w (known_hosts has keys for this host, none of the type it offered or none equal: pin every key type it has, `ssh-keyscan HOST`, after checking them)", err)
	}
	return err
}

// RawDialer dials like go-libvirt's own dialer for the URI and keeps the
// socket, so that a connection to a daemon that stopped answering can be
// closed at once (go-libvirt's Disconnect first asks the daemon). Closing
// it fails every call waiting on the connection.
type RawDialer struct {
	inner socket.Dialer
	mu    sync.Mutex
	conn  net.Conn
}

// Dial implements socket.Dialer.
func (d *RawDialer) Dial() (net.Conn, error) {
	c, err := d.inner.Dial()
	if err == nil {
		d.mu.Lock()
		d.conn = c
		d.mu.Unlock()
	}
	return c, err
}

// Close closes the socket at once, without a word to the daemon.
func (d *RawDialer) Close() {
	d.mu.Lock()
	c := d.conn
	d.mu.Unlock()
	if c != nil {
		_ = c.Close()
	}
}

// rawDialerFor returns a RawDialer for the unix, tcp and tls transports,
// with the URI options go-libvirt reads for them (socket; port; pkipath,
// no_verify). Other transports (ssh) get nil: they are dialed by
// go-libvirt itself, and a hung one is closed by Disconnect, which needs
// the daemon's answer.
func rawDialerFor(u *url.URL) (*RawDialer, error) {
	transport := "unix"
	if scheme := strings.SplitN(u.Scheme, "+", 2); len(scheme) > 1 {
		transport = scheme[1]
	} else if u.Host != "" {
		transport = "tls"
	}
	q := u.Query()
	switch transport {
	case "unix":
		var opts []dialers.LocalOption
		if s := q.Get("socket"); s != "" {
			opts = append(opts, dialers.WithSocket(s))
		}
		return &RawDialer{inner: dialers.NewLocal(opts...)}, nil
	case "tcp":
		var opts []dialers.RemoteOption
		if port := u.Port(); port != "" {
			opts = append(opts, dialers.UsePort(port))
		}
		return &RawDialer{inner: dialers.NewRemote(u.Hostname(), opts...)}, nil
	case "tls":
		var opts []dialers.TLSOption
		if port := u.Port(); port != "" {
			opts = append(opts, dialers.UseTLSPort(port))
		}
		if p := q.Get("pkipath"); p != "" {
			opts = append(opts, dialers.UsePKIPath(p))
		}
		switch q.Get("no_verify") {
		case "", "0":
		case "1":
			opts = append(opts, dialers.WithInsecureNoVerify())
		default:
			return nil, fmt.Errorf("libvirt uri: no_verify must be 0 or 1")
		}
		return &RawDialer{inner: dialers.NewTLS(u.Hostname(), opts...)}, nil
	}
	return nil, nil
}

// ping checks lv every PingInterval until stop is closed; a check that
// takes longer than PingTimeout closes the connection, failing every call
// that waits on it.
func (h *Hosts) ping(hc *hostConn, name string, lv *libvirt.Libvirt, stop chan struct{}) {
	interval := orDefault(h.PingInterval, DefaultPingInterval)
	timeout := orDefault(h.PingTimeout, DefaultPingTimeout)
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
		}
		answered := make(chan error, 1)
		go func() {
			_, err := lv.ConnectGetLibVersion()
			answered <- err
		}()
		select {
		case <-stop:
			return
		case err := <-answered:
			if err == nil {
				continue
			}
			h.Logger.Warn("libvirt connection failed its check; closing it", "host", name, "error", err)
		case <-time.After(timeout):
			h.Logger.Warn("libvirt host did not answer; closing its connection", "host", name, "timeout", timeout)
		}
		hc.mu.Lock()
		if hc.lv == lv {
			h.dropLocked(hc)
		}
		hc.mu.Unlock()
		return
	}
}

// dropLocked closes hc's connection and stops its pinger; hc.mu is held.
// The socket is closed first, so this does not wait for a daemon that
// never answers.
func (h *Hosts) dropLocked(hc *hostConn) {
	if hc.stopPing != nil {
		close(hc.stopPing)
		hc.stopPing = nil
	}
	if hc.raw != nil {
		hc.raw.Close()
		hc.raw = nil
	}
	if hc.lv != nil {
		lv := hc.lv
		hc.lv = nil
		go func() { _ = lv.Disconnect() }()
	}
}

// Close disconnects every pooled connection (politely, then by closing
// its socket if the daemon does not answer within a second); later calls
// fail.
func (h *Hosts) Close() error {
	h.mu.Lock()
	h.closed = true
	var conns []*hostConn
	for _, hs := range h.conns {
		conns = append(conns, hs.conns...)
	}
	h.conns = map[string]*hostConns{}
	h.mu.Unlock()
	for _, hc := range conns {
		hc.mu.Lock()
		if lv := hc.lv; lv != nil && lv.IsConnected() {
			done := make(chan struct{})
			go func() { _ = lv.Disconnect(); close(done) }()
			select {
			case <-done:
			case <-time.After(time.Second):
			}
			hc.lv = nil // disconnected, or given up on: not again in dropLocked
		}
		h.dropLocked(hc)
		hc.mu.Unlock()
	}
	return nil
}

// redactedURI is uri without its user information, for messages.
func redactedURI(uri string) string {
	u, err := url.Parse(uri)
	if err != nil {
		return "(unparsable uri)"
	}
	u.User = nil
	return u.Redacted()
}
