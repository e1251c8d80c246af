package worker

import (
	"context"
	"errors"
	"fmt"

	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"

	"github.com/premiscale/premiscale/activities"
	"github.com/premiscale/premiscale/workflows"
)

// Membership reads a group's members by querying the group's own workflow,
// whose ID the worker derives from the group's name (never from an
// activity's input): the Kubernetes activities touch only members' Nodes.
type Membership struct {
	Client client.Client
}

var _ activities.GroupMembership = Membership{}

// ProviderIDs returns the provider IDs of the group's members in every
// state. A group with no workflow has no members: that fails without retry
// (activities.ErrTypeNotOwned); anything else is retried.
func (m Membership) ProviderIDs(ctx context.Context, group string) ([]string, error) {
	v, err := m.Client.QueryWorkflow(ctx, workflows.GroupWorkflowID(group), "", workflows.QueryStatus)
	if err != nil {
		var nf *serviceerror.NotFound
		if errors.As(err, &nf) {
			return nil, temporal.NewNonRetryableApplicationError(fmt.Sprintf("group %s has no workflow, so no members", group), activities.ErrTypeNotOwned, err)
		}
		return nil, fmt.Errorf("query group %s: %w", group, err)
	}
	var st struct {
		Members []struct {
			ProviderID string `json:"providerId"`
		} `json:"members"`
	}
	if err := v.Get(&st); err != nil {
		return nil, fmt.Errorf("decode status of group %s: %w", group, err)
	}
	ids := make([]string, 0, len(st.Members))
	for _, mem := range st.Members {
		if mem.ProviderID != "" {
			ids = append(ids, mem.ProviderID)
		}
	}
	return ids, nil
}
