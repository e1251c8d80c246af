package activities

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"
)

// Groups reads the group workflows' state through a Temporal client, for
// workflows that must know every group's members (the orphan collector).
type Groups struct {
	Client client.Client
}

// GroupQuery names one group and its workflow.
type GroupQuery struct {
	Name       string `json:"name"`
	WorkflowID string `json:"workflowId"`
	// QueryType is the workflow's status query.
	QueryType string `json:"queryType"`
}

// GroupMembersInput lists the groups to read.
type GroupMembersInput struct {
	Groups []GroupQuery `json:"groups"`
}

// GroupMembersOutput maps each group to its members' names and volumes, in
// every state (provisioning, running, lost, decommissioning, ...).
type GroupMembersOutput struct {
	Members map[string][]MemberRef `json:"members"`
	// Epochs maps each group to its history's epoch (see Owner.Epoch).
	Epochs map[string]string `json:"epochs,omitempty"`
}

// MemberRef is one member as the orphan collector needs it.
type MemberRef struct {
	Name   string `json:"name"`
	Volume string `json:"volume"`
}

// GroupMembers queries every group workflow for its members. It fails if any
// group cannot be read, so that a caller never mistakes an unread group for
// an empty one. Read-only, so always safe to retry.
func (g *Groups) GroupMembers(ctx context.Context, in GroupMembersInput) (GroupMembersOutput, error) {
	out := GroupMembersOutput{Members: make(map[string][]MemberRef, len(in.Groups)), Epochs: make(map[string]string, len(in.Groups))}
	for _, q := range in.Groups {
		v, err := g.Client.QueryWorkflow(ctx, q.WorkflowID, "", q.QueryType)
		if err != nil {
			return GroupMembersOutput{}, fmt.Errorf("query group %s: %w", q.Name, err)
		}
		var st struct {
			Members []MemberRef `json:"members"`
			Epoch   string      `json:"epoch"`
		}
		if err := v.Get(&st); err != nil {
			return GroupMembersOutput{}, fmt.Errorf("decode status of group %s: %w", q.Name, err)
		}
		out.Members[q.Name] = append([]MemberRef{}, st.Members...)
		out.Epochs[q.Name] = st.Epoch
	}
	return out, nil
}

// UpdateGroupInput is one Update to send a group's workflow. Only group
// workflows (WorkflowID under premiscale/group/) are sent Updates.
type UpdateGroupInput struct {
	Group      string          `json:"group"`
	WorkflowID string          `json:"workflowId"`
	UpdateName string          `json:"updateName"`
	Arg        json.RawMessage `json:"arg"`
}

// UpdateGroupOutput is the Update's result, as JSON.
type UpdateGroupOutput struct {
	Result json.RawMessage `json:"result"`
}

// groupWorkflowPrefix is what every group workflow's ID starts with.
const groupWorkflowPrefix = "premiscale/group/"

// UpdateGroup sends a group's workflow an Update and waits for its result,
// for workflows that change a group through its own validation (a
// schedule's window). The group's refusal (its validator or handler
// failing) fails the activity for good; an unreachable frontend or group
// is retried. Safe to retry when the Update is idempotent, as the ones
// sent this way are.
func (g *Groups) UpdateGroup(ctx context.Context, in UpdateGroupInput) (UpdateGroupOutput, error) {
	if !strings.HasPrefix(in.WorkflowID, groupWorkflowPrefix) {
		return UpdateGroupOutput{}, temporal.NewNonRetryableApplicationError(
			fmt.Sprintf("workflow %q is not a group's", in.WorkflowID), "InvalidInput", nil)
	}
	h, err := g.Client.UpdateWorkflow(ctx, client.UpdateWorkflowOptions{
		WorkflowID: in.WorkflowID, UpdateName: in.UpdateName, Args: []any{in.Arg},
		WaitForStage: client.WorkflowUpdateStageCompleted,
	})
	if err != nil {
		return UpdateGroupOutput{}, fmt.Errorf("update %s of group %s: %w", in.UpdateName, in.Group, err)
	}
	var out json.RawMessage
	if err := h.Get(ctx, &out); err != nil {
		var ae *temporal.ApplicationError
		if errors.As(err, &ae) {
			return UpdateGroupOutput{}, temporal.NewNonRetryableApplicationError(
				fmt.Sprintf("group %s refused %s: %s", in.Group, in.UpdateName, ae.Message()), ae.Type(), nil)
		}
		return UpdateGroupOutput{}, fmt.Errorf("update %s of group %s: %w", in.UpdateName, in.Group, err)
	}
	return UpdateGroupOutput{Result: out}, nil
}
