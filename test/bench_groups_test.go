package test

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/digitalocean/go-libvirt"
	"go.temporal.io/sdk/client"

	"github.com/premiscale/premiscale/workflows"
)

// BenchmarkManyGroups runs one controller (the binary: embedded server and
// one worker) with N groups on one test-driver host (min 0, max 2, desired
// 0; one in ten with a Prometheus check at 15 s, the rest quiet) and
// measures, over two minutes after a warm-up: the controller's CPU (cores,
// from /proc) and largest RSS; the largest staleness of any group's last
// observation; the time of `scale gK 2 --wait` under that load divided by
// the same on a controller with one group, measured in the same run; and
// how soon a quiet group's domain destroyed and undefined by hand is
// replaced; and the time of `status` of all groups (summaries from the
// visibility store) against `status --live` (a Query per group).
func BenchmarkManyGroups(b *testing.B) {
	lv := requireLibvirt(b, testDriverURI)
	exp := startExporter(b, lv, "none")
	promAddr, _ := startPrometheus(b, exp.addr)
	idle := manyGroups(b, 1, promAddr)
	idleScale := idle.scale(b)
	idle.stop()
	b.ReportMetric(idleScale.Seconds()*1000, "idle-scale-ms")
	sizes := []int{100, 1000, 3000}
	if s := os.Getenv("BENCH_GROUPS"); s != "" {
		sizes = nil
		for _, f := range strings.Split(s, ",") {
			n, err := strconv.Atoi(f)
			if err != nil {
				b.Fatalf("BENCH_GROUPS: %v", err)
			}
			sizes = append(sizes, n)
		}
	}
	for _, n := range sizes {
		b.Run(fmt.Sprintf("groups=%d", n), func(b *testing.B) {
			for range b.N {
				m := manyGroups(b, n, promAddr)
				time.Sleep(30 * time.Second) // warm-up
				cores, rss := m.sample(b, 2*time.Minute)
				scale := m.scale(b)
				replaced := m.replaceOutOfBand(b, lv)
				stale := m.staleness(b)
				list, live := m.statusOfAll(b)
				m.stop()
				b.ReportMetric(cores, "cores")
				b.ReportMetric(float64(rss)/(1<<20), "rss-MiB")
				b.ReportMetric(stale.Seconds(), "max-staleness-s")
				b.ReportMetric(scale.Seconds()*1000, "scale-ms")
				b.ReportMetric(float64(scale)/float64(idleScale), "scale/idle")
				b.ReportMetric(replaced.Seconds()*1000, "oob-replace-ms")
				b.ReportMetric(list.Seconds()*1000, "status-all-ms")
				b.ReportMetric(live.Seconds()*1000, "status-live-ms")
				b.ReportMetric(float64(live)/float64(list), "live/list")
			}
		})
	}
}

type groupsController struct {
	c      *controller
	n      int
	port   int
	client client.Client
}

func manyGroups(b *testing.B, n int, promAddr string) *groupsController {
	b.Helper()
	port := freePort(b)
	dir := b.TempDir()
	var groups strings.Builder
	for i := range n {
		fmt.Fprintf(&groups, "    - {name: g%d, min: 0, max: 2, desired: 0, scaling: {evaluationInterval: 15s", i)
		if i%10 == 9 {
			groups.WriteString(`, checks: [{name: load, query: "vector(0)", strategy: targetValue, target: 0.5}]`)
		}
		groups.WriteString("}, template: {diskSize: 64MiB, memory: 64MiB, domainType: qemu, shutdownTimeout: 0s}}\n")
	}
	cfgPath, logPath := dir+"/config.yaml", dir+"/controller.log"
	body := fmt.Sprintf(`version: v1alpha1
controller:
  stateDir: %s/state
  log: {level: warn, file: %s}
  metrics: {listen: "127.0.0.1:0"}
  prometheus: {address: "http://%s"}
  temporal:
    embedded: {port: %d}
autoscale:
  hosts:
    - {name: testhost, uri: "%s", pool: %s, cpuOvercommit: 16, memoryOvercommit: 16}
  groups:
%s`, dir, logPath, promAddr, port, testDriverURI, testPool, groups.String())
	if err := os.WriteFile(cfgPath, []byte(body), 0o600); err != nil {
		b.Fatal(err)
	}
	c := &controller{t: b, config: cfgPath, log: logPath}
	c.spawn()
	b.Cleanup(func() { c.kill(syscall.SIGKILL) })
	m := &groupsController{c: c, n: n, port: port}
	deadline := time.Now().Add(10 * time.Minute)
	for {
		cl, err := c.dial()
		if err == nil {
			m.client = cl
			break
		}
		if time.Now().After(deadline) {
			b.Fatalf("controller with %d groups not up: %v", n, err)
		}
		time.Sleep(500 * time.Millisecond)
	}
	// Every group started: the last one answers its status Query.
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, err := m.client.QueryWorkflow(ctx, workflows.GroupWorkflowID(fmt.Sprintf("g%d", n-1)), "", workflows.QueryStatus)
		cancel()
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			c.dumpLog()
			b.Fatalf("group g%d of %d not started within 10 minutes: %v", n-1, n, err)
		}
		time.Sleep(time.Second)
	}
	return m
}

func (m *groupsController) stop() {
	m.client.Close()
	m.c.kill(syscall.SIGKILL)
}

// sample measures the controller's CPU (cores) and largest RSS over d.
func (m *groupsController) sample(b *testing.B, d time.Duration) (cores float64, rss int64) {
	pid := m.c.cmd.Process.Pid
	cpu := func() time.Duration {
		raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			b.Fatal(err)
		}
		f := strings.Fields(string(raw[strings.LastIndexByte(string(raw), ')')+2:]))
		ut, _ := strconv.ParseInt(f[11], 10, 64) // utime, field 14
		st, _ := strconv.ParseInt(f[12], 10, 64) // stime, field 15
		return time.Duration(ut+st) * 10 * time.Millisecond
	}
	mem := func() int64 {
		raw, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
		for _, l := range strings.Split(string(raw), "\n") {
			if f := strings.Fields(l); len(f) >= 2 && f[0] == "VmRSS:" {
				kb, _ := strconv.ParseInt(f[1], 10, 64)
				return kb << 10
			}
		}
		return 0
	}
	start, c0 := time.Now(), cpu()
	for time.Since(start) < d {
		rss = max(rss, mem())
		time.Sleep(time.Second)
	}
	return float64(cpu()-c0) / float64(time.Since(start)), rss
}

// scale times `scale g0 2 --wait` and scales back to 0.
func (m *groupsController) scale(b *testing.B) time.Duration {
	start := time.Now()
	m.c.mustCLI("scale", "g0", "2", "--wait", "--timeout", "5m")
	took := time.Since(start)
	m.c.mustCLI("scale", "g0", "0", "--wait", "--timeout", "5m")
	return took
}

// replaceOutOfBand scales the quiet group g1 to 1, destroys and undefines
// its domain behind the controller's back (as virsh would), and times until
// status shows another member running in its place.
func (m *groupsController) replaceOutOfBand(b *testing.B, lv *libvirt.Libvirt) time.Duration {
	m.c.mustCLI("scale", "g1", "1", "--wait", "--timeout", "5m")
	st := m.c.status("g1")
	if len(st.Members) != 1 {
		b.Fatalf("g1 scaled to 1 has members %+v", st.Members)
	}
	victim := st.Members[0].Name
	removeByHand(b, lv, victim)
	start := time.Now()
	for {
		st := m.c.status("g1")
		if len(st.Members) == 1 && st.Members[0].Name != victim && st.Settled() {
			break
		}
		if time.Since(start) > 5*time.Minute {
			b.Fatalf("%s removed out of band 5 minutes ago, not replaced: %+v", victim, st)
		}
		time.Sleep(50 * time.Millisecond)
	}
	took := time.Since(start)
	m.c.mustCLI("scale", "g1", "0", "--wait", "--timeout", "5m")
	return took
}

// staleness is the longest any group has gone without observing its host.
func (m *groupsController) staleness(b *testing.B) time.Duration {
	var mu sync.Mutex
	var worst time.Duration
	var failed int
	sem := make(chan struct{}, 8)
	var wg sync.WaitGroup
	for i := range m.n {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			v, err := m.client.QueryWorkflow(ctx, workflows.GroupWorkflowID(fmt.Sprintf("g%d", i)), "", workflows.QueryStatus)
			var st workflows.GroupStatus
			if err == nil {
				err = v.Get(&st)
			}
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				failed++
				return
			}
			worst = max(worst, time.Since(st.LastObservedAt))
		}()
	}
	wg.Wait()
	if failed > 0 {
		b.Errorf("%d of %d status queries failed", failed, m.n)
	}
	return worst
}

// statusOfAll times `premiscale status` (one listing of the summaries) and
// `premiscale status --live` (every group's Query), each showing all n
// groups.
func (m *groupsController) statusOfAll(b *testing.B) (list, live time.Duration) {
	timed := func(args ...string) time.Duration {
		start := time.Now()
		out := m.c.mustCLI(args...)
		took := time.Since(start)
		if rows := strings.Count(out, "\n") - 1; rows != m.n {
			b.Fatalf("premiscale %s shows %d groups, want %d", strings.Join(args, " "), rows, m.n)
		}
		return took
	}
	return timed("status"), timed("status", "--live")
}
