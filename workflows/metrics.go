package workflows

import (
	"time"

	"go.temporal.io/sdk/workflow"
)

// Metrics the workflows emit through the SDK's metrics handler, which
// records nothing while a workflow replays. The Prometheus names add
// _total to counters and _seconds to durations.
const (
	// MetricDecisions counts metric evaluations by group, action,
	// direction (out, in, none) and cause (policy.Cause*).
	MetricDecisions = "premiscale_decisions"
	// MetricProvisionDuration is how long successful provisionings took,
	// by group.
	MetricProvisionDuration = "premiscale_provision_duration"
	// MetricProvisionFailures counts failed provisionings by group and the
	// step that failed (clone, join, define, start, boot, node-ready).
	MetricProvisionFailures = "premiscale_provision_failures"
	// MetricActivateDuration is how long successful activations of warm
	// VMs took (decision to running, or to Ready for a node), by group.
	MetricActivateDuration = "premiscale_activate_duration"
	// MetricActivateFailures counts failed activations by group and step
	// (wake, boot, node-ready, uncordon).
	MetricActivateFailures = "premiscale_activate_failures"
	// MetricDecommissionDuration is how long successful decommissionings
	// took, by group.
	MetricDecommissionDuration = "premiscale_decommission_duration"
	// MetricDecommissionFailures counts failed decommissionings by group
	// and step (drain, cleanup).
	MetricDecommissionFailures = "premiscale_decommission_failures"
	// MetricOrphans is how many orphans (by kind) the collector's last
	// scan found (orphans.action delete only: the collector runs then).
	MetricOrphans = "premiscale_orphans"
	// MetricOrphansDeleted counts the orphans the collector deleted, by
	// kind and host.
	MetricOrphansDeleted = "premiscale_orphans_deleted"
)

// QueryStep answers, on a ProvisionVM or DecommissionVM workflow, the step
// it is at (clone, join, define, start, boot, node-ready; drain, cleanup).
const QueryStep = "step"

// ProvisionWorkflowID and DecommissionWorkflowID are the IDs of a member's
// VM workflows.
func ProvisionWorkflowID(group, vm string) string {
	return GroupWorkflowID(group) + "/vm/" + vm + "/provision"
}

// DecommissionWorkflowID is the ID of a member's decommissioning.
func DecommissionWorkflowID(group, vm string) string {
	return GroupWorkflowID(group) + "/vm/" + vm + "/decommission"
}

// finished records a VM workflow's outcome: its duration since start, or
// a failure at step.
func finished(ctx workflow.Context, duration, failures, group, step string, start time.Time, err error) {
	m := workflow.GetMetricsHandler(ctx).WithTags(map[string]string{"group": group})
	if err != nil {
		m.WithTags(map[string]string{"step": step}).Counter(failures).Inc(1)
		return
	}
	m.Timer(duration).Record(workflow.Now(ctx).Sub(start))
}
