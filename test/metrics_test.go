package test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/api"
	promv1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/common/model"
	enumspb "go.temporal.io/api/enums/v1"
)

// TestMetricsFollowTheGroupInPrometheus: the real binary serves /readyz,
// which answers ready only once its worker is among the task queue's
// pollers (checked at that moment through Temporal); a real Prometheus
// scrapes /metrics during a scale-out and a scale-in and sees the group's
// gauges follow the VMs, PremiScale's provisioning histograms, the
// Temporal SDK's own metrics, and the host check the worker ran at start
// (a host whose pool is missing has an error, in the log too).
func TestMetricsFollowTheGroupInPrometheus(t *testing.T) {
	requireLibvirt(t, testDriverURI)
	const group = "metrics"
	port, mport := freePort(t), freePort(t)
	cfgPath, logPath := writeE2EConfig(t, group, port)
	b, err := os.ReadFile(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	body := strings.Replace(string(b), `metrics: {listen: "127.0.0.1:0"}`, fmt.Sprintf(`metrics: {listen: "127.0.0.1:%d", groupPollInterval: 1s}`, mport), 1)
	// A second host whose pool does not exist, used by no group: the
	// worker's host check at start reports it.
	testhost := fmt.Sprintf(`    - {name: testhost, uri: "%s", pool: %s, cpuOvercommit: 16, memoryOvercommit: 16}`, testDriverURI, testPool)
	if !strings.Contains(body, testhost) {
		t.Fatalf("config lacks %q", testhost)
	}
	body = strings.Replace(body, testhost, testhost+fmt.Sprintf("\n    - {name: nopool, uri: %q, pool: no-such-pool}", testDriverURI), 1)
	body = strings.Replace(body, "      min: 0\n", "      hosts: [testhost]\n      min: 0\n", 1)
	if err := os.WriteFile(cfgPath, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	base := fmt.Sprintf("http://127.0.0.1:%d", mport)

	// Start the process by hand to watch /readyz from its first moment.
	cmd := exec.Command(premiscaleBin, "-c", cfgPath)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	c := &controller{t: t, config: cfgPath, log: logPath, cmd: cmd, exited: make(chan error, 1)}
	go func() { c.exited <- cmd.Wait() }()
	t.Cleanup(func() { c.kill(syscall.SIGKILL) })
	notReady := ""
	deadline := time.Now().Add(time.Minute)
	for {
		code, text := get(base + "/readyz")
		if code == http.StatusOK {
			// Ready: the worker must poll right now, on both kinds of task.
			tc := c.mustDial()
			for _, kind := range []enumspb.TaskQueueType{enumspb.TASK_QUEUE_TYPE_WORKFLOW, enumspb.TASK_QUEUE_TYPE_ACTIVITY} {
				resp, err := tc.DescribeTaskQueue(context.Background(), "premiscale", kind)
				if err != nil || len(resp.GetPollers()) == 0 {
					t.Fatalf("/readyz said ready while task queue premiscale has no %s poller (%v)", kind, err)
				}
			}
			break
		}
		if code == http.StatusServiceUnavailable {
			notReady = text
		}
		if time.Now().After(deadline) {
			c.dumpLog()
			t.Fatalf("/readyz not ready within a minute: %d %s", code, text)
		}
		time.Sleep(20 * time.Millisecond)
	}
	// The not-ready window is often shorter than the polling here (the
	// unit test of the endpoint covers its 503); log what was seen.
	t.Logf("before ready, /readyz said: %q", strings.TrimSpace(notReady))
	if code, _ := get(base + "/healthz"); code != http.StatusOK {
		t.Errorf("/healthz: %d", code)
	}

	prom, _ := startPrometheus(t, fmt.Sprintf("127.0.0.1:%d", mport))
	papi := promAPI(t, prom)
	c.mustCLI("scale", group, "3")
	c.waitSettled(group, 3, time.Minute)
	waitPromValue(t, papi, fmt.Sprintf(`premiscale_group_members{group=%q,state="running"}`, group), 3)
	waitPromValue(t, papi, fmt.Sprintf(`premiscale_group_desired{group=%q}`, group), 3)
	waitPromValue(t, papi, fmt.Sprintf(`premiscale_group_max{group=%q}`, group), 5)
	// Read from the group's published summary, with this worker among the
	// workflow task queue's pollers.
	waitPromValue(t, papi, fmt.Sprintf(`premiscale_group_status_up{group=%q}`, group), 1)
	waitPromValue(t, papi, fmt.Sprintf(`premiscale_provision_duration_seconds_count{group=%q}`, group), 3)
	c.mustCLI("scale", group, "1")
	c.waitSettled(group, 1, time.Minute)
	waitPromValue(t, papi, fmt.Sprintf(`premiscale_group_members{group=%q,state="running"}`, group), 1)
	waitPromValue(t, papi, fmt.Sprintf(`premiscale_decommission_duration_seconds_count{group=%q}`, group), 2)
	waitPromValue(t, papi, fmt.Sprintf(`premiscale_host_reachable{group=%q,host="testhost"}`, group), 1)
	waitPromValue(t, papi, `premiscale_host_cpus{host="testhost"}`, 16) // the test driver's node
	// The host check at start: the missing pool is an error, in the
	// metrics and in the log; the group's host was checked too.
	waitPromValue(t, papi, `premiscale_host_check_problems{host="nopool",severity="error"}`, 1)
	waitPromValue(t, papi, `count(premiscale_host_check_timestamp_seconds{host="testhost"} > 0)`, 1)
	if b, _ := os.ReadFile(logPath); !regexp.MustCompile(`level=ERROR msg="host check: storage pool \\"no-such-pool\\"[^\n]*host=nopool`).Match(b) {
		t.Error("the log has no host check error for nopool's pool")
	}
	if out := c.mustCLI("status"); !regexp.MustCompile(`(?m)^nopool +error +pool +storage pool "no-such-pool"`).MatchString(out) {
		t.Errorf("status does not show nopool's missing pool:\n%s", out)
	}

	// The Temporal SDK's own metrics (worker and client) are there too.
	_, text := get(base + "/metrics")
	for _, re := range []string{`(?m)^temporal_workflow_task_execution_latency_seconds_bucket\{`, `(?m)^temporal_activity_execution_latency_seconds_count\{`, `(?m)^temporal_request_total\{`} {
		if !regexp.MustCompile(re).MatchString(text) {
			t.Errorf("/metrics lacks %s", re)
		}
	}
	c.mustCLI("scale", group, "0")
	c.waitSettled(group, 0, time.Minute)
}

func get(url string) (int, string) {
	resp, err := http.Get(url) //nolint:gosec // a test's own loopback endpoint
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func promAPI(t *testing.T, addr string) promv1.API {
	t.Helper()
	cl, err := api.NewClient(api.Config{Address: "http://" + addr})
	if err != nil {
		t.Fatal(err)
	}
	return promv1.NewAPI(cl)
}

// waitPromValue waits until Prometheus has query's single sample at want.
func waitPromValue(t *testing.T, papi promv1.API, query string, want float64) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	var last string
	for time.Now().Before(deadline) {
		v, _, _, err := papi.Query(context.Background(), query, time.Now())
		if vec, ok := v.(model.Vector); err == nil && ok && len(vec) == 1 {
			if float64(vec[0].Value) == want {
				return
			}
			last = vec[0].Value.String()
		} else {
			last = fmt.Sprintf("%v (%v)", v, err)
		}
		time.Sleep(250 * time.Millisecond)
	}
	t.Fatalf("Prometheus: %s = %s, want %v", query, last, want)
}
