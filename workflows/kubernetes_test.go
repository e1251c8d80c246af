package workflows_test

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/mock"
	tlog "go.temporal.io/sdk/log"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"

	"github.com/premiscale/premiscale/activities"
	"github.com/premiscale/premiscale/config"
	"github.com/premiscale/premiscale/worker"
	"github.com/premiscale/premiscale/workflows"
)

// kubeCalls records the activities a VM workflow ran, in order; fail
// makes the named steps (clone, seed) answer that error.
type kubeCalls struct {
	mu    sync.Mutex
	calls []string
	fail  map[string]error
}

func (k *kubeCalls) add(name string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.calls = append(k.calls, name)
}

func (k *kubeCalls) String() string {
	k.mu.Lock()
	defer k.mu.Unlock()
	return strings.Join(k.calls, " ")
}

// kubeEnv mocks every libvirt and Kubernetes activity of the VM workflows;
// nodeReadyAfter is how many NodeStatus polls answer "not Ready" first
// (-1: never), drainErr is DrainNode's answer.
func kubeEnv(t *testing.T, calls *kubeCalls, nodeReadyAfter int, drainErr error) *testsuite.TestWorkflowEnvironment {
	t.Helper()
	var s testsuite.WorkflowTestSuite
	s.SetLogger(tlog.NewStructuredLogger(slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelError + 4}))))
	env := s.NewTestWorkflowEnvironment()
	env.SetTestTimeout(30 * time.Second)
	worker.Register(env, &activities.Libvirt{}, &activities.Prometheus{})
	env.RegisterActivity(&activities.Kubernetes{})
	var (
		a *activities.Libvirt
		k *activities.Kubernetes
	)
	env.OnActivity(a.CloneVolume, mock.Anything, mock.Anything).Return(func(_ context.Context, in activities.CloneVolumeInput) (activities.CloneVolumeOutput, error) {
		calls.add("clone")
		if err := calls.fail["clone"]; err != nil {
			return activities.CloneVolumeOutput{}, err
		}
		return activities.CloneVolumeOutput{Volume: activities.VolumeName(in.VM)}, nil
	})
	env.OnActivity(a.DefineDomain, mock.Anything, mock.Anything).Return(func(_ context.Context, in activities.DefineDomainInput) error {
		if in.Extras.UUID == "" || in.Extras.Seed != activities.SeedVolumeName(in.Domain.VM) {
			t.Errorf("define without UUID and seed: %+v", in.Extras)
		}
		calls.add("define")
		return nil
	})
	env.OnActivity(a.StartDomain, mock.Anything, mock.Anything).Return(func(context.Context, activities.DomainRef) error { calls.add("start"); return nil })
	env.OnActivity(a.WaitRunning, mock.Anything, mock.Anything).Return(func(context.Context, activities.DomainRef) error { calls.add("running"); return nil })
	env.OnActivity(a.StopDomain, mock.Anything, mock.Anything).Return(func(context.Context, activities.StopDomainInput) error { calls.add("stop"); return nil })
	env.OnActivity(a.UndefineDomain, mock.Anything, mock.Anything).Return(func(context.Context, activities.DomainRef) error { calls.add("undefine"); return nil })
	env.OnActivity(a.DeleteVolume, mock.Anything, mock.Anything).Return(func(context.Context, activities.DeleteVolumeInput) error { calls.add("delete-volumes"); return nil })
	env.OnActivity(k.CreateJoinToken, mock.Anything, mock.Anything).Return(func(context.Context, activities.JoinTokenInput) (activities.JoinTokenOutput, error) {
		calls.add("token")
		return activities.JoinTokenOutput{TokenID: "abcdef"}, nil
	})
	env.OnActivity(k.CreateSeedVolume, mock.Anything, mock.Anything).Return(func(_ context.Context, in activities.SeedInput) (activities.SeedOutput, error) {
		if in.TokenID != "abcdef" || in.InstanceID != "u-1" || in.Group != "web" {
			t.Errorf("seed input %+v", in)
		}
		calls.add("seed")
		if err := calls.fail["seed"]; err != nil {
			return activities.SeedOutput{}, err
		}
		return activities.SeedOutput{Volume: activities.SeedVolumeName(in.VM)}, nil
	})
	polls := 0
	env.OnActivity(k.NodeStatus, mock.Anything, mock.Anything).Return(func(context.Context, activities.NodeRef) (activities.NodeStatusOutput, error) {
		polls++
		if nodeReadyAfter >= 0 && polls > nodeReadyAfter {
			calls.add("ready")
			return activities.NodeStatusOutput{Name: "web-1", Exists: true, Ready: true}, nil
		}
		return activities.NodeStatusOutput{}, nil
	})
	env.OnActivity(k.DeleteJoinTokens, mock.Anything, mock.Anything).Return(func(context.Context, activities.DeleteJoinTokensInput) error { calls.add("delete-tokens"); return nil })
	env.OnActivity(k.DeleteNode, mock.Anything, mock.Anything).Return(func(context.Context, activities.NodeRef) error { calls.add("delete-node"); return nil })
	env.OnActivity(k.UncordonNode, mock.Anything, mock.Anything).Return(func(context.Context, activities.NodeRef) error { calls.add("uncordon"); return nil })
	env.OnActivity(k.DrainNode, mock.Anything, mock.Anything).Return(func(context.Context, activities.DrainInput) (activities.DrainOutput, error) {
		calls.add("drain")
		return activities.DrainOutput{}, drainErr
	})
	return env
}

func kubeSpec(onTimeout string) *workflows.KubernetesSpec {
	return &workflows.KubernetesSpec{
		Join: config.JoinKubeadm, NodeName: "{{.VM}}", ReadyTimeout: 15 * time.Minute,
		Drain:             workflows.Drain{Timeout: time.Minute, OnTimeout: onTimeout},
		APIServerEndpoint: "127.0.0.1:6443", CACertHashes: []string{"sha256:00"}, TokenTTL: 30 * time.Minute,
	}
}

func TestProvisionWaitsForNodeReadyThenDeletesToken(t *testing.T) {
	var calls kubeCalls
	env := kubeEnv(t, &calls, 3, nil)
	runAsGroupChild(env, workflows.ProvisionVMName, workflows.ProvisionInput{
		Group: "web", VM: "web-1", Host: activities.HostRef{Name: "h1"}, Kubernetes: kubeSpec(config.DrainAbort), UUID: "u-1",
	})
	if err := env.GetWorkflowError(); err != nil {
		t.Fatal(err)
	}
	if got, want := calls.String(), "clone token seed define start running ready delete-tokens"; got != want {
		t.Errorf("steps = %q, want %q", got, want)
	}
}

// TestProvisionOverVolumesNotItsOwnRemovesNothing: when the disk or the
// seed of the VM's name exists and is not this provisioning's (another
// installation made it at the same moment), provisioning fails without
// compensating: no domain step, no volume delete touches what is theirs.
func TestProvisionOverVolumesNotItsOwnRemovesNothing(t *testing.T) {
	taken := temporal.NewNonRetryableApplicationError("not this provisioning's", activities.ErrTypeNameTaken, nil)
	for _, tt := range []struct{ step, want string }{
		{"clone", "clone"},
		{"seed", "clone token seed"},
	} {
		t.Run(tt.step, func(t *testing.T) {
			calls := kubeCalls{fail: map[string]error{tt.step: taken}}
			env := kubeEnv(t, &calls, 0, nil)
			runAsGroupChild(env, workflows.ProvisionVMName, workflows.ProvisionInput{
				Group: "web", VM: "web-1", Host: activities.HostRef{Name: "h1"}, Kubernetes: kubeSpec(config.DrainAbort), UUID: "u-1",
			})
			if err := env.GetWorkflowError(); err == nil || !strings.Contains(err.Error(), "(type: "+activities.ErrTypeNameTaken) {
				t.Fatalf("err = %v, want %s", err, activities.ErrTypeNameTaken)
			}
			if got := calls.String(); got != tt.want {
				t.Errorf("steps = %q, want %q (no compensation)", got, tt.want)
			}
		})
	}
}

func TestProvisionPastReadyTimeoutFailsAndCleansUpEverything(t *testing.T) {
	var calls kubeCalls
	env := kubeEnv(t, &calls, -1, nil)
	start := env.Now()
	runAsGroupChild(env, workflows.ProvisionVMName, workflows.ProvisionInput{
		Group: "web", VM: "web-1", Host: activities.HostRef{Name: "h1"}, Kubernetes: kubeSpec(config.DrainAbort), UUID: "u-1",
	})
	err := env.GetWorkflowError()
	if err == nil || !strings.Contains(err.Error(), "not Ready within readyTimeout 15m0s (never registered)") {
		t.Fatalf("err = %v, want the ready timeout named", err)
	}
	if d := env.Now().Sub(start); d < 15*time.Minute || d > 16*time.Minute {
		t.Errorf("failed after %s of workflow time, want just past readyTimeout 15m", d)
	}
	if got, want := calls.String(), "clone token seed define start running stop undefine delete-node delete-tokens delete-volumes"; got != want {
		t.Errorf("steps = %q, want %q", got, want)
	}
}

func TestDecommissionDrainsThenRemoves(t *testing.T) {
	var calls kubeCalls
	env := kubeEnv(t, &calls, 0, nil)
	runAsGroupChild(env, workflows.DecommissionVMName, workflows.DecommissionInput{
		Group: "web", VM: "web-1", Host: activities.HostRef{Name: "h1"}, Kubernetes: kubeSpec(config.DrainAbort), ProviderID: "premiscale://web/u-1",
	})
	if err := env.GetWorkflowError(); err != nil {
		t.Fatal(err)
	}
	if got, want := calls.String(), "drain stop undefine delete-node delete-tokens delete-volumes"; got != want {
		t.Errorf("steps = %q, want %q", got, want)
	}
}

func TestDrainTimeoutAbortsOrForcesAsConfigured(t *testing.T) {
	timeout := temporal.NewNonRetryableApplicationError("drain node web-1: not done within 1m0s", activities.ErrTypeDrainTimeout, errors.New("global timeout reached"))
	for _, tt := range []struct {
		onTimeout, want string
		aborted         bool
	}{
		{config.DrainAbort, "drain uncordon", true},
		{config.DrainForce, "drain stop undefine delete-node delete-tokens delete-volumes", false},
	} {
		t.Run(tt.onTimeout, func(t *testing.T) {
			var calls kubeCalls
			env := kubeEnv(t, &calls, 0, timeout)
			runAsGroupChild(env, workflows.DecommissionVMName, workflows.DecommissionInput{
				Group: "web", VM: "web-1", Host: activities.HostRef{Name: "h1"}, Kubernetes: kubeSpec(tt.onTimeout), ProviderID: "premiscale://web/u-1",
			})
			err := env.GetWorkflowError()
			var ae *temporal.ApplicationError
			if aborted := errors.As(err, &ae) && ae.Type() == workflows.ErrTypeDrainAborted; aborted != tt.aborted {
				t.Errorf("err = %v, aborted %v, want %v", err, aborted, tt.aborted)
			}
			if got := calls.String(); got != tt.want {
				t.Errorf("steps = %q, want %q", got, tt.want)
			}
		})
	}
}
