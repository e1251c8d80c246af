// Package hostwatch watches the hosts for changes to the groups' domains
// (Watcher) and tells each group of its own, so that groups need not poll
// their hosts. It runs beside the worker; it is not an activity.
package hostwatch

import (
	"context"
	"fmt"
	"log/slog"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/digitalocean/go-libvirt"

	"github.com/premiscale/premiscale/activities"
	"github.com/premiscale/premiscale/config"
	"github.com/premiscale/premiscale/internal/hostconn"
)

// Defaults of Watcher.
const (
	// DefaultWatchDebounce gathers the changes of one group into one
	// notification.
	DefaultWatchDebounce = 250 * time.Millisecond
	// DefaultWatchKeepalive is how often a watched host is pinged, and how
	// long it has to answer.
	DefaultWatchKeepalive = 10 * time.Second
	// watchRetryMax bounds the wait before dialing a host again.
	watchRetryMax = 30 * time.Second
)

// Watcher keeps one connection per configured host subscribed to libvirt's
// domain lifecycle events, and tells the group of each changed domain of
// this installation (Notify), at most once per Debounce per group. Groups
// then observe their hosts at once instead of at their next evaluation: a
// domain destroyed by hand is noticed within about a second.
//
// Every worker may run one: a change is then notified once per worker,
// and the group, which only sets a flag, observes once. A host that cannot
// be reached is dialed again with a growing pause (up to 30 s); after a
// reconnection, every group with a domain there is notified, since events
// may have been missed meanwhile.
type Watcher struct {
	Catalog *activities.Catalog
	Hosts   []config.Host
	// Notify tells a group of a change; errors are logged.
	Notify   func(ctx context.Context, group string, c activities.HostChange) error
	Logger   *slog.Logger
	Debounce time.Duration
	// Keepalive: see DefaultWatchKeepalive.
	Keepalive time.Duration

	mu      sync.Mutex
	pending map[string]activities.HostChange // by group
	owner   map[string]string                // domain UUID -> group, from marks read
}

// Run watches every host until ctx ends.
func (w *Watcher) Run(ctx context.Context) {
	w.pending, w.owner = map[string]activities.HostChange{}, map[string]string{}
	var wg sync.WaitGroup
	for _, h := range w.Hosts {
		wg.Add(1)
		go func() { defer wg.Done(); w.watch(ctx, h) }()
	}
	wg.Add(1)
	go func() { defer wg.Done(); w.flushLoop(ctx) }()
	wg.Wait()
}

func (w *Watcher) watch(ctx context.Context, h config.Host) {
	pause, sessions, down := time.Second, 0, false
	for ctx.Err() == nil {
		started := time.Now()
		subscribed, err := w.session(ctx, h, sessions > 0)
		sessions++
		if ctx.Err() != nil {
			return
		}
		if subscribed || !down {
			// Groups that sleep between observations must hear that
			// this host can no longer tell them of changes.
			w.hostDown(h)
			down = true
		}
		if time.Since(started) > time.Minute {
			pause = time.Second
		}
		w.Logger.Warn("host watch stopped; dialing again", "host", h.Name, "error", err, "retry_in", pause)
		select {
		case <-ctx.Done():
			return
		case <-time.After(pause):
		}
		pause = min(2*pause, watchRetryMax)
	}
}

// session is one connection's watch: subscribe, read every domain's mark,
// then pass events on until the connection or ctx ends.
func (w *Watcher) session(ctx context.Context, h config.Host, again bool) (subscribed bool, err error) {
	lv, raw, err := hostconn.Dial(h.URI, hostconn.DefaultDialTimeout)
	if err != nil {
		return false, err
	}
	// The subscription ends only after the connection is closed, never
	// while it is open: cancelling it makes go-libvirt send a
	// deregistration, and libvirtd 9.0 segfaults when that races the
	// client's close (its RPC thread walks the callback list the close
	// path has just freed). So its context is not ctx (whose end would
	// cancel it at once): the socket is closed first, and on a closed
	// connection the daemon drops the callbacks itself. Over ssh, which
	// go-libvirt dials, there is no socket of ours to close: Disconnect
	// (ConnectClose, whose handler drops them) comes first.
	sctx, cancel := context.WithCancel(context.Background())
	defer func() {
		if raw != nil {
			raw.Close()
			cancel()
			go func() { _ = lv.Disconnect() }()
			return
		}
		go func() { _ = lv.Disconnect(); cancel() }()
	}()
	events, err := lv.LifecycleEvents(sctx)
	if err != nil {
		return false, fmt.Errorf("subscribe to lifecycle events: %w", err)
	}
	doms, _, err := lv.ConnectListAllDomains(1, 0)
	if err != nil {
		return false, fmt.Errorf("list domains: %w", err)
	}
	for _, d := range doms {
		if g := w.groupOf(lv, h, d); g != "" && again {
			w.notify(g, activities.HostChange{Host: h.Name, Domain: d.Name, Event: activities.EventResync})
		}
	}
	w.Logger.Debug("watching host", "host", h.Name, "domains", len(doms))
	// A hung daemon (stopped, or stuck on storage) keeps the connection
	// open and sends nothing: ping it, and give the session up when a ping
	// goes unanswered, so that groups hear the host is gone.
	probe := orDefault(w.Keepalive, DefaultWatchKeepalive)
	tick := time.NewTicker(probe)
	defer tick.Stop()
	var pinged time.Time
	pong := make(chan struct{}, 1)
	for {
		select {
		case <-ctx.Done():
			return true, nil
		case <-tick.C:
			switch {
			case pinged.IsZero():
				pinged = time.Now()
				go func() {
					if _, err := lv.ConnectGetLibVersion(); err == nil {
						pong <- struct{}{}
					}
				}()
			case time.Since(pinged) >= probe:
				return true, fmt.Errorf("no answer to a keepalive within %s", probe)
			}
		case <-pong:
			pinged = time.Time{}
		case <-lv.Disconnected():
			return true, fmt.Errorf("connection lost")
		case ev, ok := <-events:
			if !ok {
				return true, fmt.Errorf("event stream closed")
			}
			// Every event caches the domain's group (an undefined
			// domain's mark can no longer be read); only those that can
			// take a member down are sent: defined, started or resumed
			// are mostly the group's own provisionings, and would only
			// lengthen its history.
			if g := w.groupOf(lv, h, ev.Dom); g != "" && takesDown(ev.Event) {
				w.notify(g, activities.HostChange{Host: h.Name, Domain: ev.Dom.Name, Event: lifecycleEvent(ev.Event)})
			}
			if libvirt.DomainEventType(ev.Event) == libvirt.DomainEventUndefined {
				w.mu.Lock()
				delete(w.owner, fmt.Sprintf("%x", ev.Dom.UUID))
				w.mu.Unlock()
			}
		}
	}
}

// groupOf is the configured group of this installation that owns d on h,
// by its mark (remembered by UUID, since an undefined domain's mark can no
// longer be read), or "".
func (w *Watcher) groupOf(lv *libvirt.Libvirt, h config.Host, d libvirt.Domain) string {
	uuid := fmt.Sprintf("%x", d.UUID)
	w.mu.Lock()
	g, known := w.owner[uuid]
	w.mu.Unlock()
	if known {
		return g
	}
	grp := w.Catalog.DomainGroup(lv, h.Name, d)
	if grp == "" {
		return "" // gone already, no mark, unreadable, or not ours to tell
	}
	w.mu.Lock()
	w.owner[uuid] = grp
	w.mu.Unlock()
	return grp
}

// hostDown tells every configured group that uses h that its watcher no
// longer hears from h.
func (w *Watcher) hostDown(h config.Host) {
	for _, name := range w.Catalog.HostGroups(h.Name) {
		w.notify(name, activities.HostChange{Host: h.Name, Event: activities.EventDisconnected})
	}
}

// notify queues c for group; a pending domain event is not replaced by a
// resync or disconnection (any one makes the group observe).
func (w *Watcher) notify(group string, c activities.HostChange) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if _, ok := w.pending[group]; !ok || (c.Event != activities.EventResync && c.Event != activities.EventDisconnected) {
		w.pending[group] = c
	}
}

// flushLoop notifies the groups with pending changes every Debounce.
func (w *Watcher) flushLoop(ctx context.Context) {
	t := time.NewTicker(orDefault(w.Debounce, DefaultWatchDebounce))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		w.mu.Lock()
		batch := w.pending
		w.pending = map[string]activities.HostChange{}
		w.mu.Unlock()
		groups := make([]string, 0, len(batch))
		for g := range batch {
			groups = append(groups, g)
		}
		sort.Strings(groups)
		for _, g := range groups {
			nctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			if err := w.Notify(nctx, g, batch[g]); err != nil && ctx.Err() == nil {
				w.Logger.Warn("notifying a group of a host change", "group", g, "host", batch[g].Host, "domain", batch[g].Domain, "error", err)
			}
			cancel()
		}
	}
}

// takesDown reports whether a lifecycle event can leave a domain not
// running or gone: the only ones a group must hear of at once.
func takesDown(e int32) bool {
	switch libvirt.DomainEventType(e) {
	case libvirt.DomainEventUndefined, libvirt.DomainEventSuspended, libvirt.DomainEventStopped,
		libvirt.DomainEventShutdown, libvirt.DomainEventPmsuspended, libvirt.DomainEventCrashed:
		return true
	}
	return false
}

// lifecycleEvent names libvirt's virDomainEventType.
func lifecycleEvent(e int32) string {
	names := []string{"defined", "undefined", "started", "suspended", "resumed", "stopped", "shutdown", "pmsuspended", "crashed"}
	if e >= 0 && int(e) < len(names) {
		return names[e]
	}
	return "event-" + strconv.Itoa(int(e))
}

// WatchedHosts are the hosts of cfg that groups use, for a Watcher.
func WatchedHosts(cfg *config.Config) []config.Host {
	used := map[string]bool{}
	all := false
	for _, g := range cfg.Autoscale.Groups {
		if len(g.Hosts) == 0 {
			all = true
		}
		for _, h := range g.Hosts {
			used[h] = true
		}
	}
	var out []config.Host
	for _, h := range cfg.Autoscale.Hosts {
		if all || used[h.Name] {
			out = append(out, h)
		}
	}
	return out
}

func orDefault(v, def time.Duration) time.Duration {
	if v > 0 {
		return v
	}
	return def
}
