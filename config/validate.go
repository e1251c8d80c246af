package config

import (
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"

	// Time zones for schedules[].timeZone, also where the system has none
	// (a distroless image).
	_ "time/tzdata"
)

// nameRE is what host and group names must look like: they become parts of
// domain names, volume names and workflow IDs.
var nameRE = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,38}[a-z0-9])?$`)

var (
	logLevels    = []string{"debug", "info", "warn", "error"}
	logFormats   = []string{"text", "json"}
	domainTypes  = []string{"kvm", "qemu"}
	networkTypes = []string{NetworkNone, NetworkUser, NetworkNetwork, NetworkBridge}
)

// MinEvaluationInterval is the shortest evaluation interval accepted.
const MinEvaluationInterval = time.Second

// Lower bounds of grace periods and timeouts: below them a blip (one slow
// listing, one reboot) would replace members or abandon cleanups.
const (
	MinHostFailureGracePeriod = 5 * time.Second
	MinUnhealthyGracePeriod   = 5 * time.Second
	MinCleanupTimeout         = 5 * time.Second
	MinOrphanGracePeriod      = time.Minute
)

// MinMemory is the smallest VM memory accepted.
const MinMemory = 32 << 20

// Validate checks a configuration after defaults and returns every problem,
// joined, each prefixed by its path.
func (c *Config) Validate() error {
	var v validator
	if c.Version != Version {
		v.add("version", "must be %q, got %q", Version, c.Version)
	}
	v.controller(c.Controller)
	v.temporal(c.Controller.Temporal)
	v.prometheus("controller.prometheus", c.Controller.Prometheus, c.needsPrometheus())
	hosts := v.hosts(c.Autoscale.Hosts, len(c.Autoscale.Groups) > 0)
	v.orphans(c.Autoscale.Orphans)
	groups := map[string]bool{}
	for i, g := range c.Autoscale.Groups {
		v.group(fmt.Sprintf("autoscale.groups[%d]", i), g, groups, hosts, c.Controller)
	}
	v.clusterAutoscaler(c.Controller.ClusterAutoscaler)
	v.metrics(c.Controller.Metrics)
	v.hostWatch(c.Controller.HostWatch)
	v.controllerKubernetes(c.Controller.Kubernetes)
	return v.err()
}

type validator struct{ errs []error }

func (v *validator) add(path, format string, args ...any) {
	v.errs = append(v.errs, fmt.Errorf("%s: %s", path, fmt.Sprintf(format, args...)))
}

func (v *validator) err() error { return errors.Join(v.errs...) }

func (v *validator) oneOf(path, got string, allowed []string) {
	for _, a := range allowed {
		if got == a {
			return
		}
	}
	v.add(path, "must be one of %s, got %q", strings.Join(allowed, ", "), got)
}

func (v *validator) atLeast(path string, got, least time.Duration) {
	if got < least {
		v.add(path, "must be >= %s, got %s", least, got)
	}
}

// dns1123RE is a DNS-1123 subdomain, what a Kubernetes node name must be.
var dns1123RE = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`)

func (v *validator) name(path, got string) {
	if !nameRE.MatchString(got) {
		v.add(path, "must be 1-40 lower-case letters, digits or '-', starting and ending with a letter or digit, got %q", got)
	}
}

// ParseSize parses a size such as "512MiB", "2GiB", "1G" or "4096KiB" into
// bytes. A unit is required: a bare number is ambiguous.
func ParseSize(s string) (uint64, error) {
	s = strings.TrimSpace(s)
	i := 0
	for i < len(s) && (s[i] >= '0' && s[i] <= '9') {
		i++
	}
	if i == 0 {
		return 0, fmt.Errorf("size %q must start with a number, e.g. 512MiB", s)
	}
	n, err := strconv.ParseUint(s[:i], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("size %q: %w", s, err)
	}
	units := map[string]uint64{
		"B": 1, "KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30, "TiB": 1 << 40,
		"K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40,
		"KB": 1e3, "MB": 1e6, "GB": 1e9, "TB": 1e12,
	}
	unit := strings.TrimSpace(s[i:])
	mult, ok := units[unit]
	if !ok {
		return 0, fmt.Errorf("size %q needs a unit (B, KiB, MiB, GiB, TiB, KB, MB, GB, TB)", s)
	}
	if n > (1<<64-1)/mult {
		return 0, fmt.Errorf("size %q is too large", s)
	}
	return n * mult, nil
}
