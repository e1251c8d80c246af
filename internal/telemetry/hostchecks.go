package telemetry

import (
	"slices"
	"strings"
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/premiscale/premiscale/activities"
)

// HostChecks exports the results of the worker's host checks
// (worker.CheckHosts): an alert on premiscale_host_check_problems{severity="error"} > 0
// catches a missing base volume, an inactive pool or a skewed clock before
// the first scale-out fails on it.
type HostChecks struct {
	mu      sync.Mutex
	reports map[string]activities.HostReport

	problems *prometheus.GaugeVec
	skew     *prometheus.GaugeVec
	checked  *prometheus.GaugeVec
}

// NewHostChecks registers the host-check gauges in reg.
func NewHostChecks(reg prometheus.Registerer) *HostChecks {
	h := &HostChecks{
		reports: map[string]activities.HostReport{},
		problems: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "premiscale_host_check_problems",
			Help: "Findings of the last check of the host, by severity (warn, error); premiscale hosts check HOST tells them."}, []string{"host", "severity"}),
		skew: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "premiscale_host_clock_skew_seconds",
			Help: "How far the host's clock is ahead of this worker's (negative: behind), at the last check that could measure it."}, []string{"host"}),
		checked: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "premiscale_host_check_timestamp_seconds",
			Help: "When the host was last checked."}, []string{"host"}),
	}
	reg.MustRegister(h.problems, h.skew, h.checked)
	return h
}

// Set exports one host's report.
func (h *HostChecks) Set(r activities.HostReport) {
	h.mu.Lock()
	h.reports[r.Host] = r
	h.mu.Unlock()
	n := map[string]int{activities.SeverityWarn: 0, activities.SeverityError: 0}
	for _, f := range r.Findings {
		if _, ok := n[f.Severity]; ok {
			n[f.Severity]++
		}
	}
	for sev, c := range n {
		h.problems.WithLabelValues(r.Host, sev).Set(float64(c))
	}
	if r.ClockMeasured {
		h.skew.WithLabelValues(r.Host).Set(r.ClockSkewSeconds)
	}
	h.checked.WithLabelValues(r.Host).Set(float64(r.CheckedAt.UnixNano()) / 1e9)
}

// Reports are the last report of each host checked, by host name.
func (h *HostChecks) Reports() []activities.HostReport {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make([]activities.HostReport, 0, len(h.reports))
	for _, r := range h.reports {
		out = append(out, r)
	}
	slices.SortFunc(out, func(a, b activities.HostReport) int { return strings.Compare(a.Host, b.Host) })
	return out
}
