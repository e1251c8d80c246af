package config

import (
	"strings"
	"time"
)

// Warm pool states: how a warm VM waits.
const (
	// WarmHibernated: managed save (memory written to disk, domain shut
	// off); back, already booted, in about two seconds. Holds disk.
	WarmHibernated = "hibernated"
	// WarmPaused: suspended in memory; back in well under a second. Holds
	// the VM's memory on its host.
	WarmPaused = "paused"
	// WarmStopped: shut down; entering the group is a boot (without the
	// clone, define and first-boot work). Holds only its disk.
	WarmStopped = "stopped"
)

// WarmPool is a group's pool of prepared VMs, as AWS warm pools: each is
// created, booted until its guest is up (Ready), then parked in State and
// kept outside the group's count. A scale-out takes warm VMs first, which
// is a restore or resume instead of a clone and boot, and the pool is
// refilled afterwards. Its size is Size, or with MinSize/MaxPreparedSize
// max(MinSize, MaxPreparedSize - desired): the VMs in the group and in
// the pool together stay at MaxPreparedSize (default: the group's max)
// while at least MinSize stay warm.
type WarmPool struct {
	Size            *int `koanf:"size" json:"size,omitempty"`
	MinSize         *int `koanf:"minSize" json:"minSize,omitempty"`
	MaxPreparedSize *int `koanf:"maxPreparedSize" json:"maxPreparedSize,omitempty"`
	// State is WarmHibernated (default), WarmPaused or WarmStopped.
	State string `koanf:"state" json:"state"`
	// ReuseOnScaleIn returns scaled-in VMs to the pool (while it has room)
	// instead of deleting them.
	ReuseOnScaleIn bool `koanf:"reuseOnScaleIn" json:"reuseOnScaleIn,omitempty"`
	// Ready says when a new warm VM's guest is up and may be parked.
	Ready WarmReady `koanf:"ready" json:"ready"`
}

// WarmReady is the readiness signal of a warm VM's guest. A VM that joins
// Kubernetes is ready once its node is Ready (it is cordoned while warm);
// any VM with ConsoleLine set, once a line of its serial console contains
// it; otherwise, once its domain runs.
type WarmReady struct {
	ConsoleLine string        `koanf:"consoleLine" json:"consoleLine,omitempty"`
	Timeout     time.Duration `koanf:"timeout" json:"timeout"`
}

// Target is how many VMs the pool holds when the group's desired size is
// desired and its max is max.
func (w *WarmPool) Target(desired, max int) int {
	if w == nil {
		return 0
	}
	if w.Size != nil {
		return *w.Size
	}
	lo, prepared := 0, max
	if w.MinSize != nil {
		lo = *w.MinSize
	}
	if w.MaxPreparedSize != nil {
		prepared = *w.MaxPreparedSize
	}
	return maxInt(lo, prepared-desired)
}

func maxInt(a, b int) int {
	if a > b {
		return a
	}
	return b
}

func (v *validator) warmPool(p string, g Group) {
	w := g.WarmPool
	if w == nil {
		return
	}
	nonNegative := func(path string, n *int) {
		switch {
		case n == nil:
		case *n < 0:
			v.add(path, "must be >= 0, got %d", *n)
		case *n > MaxGroupSize:
			v.add(path, "must be <= %d, got %d", MaxGroupSize, *n)
		}
	}
	nonNegative(p+".size", w.Size)
	nonNegative(p+".minSize", w.MinSize)
	nonNegative(p+".maxPreparedSize", w.MaxPreparedSize)
	switch {
	case w.Size != nil && (w.MinSize != nil || w.MaxPreparedSize != nil):
		v.add(p+".size", "set either size or minSize/maxPreparedSize, not both")
	case w.Size == nil && w.MinSize == nil && w.MaxPreparedSize == nil:
		v.add(p, "must set size, or minSize and/or maxPreparedSize")
	case w.MinSize != nil && w.MaxPreparedSize != nil && *w.MaxPreparedSize < *w.MinSize:
		v.add(p+".maxPreparedSize", "must be >= minSize (%d), got %d", *w.MinSize, *w.MaxPreparedSize)
	}
	v.oneOf(p+".state", w.State, []string{WarmHibernated, WarmPaused, WarmStopped})
	v.atLeast(p+".ready.timeout", w.Ready.Timeout, 10*time.Second)
	if len(w.Ready.ConsoleLine) > MaxConsoleLine {
		v.add(p+".ready.consoleLine", "must be at most %d bytes, got %d", MaxConsoleLine, len(w.Ready.ConsoleLine))
	}
	if strings.ContainsAny(w.Ready.ConsoleLine, "\r\n") {
		v.add(p+".ready.consoleLine", "must be text within one line")
	}
}

// MaxConsoleLine bounds warmPool.ready.consoleLine.
const MaxConsoleLine = 256
