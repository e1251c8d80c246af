package hostconn

import (
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/premiscale/premiscale/config"
)

// silentDaemon accepts connections and reads from them but never answers,
// like a libvirtd that is stopped (SIGSTOP) or stuck: the kernel completes
// the TCP handshake, nothing else happens.
func silentDaemon(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() { _, _ = io.Copy(io.Discard, c); _ = c.Close() }()
		}
	}()
	return "qemu+tcp://admin:secret@" + l.Addr().String() + "/system"
}

func TestDialToASilentDaemonGivesUpWithinTheDialTimeout(t *testing.T) {
	uri := silentDaemon(t)
	h := NewHosts(nil)
	h.DialTimeout = 300 * time.Millisecond
	defer h.Close()
	start := time.Now()
	_, _, err := h.Acquire(context.Background(), "h1", uri)
	if err == nil {
		t.Fatal("dial to a daemon that never answers succeeded")
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("gave up after %s, want about the 300ms dial timeout", d)
	}
	if !strings.Contains(err.Error(), "host h1") || strings.Contains(err.Error(), "secret") {
		t.Errorf("err = %q, want the host named and no URI credentials", err)
	}
}

func TestWaitingForAHostGivesUpWithTheCallersContext(t *testing.T) {
	uri := silentDaemon(t)
	h := NewHosts(nil)
	h.DialTimeout = 5 * time.Second
	h.MaxPerHost = 1
	defer h.Close()
	// The first caller holds the host's only slot while its dial hangs.
	first := make(chan error, 1)
	go func() {
		_, _, err := h.Acquire(context.Background(), "h1", uri)
		first <- err
	}()
	time.Sleep(100 * time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, _, err := h.Acquire(ctx, "h1", uri)
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "slot") {
		t.Errorf("second caller: err = %v, want its deadline while waiting for a slot", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("second caller waited %s, want about its 200ms deadline", d)
	}
	// A caller without slot limits (Conn) waits for the same dial and also
	// gives up with its context, not with the dial.
	ctx2, cancel2 := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel2()
	start = time.Now()
	if _, err := h.Conn(ctx2, uri); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Conn: err = %v, want its deadline", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("Conn waited %s, want about its 200ms deadline", d)
	}
	if err := <-first; err == nil {
		t.Error("first caller's dial to a silent daemon succeeded")
	}
}

func TestAHostsMaxConcurrentCallsSetsItsSlots(t *testing.T) {
	uri := silentDaemon(t)
	h := NewHosts(nil)
	h.DialTimeout = 5 * time.Second
	h.Limits = HostLimits(&config.Config{Autoscale: config.Autoscale{Hosts: []config.Host{
		{Name: "h1", URI: uri, MaxConcurrentCalls: 2}, {Name: "h2", URI: "qemu:///system"},
	}}})
	defer h.Close()
	if len(h.Limits) != 1 || h.Limits[uri] != 2 {
		t.Fatalf("limits = %v, want only h1's 2", h.Limits)
	}
	// Two callers hold h1's two slots (the dial hangs); a third waits for
	// a slot, not for the dial (with the default 8 it would get a slot).
	for range 2 {
		go func() { _, _, _ = h.Acquire(context.Background(), "h1", uri) }()
	}
	time.Sleep(100 * time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if _, _, err := h.Acquire(ctx, "h1", uri); !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "slot (2 in use)") {
		t.Errorf("third caller: err = %v, want its deadline while waiting for one of 2 slots", err)
	}
}
