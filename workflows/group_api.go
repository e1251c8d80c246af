// The group workflow's interface as callers see it: its type's name, its
// workflow IDs, every signal, Update and Query name and their payloads.
// The handlers are beside the behaviour they drive (group_handlers.go,
// autoscaler.go, refresh.go, schedule.go, removal.go). The payloads are
// part of the history format: historyformat_test.go decodes every
// recorded one.

package workflows

import "strings"

// Names of the group workflow's interface, for the SDK and the temporal CLI.
const (
	GroupWorkflowName = "GroupWorkflow"
	// UpdateSetDesired sets the desired size: {"desired": N}. Its validator
	// rejects N outside [min, max].
	UpdateSetDesired = "set-desired"
	// SignalScale asks for a desired size: {"desired": N}, clamped to [min, max].
	SignalScale = "scale"
	// SignalPause stops scaling and reconciliation until SignalResume.
	SignalPause = "pause"
	// SignalResume undoes SignalPause.
	SignalResume = "resume"
	// UpdatePause and UpdateResume are SignalPause and SignalResume as
	// Updates, confirmed to the caller (PauseResult); the CLI uses these.
	// Signals too are applied in arrival order (see SignalOrder).
	UpdatePause  = "pause"
	UpdateResume = "resume"
	// SignalSpec delivers the group's configuration (GroupSpec) on controller start.
	SignalSpec = "spec"
	// SignalHostChange (activities.HostChange) tells the group that one of
	// its domains changed on a host: the workers' host watchers send it.
	// For a running member, or after a reconnection, the group observes
	// its hosts at once instead of at its next evaluation; a change of a
	// member it is provisioning or removing is its own doing and ignored.
	// Any number of them coalesce into one observation.
	SignalHostChange = "host-change"
	// QueryStatus returns GroupStatus.
	QueryStatus = "status"
)

// ErrTypeInvalidSpec fails a group workflow started with a spec that does
// not pass GroupSpec.Validate.
const ErrTypeInvalidSpec = "InvalidSpec"

// GroupWorkflowID is the workflow ID of a group's workflow.
func GroupWorkflowID(group string) string { return "premiscale/group/" + group }

// IsGroupWorkflowID reports whether id is GroupWorkflowID of some group
// name (one path segment): the workflows operators may signal and Update.
func IsGroupWorkflowID(id string) bool {
	name, ok := strings.CutPrefix(id, GroupWorkflowID(""))
	return ok && name != "" && !strings.Contains(name, "/")
}

// PauseResult is what UpdatePause and UpdateResume return.
type PauseResult struct {
	Paused bool `json:"paused"`
	// Changed is false when the group already was so.
	Changed bool `json:"changed"`
}

// DesiredRequest is the payload of UpdateSetDesired and SignalScale.
type DesiredRequest struct {
	Desired int `json:"desired"`
}

// DesiredResult is what UpdateSetDesired returns.
type DesiredResult struct {
	Previous int `json:"previous"`
	Desired  int `json:"desired"`
}

// Updates the cluster-autoscaler's externalgrpc provider sends. Each
// validator enforces min, max and membership, so a refused call leaves no
// trace in history; each handler records intent and returns at once (the
// provider must answer within the autoscaler's 5 s deadline).
const (
	// UpdateIncreaseSize adds Delta (> 0) to desired.
	UpdateIncreaseSize = "increase-size"
	// UpdateDeleteNodes removes the named members and lowers desired by as
	// many.
	UpdateDeleteNodes = "delete-nodes"
	// UpdateDecreaseTargetSize lowers desired by -Delta (Delta < 0), only
	// by requests not yet fulfilled.
	UpdateDecreaseTargetSize = "decrease-target-size"
	// UpdateProtect sets or clears a member's scale-in protection.
	UpdateProtect = "protect"
)

// ProtectRequest names a member and whether it is protected from scale-in.
type ProtectRequest struct {
	VM        string `json:"vm"`
	Protected bool   `json:"protected"`
}

// DeltaRequest is the payload of UpdateIncreaseSize and
// UpdateDecreaseTargetSize.
type DeltaRequest struct {
	Delta int `json:"delta"`
}

// DeleteNodesRequest names members by their nodes' provider IDs.
type DeleteNodesRequest struct {
	ProviderIDs []string `json:"providerIds"`
}

// The refresh's Updates (refresh.go).
const (
	// UpdateRefresh starts a refresh (RefreshRequest); it is refused while
	// one runs.
	UpdateRefresh = "refresh"
	// UpdateRefreshCancel stops the running refresh: no further batch
	// starts; replacements already started finish.
	UpdateRefreshCancel = "refresh-cancel"
	// UpdateRefreshRollback returns the group to the template revision it
	// had before the last change and refreshes the members made since.
	UpdateRefreshRollback = "refresh-rollback"
	// UpdateRefreshContinue ends the running refresh's wait at a
	// checkpoint now.
	UpdateRefreshContinue = "refresh-continue"
)

// RefreshRequest is the payload of UpdateRefresh and UpdateRefreshRollback.
type RefreshRequest struct {
	// MinHealthy is a percentage ("90%"); empty: the group's setting.
	MinHealthy string `json:"minHealthy,omitempty"`
	// Batch caps the VMs replaced at once; nil: the group's setting, 0: as
	// many as the floor allows.
	Batch *int `json:"batch,omitempty"`
	// All replaces every member present when the refresh starts, also
	// those of the current revision (a base image rebuilt under its old
	// name).
	All bool `json:"all,omitempty"`
	// Checkpoints are percentages of the members to replace, ascending,
	// at which the refresh waits (config.Refresh.Checkpoints); empty: the
	// group's setting. NoCheckpoints: none, whatever the group's setting.
	Checkpoints   []int `json:"checkpoints,omitempty"`
	NoCheckpoints bool  `json:"noCheckpoints,omitempty"`
	// CheckpointDelay is the wait at each checkpoint, a duration ("30m");
	// empty: the group's setting, or one hour.
	CheckpointDelay string `json:"checkpointDelay,omitempty"`
}

// UpdateScheduleWindow opens a schedule's window in a group: payload
// policy.Window, result ScheduleWindowResult. Refused (validator) for a
// schedule the group's configuration does not have, a window that ends
// before it starts, or bounds that do not hold (min > max, desired
// outside them, past config.MaxGroupSize). A window already known (same
// schedule and start) or already over is accepted and changes nothing, so
// a retried or late action is harmless.
const UpdateScheduleWindow = "schedule-window"

// SignalRemove tells a group's workflow that its group is no longer in the
// configuration (RemoveRequest). The controller sends it at start to every
// running group workflow whose group the file no longer has. A spec signal
// (the group is configured again) undoes it.
const SignalRemove = "remove"

// RemoveRequest is the payload of SignalRemove.
type RemoveRequest struct {
	// DeleteVMs decommissions every member (drained, shut down, deleted)
	// and then ends the workflow (autoscale.orphans.deleteUnconfiguredGroups).
	// Without it the group stops managing its VMs and keeps them: no
	// scaling, no replacement, no recovery; it goes on watching them, shows
	// them in status, and ends once all of them are gone.
	DeleteVMs bool `json:"deleteVMs"`
}
