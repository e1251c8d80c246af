// The group workflow's interface as callers see it: its type's name, its
// workflow IDs, its own signal, Update and Query names and their payloads.
// The cluster-autoscaler's Updates (autoscaler.go), the refresh's
// (refresh.go), the schedule's (schedule.go) and the remove signal
// (removal.go) are beside their handlers.

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
