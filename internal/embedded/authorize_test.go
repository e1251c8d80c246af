package embedded

import (
	"strings"
	"testing"

	commonpb "go.temporal.io/api/common/v1"
	"go.temporal.io/api/operatorservice/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/server/common/api"

	"github.com/premiscale/premiscale/internal/mtls"
)

func TestAccessGivesEachRoleItsCallsAndNoMore(t *testing.T) {
	a := Access{
		Namespace:        "default",
		OperableWorkflow: func(id string) bool { return strings.HasPrefix(id, "premiscale/group/") },
		OperableSchedule: func(id string) bool { return strings.HasPrefix(id, "premiscale/group/") },
	}
	wf := func(m string) string { return api.WorkflowServicePrefix + m }
	exec := func(id string) *commonpb.WorkflowExecution { return &commonpb.WorkflowExecution{WorkflowId: id} }
	group, orphans := exec("premiscale/group/demo"), exec("premiscale/orphans")
	const (
		worker   = mtls.RoleWorker
		operator = mtls.RoleOperator
		reader   = mtls.RoleReader
		none     = mtls.Role("")
	)
	for _, tc := range []struct {
		name  string
		role  mtls.Role
		api   string
		ns    string
		req   any
		allow bool
	}{
		{"worker polls", worker, wf("PollActivityTaskQueue"), "default", nil, true},
		{"worker starts", worker, wf("StartWorkflowExecution"), "default", nil, true},
		{"worker uses the admin service", worker, api.AdminServicePrefix + "DescribeCluster", "", nil, true},
		{"worker in another namespace", worker, wf("StartWorkflowExecution"), "temporal-system", nil, true},

		{"operator lists", operator, wf("ListWorkflowExecutions"), "default", nil, true},
		{"operator queries", operator, wf("QueryWorkflow"), "default", nil, true},
		{"operator reads history", operator, wf("GetWorkflowExecutionHistory"), "default", nil, true},
		{"operator describes the cluster", operator, wf("GetClusterInfo"), "", nil, true},
		{"operator lists search attributes", operator, api.OperatorServicePrefix + "ListSearchAttributes", "default", &operatorservice.ListSearchAttributesRequest{}, true},
		{"operator signals a group", operator, wf("SignalWorkflowExecution"), "default", &workflowservice.SignalWorkflowExecutionRequest{Namespace: "default", WorkflowExecution: group}, true},
		{"operator updates a group", operator, wf("UpdateWorkflowExecution"), "default", &workflowservice.UpdateWorkflowExecutionRequest{Namespace: "default", WorkflowExecution: group}, true},
		{"operator waits for an Update", operator, wf("PollWorkflowExecutionUpdate"), "default", nil, true},
		{"operator pauses a group's schedule", operator, wf("PatchSchedule"), "default", &workflowservice.PatchScheduleRequest{ScheduleId: "premiscale/group/demo/schedule/x"}, true},
		{"operator signals the orphan collector", operator, wf("SignalWorkflowExecution"), "default", &workflowservice.SignalWorkflowExecutionRequest{WorkflowExecution: orphans}, false},
		{"operator updates another workflow", operator, wf("UpdateWorkflowExecution"), "default", &workflowservice.UpdateWorkflowExecutionRequest{WorkflowExecution: orphans}, false},
		{"operator patches the installation schedule", operator, wf("PatchSchedule"), "default", &workflowservice.PatchScheduleRequest{ScheduleId: "premiscale/installation/premiscale"}, false},
		{"operator starts", operator, wf("StartWorkflowExecution"), "default", &workflowservice.StartWorkflowExecutionRequest{WorkflowId: "premiscale/group/demo"}, false},
		{"operator signals with start", operator, wf("SignalWithStartWorkflowExecution"), "default", &workflowservice.SignalWithStartWorkflowExecutionRequest{WorkflowId: "premiscale/group/demo"}, false},
		{"operator terminates a group", operator, wf("TerminateWorkflowExecution"), "default", &workflowservice.TerminateWorkflowExecutionRequest{WorkflowExecution: group}, false},
		{"operator resets a group", operator, wf("ResetWorkflowExecution"), "default", &workflowservice.ResetWorkflowExecutionRequest{WorkflowExecution: group}, false},
		{"operator cancels a group", operator, wf("RequestCancelWorkflowExecution"), "default", &workflowservice.RequestCancelWorkflowExecutionRequest{WorkflowExecution: group}, false},
		{"operator polls activities", operator, wf("PollActivityTaskQueue"), "default", nil, false},
		{"operator completes an activity", operator, wf("RespondActivityTaskCompleted"), "default", nil, false},
		{"operator starts a batch", operator, wf("StartBatchOperation"), "default", nil, false},
		{"operator creates a schedule", operator, wf("CreateSchedule"), "default", nil, false},
		{"operator uses the admin service", operator, api.AdminServicePrefix + "DescribeMutableState", "", nil, false},
		{"operator signals a group in another namespace", operator, wf("SignalWorkflowExecution"), "other", &workflowservice.SignalWorkflowExecutionRequest{Namespace: "other", WorkflowExecution: group}, false},
		{"operator lists another namespace", operator, wf("ListWorkflowExecutions"), "temporal-system", nil, false},
		{"operator calls a streaming API", operator, api.AdminServicePrefix + "StreamWorkflowReplicationMessages", "", nil, false},
		{"operator calls an unknown API", operator, "/some.Service/Method", "", nil, false},

		{"reader lists", reader, wf("ListWorkflowExecutions"), "default", nil, true},
		{"reader counts", reader, wf("CountWorkflowExecutions"), "default", nil, true},
		{"reader describes", reader, wf("DescribeWorkflowExecution"), "default", nil, true},
		{"reader lists schedules", reader, wf("ListSchedules"), "default", nil, true},
		{"reader queries", reader, wf("QueryWorkflow"), "default", nil, true},
		{"reader signals a group", reader, wf("SignalWorkflowExecution"), "default", &workflowservice.SignalWorkflowExecutionRequest{WorkflowExecution: group}, false},
		{"reader updates a group", reader, wf("UpdateWorkflowExecution"), "default", &workflowservice.UpdateWorkflowExecutionRequest{WorkflowExecution: group}, false},
		{"reader terminates", reader, wf("TerminateWorkflowExecution"), "default", &workflowservice.TerminateWorkflowExecutionRequest{WorkflowExecution: group}, false},
		{"reader triggers a schedule", reader, wf("PatchSchedule"), "default", &workflowservice.PatchScheduleRequest{ScheduleId: "premiscale/group/demo/schedule/x"}, false},
		{"reader deletes a workflow", reader, wf("DeleteWorkflowExecution"), "default", nil, false},

		{"no role lists", none, wf("ListWorkflowExecutions"), "default", nil, false},
		{"no role describes the namespace", none, wf("DescribeNamespace"), "default", nil, false},
		{"unknown role", mtls.Role("admin"), wf("ListWorkflowExecutions"), "default", nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			reason := a.decide("alice", tc.role, tc.api, tc.ns, tc.req)
			if tc.allow && reason != "" {
				t.Errorf("refused: %s", reason)
			}
			if !tc.allow && reason == "" {
				t.Error("allowed")
			}
			if !tc.allow && !strings.Contains(reason, "alice") {
				t.Errorf("the reason does not name the caller: %s", reason)
			}
		})
	}
}
