// Change IDs of the group workflow's workflow.GetVersion calls. Each names
// a change of decisions that histories recorded under the old code must
// keep replaying; see workflows/testdata and replay_test.go.
//
// Adding one. A change of the commands a workflow task makes (which
// activity, timer or child, in which order, with which IDs) goes behind
// workflow.GetVersion(ctx, id, workflow.DefaultVersion, 1), called only
// where the decision is taken, with the ID declared here and what "before"
// did. Record a history that goes through the new side (test/, with
// RECORD_HISTORIES=1) and keep every older file: they take the old side.
// TestEveryVersionBranchIsReplayedFromBothSides fails until both sides
// are replayed.
//
// Retiring one. A change ID, its GetVersion call and its old branch may go
// only when no workflow that could take the old side can still run:
//  1. the release that introduced it has been out for two releases, so
//     every supported upgrade path ran it; and
//  2. every group workflow has continued as new since (a new run records
//     every change at its latest version and never asks for an old side;
//     groups continue as new within HistoryLimit events, hours to days),
//     and no child workflow of the old code is open; and
//  3. the histories of the old side are deleted from testdata in the same
//     commit, with the reason in its message.
//
// `temporal workflow list --query 'ExecutionStatus="Running" AND
// StartTime < "<release date>"'` finds what still runs from before.
// Keep the ID's string out of use for ever: reusing it would make old
// histories take a side they never took.

package workflows

// Change IDs for workflow.GetVersion: each names a change of decisions that
// running workflows recorded under the old code must keep replaying.
const (
	// changeScaleInCountsProvisioning: scale-in ranks VMs still being
	// provisioned as the newest (before: running members only).
	changeScaleInCountsProvisioning = "scale-in-counts-provisioning"
	// changePlacementByInventory: scale-out takes each host's inventory and
	// places by capacity (before: fewest members, no inventory).
	changePlacementByInventory = "placement-by-inventory"
	// changeObserveSnapshot: an observation no longer judges members that
	// changed state after its listings were requested (before: a member
	// that became running meanwhile could be taken for vanished).
	changeObserveSnapshot = "observe-snapshot"
	// changeScaleInCancelsProvisioning: a scale-in victim still being
	// provisioned has its provisioning cancelled (before: the group waited
	// for it to come up, then decommissioned it).
	changeScaleInCancelsProvisioning = "scale-in-cancels-provisioning"
	// changeScaleInRechecksAfterPodCount: leastPods scale-in chooses its
	// victims from the members as they are once the pods are counted
	// (before: as they were before, and a member removed meanwhile made
	// the workflow panic on every replay).
	changeScaleInRechecksAfterPodCount = "scale-in-rechecks-after-pod-count"
	// changeUnhealthyGrace: a member whose domain is defined but not running
	// is recovered (resumed, woken, started) and replaced only if it stays
	// so for the unhealthy grace period (before: replaced at first sight).
	changeUnhealthyGrace = "unhealthy-grace"
	// changeMembersOffConfig: a member on a host removed from the group's
	// hosts is decommissioned (still configured) or marked lost (no longer
	// configured) and replaced (before: counted as running forever, and
	// forgotten if it had to be decommissioned).
	changeMembersOffConfig = "members-off-config"
	// changeDrainAbortPerNode: a scale-in whose drain aborted keeps that
	// member out of scale-in for a backoff that grows with each abort, so
	// the next scale-in chooses another (before: a group-wide backoff that
	// held only scale-out, and the same node was chosen again at once).
	changeDrainAbortPerNode = "drain-abort-per-node"
	// changePlacementSkipsDownHosts: scale-out does not ask hosts the last
	// observation found unreachable for their inventory (before: it did,
	// and waited for each to time out).
	changePlacementSkipsDownHosts = "placement-skips-down-hosts"
	// changeHoldChildrenBeforeContinueAsNew: once the history is long, no
	// new child is started (no observation, evaluation or reconciliation)
	// until the ones in flight are done and the group continues as new
	// (before: it went on starting children, so a group with constant
	// churn never got to continue as new and grew toward the hard limit).
	changeHoldChildrenBeforeContinueAsNew = "hold-children-before-continue-as-new"
	// changeSignalsInArrivalOrder: signals that arrive together are applied
	// in the order they arrived, as SignalOrder reports it (before: all
	// specs, then scales, then pauses, then resumes).
	changeSignalsInArrivalOrder = "signals-in-arrival-order"
	// changeStableDomainUUID: a new VM's domain UUID (and provider ID)
	// derives from the workflow's first run ID (before: from the current
	// run's, which a reset changes, so members replayed after a reset got
	// provider IDs their nodes do not have, and their drains were skipped).
	changeStableDomainUUID = "stable-domain-uuid"
	// changeCapStartsPerReconcile: a group has at most MaxProvisioning VMs
	// being provisioned at once, so one reconciliation starts no more
	// (before: every missing one at once).
	changeCapStartsPerReconcile = "cap-starts-per-reconcile"
)

// changeGroupChecksItsID: a group workflow refuses to run under an ID
// other than its group's GroupWorkflowID.
const changeGroupChecksItsID = "group-checks-its-id"
