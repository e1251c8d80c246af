package workflows

import (
	"fmt"
	"slices"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"
)

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

func outOfRange(format string, args ...any) error {
	return temporal.NewNonRetryableApplicationError(fmt.Sprintf(format, args...), "OutOfRange", nil)
}

// registered counts the members that serve as nodes (running, not being
// deleted): a target size below it would delete existing nodes.
func (g *group) registered() int {
	n := 0
	for _, m := range g.st.Members {
		if m.State == MemberRunning && !m.Condemned {
			n++
		}
	}
	return n
}

func (g *group) registerClusterAutoscalerUpdates(ctx workflow.Context) error {
	if err := g.registerProtectUpdate(ctx); err != nil {
		return err
	}
	resized := func(ctx workflow.Context, prev int, why string) DesiredResult {
		if prev != g.st.Desired {
			g.event(ctx, "desired %d -> %d (%s)", prev, g.st.Desired, why)
		}
		g.st.LastScaleAt = workflow.Now(ctx)
		g.dirty = true
		return DesiredResult{Previous: prev, Desired: g.st.Desired}
	}
	err := workflow.SetUpdateHandlerWithOptions(ctx, UpdateIncreaseSize,
		func(ctx workflow.Context, req DeltaRequest) (DesiredResult, error) {
			prev := g.st.Desired
			g.st.Desired += req.Delta
			return resized(ctx, prev, "cluster-autoscaler increase-size"), nil
		},
		workflow.UpdateHandlerOptions{Validator: func(ctx workflow.Context, req DeltaRequest) error {
			if req.Delta <= 0 {
				return outOfRange("increase-size delta must be positive, got %d", req.Delta)
			}
			return g.checkDesired(ctx, g.st.Desired+req.Delta)
		}})
	if err != nil {
		return err
	}
	err = workflow.SetUpdateHandlerWithOptions(ctx, UpdateDecreaseTargetSize,
		func(ctx workflow.Context, req DeltaRequest) (DesiredResult, error) {
			prev := g.st.Desired
			g.st.Desired += req.Delta
			return resized(ctx, prev, "cluster-autoscaler decrease-target-size"), nil
		},
		workflow.UpdateHandlerOptions{Validator: func(ctx workflow.Context, req DeltaRequest) error {
			if req.Delta >= 0 {
				return outOfRange("decrease-target-size delta must be negative, got %d", req.Delta)
			}
			want := g.st.Desired + req.Delta
			if reg := g.registered(); want < reg {
				return outOfRange("decrease-target-size to %d would delete registered nodes: group %s has %d; delete nodes by name instead", want, g.spec.Name, reg)
			}
			return g.checkDesired(ctx, want)
		}})
	if err != nil {
		return err
	}
	return workflow.SetUpdateHandlerWithOptions(ctx, UpdateDeleteNodes,
		func(ctx workflow.Context, req DeleteNodesRequest) (DesiredResult, error) {
			prev := g.st.Desired
			for i := range g.st.Members {
				m := &g.st.Members[i]
				if !slices.Contains(req.ProviderIDs, m.ProviderID) || m.Condemned || m.State == MemberDecommissioning {
					continue
				}
				m.Condemned = true
				g.st.Desired--
				g.event(ctx, "%s condemned by the cluster-autoscaler", m.Name)
			}
			return resized(ctx, prev, "cluster-autoscaler delete-nodes"), nil
		},
		workflow.UpdateHandlerOptions{Validator: func(ctx workflow.Context, req DeleteNodesRequest) error {
			if len(req.ProviderIDs) == 0 {
				return outOfRange("delete-nodes names no node")
			}
			fresh := 0
			for _, id := range req.ProviderIDs {
				m := g.memberByProviderID(id)
				if m == nil {
					return temporal.NewNonRetryableApplicationError(
						fmt.Sprintf("node %s is not a member of group %s", id, g.spec.Name), "NotMember", nil)
				}
				if m.Protected {
					return temporal.NewNonRetryableApplicationError(
						fmt.Sprintf("node %s (%s) is protected from scale-in; premiscale unprotect %s %s first", id, m.Name, g.spec.Name, m.Name), "Protected", nil)
				}
				if !m.Condemned && m.State != MemberDecommissioning {
					fresh++
				}
			}
			if lo, _ := g.bounds(ctx); g.st.Desired-fresh < lo {
				return outOfRange("deleting %d nodes would take group %s below min (%d)", fresh, g.spec.Name, lo)
			}
			return nil
		}})
}

func (g *group) registerProtectUpdate(ctx workflow.Context) error {
	return workflow.SetUpdateHandlerWithOptions(ctx, UpdateProtect,
		func(ctx workflow.Context, req ProtectRequest) (DesiredResult, error) {
			m := g.member(req.VM)
			if m.Protected != req.Protected {
				m.Protected = req.Protected
				g.event(ctx, "%s %s", m.Name, map[bool]string{true: "protected from scale-in", false: "no longer protected from scale-in"}[req.Protected])
				g.dirty = true
			}
			return DesiredResult{Previous: g.st.Desired, Desired: g.st.Desired}, nil
		},
		workflow.UpdateHandlerOptions{Validator: func(ctx workflow.Context, req ProtectRequest) error {
			if m := g.member(req.VM); m == nil || m.State == MemberDecommissioning {
				return temporal.NewNonRetryableApplicationError(
					fmt.Sprintf("%s is not a member of group %s (or is already being removed)", req.VM, g.spec.Name), "NotMember", nil)
			}
			return nil
		}})
}

func (g *group) memberByProviderID(id string) *Member {
	if id == "" {
		return nil
	}
	for i := range g.st.Members {
		if g.st.Members[i].ProviderID == id {
			return &g.st.Members[i]
		}
	}
	return nil
}
