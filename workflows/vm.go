package workflows

import (
	"errors"
	"fmt"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/premiscale/premiscale/activities"
)

// Timeouts of the VM activities. Quick ones are short so that a crashed
// worker's attempt is retried soon after the worker is back.
const (
	quickActivityTimeout = 30 * time.Second
	// provisionStepDeadline bounds all retries of one provisioning step; past
	// it the provisioning fails and its compensation runs.
	provisionStepDeadline = 5 * time.Minute
	// DefaultBootTimeout bounds the wait for a new domain to run.
	DefaultBootTimeout = 5 * time.Minute
	// heartbeatTimeout is how soon a dead worker's activity is retried: every
	// VM activity heartbeats each second while it runs.
	heartbeatTimeout = 5 * time.Second
	// decommissionDeadline bounds all retries of one decommissioning step;
	// past it the member is marked failed and retried on a later evaluation.
	decommissionDeadline = 10 * time.Minute
)

// ErrTypeCleanupFailed is the error type of a ProvisionVM whose step failed
// (or was cancelled) and whose compensation could not remove what it had
// created; the VM may still exist.
const ErrTypeCleanupFailed = "CleanupFailed"

// Workflow type names of the VM children.
const (
	ProvisionVMName    = "ProvisionVM"
	DecommissionVMName = "DecommissionVM"
)

// quickTwiceOptions are for a quick read or fix that the caller can do
// without: two attempts, then the caller goes on without it.
var quickTwiceOptions = workflow.ActivityOptions{
	StartToCloseTimeout: quickActivityTimeout,
	RetryPolicy:         &temporal.RetryPolicy{InitialInterval: time.Second, MaximumAttempts: 2},
}

var retry = &temporal.RetryPolicy{
	InitialInterval:    time.Second,
	BackoffCoefficient: 2,
	MaximumInterval:    30 * time.Second,
}

// ProvisionInput asks for one new VM.
type ProvisionInput struct {
	Group string             `json:"group"`
	VM    string             `json:"vm"`
	Host  activities.HostRef `json:"host"`
	// Revision is the group's configuration revision (GroupSpec.Revision):
	// the worker creates the VM from its own configuration of the group,
	// and refuses if that is another revision.
	Revision string `json:"revision"`
	// Epoch is the group's history (its first run ID), written into the
	// domain's mark.
	Epoch string `json:"epoch,omitempty"`
	// BootTimeout bounds the wait for the domain to run; zero means DefaultBootTimeout.
	BootTimeout time.Duration `json:"bootTimeout,omitempty"`
	// Kubernetes, when set, makes the VM join the cluster as a node whose
	// provider ID names UUID, the domain's UUID.
	Kubernetes *KubernetesSpec `json:"kubernetes,omitempty"`
	UUID       string          `json:"uuid,omitempty"`
	// CleanupTimeout bounds the retries of each compensation step; zero
	// means decommissionDeadline.
	CleanupTimeout time.Duration `json:"cleanupTimeout,omitempty"`
	// Warm, when set, provisions the VM for the group's warm pool: once
	// its guest is up it is parked (see WarmSpec) instead of joining the
	// group.
	Warm *WarmSpec `json:"warm,omitempty"`
}

// ProvisionOutput describes the VM that was provisioned.
type ProvisionOutput struct {
	Volume string `json:"volume"`
}

// ProvisionVM creates one VM: clone the disk, define the domain, start it and
// wait until it runs. A VM that joins Kubernetes also gets a join token
// (kubeadm) and a NoCloud seed before it is defined, and is done only once
// its node is Ready (then its token is deleted). If any step fails, or the
// workflow is cancelled, it compensates: whatever it created is destroyed
// and deleted before it returns the error, so a failed provisioning leaves
// nothing behind. If compensation itself fails (the host unreachable past
// decommissionDeadline, the API server refusing to delete the Node), the
// error has type ErrTypeCleanupFailed and the group keeps the member as
// failed until a decommissioning succeeds.
//
//	clone volume -> [token -> seed] -> define -> start -> wait running -> [node Ready -> delete token] -> done
//	     \___________________\___________\________\__________\_______________\-> compensate -> error
//
// A warm VM (in.Warm) waits for its console line after it runs, if one is
// configured, and once up (its node cordoned, if it joins) is parked.
func ProvisionVM(ctx workflow.Context, in ProvisionInput) (out ProvisionOutput, err error) {
	// Before anything else, the metrics included: a forged group name
	// makes no series.
	if err := startedByGroup(ctx, in.Group); err != nil {
		return ProvisionOutput{}, err
	}
	start, step := workflow.Now(ctx), "clone"
	defer func() { finished(ctx, MetricProvisionDuration, MetricProvisionFailures, in.Group, step, start, err) }()
	compensating := false
	if err := workflow.SetQueryHandler(ctx, QueryStep, func() (string, error) {
		if compensating {
			return "removing after a failed " + step, nil
		}
		return step, nil
	}); err != nil {
		return ProvisionOutput{}, err
	}
	var a *activities.Libvirt
	ref := activities.DomainRef{Host: in.Host, Group: in.Group, VM: in.VM}
	// WaitForCancellation: when the provisioning is cancelled (scale-in),
	// a step in flight must have stopped before compensation starts, or
	// compensation could delete a disk that a define still in flight then
	// uses, and leave a domain behind.
	quick := workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout:    quickActivityTimeout,
		ScheduleToCloseTimeout: provisionStepDeadline,
		HeartbeatTimeout:       heartbeatTimeout,
		RetryPolicy:            retry,
		WaitForCancellation:    true,
	})
	bootTimeout := in.BootTimeout
	if bootTimeout <= 0 {
		bootTimeout = DefaultBootTimeout
	}
	boot := workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout:    bootTimeout,
		ScheduleToCloseTimeout: bootTimeout + time.Minute,
		HeartbeatTimeout:       heartbeatTimeout,
		RetryPolicy:            retry,
		WaitForCancellation:    true,
	})

	var vol activities.CloneVolumeOutput
	err = workflow.ExecuteActivity(quick, a.CloneVolume, activities.CloneVolumeInput{
		Host: in.Host, Group: in.Group, VM: in.VM, Revision: in.Revision,
	}).Get(ctx, &vol)
	if refused(err) || isAppError(err, activities.ErrTypeNameTaken) {
		// The worker refused the group, VM name, host or revision before
		// the first step did anything, or a disk of that name exists that
		// this provisioning did not make: there is nothing to compensate,
		// and nothing of someone else's may be.
		return ProvisionOutput{}, fmt.Errorf("provision %s: %w", in.VM, err)
	}
	var extras activities.DomainExtras
	if err == nil && in.Kubernetes != nil {
		step = "join"
		extras, err = joinCluster(ctx, quick, in)
		if isAppError(err, activities.ErrTypeNameTaken) {
			// A seed of that name is another instance's: its disk may be
			// the one the first step adopted, so compensation would delete
			// what is not ours. The group gives up this name (new names
			// skip it); a disk this provisioning made shows as an orphan,
			// and the join token expires with its TTL.
			workflow.GetLogger(ctx).Warn("provisioning refused: the VM's seed volume is not this provisioning's; nothing removed", "group", in.Group, "vm", in.VM, "host", in.Host.Name)
			return ProvisionOutput{}, fmt.Errorf("provision %s: %w", in.VM, err)
		}
	}
	if err == nil {
		step = "define"
		err = workflow.ExecuteActivity(quick, a.DefineDomain, activities.DefineDomainInput{
			Domain: ref, Volume: vol.Volume, Revision: in.Revision, Epoch: in.Epoch, Extras: extras,
		}).Get(ctx, nil)
	}
	if err == nil {
		step = "start"
		err = workflow.ExecuteActivity(quick, a.StartDomain, ref).Get(ctx, nil)
	}
	if err == nil {
		step = "boot"
		err = workflow.ExecuteActivity(boot, a.WaitRunning, ref).Get(ctx, nil)
	}
	if err == nil && in.Warm != nil && in.Warm.ConsoleLine != "" {
		step = "console"
		err = workflow.ExecuteActivity(consoleOptions(ctx, in.Warm.ReadyTimeout), a.WaitConsoleLine,
			activities.WaitConsoleInput{Domain: ref, Line: in.Warm.ConsoleLine}).Get(ctx, nil)
	}
	if err == nil && in.Kubernetes != nil {
		step = "node-ready"
		err = waitNodeReady(ctx, quick, in)
	}
	if err == nil && in.Warm != nil {
		err = park(ctx, &step, in)
	}
	if err != nil {
		workflow.GetLogger(ctx).Warn("provisioning failed, compensating", "group", in.Group, "vm", in.VM, "host", in.Host.Name, "error", err)
		compensating = true
		var providerID string
		if in.Kubernetes != nil {
			providerID = ProviderID(in.Group, in.UUID)
		}
		if cerr := cleanupVM(ctx, in.Group, in.VM, in.Host, 0, providerID, in.CleanupTimeout); cerr != nil {
			// The group keeps the member (failed) and retries the cleanup:
			// forgetting it would leave a domain and disks nobody owns.
			return ProvisionOutput{}, temporal.NewNonRetryableApplicationError(
				fmt.Sprintf("provision %s: %s; cleanup failed: %s", in.VM, rootCause(err), rootCause(cerr)), ErrTypeCleanupFailed, cerr)
		}
		return ProvisionOutput{}, fmt.Errorf("provision %s: %w", in.VM, err)
	}
	return ProvisionOutput{Volume: vol.Volume}, nil
}

// DecommissionInput asks for one VM to be removed.
type DecommissionInput struct {
	Group       string             `json:"group"`
	VM          string             `json:"vm"`
	Host        activities.HostRef `json:"host"`
	GracePeriod time.Duration      `json:"gracePeriod"`
	// Kubernetes and ProviderID are set for a VM that joined the cluster.
	Kubernetes *KubernetesSpec `json:"kubernetes,omitempty"`
	ProviderID string          `json:"providerId,omitempty"`
	// CleanupTimeout bounds the retries of each teardown step; zero means
	// decommissionDeadline.
	CleanupTimeout time.Duration `json:"cleanupTimeout,omitempty"`
}

// DecommissionVM removes one VM: for a node, cordon and drain it first
// (see drainNode for a drain that times out); then shut down (ACPI, bounded
// by the grace period, then destroy), undefine, delete the Node object and
// join tokens, delete its volumes. Every step is idempotent, so a
// decommissioning may be repeated at will.
func DecommissionVM(ctx workflow.Context, in DecommissionInput) (err error) {
	// Before anything else, the metrics included: a forged group name
	// makes no series.
	if err := startedByGroup(ctx, in.Group); err != nil {
		return err
	}
	start, step := workflow.Now(ctx), "drain"
	defer func() {
		finished(ctx, MetricDecommissionDuration, MetricDecommissionFailures, in.Group, step, start, err)
	}()
	if err := workflow.SetQueryHandler(ctx, QueryStep, func() (string, error) { return step, nil }); err != nil {
		return err
	}
	if in.Kubernetes != nil && in.ProviderID != "" {
		if err := drainNode(ctx, in); err != nil {
			return err
		}
	}
	step = "cleanup"
	return cleanupVM(ctx, in.Group, in.VM, in.Host, in.GracePeriod, in.ProviderID, in.CleanupTimeout)
}

// cleanupVM runs the teardown steps in a context that survives cancellation
// of ctx. A domain that is not PremiScale's stops the domain steps (it is
// never touched) but not the deletion of PremiScale's own volumes, which
// are then deleted only if no domain uses them. With a
// providerID, the VM's Node object and join tokens are deleted once the
// domain is gone. Each step is retried for timeout (zero:
// decommissionDeadline).
func cleanupVM(ctx workflow.Context, group, vm string, host activities.HostRef, grace time.Duration, providerID string, timeout time.Duration) error {
	if timeout <= 0 {
		timeout = decommissionDeadline
	}
	var a *activities.Libvirt
	dctx, cancel := workflow.NewDisconnectedContext(ctx)
	defer cancel()
	ref := activities.DomainRef{Host: host, Group: group, VM: vm}
	opts := workflow.ActivityOptions{
		StartToCloseTimeout:    quickActivityTimeout,
		ScheduleToCloseTimeout: timeout,
		HeartbeatTimeout:       heartbeatTimeout,
		RetryPolicy:            retry,
	}
	stopOpts := opts
	stopOpts.StartToCloseTimeout = grace + quickActivityTimeout
	err := workflow.ExecuteActivity(workflow.WithActivityOptions(dctx, stopOpts), a.StopDomain,
		activities.StopDomainInput{Domain: ref, GracePeriod: grace}).Get(dctx, nil)
	quick := workflow.WithActivityOptions(dctx, opts)
	if err == nil {
		err = workflow.ExecuteActivity(quick, a.UndefineDomain, ref).Get(dctx, nil)
	}
	if err != nil && !isAppError(err, activities.ErrTypeNotOwned) {
		return fmt.Errorf("remove domain %s: %w", vm, err)
	}
	// A domain of that name that is not ours may have our volume's name as
	// a disk: then the volume is left where it is.
	notOwned := err != nil
	if providerID != "" {
		if err := forgetNode(dctx, group, vm, providerID, timeout); err != nil {
			return fmt.Errorf("forget node of %s: %w", vm, err)
		}
	}
	if verr := workflow.ExecuteActivity(quick, a.DeleteVolume, activities.DeleteVolumeInput{Host: host, VM: vm, IfUnused: notOwned}).Get(dctx, nil); verr != nil {
		if notOwned && isAppError(verr, activities.ErrTypeInUse) {
			workflow.GetLogger(ctx).Warn("volume left in place: a domain that is not PremiScale's uses it", "vm", vm, "host", host.Name, "error", rootCause(verr))
			return nil
		}
		return fmt.Errorf("delete volume of %s: %w", vm, verr)
	}
	return nil
}

// refused reports whether the worker's catalog refused the activity (see
// activities.Catalog).
func refused(err error) bool {
	return isAppError(err, activities.ErrTypeUnknownHost) || isAppError(err, activities.ErrTypeUnknownGroup) ||
		isAppError(err, activities.ErrTypeConfigMismatch)
}

func isAppError(err error, errType string) bool {
	var ae *temporal.ApplicationError
	return errors.As(err, &ae) && ae.Type() == errType
}
