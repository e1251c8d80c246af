package telemetry

import (
	"context"
	"log/slog"
	"maps"
	"slices"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/premiscale/premiscale/workflows"
)

// Groups exports each group's state as gauges, read on an interval from
// the summaries the group workflows publish (and the status Query of the
// groups with metric checks): a scrape never waits on Temporal, and a
// thousand groups without checks cost one listing per interval.
type Groups struct {
	desired, min, max, paused *prometheus.GaugeVec
	members                   *prometheus.GaugeVec
	checkValue, checkFailing  *prometheus.GaugeVec
	hostReachable             *prometheus.GaugeVec
	statusUp                  *prometheus.GaugeVec
	lastPoll                  prometheus.Gauge
}

// GroupStates are the member states exported as premiscale_group_members.
var GroupStates = []workflows.MemberState{
	workflows.MemberRunning, workflows.MemberProvisioning, workflows.MemberDecommissioning,
	workflows.MemberFailed, workflows.MemberLost,
}

// NewGroups registers the group gauges in reg.
func NewGroups(reg prometheus.Registerer) *Groups {
	gv := func(name, help string, labels ...string) *prometheus.GaugeVec {
		v := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: name, Help: help}, labels)
		reg.MustRegister(v)
		return v
	}
	g := &Groups{
		desired:       gv("premiscale_group_desired", "The group's desired size.", "group"),
		min:           gv("premiscale_group_min", "The group's minimum size.", "group"),
		max:           gv("premiscale_group_max", "The group's maximum size.", "group"),
		paused:        gv("premiscale_group_paused", "1 if the group is paused.", "group"),
		members:       gv("premiscale_group_members", "The group's members by state (running, provisioning, decommissioning, failed, lost).", "group", "state"),
		checkValue:    gv("premiscale_check_value", "The last value of a group's metric check.", "group", "check"),
		checkFailing:  gv("premiscale_check_failing", "1 if a group's metric check failed at its last evaluation (no data, query error).", "group", "check"),
		hostReachable: gv("premiscale_host_reachable", "0 if the group's last observation could not reach the host, else 1.", "group", "host"),
		statusUp:      gv("premiscale_group_status_up", "1 if the group's state was read at the last poll (its summary, or its status Query for a group with checks) and a worker serves the groups.", "group"),
		lastPoll: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "premiscale_group_status_last_poll_timestamp_seconds", Help: "When the groups' status was last read.",
		}),
	}
	reg.MustRegister(g.lastPoll)
	return g
}

// Set exports one group's status; hosts are the group's configured hosts.
func (g *Groups) Set(st workflows.GroupStatus, hosts []string) {
	name := st.Group
	g.statusUp.WithLabelValues(name).Set(1)
	g.desired.WithLabelValues(name).Set(float64(st.Desired))
	g.min.WithLabelValues(name).Set(float64(st.Min))
	g.max.WithLabelValues(name).Set(float64(st.Max))
	g.paused.WithLabelValues(name).Set(b2f(st.Paused))
	counts := map[workflows.MemberState]int{
		workflows.MemberRunning: st.Running, workflows.MemberProvisioning: st.Provisioning,
		workflows.MemberDecommissioning: st.Decommissioning, workflows.MemberFailed: st.Failed, workflows.MemberLost: st.Lost,
	}
	for _, s := range GroupStates {
		g.members.WithLabelValues(name, string(s)).Set(float64(counts[s]))
	}
	g.checkValue.DeletePartialMatch(prometheus.Labels{"group": name})
	g.checkFailing.DeletePartialMatch(prometheus.Labels{"group": name})
	for _, c := range st.Checks {
		g.checkFailing.WithLabelValues(name, c.Name).Set(b2f(c.Error != ""))
		if c.Error == "" {
			g.checkValue.WithLabelValues(name, c.Name).Set(c.Value)
		}
	}
	g.hostReachable.DeletePartialMatch(prometheus.Labels{"group": name})
	down := map[string]bool{}
	for _, h := range st.UnreachableHosts {
		down[h] = true
	}
	for _, h := range hosts {
		g.hostReachable.WithLabelValues(name, h).Set(b2f(!down[h]))
	}
}

// Down marks a group whose status could not be read; its last values stay.
func (g *Groups) Down(group string) { g.statusUp.WithLabelValues(group).Set(0) }

// Forget drops every series of a group no longer configured or running.
func (g *Groups) Forget(group string) {
	for _, v := range []*prometheus.GaugeVec{g.desired, g.min, g.max, g.paused, g.members, g.checkValue, g.checkFailing, g.hostReachable, g.statusUp} {
		v.DeletePartialMatch(prometheus.Labels{"group": group})
	}
}

// GroupInfo is what the configuration says of a group that its gauges
// need: its hosts, and whether it has metric checks (whose values only
// the status Query has).
type GroupInfo struct {
	Hosts  []string
	Checks bool
}

// StatusSource reads groups' state for the gauges.
type StatusSource interface {
	// Groups lists the configured groups.
	Groups(ctx context.Context) (map[string]GroupInfo, error)
	// Summaries lists the summaries the running group workflows publish in
	// their memo: one visibility listing, no workflow task. A group with
	// no summary (just started, or not running) is absent.
	Summaries(ctx context.Context) (map[string]workflows.GroupSummary, error)
	// Status is one group's status Query: a workflow task on a worker,
	// and a replay of its history when the worker's cache lost it.
	Status(ctx context.Context, group string) (workflows.GroupStatus, error)
	// Served reports whether a worker polls the groups' workflow tasks.
	Served(ctx context.Context) (bool, error)
}

// MaxStatusQueriesPerSecond bounds Run's status Queries: each one is a
// workflow task on a worker, and a thousand groups polled every 5 s would
// cost more than the groups themselves. With more groups than this times
// the interval, a sweep takes one second per this many groups.
const MaxStatusQueriesPerSecond = 20

// Run reads every group's state each interval until ctx ends. The
// summaries come from one listing; only a group with metric checks (their
// values are not in the summary) or without a summary is asked by status
// Query, at most MaxStatusQueriesPerSecond. A group is up when its state
// was read and a worker polls the groups' workflow tasks: a group that
// nobody serves still lists its last summary, and is down.
func (g *Groups) Run(ctx context.Context, src StatusSource, interval time.Duration, log *slog.Logger) {
	known := map[string]bool{}
	pace := time.NewTicker(time.Second / MaxStatusQueriesPerSecond)
	defer pace.Stop()
	warn := func(msg string, err error) {
		if log != nil {
			log.Warn(msg, "error", err)
		}
	}
	for {
		groups, err := src.Groups(ctx)
		if err != nil {
			warn("metrics: listing groups", err)
		}
		sums, serr := src.Summaries(ctx)
		if serr != nil {
			warn("metrics: listing group summaries", serr)
		}
		served, perr := src.Served(ctx)
		if perr != nil {
			warn("metrics: describing the task queue", perr)
		}
		for _, name := range slices.Sorted(maps.Keys(groups)) {
			info := groups[name]
			if sum, ok := sums[name]; ok && !info.Checks {
				g.Set(sum.Status(), info.Hosts)
				if !served {
					g.Down(name)
				}
				known[name] = true
				continue
			}
			select {
			case <-ctx.Done():
				return
			case <-pace.C:
			}
			qctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			st, err := src.Status(qctx, name)
			cancel()
			if err != nil {
				g.Down(name)
				continue
			}
			g.Set(st, info.Hosts)
			known[name] = true
		}
		if err == nil {
			for name := range known {
				if _, ok := groups[name]; !ok {
					g.Forget(name)
					delete(known, name)
				}
			}
		}
		g.lastPoll.SetToCurrentTime()
		select {
		case <-ctx.Done():
			return
		case <-time.After(interval):
		}
	}
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
