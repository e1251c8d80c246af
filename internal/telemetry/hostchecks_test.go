package telemetry

import (
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/premiscale/premiscale/activities"
)

func TestHostChecksExportProblemsBySeverityAndTheClock(t *testing.T) {
	reg := prometheus.NewRegistry()
	h := NewHostChecks(reg)
	h.Set(activities.HostReport{Host: "h1", CheckedAt: time.Unix(1796670000, 0), ClockMeasured: true, ClockSkewSeconds: -3.5, Findings: []activities.Finding{
		{Check: "connect", Severity: activities.SeverityOK},
		{Check: "base volume", Group: "web", Severity: activities.SeverityError},
		{Check: "capacity", Group: "web", Severity: activities.SeverityWarn},
		{Check: "network", Group: "db", Severity: activities.SeverityError},
	}})
	h.Set(activities.HostReport{Host: "h2", CheckedAt: time.Unix(1796670001, 0)})
	want := `
# HELP premiscale_host_check_problems Findings of the last check of the host, by severity (warn, error); premiscale hosts check HOST tells them.
# TYPE premiscale_host_check_problems gauge
premiscale_host_check_problems{host="h1",severity="error"} 2
premiscale_host_check_problems{host="h1",severity="warn"} 1
premiscale_host_check_problems{host="h2",severity="error"} 0
premiscale_host_check_problems{host="h2",severity="warn"} 0
# HELP premiscale_host_clock_skew_seconds How far the host's clock is ahead of this worker's (negative: behind), at the last check that could measure it.
# TYPE premiscale_host_clock_skew_seconds gauge
premiscale_host_clock_skew_seconds{host="h1"} -3.5
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "premiscale_host_check_problems", "premiscale_host_clock_skew_seconds"); err != nil {
		t.Error(err)
	}
}
