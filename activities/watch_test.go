package activities

import (
	"context"
	"log/slog"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/premiscale/premiscale/config"
)

// TestWatcherCoalescesChangesPerGroup: changes of one group within a
// debounce period become one notification, the last specific one winning
// over a resync; other groups are notified separately.
func TestWatcherCoalescesChangesPerGroup(t *testing.T) {
	var mu sync.Mutex
	got := map[string][]HostChange{}
	w := &Watcher{
		Logger: slog.New(slog.DiscardHandler), Debounce: 50 * time.Millisecond,
		Notify: func(_ context.Context, g string, c HostChange) error {
			mu.Lock()
			defer mu.Unlock()
			got[g] = append(got[g], c)
			return nil
		},
		pending: map[string]HostChange{},
	}
	w.notify("web", HostChange{Host: "h1", Domain: "web-1", Event: "stopped"})
	w.notify("web", HostChange{Host: "h1", Domain: "web-2", Event: "undefined"})
	w.notify("web", HostChange{Host: "h1", Domain: "web-3", Event: EventResync})
	w.notify("db", HostChange{Host: "h2", Domain: "db-1", Event: EventResync})
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	w.flushLoop(ctx)
	mu.Lock()
	defer mu.Unlock()
	if len(got["web"]) != 1 || got["web"][0].Domain != "web-2" {
		t.Errorf("web notified %v, want once, with web-2's change", got["web"])
	}
	if len(got["db"]) != 1 || got["db"][0].Event != "resync" {
		t.Errorf("db notified %v, want one resync", got["db"])
	}
}

func TestLifecycleEventNames(t *testing.T) {
	for e, want := range map[int32]string{0: "defined", 1: "undefined", 5: "stopped", 8: "crashed", 42: "event-42"} {
		if got := lifecycleEvent(e); got != want {
			t.Errorf("lifecycleEvent(%d) = %q, want %q", e, got, want)
		}
	}
}

// TestWatcherTellsGroupsOnceThatAHostIsUnreachable: a host the watcher
// cannot reach is reported to every group that uses it (they may be
// sleeping on their resync interval), once however often it is dialled
// again; a group on other hosts hears nothing.
func TestWatcherTellsGroupsOnceThatAHostIsUnreachable(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now: every dial is refused
	cfg := &config.Config{Autoscale: config.Autoscale{
		Hosts: []config.Host{{Name: "h1", URI: "qemu+tcp://" + addr + "/system"}, {Name: "h2", URI: "qemu+tcp://" + addr + "/system"}},
		Groups: []config.Group{
			{Name: "web", Hosts: []string{"h1"}},
			{Name: "api", Hosts: []string{"h1", "h2"}},
			{Name: "db", Hosts: []string{"h2"}},
		},
	}}
	var mu sync.Mutex
	got := map[string][]HostChange{}
	w := &Watcher{
		Catalog: NewCatalog(cfg), Hosts: cfg.Autoscale.Hosts[:1],
		Logger: slog.New(slog.DiscardHandler), Debounce: 50 * time.Millisecond,
		Notify: func(_ context.Context, g string, c HostChange) error {
			mu.Lock()
			defer mu.Unlock()
			got[g] = append(got[g], c)
			return nil
		},
	}
	// Dials at 0, 1 s and 3 s: three refusals.
	ctx, cancel := context.WithTimeout(context.Background(), 3500*time.Millisecond)
	defer cancel()
	w.Run(ctx)
	mu.Lock()
	defer mu.Unlock()
	want := HostChange{Host: "h1", Event: EventDisconnected}
	for _, g := range []string{"web", "api"} {
		if len(got[g]) != 1 || got[g][0] != want {
			t.Errorf("%s notified %v, want once %v", g, got[g], want)
		}
	}
	if len(got["db"]) != 0 {
		t.Errorf("db (not on h1) notified %v", got["db"])
	}
}
