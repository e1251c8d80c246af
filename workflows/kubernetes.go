package workflows

import (
	"fmt"
	"time"

	"github.com/google/uuid"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/premiscale/premiscale/activities"
	"github.com/premiscale/premiscale/config"
)

// KubernetesSpec is how a group's VMs join the cluster and leave it: the
// group's kubernetes settings plus what the controller knows of the
// cluster, as the workflow decides by them. It holds no secret and nothing
// a worker trusts: what a VM's seed says comes from the worker's own
// configuration.
type KubernetesSpec struct {
	Join              string            `json:"join"`
	NodeName          string            `json:"nodeName"`
	Labels            map[string]string `json:"labels,omitempty"`
	Taints            []Taint           `json:"taints,omitempty"`
	ReadyTimeout      time.Duration     `json:"readyTimeout"`
	Drain             Drain             `json:"drain"`
	APIServerEndpoint string            `json:"apiServerEndpoint,omitempty"`
	CACertHashes      []string          `json:"caCertHashes,omitempty"`
	TokenTTL          time.Duration     `json:"tokenTTL"`
}

// nodeReadyPoll is how often provisioning looks for the VM's node to be Ready.
const nodeReadyPoll = 5 * time.Second

// ProviderID is the provider ID of a VM's node (activities.ProviderID).
func ProviderID(group, domainUUID string) string { return activities.ProviderID(group, domainUUID) }

// providerNamespace seeds the name-based UUIDs of domains.
var providerNamespace = uuid.MustParse("5d1e6c8e-3f0b-4a36-9a57-0b6f7e3c2a11")

// domainUUID derives a VM's domain UUID from a run ID of the group workflow
// (its first run's) and the VM's name: deterministic on replay, the same
// after a reset, unique across histories (a lost state starts a new one).
func domainUUID(runID, vm string) string {
	return uuid.NewSHA1(providerNamespace, []byte(runID+"/"+vm)).String()
}

// joinCluster is ProvisionVM's Kubernetes part before the domain is
// defined: a join token (kubeadm) and the NoCloud seed. It returns the
// domain extras to define the VM with.
func joinCluster(ctx workflow.Context, quick workflow.Context, in ProvisionInput) (activities.DomainExtras, error) {
	var k *activities.Kubernetes
	kube := in.Kubernetes
	seed := activities.SeedInput{Host: in.Host, Group: in.Group, VM: in.VM, Revision: in.Revision, InstanceID: in.UUID}
	if kube.Join == config.JoinKubeadm {
		var tok activities.JoinTokenOutput
		if err := workflow.ExecuteActivity(quick, k.CreateJoinToken, activities.JoinTokenInput{Group: in.Group, VM: in.VM, Revision: in.Revision}).Get(ctx, &tok); err != nil {
			return activities.DomainExtras{}, fmt.Errorf("join token: %w", err)
		}
		seed.TokenID = tok.TokenID
	}
	var out activities.SeedOutput
	if err := workflow.ExecuteActivity(quick, k.CreateSeedVolume, seed).Get(ctx, &out); err != nil {
		return activities.DomainExtras{}, fmt.Errorf("seed: %w", err)
	}
	return activities.DomainExtras{UUID: in.UUID, Seed: out.Volume}, nil
}

// waitNodeReady polls, on durable timers, until the VM's node is Ready,
// then deletes its join tokens. Past ReadyTimeout the VM counts as failed.
func waitNodeReady(ctx workflow.Context, quick workflow.Context, in ProvisionInput) error {
	var k *activities.Kubernetes
	if err := waitReady(ctx, quick, in.VM, ProviderID(in.Group, in.UUID), in.Kubernetes.ReadyTimeout); err != nil {
		return err
	}
	return workflow.ExecuteActivity(quick, k.DeleteJoinTokens, activities.DeleteJoinTokensInput{Group: in.Group, VM: in.VM}).Get(ctx, nil)
}

// waitReady polls, on durable timers, until the node with providerID is
// Ready; past timeout it fails without retry (NodeNotReady).
func waitReady(ctx workflow.Context, quick workflow.Context, vm, providerID string, timeout time.Duration) error {
	var k *activities.Kubernetes
	ref := activities.NodeRef{ProviderID: providerID}
	deadline := workflow.Now(ctx).Add(timeout)
	for {
		var st activities.NodeStatusOutput
		if err := workflow.ExecuteActivity(quick, k.NodeStatus, ref).Get(ctx, &st); err != nil {
			return fmt.Errorf("node status: %w", err)
		}
		if st.Ready {
			return nil
		}
		if !workflow.Now(ctx).Before(deadline) {
			state := "never registered"
			if st.Exists {
				state = "registered as " + st.Name + " but not Ready"
			}
			return temporal.NewNonRetryableApplicationError(
				fmt.Sprintf("node of %s not Ready within readyTimeout %s (%s)", vm, timeout, state), "NodeNotReady", nil)
		}
		if err := workflow.Sleep(ctx, nodeReadyPoll); err != nil {
			return err
		}
	}
}

// drainNode is DecommissionVM's first step for a joined VM: cordon and
// drain. A drain past its timeout either aborts (uncordon, keep the VM,
// fail with ErrTypeDrainAborted) or goes on, as configured.
func drainNode(ctx workflow.Context, in DecommissionInput) error {
	var k *activities.Kubernetes
	d := in.Kubernetes.Drain
	grace := -1
	if d.GracePeriod != nil && *d.GracePeriod >= 0 {
		grace = int(d.GracePeriod.Seconds())
	}
	ignoreDS := d.IgnoreDaemonSets == nil || *d.IgnoreDaemonSets
	dctx := workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout:    d.Timeout + time.Minute,
		ScheduleToCloseTimeout: d.Timeout + 5*time.Minute,
		HeartbeatTimeout:       heartbeatTimeout * 6, // an eviction retry waits 5 s between heartbeats
		RetryPolicy:            retry,
	})
	ref := activities.NodeRef{ProviderID: in.ProviderID}
	err := workflow.ExecuteActivity(dctx, k.DrainNode, activities.DrainInput{
		ProviderID: in.ProviderID, Timeout: d.Timeout, GracePeriodSeconds: grace,
		IgnoreDaemonSets: ignoreDS, DeleteEmptyDirData: d.DeleteEmptyDirData, Force: d.Force,
	}).Get(ctx, nil)
	if err == nil {
		return nil
	}
	if !isAppError(err, activities.ErrTypeDrainTimeout) || d.OnTimeout == config.DrainForce {
		if isAppError(err, activities.ErrTypeDrainTimeout) {
			workflow.GetLogger(ctx).Warn("drain timed out; going on as drain.onTimeout is force", "vm", in.VM, "error", err)
			return nil
		}
		return fmt.Errorf("drain: %w", err)
	}
	quick := workflow.WithActivityOptions(ctx, workflow.ActivityOptions{StartToCloseTimeout: quickActivityTimeout, ScheduleToCloseTimeout: decommissionDeadline, RetryPolicy: retry})
	if uerr := workflow.ExecuteActivity(quick, k.UncordonNode, ref).Get(ctx, nil); uerr != nil {
		return fmt.Errorf("drain aborted, and uncordon failed: %w", uerr)
	}
	return temporal.NewNonRetryableApplicationError("drain aborted, node uncordoned, VM kept: "+rootCause(err), ErrTypeDrainAborted, err)
}

// ErrTypeDrainAborted: a decommissioning stopped because its drain timed
// out with drain.onTimeout abort; the VM and its node stay.
const ErrTypeDrainAborted = "DrainAborted"

// forgetNode deletes the VM's Node object and any join token left; used
// after the domain is gone, and by provisioning's compensation.
func forgetNode(ctx workflow.Context, group, vm, providerID string, timeout time.Duration) error {
	var k *activities.Kubernetes
	quick := workflow.WithActivityOptions(ctx, workflow.ActivityOptions{StartToCloseTimeout: quickActivityTimeout, ScheduleToCloseTimeout: timeout, RetryPolicy: retry})
	if err := workflow.ExecuteActivity(quick, k.DeleteNode, activities.NodeRef{ProviderID: providerID}).Get(ctx, nil); err != nil {
		return fmt.Errorf("delete node: %w", err)
	}
	if err := workflow.ExecuteActivity(quick, k.DeleteJoinTokens, activities.DeleteJoinTokensInput{Group: group, VM: vm}).Get(ctx, nil); err != nil {
		return fmt.Errorf("delete join tokens: %w", err)
	}
	return nil
}
