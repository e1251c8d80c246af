package activities

import (
	"context"
	"time"

	"github.com/premiscale/premiscale/config"
)

// OrphanPolicy is what this worker's configuration lets the orphan
// collector do: which hosts it scans, which groups are configured, whether
// it deletes at all, and the least grace period and scan interval. The
// collector's input and signals only ask; it applies the stricter of the
// two (see workflows.ApplyOrphanPolicy).
type OrphanPolicy struct {
	// Delete is autoscale.orphans.action == delete.
	Delete bool `json:"delete"`
	// DeleteUnconfigured is autoscale.orphans.deleteUnconfiguredGroups.
	DeleteUnconfigured bool          `json:"deleteUnconfigured,omitempty"`
	GracePeriod        time.Duration `json:"gracePeriod"`
	ScanInterval       time.Duration `json:"scanInterval"`
	// Hosts are every configured host, by name, in config order.
	Hosts []HostRef `json:"hosts"`
	// Groups are the configured groups' names, in config order.
	Groups []string `json:"groups"`
}

// OrphanPolicy returns this worker's orphan settings. It reads the worker's
// own configuration only, so it is quick, has no side effect and is safe to
// run as a local activity and to retry. A worker without a configuration
// refuses, without retry.
func (l *Libvirt) OrphanPolicy(context.Context) (OrphanPolicy, error) {
	c := l.Catalog
	if c == nil {
		return OrphanPolicy{}, nonRetryable(ErrTypeUnknownGroup, "orphan policy: this worker has no configuration")
	}
	p := OrphanPolicy{
		Delete:             c.orphans.Action == config.OrphansDelete,
		DeleteUnconfigured: c.orphans.DeleteUnconfiguredGroups,
		GracePeriod:        c.orphans.GracePeriod,
		ScanInterval:       c.orphans.ScanInterval,
		Hosts:              make([]HostRef, 0, len(c.hostOrder)),
		Groups:             append([]string{}, c.groupOrder...),
	}
	for _, h := range c.hostOrder {
		p.Hosts = append(p.Hosts, HostRef{Name: h})
	}
	return p, nil
}
