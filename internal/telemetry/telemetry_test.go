package telemetry

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
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

// countingSource has n groups and counts status Queries.
type countingSource struct {
	n       int
	queries atomic.Int64
}

func (s *countingSource) Groups(context.Context) (map[string][]string, error) {
	out := map[string][]string{}
	for i := range s.n {
		out[fmt.Sprintf("g%d", i)] = []string{"h1"}
	}
	return out, nil
}

func (s *countingSource) Status(_ context.Context, group string) (workflows.GroupStatus, error) {
	s.queries.Add(1)
	return workflows.GroupStatus{Group: group}, nil
}

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
