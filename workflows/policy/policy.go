// Package policy is PremiScale's decision math: pure, deterministic functions
// that the group workflow calls. Nothing here does I/O, reads the clock or
// draws random numbers, so every rule is a table test away from proof.
package policy

import (
	"sort"
	"time"
)

// Clamp returns n limited to [min, max].
func Clamp(n, lo, hi int) int {
	if n < lo {
		return lo
	}
	if n > hi {
		return hi
	}
	return n
}

// HostLoad is what spread placement knows about one host.
type HostLoad struct {
	Name string
	// Members is how many of the group's VMs (running or being provisioned)
	// the host holds.
	Members int
	// Reachable is false when the last observation could not reach the host.
	Reachable bool
}

// PickHost chooses the host for the group's next VM: among reachable hosts
// the one with the fewest members of the group, ties going to the earlier
// host in configuration order. If no host is reachable it picks among all
// (the provisioning will fail and back off, rather than stall silently).
// ok is false only when hosts is empty.
func PickHost(hosts []HostLoad) (string, bool) {
	best := -1
	anyReachable := false
	for _, h := range hosts {
		anyReachable = anyReachable || h.Reachable
	}
	for i, h := range hosts {
		if anyReachable && !h.Reachable {
			continue
		}
		if best < 0 || h.Members < hosts[best].Members {
			best = i
		}
	}
	if best < 0 {
		return "", false
	}
	return hosts[best].Name, true
}

// Candidate is a VM that may be chosen for scale-in.
type Candidate struct {
	Name      string
	Seq       int
	CreatedAt time.Time
	// Pods is how many pods a drain would evict from the VM's node
	// (SelectLeastPods only).
	Pods int
	// Condemned VMs (named for deletion by the cluster-autoscaler) go
	// first, whatever the selection.
	Condemned bool
	// Outdated VMs (made from an older template while a rolling refresh
	// runs) go next, before any of the current template, as AWS's default
	// termination policy takes instances of the oldest launch template
	// first: a refresh would replace them anyway.
	Outdated bool
}

// Scale-in selections (as config.Select*).
const (
	SelectNewest    = "newest"
	SelectOldest    = "oldest"
	SelectLeastPods = "leastPods"
)

// ScaleInVictims picks n VMs to remove, newest first: latest CreatedAt, then
// highest Seq (creation order within the same instant), then name.
func ScaleInVictims(cands []Candidate, n int) []string {
	return ScaleInVictimsBy(cands, n, SelectNewest)
}

// ScaleInVictimsBy picks n VMs to remove: the Condemned first, then by
// selection: SelectNewest (as ScaleInVictims), SelectOldest (earliest
// first), or SelectLeastPods (fewest Pods first, newest among equals).
// Anything else means newest.
func ScaleInVictimsBy(cands []Candidate, n int, selection string) []string {
	if n <= 0 {
		return nil
	}
	newer := func(a, b Candidate) bool {
		if !a.CreatedAt.Equal(b.CreatedAt) {
			return a.CreatedAt.After(b.CreatedAt)
		}
		if a.Seq != b.Seq {
			return a.Seq > b.Seq
		}
		return a.Name > b.Name
	}
	sorted := append([]Candidate(nil), cands...)
	sort.SliceStable(sorted, func(i, j int) bool {
		a, b := sorted[i], sorted[j]
		if a.Condemned != b.Condemned {
			return a.Condemned
		}
		if a.Outdated != b.Outdated {
			return a.Outdated
		}
		switch selection {
		case SelectOldest:
			return newer(b, a)
		case SelectLeastPods:
			if a.Pods != b.Pods {
				return a.Pods < b.Pods
			}
		}
		return newer(a, b)
	})
	if n > len(sorted) {
		n = len(sorted)
	}
	out := make([]string, 0, n)
	for _, c := range sorted[:n] {
		out = append(out, c.Name)
	}
	return out
}

// Backoff is the wait after the failures-th consecutive failure: base
// doubled per failure, capped at limit. Zero failures means no wait.
func Backoff(failures int, base, limit time.Duration) time.Duration {
	if failures <= 0 {
		return 0
	}
	d := base
	for i := 1; i < failures; i++ {
		d *= 2
		if d >= limit {
			return limit
		}
	}
	return min(d, limit)
}
