package test

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/digitalocean/go-libvirt"
	"github.com/prometheus/client_golang/api"
	promv1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/common/model"

	"github.com/premiscale/premiscale/config"
	"github.com/premiscale/premiscale/starter"
	"github.com/premiscale/premiscale/workflows"
	"github.com/premiscale/premiscale/workflows/policy"
)

// exporter is a small metrics endpoint the test controls: a total load
// spread over the group's running domains (as a real per-VM average would
// fall when VMs are added), and a fixed gauge.
type exporter struct {
	mu    sync.Mutex
	total float64
	srv   *http.Server
	addr  string
	a, b  prometheus.Gauge
}

func startExporter(t testing.TB, lv *libvirt.Libvirt, group string) *exporter {
	t.Helper()
	e := &exporter{}
	reg := prometheus.NewRegistry()
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "premiscale_test_load_per_vm", Help: "Total test load over the group's running VMs.",
	}, func() float64 {
		e.mu.Lock()
		total := e.total
		e.mu.Unlock()
		return total / float64(max(len(viewGroup(t, lv, group).running), 1))
	}))
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "premiscale_test_high", Help: "Always 10.",
	}, func() float64 { return 10 }))
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "premiscale_test_one", Help: "Always 1.",
	}, func() float64 { return 1 }))
	e.a = prometheus.NewGauge(prometheus.GaugeOpts{Name: "premiscale_test_a", Help: "Settable."})
	e.b = prometheus.NewGauge(prometheus.GaugeOpts{Name: "premiscale_test_b", Help: "Settable."})
	reg.MustRegister(e.a, e.b)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e.addr = l.Addr().String()
	e.srv = &http.Server{Handler: promhttp.HandlerFor(reg, promhttp.HandlerOpts{}), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = e.srv.Serve(l) }()
	t.Cleanup(func() { _ = e.srv.Close() })
	return e
}

func (e *exporter) set(total float64) {
	e.mu.Lock()
	e.total = total
	e.mu.Unlock()
}

// startPrometheus runs the apt-installed Prometheus on loopback, scraping
// the exporter every second, and waits until the target is up.
func startPrometheus(t testing.TB, target string) (addr string, proc *os.Process) {
	t.Helper()
	bin, err := exec.LookPath("prometheus")
	if err != nil {
		if os.Getenv("PSTEST_REQUIRE_ALL") == "1" {
			t.Fatal("prometheus not installed (make test installs it)")
		}
		t.Skip("prometheus not installed: run through make test")
	}
	dir := t.TempDir()
	cfg := filepath.Join(dir, "prometheus.yml")
	body := fmt.Sprintf("global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: exporter\n    static_configs:\n      - targets: ['%s']\n", target)
	if err := os.WriteFile(cfg, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	addr = fmt.Sprintf("127.0.0.1:%d", freePort(t))
	cmd := exec.Command(bin, "--config.file="+cfg, "--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+addr, "--log.level=warn")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("start prometheus: %v", err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })

	client, err := api.NewClient(api.Config{Address: "http://" + addr})
	if err != nil {
		t.Fatal(err)
	}
	papi := promv1.NewAPI(client)
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		v, _, _, err := papi.Query(context.Background(), `up{job="exporter"} == 1`, time.Now())
		if vec, ok := v.(model.Vector); err == nil && ok && len(vec) == 1 {
			return addr, cmd.Process
		}
		time.Sleep(250 * time.Millisecond)
	}
	t.Fatal("prometheus did not scrape the exporter within 60s")
	return "", nil
}

func waitStatus(t testing.TB, s *starter.Starter, group string, timeout time.Duration, what string, ok func(workflows.GroupStatus) bool) workflows.GroupStatus {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		st, err := s.Status(context.Background(), group)
		if err == nil && ok(st) {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s; status %+v (err %v)", what, timeout, st, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func TestPrometheusTargetValueScalesOutInAndHoldsOnMissingData(t *testing.T) {
	lv := requireLibvirt(t, testDriverURI)
	const group, dry = "promtv", "promdry"
	exp := startExporter(t, lv, group)
	exp.set(0.5)
	promAddr, promProc := startPrometheus(t, exp.addr)

	target, tol := 0.5, 0.1
	window := 5 * time.Second
	second := time.Second
	check := func(query string) config.Check {
		return config.Check{Name: "load", Query: query, Strategy: config.StrategyTargetValue, Target: &target, Tolerance: &tol}
	}
	g := testDriverGroup(group, 1, 4)
	g.Scaling.Checks = []config.Check{check("premiscale_test_load_per_vm")}
	// A sample scraped while the scale-out was half done overstates the
	// per-VM load; as in production, the scale-out cooldown absorbs it.
	outCooldown := 5 * time.Second
	g.Scaling.ScaleOut = config.Direction{Cooldown: &outCooldown}
	g.Scaling.ScaleIn = config.Direction{Cooldown: &second, StabilizationWindow: &window}
	d := testDriverGroup(dry, 1, 4)
	d.Scaling.Checks = []config.Check{check("premiscale_test_high")}
	d.Scaling.DryRun = true

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	s, hc := startInProcess(t, ctx, config.Prometheus{Address: "http://" + promAddr, QueryTimeout: 2 * time.Second}, g, d)
	t.Cleanup(func() { recordHistories(t, hc, "metrics") })

	waitStatus(t, s, group, 30*time.Second, "first evaluation at 1", func(st workflows.GroupStatus) bool {
		return st.Decision != nil && st.Desired == 1 && st.Settled()
	})

	// Load triples: 1 -> 3 VMs, where the per-VM load is back on target.
	exp.set(1.5)
	rise := time.Now()
	waitStatus(t, s, group, 60*time.Second, "scale out to 3 on load", func(st workflows.GroupStatus) bool {
		return st.Desired == 3 && st.Settled()
	})
	t.Logf("load x3: settled at 3 in %s", time.Since(rise).Round(time.Millisecond))
	checkExactly(t, lv, group, 3)

	// Load drops: back to 1, but not before the 5s scale-in window.
	exp.set(0.2)
	drop := time.Now()
	st := waitStatus(t, s, group, 60*time.Second, "scale in to 1 after the window", func(st workflows.GroupStatus) bool {
		return st.Desired == 1 && st.Settled()
	})
	if took := time.Since(drop); took < window-time.Second {
		t.Errorf("scaled in after %s, before the %s stabilization window", took, window)
	}
	t.Logf("load drop: settled at 1 in %s", time.Since(drop).Round(time.Millisecond))
	var sawIn bool
	for _, dec := range st.Decisions {
		sawIn = sawIn || dec.Action == policy.ActionScaleIn
	}
	if !sawIn {
		t.Errorf("decisions %+v lack the scale-in", st.Decisions)
	}
	checkExactly(t, lv, group, 1)

	exp.set(1.5)
	waitStatus(t, s, group, 60*time.Second, "scale out to 3 again", func(st workflows.GroupStatus) bool {
		return st.Desired == 3 && st.Settled()
	})

	// The exporter dies: its series go stale, the query returns nothing,
	// and the group holds at 3 for longer than window + cooldown.
	_ = exp.srv.Close()
	st = waitStatus(t, s, group, 30*time.Second, "held on missing data", func(st workflows.GroupStatus) bool {
		return st.Decision != nil && st.Decision.Action == policy.ActionHeld && strings.Contains(st.Decision.Reason, "no data")
	})
	statusOf := func(name string) func() (workflows.GroupStatus, error) {
		return func() (workflows.GroupStatus, error) { return s.Status(ctx, name) }
	}
	// Every evaluation in the window (one a second) holds at 3.
	st = groupHolds(t, statusOf(group), window+3*time.Second, 5, func(st workflows.GroupStatus) string {
		if st.Desired != 3 {
			return fmt.Sprintf("group went from 3 to %d with its metric missing", st.Desired)
		}
		return ""
	})
	checkExactly(t, lv, group, 3)

	// Prometheus dies: the queries fail, the group still holds.
	_ = promProc.Signal(syscall.SIGKILL)
	st = waitStatus(t, s, group, 30*time.Second, "held with prometheus down", func(st workflows.GroupStatus) bool {
		return st.Decision != nil && st.Decision.Action == policy.ActionHeld && strings.Contains(st.Decision.Reason, "query failed")
	})
	st = groupHolds(t, statusOf(group), window+3*time.Second, 5, func(st workflows.GroupStatus) string {
		if st.Desired != 3 {
			return fmt.Sprintf("group went from 3 to %d with prometheus down", st.Desired)
		}
		return ""
	})
	t.Logf("held: %s", st.Decision.Reason)
	checkExactly(t, lv, group, 3)

	// The dry-run group decided to grow all along and changed nothing.
	ds, err := s.Status(ctx, dry)
	if err != nil {
		t.Fatal(err)
	}
	var sawDry bool
	for _, dec := range ds.Decisions {
		sawDry = sawDry || (dec.Action == policy.ActionDryRun && strings.Contains(dec.Reason, "would scale 1 -> 4"))
	}
	if ds.Desired != 1 || !sawDry {
		t.Errorf("dry-run group: desired %d, decisions %+v; want 1 and a 'would scale 1 -> 4'", ds.Desired, ds.Decisions)
	}
	checkExactly(t, lv, dry, 1)
}

func TestPrometheusChecksThatDisagreeFollowTheRuleAndABrokenQueryHolds(t *testing.T) {
	lv := requireLibvirt(t, testDriverURI)
	const two, broken = "promtwo", "prombroken"
	exp := startExporter(t, lv, two)
	promAddr, _ := startPrometheus(t, exp.addr)

	zero, second := time.Duration(0), time.Second
	pass := func(name, query string, onError string) config.Check {
		return config.Check{Name: name, Query: query, Strategy: config.StrategyPassThrough, OnError: onError}
	}
	g := testDriverGroup(two, 1, 5)
	g.Scaling.Checks = []config.Check{pass("a", "premiscale_test_a", ""), pass("b", "premiscale_test_b", "")}
	g.Scaling.ScaleOut = config.Direction{Cooldown: &zero}
	g.Scaling.ScaleIn = config.Direction{Cooldown: &zero, StabilizationWindow: &zero}
	b := testDriverGroup(broken, 1, 5)
	three := 3
	b.Desired = &three
	b.Scaling.Checks = []config.Check{pass("one", "premiscale_test_one", ""), pass("typo", "sum(premiscale_test_one", "")}
	b.Scaling.ScaleIn = config.Direction{Cooldown: &second, StabilizationWindow: &zero}

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	exp.a.Set(1)
	exp.b.Set(3)
	s, _ := startInProcess(t, ctx, config.Prometheus{Address: "http://" + promAddr, QueryTimeout: 2 * time.Second}, g, b)

	steps := []struct {
		a, b float64
		want int
		rule string
	}{
		{1, 3, 3, "two scale-outs: the larger size wins"},
		{4, 2, 4, "scale-out beats scale-in"},
		{2, 2, 2, "both scale in: to the larger size"},
		{1, 2, 2, "no change beats scale-in"},
	}
	for _, st := range steps {
		exp.a.Set(st.a)
		exp.b.Set(st.b)
		waitStatus(t, s, two, 60*time.Second, fmt.Sprintf("a=%v b=%v -> %d (%s)", st.a, st.b, st.want, st.rule), func(gs workflows.GroupStatus) bool {
			return gs.Desired == st.want && gs.Settled() && len(gs.Checks) == 2 &&
				gs.Checks[0].Error == "" && gs.Checks[0].Value == st.a && gs.Checks[1].Value == st.b
		})
		checkExactly(t, lv, two, st.want)
	}

	// The group with a broken query stays at 3 although its healthy check
	// asks for 1, and says why.
	st := waitStatus(t, s, broken, 30*time.Second, "held on a broken query", func(gs workflows.GroupStatus) bool {
		return gs.Decision != nil && gs.Decision.Action == policy.ActionHeld && strings.Contains(gs.Decision.Reason, "check typo failed")
	})
	st = groupHolds(t, func() (workflows.GroupStatus, error) { return s.Status(ctx, broken) }, 3*time.Second, 2, func(st workflows.GroupStatus) string {
		if st.Desired != 3 {
			return fmt.Sprintf("broken query let the group shrink to %d", st.Desired)
		}
		return ""
	})
	t.Logf("%s", st.Decision.Reason)
	checkExactly(t, lv, broken, 3)
}
