package hostwatch

import (
	"context"
	"log/slog"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/premiscale/premiscale/activities"
	"github.com/premiscale/premiscale/config"
)

// TestWatcherCoalescesChangesPerGroup: changes of one group within a
// debounce period become one notification, the last specific one winning
// over a resync; other groups are notified separately.
func TestWatcherCoalescesChangesPerGroup(t *testing.T) {
	notify, got := recordNotifications()
	w := &Watcher{
		Logger: slog.New(slog.DiscardHandler), Debounce: 50 * time.Millisecond,
		Notify: notify, pending: map[string]activities.HostChange{},
	}
	w.notify("web", activities.HostChange{Host: "h1", Domain: "web-1", Event: "stopped"})
	w.notify("web", activities.HostChange{Host: "h1", Domain: "web-2", Event: "undefined"})
	w.notify("web", activities.HostChange{Host: "h1", Domain: "web-3", Event: activities.EventResync})
	w.notify("db", activities.HostChange{Host: "h2", Domain: "db-1", Event: activities.EventResync})
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	w.flushLoop(ctx)
	notified := got()
	if len(notified["web"]) != 1 || notified["web"][0].Domain != "web-2" {
		t.Errorf("web notified %v, want once, with web-2's change", notified["web"])
	}
	if len(notified["db"]) != 1 || notified["db"][0].Event != activities.EventResync {
		t.Errorf("db notified %v, want one resync", notified["db"])
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
	notify, got := recordNotifications()
	w := &Watcher{
		Catalog: activities.NewCatalog(cfg), Hosts: cfg.Autoscale.Hosts[:1],
		Logger: slog.New(slog.DiscardHandler), Debounce: 50 * time.Millisecond,
		Notify: notify,
	}
	// Dials at 0, 1 s and 3 s: three refusals.
	ctx, cancel := context.WithTimeout(context.Background(), 3500*time.Millisecond)
	defer cancel()
	w.Run(ctx)
	notified := got()
	want := activities.HostChange{Host: "h1", Event: activities.EventDisconnected}
	for _, g := range []string{"web", "api"} {
		if len(notified[g]) != 1 || notified[g][0] != want {
			t.Errorf("%s notified %v, want once %v", g, notified[g], want)
		}
	}
	if len(notified["db"]) != 0 {
		t.Errorf("db (not on h1) notified %v", notified["db"])
	}
}

// recordNotifications is a Watcher.Notify that records every notification,
// and a function that returns a copy of them by group.
func recordNotifications() (notify func(context.Context, string, activities.HostChange) error, got func() map[string][]activities.HostChange) {
	var mu sync.Mutex
	seen := map[string][]activities.HostChange{}
	notify = func(_ context.Context, g string, c activities.HostChange) error {
		mu.Lock()
		defer mu.Unlock()
		seen[g] = append(seen[g], c)
		return nil
	}
	got = func() map[string][]activities.HostChange {
		mu.Lock()
		defer mu.Unlock()
		out := map[string][]activities.HostChange{}
		for g, cs := range seen {
			out[g] = append([]activities.HostChange(nil), cs...)
		}
		return out
	}
	return notify, got
}
