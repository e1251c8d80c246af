package test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"go.temporal.io/sdk/client"

	"github.com/premiscale/premiscale/config"
	"github.com/premiscale/premiscale/starter"
	"github.com/premiscale/premiscale/workflows"
)

// BenchmarkHistoryEconomy measures the history each group writes: idle
// groups (no checks, one running VM) and groups with one Prometheus check,
// each before (host watchers off: every group observes its host each
// evaluation interval) and after (watchers on: an idle group observes once
// per resync interval and on a watcher's signal). Two in-process
// controllers (embedded Temporal on SQLite, one worker each, one test-driver
// host) run side by side for the same window; each group's history length
// is read at its start and end. Intervals are shortened (evaluation 3 s,
// resync 30 s) so that a window of a few minutes holds many cycles; the
// events per cycle then give the events per hour at the defaults (15 s and
// 5 min).
func BenchmarkHistoryEconomy(b *testing.B) {
	const (
		perCell  = 4
		interval = 3 * time.Second
		resync   = 30 * time.Second
		window   = 150 * time.Second
	)
	lv := requireLibvirt(b, testDriverURI)
	exp := startExporter(b, lv, "none")
	promAddr, _ := startPrometheus(b, exp.addr)
	prom := config.Prometheus{Address: "http://" + promAddr, QueryTimeout: 2 * time.Second}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()

	type cell struct {
		watch  bool
		checks bool
		groups []string
		events int64
		s      *starter.Starter
		c      client.Client
	}
	cells := []*cell{{watch: false, checks: false}, {watch: false, checks: true}, {watch: true, checks: false}, {watch: true, checks: true}}
	for _, watch := range []bool{false, true} {
		var groups []config.Group
		var mine []*cell
		for _, cl := range cells {
			if cl.watch != watch {
				continue
			}
			mine = append(mine, cl)
			for i := range perCell {
				name := fmt.Sprintf("hist-w%t-c%t-%d", cl.watch, cl.checks, i)
				g := testDriverGroup(name, 1, 2)
				g.Scaling.EvaluationInterval = interval
				if cl.checks {
					target, tol := 0.5, 0.1
					g.Scaling.Checks = []config.Check{{Name: "load", Query: "vector(0.5)", Strategy: config.StrategyTargetValue, Target: &target, Tolerance: &tol}}
				}
				cl.groups = append(cl.groups, name)
				groups = append(groups, g)
			}
		}
		hosts := []config.Host{{Name: "testhost", URI: testDriverURI, Pool: testPool, CPUOvercommit: 16, MemoryOvercommit: 16}}
		on := watch
		cfg := &config.Config{
			Version: config.Version,
			Controller: config.Controller{Prometheus: prom,
				HostWatch: config.HostWatch{Enabled: &on, ResyncInterval: resync}},
			Autoscale: config.Autoscale{Hosts: hosts, Groups: groups},
		}
		s, c := startInProcessConfig(b, ctx, cfg, nil)
		for _, cl := range mine {
			cl.s, cl.c = s, c
		}
	}
	length := func(cl *cell, group string) int64 {
		d, err := cl.c.DescribeWorkflowExecution(ctx, workflows.GroupWorkflowID(group), "")
		if err != nil {
			b.Fatal(err)
		}
		return d.GetWorkflowExecutionInfo().GetHistoryLength()
	}
	for _, cl := range cells {
		for _, g := range cl.groups {
			wctx, wcancel := context.WithTimeout(ctx, 2*time.Minute)
			if _, err := cl.s.WaitSettled(wctx, g, 100*time.Millisecond); err != nil {
				b.Fatalf("group %s did not settle: %v", g, err)
			}
			wcancel()
		}
	}
	// Past the first resync after settling, so that every group is in
	// its steady state.
	time.Sleep(resync + 5*time.Second)
	b.ResetTimer()
	for range b.N {
		start := map[string]int64{}
		for _, cl := range cells {
			for _, g := range cl.groups {
				start[g] = length(cl, g)
			}
		}
		time.Sleep(window)
		for _, cl := range cells {
			for _, g := range cl.groups {
				cl.events += length(cl, g) - start[g]
			}
		}
	}
	b.StopTimer()
	perHour := func(cl *cell) float64 {
		return float64(cl.events) / float64(b.N*len(cl.groups)) * float64(time.Hour) / float64(window)
	}
	// At the defaults: the same events per cycle, cycles of 15 s (or of
	// 5 min for a watched idle group).
	atDefaults := func(cl *cell) float64 {
		if cl.watch && !cl.checks {
			return perHour(cl) * float64(resync) / float64(config.DefaultResyncInterval)
		}
		return perHour(cl) * float64(interval) / float64(config.DefaultEvaluationInterval)
	}
	for _, cl := range cells {
		name := map[bool]string{false: "idle", true: "checks"}[cl.checks] + map[bool]string{false: "-before", true: "-after"}[cl.watch]
		b.ReportMetric(perHour(cl), name+"-events/h")
		b.ReportMetric(atDefaults(cl), name+"-events/h@defaults")
	}
	b.ReportMetric(perHour(cells[2])/perHour(cells[0]), "idle-after/before")
	b.ReportMetric(atDefaults(cells[2])/atDefaults(cells[0]), "idle-after/before@defaults")
	b.ReportMetric(perHour(cells[3])/perHour(cells[1]), "checks-after/before")
}
