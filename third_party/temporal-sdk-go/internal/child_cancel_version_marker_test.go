package internal

import (
	"testing"

	"github.com/stretchr/testify/require"
	commandpb "go.temporal.io/api/command/v1"
)

// Replaying a workflow task that recorded a GetVersion marker and then
// cancelled a started child: the marker's event comes first in the task
// (markers are processed before the task's other events), then the
// request to cancel the child. The next command's event ID must follow
// both. Cancelling the child bumped the counter without skipping the
// marker's ID, so every later command of the task was predicted one too
// low and the replay failed with TMPRL1100.
func Test_ChildWorkflowStateMachine_CancelAfterVersionMarkerSkipsItsEventID(t *testing.T) {
	t.Parallel()
	workflowID := "test-child-workflow"
	h := newCommandsHelper()

	// An earlier task started the child.
	h.setCurrentWorkflowTaskStartedEventID(3)
	d, err := h.startChildWorkflowExecution(&commandpb.StartChildWorkflowExecutionCommandAttributes{WorkflowId: workflowID}, nil)
	require.NoError(t, err)
	_ = h.getCommands(true)
	h.handleStartChildWorkflowExecutionInitiated(workflowID)
	h.handleChildWorkflowExecutionStarted(workflowID)

	// The task being replayed: started at event 10, so its first command's
	// event is 12; history has the version marker there.
	h.setCurrentWorkflowTaskStartedEventID(10)
	h.handleVersionMarker(12, "some-change", false)

	h.requestCancelExternalWorkflowExecution("test-namespace", workflowID, "", "", true)
	require.Equal(t, commandStateCanceledAfterStarted, d.getState())

	// Marker at 12, cancel request at 13: the next command is event 14.
	require.Equal(t, int64(14), h.getNextID())
}
