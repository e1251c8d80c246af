package activities

import (
	"context"
	"fmt"

	"go.temporal.io/sdk/client"
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
