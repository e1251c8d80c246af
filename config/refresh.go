package config

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Refresh modes.
const (
	// RefreshManual: a template change applies to new VMs only, until
	// premiscale refresh replaces the others.
	RefreshManual = "manual"
	// RefreshAuto: a template change starts a refresh.
	RefreshAuto = "auto"
)

// DefaultRefreshMinHealthy is AWS instance refresh's default.
const DefaultRefreshMinHealthy = 90

// Refresh is a group's rolling refresh settings, as AWS instance refresh
// preferences: members made from an older template revision are replaced
// in batches, each batch only once the previous one's replacements run,
// while MinHealthy percent of desired (rounded up) keep running.
type Refresh struct {
	// Mode is RefreshManual (default) or RefreshAuto.
	Mode string `koanf:"mode" json:"mode"`
	// MinHealthy is a percentage, "90%" or "90"; default 90%.
	MinHealthy string `koanf:"minHealthy" json:"minHealthy,omitempty"`
	// Batch caps the VMs replaced at once; 0: as many as MinHealthy allows.
	Batch int `koanf:"batch" json:"batch,omitempty"`
	// Checkpoints are percentages of the members to replace, ascending, at
	// which a refresh waits CheckpointDelay before it goes on, as AWS
	// instance refresh's checkpoints do. A refresh whose last checkpoint
	// is under 100 ends there (a canary).
	Checkpoints []int `koanf:"checkpoints" json:"checkpoints,omitempty"`
	// CheckpointDelay is the wait at each checkpoint; default 1h (AWS's).
	// Only with Checkpoints.
	CheckpointDelay *time.Duration `koanf:"checkpointDelay" json:"checkpointDelay,omitempty"`
}

// DefaultCheckpointDelay is AWS instance refresh's default.
const DefaultCheckpointDelay = time.Hour

// MaxCheckpointDelay is the longest wait at a checkpoint (AWS allows two
// days).
const MaxCheckpointDelay = 48 * time.Hour

// CheckCheckpoints explains what is wrong with refresh checkpoints, if
// anything: percentages from 1 to 100, ascending, each once.
func CheckCheckpoints(ps []int) error {
	for i, p := range ps {
		if p < 1 || p > 100 {
			return fmt.Errorf("must be percentages from 1 to 100, got %d", p)
		}
		if i > 0 && p <= ps[i-1] {
			return fmt.Errorf("must be ascending, each once, got %d after %d", p, ps[i-1])
		}
	}
	return nil
}

// CheckCheckpointDelay explains what is wrong with a checkpoint delay
// given with the checkpoints ps, if anything.
func CheckCheckpointDelay(d time.Duration, ps []int) error {
	switch {
	case len(ps) == 0:
		return fmt.Errorf("needs checkpoints to wait at")
	case d < 0 || d > MaxCheckpointDelay:
		return fmt.Errorf("must be from 0s to %s, got %s", MaxCheckpointDelay, d)
	}
	return nil
}

// Delay is the wait at each checkpoint.
func (r Refresh) Delay() time.Duration {
	if r.CheckpointDelay == nil {
		return DefaultCheckpointDelay
	}
	return *r.CheckpointDelay
}

// ParsePercent reads a percentage of 0 to 100, written "66%" or "66".
func ParsePercent(s string) (int, error) {
	n, err := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(s), "%"))
	if err != nil || n < 0 || n > 100 {
		return 0, fmt.Errorf("must be a percentage from 0%% to 100%%, got %q", s)
	}
	return n, nil
}

// MinHealthyPercent is MinHealthy as a number (validated).
func (r Refresh) MinHealthyPercent() int {
	if r.MinHealthy == "" {
		return DefaultRefreshMinHealthy
	}
	n, _ := ParsePercent(r.MinHealthy)
	return n
}

func (v *validator) refresh(p string, r Refresh) {
	switch r.Mode {
	case "", RefreshManual, RefreshAuto:
	default:
		v.add(p+".mode", "must be %s or %s, got %q", RefreshManual, RefreshAuto, r.Mode)
	}
	if r.MinHealthy != "" {
		if _, err := ParsePercent(r.MinHealthy); err != nil {
			v.add(p+".minHealthy", "%s", err)
		}
	}
	if r.Batch < 0 || r.Batch > MaxGroupSize {
		v.add(p+".batch", "must be from 0 to %d, got %d", MaxGroupSize, r.Batch)
	}
	if err := CheckCheckpoints(r.Checkpoints); err != nil {
		v.add(p+".checkpoints", "%s", err)
	}
	if r.CheckpointDelay != nil {
		if err := CheckCheckpointDelay(*r.CheckpointDelay, r.Checkpoints); err != nil {
			v.add(p+".checkpointDelay", "%s", err)
		}
	}
}
