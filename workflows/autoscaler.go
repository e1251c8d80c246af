package workflows

import (
	"fmt"
	"slices"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"
)

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
