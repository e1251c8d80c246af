package workflows

import (
	"errors"
	"fmt"
	"time"

	"github.com/premiscale/premiscale/config"
)

// MaxProvisioning caps how many of a group's VMs are provisioned at once,
// and so how many one reconciliation starts: a group far below its desired
// size grows in waves, the next VM starting as soon as one is done.
const MaxProvisioning = 50

// minSpecInterval is the shortest evaluation interval a spec may carry.
const minSpecInterval = time.Second

// Validate checks a spec as the workflow receives it: through the spec
// signal or a start, from whoever can reach the Temporal frontend, not
// only from the controller, which validated its file already. It names
// every problem. It checks only what the workflow relies on; names of
// hosts and templates are checked by the worker when it acts on them.
func (s GroupSpec) Validate() error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("spec.%s: %s", field, fmt.Sprintf(format, args...)))
	}
	if s.Name == "" {
		bad("name", "is empty")
	}
	if s.Min < 0 {
		bad("min", "%d is negative", s.Min)
	}
	if s.Max < s.Min {
		bad("max", "%d is below min %d", s.Max, s.Min)
	}
	if s.Max > config.MaxGroupSize {
		bad("max", "%d is above the largest group PremiScale runs (%d)", s.Max, config.MaxGroupSize)
	}
	if s.Desired < 0 || s.Desired > config.MaxGroupSize {
		bad("desired", "%d is outside [0, %d]", s.Desired, config.MaxGroupSize)
	}
	if len(s.Hosts) == 0 {
		bad("hosts", "is empty")
	}
	seen := map[string]bool{}
	for i, h := range s.Hosts {
		if h.Name == "" || seen[h.Name] {
			bad(fmt.Sprintf("hosts[%d].name", i), "%q is empty or repeated", h.Name)
		}
		seen[h.Name] = true
	}
	if s.EvaluationInterval < minSpecInterval {
		bad("evaluationInterval", "%s is below %s", s.EvaluationInterval, minSpecInterval)
	}
	for _, d := range []struct {
		name string
		d    time.Duration
	}{
		{"hostFailureGracePeriod", s.HostFailureGracePeriod},
		{"unhealthyGracePeriod", s.UnhealthyGracePeriod},
		{"cleanupTimeout", s.CleanupTimeout},
	} {
		if d.d < 0 {
			bad(d.name, "%s is negative", d.d)
		}
	}
	if s.HistoryLimit != 0 && (s.HistoryLimit < MinHistoryLimit || s.HistoryLimit > DefaultHistoryLimit) {
		bad("historyLimit", "%d is outside [%d, %d] (0: the default)", s.HistoryLimit, MinHistoryLimit, DefaultHistoryLimit)
	}
	if w := s.WarmPool; w != nil {
		for _, f := range []struct {
			name string
			n    *int
		}{{"warmPool.size", w.Size}, {"warmPool.minSize", w.MinSize}, {"warmPool.maxPreparedSize", w.MaxPreparedSize}} {
			if f.n != nil && (*f.n < 0 || *f.n > config.MaxGroupSize) {
				bad(f.name, "%d is outside [0, %d]", *f.n, config.MaxGroupSize)
			}
		}
		if w.State != config.WarmHibernated && w.State != config.WarmPaused && w.State != config.WarmStopped {
			bad("warmPool.state", "%q is not one of %s, %s, %s", w.State, config.WarmHibernated, config.WarmPaused, config.WarmStopped)
		}
	}
	if r := s.Refresh; r != nil {
		if r.Mode != "" && r.Mode != config.RefreshManual && r.Mode != config.RefreshAuto {
			bad("refresh.mode", "%q is not %s or %s", r.Mode, config.RefreshManual, config.RefreshAuto)
		}
		if r.MinHealthy != "" {
			if _, err := config.ParsePercent(r.MinHealthy); err != nil {
				bad("refresh.minHealthy", "%s", err)
			}
		}
		if r.Batch < 0 || r.Batch > config.MaxGroupSize {
			bad("refresh.batch", "%d is outside [0, %d]", r.Batch, config.MaxGroupSize)
		}
		if err := config.CheckCheckpoints(r.Checkpoints); err != nil {
			bad("refresh.checkpoints", "%s", err)
		}
		if r.CheckpointDelay != nil {
			if err := config.CheckCheckpointDelay(*r.CheckpointDelay, r.Checkpoints); err != nil {
				bad("refresh.checkpointDelay", "%s", err)
			}
		}
	}
	return errors.Join(errs...)
}
