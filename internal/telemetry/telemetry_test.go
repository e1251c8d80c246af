package telemetry

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/premiscale/premiscale/workflows"
	"github.com/premiscale/premiscale/workflows/policy"
)

func TestReadyzNamesEveryFailingCheckAndHealthzAlwaysAnswers(t *testing.T) {
	tel, err := New(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tel.Close()
	workerUp := false
	tel.AddReadyCheck("temporal", func(context.Context) error { return nil })
	tel.AddReadyCheck("worker", func(context.Context) error {
		if !workerUp {
			return errors.New("not polling")
		}
		return nil
	})
	srv := httptest.NewServer(tel.Handler())
	defer srv.Close()
	get := func(path string) (int, string) {
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := get("/readyz"); code != http.StatusServiceUnavailable || !strings.Contains(body, "worker: not polling") || strings.Contains(body, "temporal") {
		t.Errorf("/readyz = %d %q, want 503 naming only the worker", code, body)
	}
	if code, _ := get("/healthz"); code != http.StatusOK {
		t.Errorf("/healthz = %d", code)
	}
	workerUp = true
	if code, body := get("/readyz"); code != http.StatusOK {
		t.Errorf("/readyz = %d %q, want ready", code, body)
	}
}

func TestGroupGaugesFollowTheStatus(t *testing.T) {
	tel, err := New(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tel.Close()
	g := NewGroups(tel.Registry)
	g.Set(workflows.GroupStatus{Group: "web", Min: 1, Max: 5, Desired: 3, Running: 2, Provisioning: 1,
		UnreachableHosts: []string{"h2"},
		Checks:           []policy.CheckResult{{Name: "cpu", Value: 0.7}, {Name: "queue", Error: "no data"}},
	}, []string{"h1", "h2"})
	for _, tc := range []struct {
		name string
		got  float64
		want float64
	}{
		{"desired", testutil.ToFloat64(g.desired.WithLabelValues("web")), 3},
		{"running", testutil.ToFloat64(g.members.WithLabelValues("web", "running")), 2},
		{"provisioning", testutil.ToFloat64(g.members.WithLabelValues("web", "provisioning")), 1},
		{"failed", testutil.ToFloat64(g.members.WithLabelValues("web", "failed")), 0},
		{"cpu value", testutil.ToFloat64(g.checkValue.WithLabelValues("web", "cpu")), 0.7},
		{"queue failing", testutil.ToFloat64(g.checkFailing.WithLabelValues("web", "queue")), 1},
		{"h1 reachable", testutil.ToFloat64(g.hostReachable.WithLabelValues("web", "h1")), 1},
		{"h2 unreachable", testutil.ToFloat64(g.hostReachable.WithLabelValues("web", "h2")), 0},
	} {
		if tc.got != tc.want {
			t.Errorf("%s = %v, want %v", tc.name, tc.got, tc.want)
		}
	}
	if n := testutil.CollectAndCount(g.checkValue); n != 1 {
		t.Errorf("%d check values, want only the check that answered", n)
	}
	g.Forget("web")
	if n := testutil.CollectAndCount(g.members); n != 0 {
		t.Errorf("%d member series after Forget, want 0", n)
	}
}

// countingSource has n groups and counts status Queries. The first
// summarized groups publish a summary; the first withChecks have checks.
type countingSource struct {
	n, summarized, withChecks int
	unserved                  bool
	queries                   atomic.Int64
	asked                     sync.Map
}

func (s *countingSource) Groups(context.Context) (map[string]GroupInfo, error) {
	out := map[string]GroupInfo{}
	for i := range s.n {
		out[fmt.Sprintf("g%d", i)] = GroupInfo{Hosts: []string{"h1"}, Checks: i < s.withChecks}
	}
	return out, nil
}

func (s *countingSource) Summaries(context.Context) (map[string]workflows.GroupSummary, error) {
	out := map[string]workflows.GroupSummary{}
	for i := range s.summarized {
		name := fmt.Sprintf("g%d", i)
		out[name] = workflows.GroupSummary{Group: name, Desired: i, Running: i}
	}
	return out, nil
}

func (s *countingSource) Status(_ context.Context, group string) (workflows.GroupStatus, error) {
	s.queries.Add(1)
	s.asked.Store(group, true)
	return workflows.GroupStatus{Group: group, Checks: []policy.CheckResult{{Name: "cpu", Value: 0.5}}}, nil
}

func (s *countingSource) Served(context.Context) (bool, error) { return !s.unserved, nil }

// Polling 1,000 groups every second sends at most
// MaxStatusQueriesPerSecond Queries a second, not a thousand.
func TestGroupPollingIsPaced(t *testing.T) {
	tel, err := New(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tel.Close()
	src := &countingSource{n: 1000}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	NewGroups(tel.Registry).Run(ctx, src, time.Second, nil)
	if n := src.queries.Load(); n < 10 || n > 2*MaxStatusQueriesPerSecond+2 {
		t.Errorf("%d status Queries in 2 s of polling 1,000 groups, want about %d", n, 2*MaxStatusQueriesPerSecond)
	}
}

// Groups that publish a summary and have no checks are read from the
// listing alone: only the groups with checks (whose values the summary
// lacks) and those without a summary are asked by Query.
func TestGroupGaugesComeFromSummariesWithoutQueries(t *testing.T) {
	tel, err := New(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tel.Close()
	// g0..g1 have checks and summaries, g2..g499 summaries only, g500..g502 neither.
	src := &countingSource{n: 503, summarized: 500, withChecks: 2}
	g := NewGroups(tel.Registry)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	g.Run(ctx, src, 100*time.Millisecond, nil)
	passes := testutil.ToFloat64(g.lastPoll)
	if passes == 0 {
		t.Fatal("no poll finished in 3 s")
	}
	for i := range 503 {
		name := fmt.Sprintf("g%d", i)
		_, asked := src.asked.Load(name)
		if want := i < 2 || i >= 500; asked != want {
			t.Errorf("%s asked by Query: %v, want %v", name, asked, want)
		}
		if got := testutil.ToFloat64(g.statusUp.WithLabelValues(name)); got != 1 {
			t.Errorf("%s status_up = %v, want 1", name, got)
		}
	}
	if got := testutil.ToFloat64(g.desired.WithLabelValues("g7")); got != 7 {
		t.Errorf("g7 desired = %v, want its summary's 7", got)
	}
	if got := testutil.ToFloat64(g.checkValue.WithLabelValues("g1", "cpu")); got != 0.5 {
		t.Errorf("g1's check value = %v, want the Query's 0.5", got)
	}
	// Nobody polls the groups' workflow tasks: the summaries still list,
	// and every group is down.
	src.unserved = true
	ctx2, cancel2 := context.WithTimeout(context.Background(), time.Second)
	defer cancel2()
	g.Run(ctx2, src, 100*time.Millisecond, nil)
	if got := testutil.ToFloat64(g.statusUp.WithLabelValues("g7")); got != 0 {
		t.Errorf("g7 status_up = %v with no worker serving it, want 0", got)
	}
}
