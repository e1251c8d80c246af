package config

import (
	"time"
)

// What the controller does with orphans: PremiScale-marked domains and
// volumes that belong to no member of any configured group.
const (
	// OrphansReport only lists them (premiscale status --orphans).
	OrphansReport = "report"
	// OrphansDelete also removes those that stayed orphans for the grace period.
	OrphansDelete = "delete"
)

// Orphans says what happens to PremiScale-marked domains and volumes that no
// member of any configured group owns.
type Orphans struct {
	// Action is OrphansReport (default) or OrphansDelete.
	Action string `koanf:"action" json:"action"`
	// GracePeriod is how long a resource must stay an orphan, seen by every
	// scan, before it is deleted.
	GracePeriod time.Duration `koanf:"gracePeriod" json:"gracePeriod"`
	// ScanInterval is how often the hosts are scanned when Action is delete.
	ScanInterval time.Duration `koanf:"scanInterval" json:"scanInterval"`
	// DeleteUnconfiguredGroups lets Action delete also remove the VMs of
	// groups that are no longer configured (by default they are reported
	// and kept: a group removed by mistake, or renamed, keeps its VMs).
	DeleteUnconfiguredGroups bool `koanf:"deleteUnconfiguredGroups" json:"deleteUnconfiguredGroups,omitempty"`
}

// orphans checks autoscale.orphans.
func (v *validator) orphans(o Orphans) {
	v.oneOf("autoscale.orphans.action", o.Action, []string{OrphansReport, OrphansDelete})
	v.atLeast("autoscale.orphans.gracePeriod", o.GracePeriod, MinOrphanGracePeriod)
	if o.ScanInterval < time.Second {
		v.add("autoscale.orphans.scanInterval", "must be >= 1s, got %s", o.ScanInterval)
	}

}
