package workflows

import (
	"fmt"
	"slices"
	"time"

	"github.com/premiscale/premiscale/activities"
)

// changeOrphansWorkerPolicy: the collector runs only under OrphanWorkflowID
// and takes its bounds from the worker's configuration (one OrphanPolicy
// local activity per round) instead of believing its input and signals.
const changeOrphansWorkerPolicy = "orphans-worker-policy"

// ErrTypeRefused is the error type of a workflow that refuses its input:
// a start that asks for more than the worker's configuration allows, or a
// workflow started under an ID PremiScale never gives it.
const ErrTypeRefused = "Refused"

// minOrphanScanInterval bounds how often a collector can loop when it
// cannot read the worker's policy.
const minOrphanScanInterval = time.Second

// ApplyOrphanPolicy combines what a collector was asked to do (req, from
// its input or a spec signal, which anyone who reaches the frontend can
// send) with what the worker's configuration allows (pol), keeping the
// stricter of each:
//
//   - hosts and configured groups are the worker's;
//   - groups the request names beyond the worker's are only protected
//     (their members are read, as for removed groups), never made deletable;
//   - it deletes, and deletes unconfigured groups' VMs, only if both say so;
//   - grace period and scan interval are the longer of the two.
//
// refused names every field where req asked for more than pol allows, with
// both values. Pure.
func ApplyOrphanPolicy(req OrphanSpec, pol activities.OrphanPolicy) (eff OrphanSpec, refused []string) {
	eff = OrphanSpec{
		Hosts:              append([]activities.HostRef{}, pol.Hosts...),
		Groups:             append([]string{}, pol.Groups...),
		Delete:             req.Delete && pol.Delete,
		DeleteUnconfigured: req.DeleteUnconfigured && pol.DeleteUnconfigured,
		GracePeriod:        max(req.GracePeriod, pol.GracePeriod),
		ScanInterval:       max(req.ScanInterval, pol.ScanInterval, minOrphanScanInterval),
	}
	for _, g := range append(append([]string{}, req.Groups...), req.Removed...) {
		if !slices.Contains(pol.Groups, g) && !slices.Contains(eff.Removed, g) {
			eff.Removed = append(eff.Removed, g)
		}
	}
	if req.Delete && !pol.Delete {
		refused = append(refused, "delete: true, but this worker's autoscale.orphans.action is not delete")
	}
	if req.DeleteUnconfigured && !pol.DeleteUnconfigured {
		refused = append(refused, "deleteUnconfigured: true, but this worker's autoscale.orphans.deleteUnconfiguredGroups is false")
	}
	if req.GracePeriod < pol.GracePeriod {
		refused = append(refused, fmt.Sprintf("gracePeriod: %s is below this worker's autoscale.orphans.gracePeriod %s", req.GracePeriod, pol.GracePeriod))
	}
	if req.ScanInterval < eff.ScanInterval {
		refused = append(refused, fmt.Sprintf("scanInterval: %s is below this worker's autoscale.orphans.scanInterval %s", req.ScanInterval, eff.ScanInterval))
	}
	for _, h := range req.Hosts {
		if !slices.ContainsFunc(pol.Hosts, func(p activities.HostRef) bool { return p.Name == h.Name }) {
			refused = append(refused, fmt.Sprintf("hosts: %q is not in this worker's autoscale.hosts", h.Name))
		}
	}
	return eff, refused
}
