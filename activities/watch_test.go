package activities

import (
	"context"
	"log/slog"
	"sync"
	"testing"
	"time"
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
	w.notify("web", HostChange{Host: "h1", Domain: "web-3", Event: "resync"})
	w.notify("db", HostChange{Host: "h2", Domain: "db-1", Event: "resync"})
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
