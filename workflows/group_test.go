package workflows_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/mock"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/interceptor"
	tlog "go.temporal.io/sdk/log"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"
	sdkworker "go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/premiscale/premiscale/activities"
	"github.com/premiscale/premiscale/config"
	"github.com/premiscale/premiscale/worker"
	"github.com/premiscale/premiscale/workflows"
	"github.com/premiscale/premiscale/workflows/policy"
)

const interval = 15 * time.Second

// fakeLibvirt stands in for the libvirt activities inside this package's
// unit tests: an in-memory set of hosts with domains and volumes.
type fakeLibvirt struct {
	mu      sync.Mutex
	domains map[string]map[string]bool // host -> vm -> running
	volumes map[string]map[string]bool // host -> volume
	// defineErr, if set, fails DefineDomain for the VM names it holds;
	// stopErr fails StopDomain likewise.
	defineErr map[string]error
	stopErr   map[string]error
	// paused domains list as "paused" until RecoverDomain resumes them;
	// stuck ones are shut off and refuse to start again.
	paused map[string]bool
	stuck  map[string]bool
	calls  []string
	// memoryGiB is each host's memory; 0 means 64.
	memoryGiB map[string]uint64
	// down hosts answer every call with an error.
	down map[string]bool
	// slowHost's listings take slowBy, and clones cloneDelay (virtual
	// time); set before newEnv.
	slowHost   string
	slowBy     time.Duration
	cloneDelay time.Duration
	// foreign are names in use on a host that are not the group's (another
	// installation's VMs, or this one's from before a state loss).
	foreign map[string][]string
	// listings counts ListDomains calls by host.
	listings map[string]int
}

func (f *fakeLibvirt) isDown(host string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.down[host] {
		return fmt.Errorf("connect %s: connection refused", host)
	}
	return nil
}

func (f *fakeLibvirt) setDown(host string, down bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.down == nil {
		f.down = map[string]bool{}
	}
	f.down[host] = down
}

func newFake(hosts ...string) *fakeLibvirt {
	f := &fakeLibvirt{domains: map[string]map[string]bool{}, volumes: map[string]map[string]bool{}, defineErr: map[string]error{}, stopErr: map[string]error{}, paused: map[string]bool{}, stuck: map[string]bool{}}
	for _, h := range hosts {
		f.domains[h] = map[string]bool{}
		f.volumes[h] = map[string]bool{}
	}
	return f
}

func (f *fakeLibvirt) record(call string) {
	f.calls = append(f.calls, call)
}

func (f *fakeLibvirt) CloneVolume(_ context.Context, in activities.CloneVolumeInput) (activities.CloneVolumeOutput, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.record("clone " + in.VM)
	f.volumes[in.Host.Name][activities.VolumeName(in.VM)] = true
	return activities.CloneVolumeOutput{Volume: activities.VolumeName(in.VM), Path: "/pool/" + activities.VolumeName(in.VM)}, nil
}

func (f *fakeLibvirt) DefineDomain(_ context.Context, in activities.DefineDomainInput) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.record("define " + in.Domain.VM)
	if err := f.defineErr[in.Domain.VM]; err != nil {
		return err
	}
	if _, ok := f.domains[in.Domain.Host.Name][in.Domain.VM]; !ok {
		f.domains[in.Domain.Host.Name][in.Domain.VM] = false
	}
	return nil
}

func (f *fakeLibvirt) StartDomain(_ context.Context, ref activities.DomainRef) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.record("start " + ref.VM)
	f.domains[ref.Host.Name][ref.VM] = true
	return nil
}

func (f *fakeLibvirt) WaitRunning(_ context.Context, ref activities.DomainRef) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.domains[ref.Host.Name][ref.VM] {
		return temporal.NewNonRetryableApplicationError("not running", activities.ErrTypeBootFailed, nil)
	}
	return nil
}

func (f *fakeLibvirt) StopDomain(_ context.Context, in activities.StopDomainInput) error {
	if err := f.isDown(in.Domain.Host.Name); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.record("stop " + in.Domain.VM)
	if err := f.stopErr[in.Domain.VM]; err != nil {
		return err
	}
	if _, ok := f.domains[in.Domain.Host.Name][in.Domain.VM]; ok {
		f.domains[in.Domain.Host.Name][in.Domain.VM] = false
	}
	return nil
}

func (f *fakeLibvirt) UndefineDomain(_ context.Context, ref activities.DomainRef) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.record("undefine " + ref.VM)
	delete(f.domains[ref.Host.Name], ref.VM)
	return nil
}

func (f *fakeLibvirt) DeleteVolume(_ context.Context, in activities.DeleteVolumeInput) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.record("delete-volume " + in.VM)
	delete(f.volumes[in.Host.Name], activities.VolumeName(in.VM))
	return nil
}

func (f *fakeLibvirt) ListDomains(_ context.Context, in activities.ListDomainsInput) (activities.ListDomainsOutput, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.down[in.Host.Name] {
		return activities.ListDomainsOutput{}, fmt.Errorf("connect %s: connection refused", in.Host.Name)
	}
	if f.listings == nil {
		f.listings = map[string]int{}
	}
	f.listings[in.Host.Name]++
	out := activities.ListDomainsOutput{}
	for name, running := range f.domains[in.Host.Name] {
		state := map[bool]string{true: "running", false: "shut-off"}[running]
		if f.paused[name] {
			running, state = false, "paused"
		}
		out.Domains = append(out.Domains, activities.DomainInfo{
			Name: name, Owner: activities.Owner{Group: in.Group, VM: name}, Running: running, State: state,
		})
	}
	return out, nil
}

func (f *fakeLibvirt) RecoverDomain(_ context.Context, ref activities.DomainRef) (activities.RecoverDomainOutput, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.record("recover " + ref.VM)
	switch {
	case f.paused[ref.VM]:
		delete(f.paused, ref.VM)
		return activities.RecoverDomainOutput{State: "paused", Action: "resumed"}, nil
	case f.stuck[ref.VM]:
		return activities.RecoverDomainOutput{State: "shut-off", Action: "started"}, errors.New("start: no bootable device")
	case !f.domains[ref.Host.Name][ref.VM]:
		f.domains[ref.Host.Name][ref.VM] = true
		return activities.RecoverDomainOutput{State: "shut-off", Action: "started"}, nil
	}
	return activities.RecoverDomainOutput{State: "running"}, nil
}

func (f *fakeLibvirt) HostInventory(_ context.Context, in activities.InventoryInput) (activities.Inventory, error) {
	if err := f.isDown(in.Host.Name); err != nil {
		return activities.Inventory{}, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	mem := uint64(64)
	if m, ok := f.memoryGiB[in.Host.Name]; ok {
		mem = m
	}
	inv := activities.Inventory{CPUs: 16, MemoryBytes: mem << 30, PoolAvailableBytes: 1 << 40, Owned: []activities.DomainInfo{}}
	inv.Taken = append(inv.Taken, f.foreign[in.Host.Name]...)
	for name, running := range f.domains[in.Host.Name] {
		inv.Taken = append(inv.Taken, name)
		inv.Domains++
		inv.AllocatedVCPUs++
		inv.AllocatedMemoryBytes += 256 << 20
		inv.Owned = append(inv.Owned, activities.DomainInfo{Name: name, Running: running})
	}
	return inv, nil
}

// running lists the running domains on every host, sorted.
func (f *fakeLibvirt) running() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for _, doms := range f.domains {
		for name, up := range doms {
			if up {
				out = append(out, name)
			}
		}
	}
	sort.Strings(out)
	return out
}

func (f *fakeLibvirt) volumeCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, vols := range f.volumes {
		n += len(vols)
	}
	return n
}

func (f *fakeLibvirt) perHost() map[string]int {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := map[string]int{}
	for h, doms := range f.domains {
		out[h] = len(doms)
	}
	return out
}

func spec(desired, lo, hi int, hosts ...string) workflows.GroupSpec {
	s := workflows.GroupSpec{
		Name: "web", Min: lo, Max: hi, Desired: desired,
		Template:           workflows.Template{VCPUs: 1, Memory: "256MiB", DiskSize: "1GiB", DomainType: "qemu", Arch: "x86_64"},
		EvaluationInterval: interval,
	}
	for _, h := range hosts {
		s.Hosts = append(s.Hosts, activities.HostRef{Name: h, URI: "test:///default", Pool: "default"})
	}
	return s
}

// newEnv is a test environment whose libvirt activities are f's. With
// bootDelay, WaitRunning takes that long (virtual time).
func newEnv(t *testing.T, f *fakeLibvirt, bootDelay ...time.Duration) *testsuite.TestWorkflowEnvironment {
	t.Helper()
	var s testsuite.WorkflowTestSuite
	s.SetLogger(tlog.NewStructuredLogger(slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))))
	env := s.NewTestWorkflowEnvironment()
	env.SetTestTimeout(30 * time.Second)
	env.SetWorkerOptions(sdkworker.Options{Interceptors: []interceptor.WorkerInterceptor{&workflows.SignalOrder{}}})
	// Every group of these tests is spec()'s "web".
	env.SetStartWorkflowOptions(client.StartWorkflowOptions{ID: workflows.GroupWorkflowID("web")})
	worker.Register(env, &activities.Libvirt{}, &activities.Prometheus{})
	// A worker whose configuration is every spec the test hands the group
	// (configuredWorker makes one that disagrees).
	env.RegisterActivityWithOptions(func(context.Context, workflows.GroupSpec) (workflows.SpecCheck, error) {
		return workflows.SpecCheck{}, nil
	},
		activity.RegisterOptions{Name: workflows.CheckGroupSpecName})
	// ...and that no longer has the group, deleting unconfigured groups'
	// VMs (removedWorker makes one that says otherwise).
	env.RegisterActivityWithOptions(func(context.Context, workflows.RemoveCheckInput) (workflows.RemoveCheck, error) {
		return workflows.RemoveCheck{DeleteVMs: true}, nil
	}, activity.RegisterOptions{Name: workflows.CheckRemoveName})
	// ...and whose schedules are every window the test opens.
	env.RegisterActivityWithOptions(func(context.Context, workflows.WindowCheckInput) (workflows.WindowCheck, error) {
		return workflows.WindowCheck{}, nil
	}, activity.RegisterOptions{Name: workflows.CheckWindowName})
	var a *activities.Libvirt
	env.OnActivity(a.CloneVolume, mock.Anything, mock.Anything).After(f.cloneDelay).Return(f.CloneVolume)
	env.OnActivity(a.DefineDomain, mock.Anything, mock.Anything).Return(f.DefineDomain)
	env.OnActivity(a.StartDomain, mock.Anything, mock.Anything).Return(f.StartDomain)
	wait := env.OnActivity(a.WaitRunning, mock.Anything, mock.Anything)
	if len(bootDelay) > 0 {
		wait = wait.After(bootDelay[0])
	}
	wait.Return(f.WaitRunning)
	env.OnActivity(a.StopDomain, mock.Anything, mock.Anything).Return(f.StopDomain)
	env.OnActivity(a.UndefineDomain, mock.Anything, mock.Anything).Return(f.UndefineDomain)
	env.OnActivity(a.DeleteVolume, mock.Anything, mock.Anything).Return(f.DeleteVolume)
	if f.slowHost != "" {
		env.OnActivity(a.ListDomains, mock.Anything, mock.MatchedBy(func(in activities.ListDomainsInput) bool { return in.Host.Name == f.slowHost })).
			After(f.slowBy).Return(f.ListDomains)
	}
	env.OnActivity(a.ListDomains, mock.Anything, mock.Anything).Return(f.ListDomains)
	env.OnActivity(a.HostInventory, mock.Anything, mock.Anything).Return(f.HostInventory)
	env.OnActivity(a.RecoverDomain, mock.Anything, mock.Anything).Return(f.RecoverDomain)
	return env
}

func status(t *testing.T, env *testsuite.TestWorkflowEnvironment) workflows.GroupStatus {
	t.Helper()
	v, err := env.QueryWorkflow(workflows.QueryStatus)
	if err != nil {
		t.Fatalf("query status: %v", err)
	}
	var st workflows.GroupStatus
	if err := v.Get(&st); err != nil {
		t.Fatalf("decode status: %v", err)
	}
	return st
}

// steps runs each fn one virtual minute after the previous, then cancels
// the workflow so that ExecuteWorkflow returns.
func steps(env *testsuite.TestWorkflowEnvironment, fns ...func()) {
	for i, fn := range fns {
		env.RegisterDelayedCallback(fn, time.Duration(i+1)*time.Minute)
	}
	env.RegisterDelayedCallback(env.CancelWorkflow, time.Duration(len(fns)+1)*time.Minute)
}

// runGroup runs the group workflow until steps cancels it, and fails the
// test unless it ended that way: a workflow that panicked or returned early
// would otherwise pass every assertion it never reached.
func runGroup(t *testing.T, env *testsuite.TestWorkflowEnvironment, in workflows.GroupInput) {
	t.Helper()
	env.ExecuteWorkflow(workflows.GroupWorkflowName, in)
	if !env.IsWorkflowCompleted() {
		t.Fatal("group workflow did not complete")
	}
	if err := env.GetWorkflowError(); !temporal.IsCanceledError(err) {
		t.Fatalf("group workflow ended with %v, want it cancelled by the test", err)
	}
}

// setDesired sends the set-desired Update and fails the test if it is
// rejected.
func setDesired(t *testing.T, env *testsuite.TestWorkflowEnvironment, n int) {
	t.Helper()
	env.UpdateWorkflow(workflows.UpdateSetDesired, fmt.Sprintf("set-%d-%d", n, env.Now().UnixNano()), &testsuite.TestUpdateCallback{
		OnAccept:   func() {},
		OnReject:   func(err error) { t.Errorf("set-desired %d rejected: %v", n, err) },
		OnComplete: func(any, error) {},
	}, workflows.DesiredRequest{Desired: n})
}

func TestScaleOutProvisionsDesiredVMsSpreadOverHosts(t *testing.T) {
	f := newFake("h1", "h2")
	env := newEnv(t, f)
	steps(env,
		func() {
			setDesired(t, env, 4)
		},
		func() {
			st := status(t, env)
			if st.Running != 4 || st.Desired != 4 || st.Provisioning != 0 {
				t.Errorf("status = %d running, %d provisioning, desired %d; want 4, 0, 4", st.Running, st.Provisioning, st.Desired)
			}
			if got := f.running(); !slices.Equal(got, []string{"web-1", "web-2", "web-3", "web-4"}) {
				t.Errorf("running domains = %v", got)
			}
			if got := f.perHost(); got["h1"] != 2 || got["h2"] != 2 {
				t.Errorf("per host = %v, want 2 and 2", got)
			}
		},
	)
	runGroup(t, env, workflows.GroupInput{Spec: spec(0, 0, 5, "h1", "h2")})
}

func TestScaleInRemovesNewestFirstAndDeletesVolumes(t *testing.T) {
	f := newFake("h1")
	env := newEnv(t, f)
	steps(env,
		func() {
			if got := f.running(); len(got) != 3 {
				t.Errorf("running before scale-in = %v, want 3", got)
			}
			setDesired(t, env, 1)
		},
		func() {
			if got := f.running(); !slices.Equal(got, []string{"web-1"}) {
				t.Errorf("running after scale-in = %v, want [web-1] (newest removed first)", got)
			}
			if n := f.volumeCount(); n != 1 {
				t.Errorf("volumes after scale-in = %d, want 1", n)
			}
			if st := status(t, env); !st.Settled() || st.Running != 1 {
				t.Errorf("status not settled at 1: %+v", st)
			}
		},
	)
	runGroup(t, env, workflows.GroupInput{Spec: spec(3, 0, 5, "h1")})
}

func TestScaleInDuringProvisioningRemovesTheNewVMNotTheOldOne(t *testing.T) {
	f := newFake("h1")
	env := newEnv(t, f, 30*time.Second) // slow boots

	env.RegisterDelayedCallback(func() { setDesired(t, env, 2) }, time.Minute)
	env.RegisterDelayedCallback(func() {
		if st := status(t, env); st.Provisioning != 1 {
			t.Errorf("web-2 not provisioning when scale-in arrives: %+v", st)
		}
		setDesired(t, env, 1)
	}, time.Minute+5*time.Second)
	env.RegisterDelayedCallback(func() {
		if got := f.running(); !slices.Equal(got, []string{"web-1"}) {
			t.Errorf("running = %v, want [web-1]: the VM being provisioned is the newest and goes", got)
		}
		if st := status(t, env); !st.Settled() || st.Running != 1 {
			t.Errorf("not settled at 1: %+v", st)
		}
		env.CancelWorkflow()
	}, 3*time.Minute)
	runGroup(t, env, workflows.GroupInput{Spec: spec(1, 0, 3, "h1")})
}

func TestSetDesiredRejectsOutsideMinMaxNamingTheBound(t *testing.T) {
	f := newFake("h1")
	env := newEnv(t, f)
	var tooBig, tooSmall error
	steps(env,
		func() {
			env.UpdateWorkflow(workflows.UpdateSetDesired, "too-big", &testsuite.TestUpdateCallback{
				OnAccept: func() { t.Error("set-desired 999 accepted") }, OnReject: func(err error) { tooBig = err }, OnComplete: func(any, error) {},
			}, workflows.DesiredRequest{Desired: 999})
			env.UpdateWorkflow(workflows.UpdateSetDesired, "too-small", &testsuite.TestUpdateCallback{
				OnAccept: func() { t.Error("set-desired 0 accepted") }, OnReject: func(err error) { tooSmall = err }, OnComplete: func(any, error) {},
			}, workflows.DesiredRequest{Desired: 0})
		},
		func() {
			if tooBig == nil || !strings.Contains(tooBig.Error(), "max (5)") {
				t.Errorf("set-desired 999: err = %v, want rejection naming max (5)", tooBig)
			}
			if tooSmall == nil || !strings.Contains(tooSmall.Error(), "min (1)") {
				t.Errorf("set-desired 0: err = %v, want rejection naming min (1)", tooSmall)
			}
			if st := status(t, env); st.Desired != 2 || st.Running != 2 {
				t.Errorf("after rejected updates desired %d running %d, want 2 and 2", st.Desired, st.Running)
			}
		},
	)
	runGroup(t, env, workflows.GroupInput{Spec: spec(2, 1, 5, "h1")})
}

func TestScaleSignalIsClampedToMax(t *testing.T) {
	f := newFake("h1")
	env := newEnv(t, f)
	steps(env,
		func() { env.SignalWorkflow(workflows.SignalScale, workflows.DesiredRequest{Desired: 50}) },
		func() {
			st := status(t, env)
			if st.Desired != 3 || st.Running != 3 {
				t.Errorf("after scale 50 with max 3: desired %d running %d, want 3 and 3", st.Desired, st.Running)
			}
		},
	)
	runGroup(t, env, workflows.GroupInput{Spec: spec(0, 0, 3, "h1")})
}

func TestPausedGroupDoesNotScaleUntilResumed(t *testing.T) {
	f := newFake("h1")
	env := newEnv(t, f)
	steps(env,
		func() {
			env.SignalWorkflow(workflows.SignalPause, nil)
		},
		func() {
			setDesired(t, env, 2)
		},
		func() {
			st := status(t, env)
			if !st.Paused || len(f.running()) != 0 {
				t.Errorf("paused group: paused=%v running=%v, want paused and none running", st.Paused, f.running())
			}
			env.SignalWorkflow(workflows.SignalResume, nil)
		},
		func() {
			if got := f.running(); len(got) != 2 {
				t.Errorf("after resume running = %v, want 2", got)
			}
		},
	)
	runGroup(t, env, workflows.GroupInput{Spec: spec(0, 0, 3, "h1")})
}

// TestVanishedMemberIsReplacedAndAShutOffOneStartedAgain: within two
// intervals a member whose domain was undefined out of band is replaced,
// and one whose domain was destroyed (shut off) is started again in place.
func TestVanishedMemberIsReplacedAndAShutOffOneStartedAgain(t *testing.T) {
	f := newFake("h1")
	env := newEnv(t, f)
	env.RegisterDelayedCallback(func() {
		f.mu.Lock()
		delete(f.domains["h1"], "web-1") // undefined out of band
		f.domains["h1"]["web-2"] = false // destroyed out of band
		f.mu.Unlock()
	}, time.Minute)
	env.RegisterDelayedCallback(func() {
		if got := f.running(); !slices.Equal(got, []string{"web-2", "web-3"}) {
			t.Errorf("running two intervals after losing both = %v, want web-2 started again and web-3 replacing web-1", got)
		}
		if n := f.volumeCount(); n != 2 {
			t.Errorf("volumes = %d, want 2 (the vanished member's volume deleted)", n)
		}
		env.CancelWorkflow()
	}, time.Minute+2*interval)
	runGroup(t, env, workflows.GroupInput{Spec: spec(2, 0, 3, "h1")})
}

func TestFailedProvisioningCompensatesAndBacksOff(t *testing.T) {
	f := newFake("h1")
	f.defineErr["web-1"] = temporal.NewNonRetryableApplicationError("bad xml", activities.ErrTypeInvalidConfig, nil)
	env := newEnv(t, f)
	steps(env, func() {
		st := status(t, env)
		if st.LastError == "" || !containsAll(st.LastError, "web-1", "bad xml") {
			t.Errorf("last error = %q, want the failed provisioning named", st.LastError)
		}
		f.mu.Lock()
		calls := append([]string(nil), f.calls...)
		f.mu.Unlock()
		for _, want := range []string{"clone web-1", "define web-1", "stop web-1", "undefine web-1", "delete-volume web-1"} {
			if !slices.Contains(calls, want) {
				t.Errorf("calls %v lack %q (compensation)", calls, want)
			}
		}
		if got := f.running(); !slices.Contains(got, "web-2") || len(got) != 1 {
			t.Errorf("running = %v, want web-2 after backoff", got)
		}
		if n := f.volumeCount(); n != 1 {
			t.Errorf("volumes = %d, want 1 (web-1's deleted)", n)
		}
	})
	runGroup(t, env, workflows.GroupInput{Spec: spec(1, 0, 3, "h1")})
}

func TestContinuesAsNewCarryingMembersAndDesired(t *testing.T) {
	f := newFake("h1")
	env := newEnv(t, f)
	env.RegisterDelayedCallback(func() {
		setDesired(t, env, 2)
	}, time.Minute)
	env.RegisterDelayedCallback(func() { env.SetContinueAsNewSuggested(true) }, 2*time.Minute)
	env.ExecuteWorkflow(workflows.GroupWorkflowName, workflows.GroupInput{Spec: spec(0, 0, 3, "h1")})

	err := env.GetWorkflowError()
	var can *workflow.ContinueAsNewError
	if !errors.As(err, &can) {
		t.Fatalf("workflow ended with %v, want continue-as-new", err)
	}
	var in workflows.GroupInput
	if err := converterFor(can, &in); err != nil {
		t.Fatal(err)
	}
	if in.State == nil || in.State.Desired != 2 || len(in.State.Members) != 2 || in.State.NextSeq != 3 {
		t.Fatalf("carried state = %+v, want desired 2, 2 members, next seq 3", in.State)
	}
	for _, m := range in.State.Members {
		if m.State != workflows.MemberRunning {
			t.Errorf("member %s carried in state %s, want running", m.Name, m.State)
		}
	}
}

func TestConfigChangeKeepsManualDesiredUnlessConfigDesiredChanged(t *testing.T) {
	f := newFake("h1")
	env := newEnv(t, f)
	steps(env,
		func() { setDesired(t, env, 3) },
		func() {
			// Controller restart with the same file: manual size kept, new max applied.
			s := spec(1, 0, 4, "h1")
			env.SignalWorkflow(workflows.SignalSpec, s)
		},
		func() {
			if st := status(t, env); st.Desired != 3 || st.Max != 4 {
				t.Errorf("after same-desired spec: desired %d max %d, want 3 and 4", st.Desired, st.Max)
			}
			env.SignalWorkflow(workflows.SignalSpec, spec(2, 0, 4, "h1"))
		},
		func() {
			if st := status(t, env); st.Desired != 2 || st.Running != 2 {
				t.Errorf("after config desired 1 -> 2: desired %d running %d, want 2 and 2", st.Desired, st.Running)
			}
		},
	)
	runGroup(t, env, workflows.GroupInput{Spec: spec(1, 0, 5, "h1")})
}

func containsAll(s string, subs ...string) bool {
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			return false
		}
	}
	return true
}

// converterFor decodes the input a continue-as-new carries.
func converterFor(can *workflow.ContinueAsNewError, in *workflows.GroupInput) error {
	return converter.GetDefaultDataConverter().FromPayloads(can.Input, in)
}

// testWriter sends log lines to the test's log, shown on failure or -v.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func TestInsufficientCapacityCreatesNothingAndSaysWhy(t *testing.T) {
	f := newFake("h1", "h2")
	// 256 MiB VMs; h1 has room for 2 (counting its 256 MiB per domain), h2 for none.
	f.memoryGiB = map[string]uint64{"h1": 0, "h2": 0}
	env := newEnv(t, f)
	s := spec(0, 0, 5, "h1", "h2")
	s.Hosts[0].ReservedMemoryBytes = 0
	f.memoryGiB["h1"] = 1 // 1 GiB: 4 VMs of 256 MiB
	steps(env,
		func() { setDesired(t, env, 5) },
		func() {
			st := status(t, env)
			if st.Running != 4 || len(f.running()) != 4 {
				t.Errorf("running %d (%v), want the 4 that fit on h1", st.Running, f.running())
			}
			if !strings.Contains(st.LastError, "insufficient capacity") || !strings.Contains(st.LastError, "h2:") {
				t.Errorf("last error = %q, want insufficient capacity with each host's reason", st.LastError)
			}
			if st.Provisioning != 0 || f.volumeCount() != 4 {
				t.Errorf("half-made VMs: %d provisioning, %d volumes", st.Provisioning, f.volumeCount())
			}
		},
	)
	runGroup(t, env, workflows.GroupInput{Spec: s})
}

func TestPlacementStrategyBinpackFillsOneHostFirst(t *testing.T) {
	f := newFake("h1", "h2")
	f.memoryGiB = map[string]uint64{"h1": 1, "h2": 1} // 4 VMs of 256 MiB each
	env := newEnv(t, f)
	s := spec(0, 0, 5, "h1", "h2")
	s.Placement = workflows.Placement{Strategy: config.PlacementBinpack}
	steps(env,
		func() { setDesired(t, env, 3) },
		func() {
			if got := f.perHost(); got["h1"] != 3 || got["h2"] != 0 {
				t.Errorf("binpack 3 = %v, want all on h1", got)
			}
		},
	)
	runGroup(t, env, workflows.GroupInput{Spec: s})
}

func TestDeadHostsMembersAreReplacedAfterGraceAndCleanedWhenItReturns(t *testing.T) {
	f := newFake("h1", "h2")
	env := newEnv(t, f)
	s := spec(2, 0, 5, "h1", "h2")
	s.HostFailureGracePeriod = 2 * time.Minute
	env.RegisterDelayedCallback(func() {
		if got := f.perHost(); got["h1"] != 1 || got["h2"] != 1 {
			t.Errorf("before the failure = %v, want one VM on each host", got)
		}
		f.setDown("h2", true)
	}, time.Minute)
	env.RegisterDelayedCallback(func() {
		st := status(t, env)
		if st.Lost != 0 || len(f.running()) != 2 || !slices.Contains(st.UnreachableHosts, "h2") {
			t.Errorf("inside the grace period: %d lost, running %v, unreachable %v; want nothing replaced yet and h2 shown", st.Lost, f.running(), st.UnreachableHosts)
		}
	}, 2*time.Minute)
	env.RegisterDelayedCallback(func() {
		st := status(t, env)
		if st.Lost != 1 || st.Running != 2 {
			t.Errorf("after the grace period: %d lost, %d running; want web-2 lost and replaced on h1", st.Lost, st.Running)
		}
		if got := f.perHost(); got["h1"] != 2 {
			t.Errorf("per host = %v, want the replacement on h1", got)
		}
		f.setDown("h2", false)
	}, 4*time.Minute)
	env.RegisterDelayedCallback(func() {
		st := status(t, env)
		if st.Lost != 0 || st.Running != 2 || len(st.Members) != 2 {
			t.Errorf("after h2 returned: %+v; want 2 running members and nothing lost", st)
		}
		if got := f.perHost(); got["h2"] != 0 || got["h1"] != 2 {
			t.Errorf("per host = %v, want h2's stale VM gone", got)
		}
		if n := f.volumeCount(); n != 2 {
			t.Errorf("volumes = %d, want 2 (nothing leaked)", n)
		}
		env.CancelWorkflow()
	}, 6*time.Minute)
	runGroup(t, env, workflows.GroupInput{Spec: s})
}

func TestProtectedMemberIsNeverChosenForScaleIn(t *testing.T) {
	f := newFake("h1")
	env := newEnv(t, f)
	var unknown error
	steps(env,
		func() {
			env.UpdateWorkflow(workflows.UpdateProtect, "protect", &testsuite.TestUpdateCallback{
				OnAccept: func() {}, OnReject: func(err error) { t.Errorf("protect web-3 rejected: %v", err) }, OnComplete: func(any, error) {},
			}, workflows.ProtectRequest{VM: "web-3", Protected: true})
			env.UpdateWorkflow(workflows.UpdateProtect, "protect-unknown", &testsuite.TestUpdateCallback{
				OnAccept: func() { t.Error("protect web-9 accepted") }, OnReject: func(err error) { unknown = err }, OnComplete: func(any, error) {},
			}, workflows.ProtectRequest{VM: "web-9", Protected: true})
		},
		func() { setDesired(t, env, 1) },
		func() {
			if got := f.running(); !slices.Equal(got, []string{"web-3"}) {
				t.Errorf("running after scale-in = %v, want [web-3]: the newest is protected, so the two others go", got)
			}
			if unknown == nil || !strings.Contains(unknown.Error(), "web-9 is not a member of group web") {
				t.Errorf("protect web-9: %v, want refusal naming it", unknown)
			}
			setDesired(t, env, 0)
		},
		func() {
			st := status(t, env)
			if got := f.running(); !slices.Equal(got, []string{"web-3"}) || st.Running != 1 || st.Desired != 0 {
				t.Errorf("scale to 0 with web-3 protected: running %v, status running %d desired %d; want web-3 kept", got, st.Running, st.Desired)
			}
			env.UpdateWorkflow(workflows.UpdateProtect, "unprotect", &testsuite.TestUpdateCallback{
				OnAccept: func() {}, OnReject: func(err error) { t.Errorf("unprotect rejected: %v", err) }, OnComplete: func(any, error) {},
			}, workflows.ProtectRequest{VM: "web-3", Protected: false})
		},
		func() {
			if got := f.running(); len(got) != 0 {
				t.Errorf("running after unprotect at desired 0 = %v, want none", got)
			}
		},
	)
	runGroup(t, env, workflows.GroupInput{Spec: spec(3, 0, 5, "h1")})
}

// TestSlowHostListingDoesNotMakeANewMemberLookVanished: while one host's
// listing is slow, a member is created and starts running on another host
// after the other listings were taken. The observation must not take it for
// vanished (it once decommissioned and replaced it).
func TestSlowHostListingDoesNotMakeANewMemberLookVanished(t *testing.T) {
	f := newFake("h1", "h2")
	// A clone outlasts one interval, so the next observation lists h1
	// before the new domain is defined, and h2 answers only after the
	// member is running.
	f.slowHost, f.slowBy, f.cloneDelay = "h2", 3*interval, interval+5*time.Second
	env := newEnv(t, f)
	steps(env,
		func() { setDesired(t, env, 2) },
		func() {},
		func() {},
		func() {
			for _, c := range f.calls {
				if strings.HasPrefix(c, "undefine") || strings.HasPrefix(c, "stop") {
					t.Errorf("a member was decommissioned: calls %v", f.calls)
					break
				}
			}
			st := status(t, env)
			if st.Running != 2 || !st.Settled() {
				t.Errorf("status = %+v, want 2 running", st)
			}
			for _, e := range st.Events {
				if strings.Contains(e.Message, "vanished") {
					t.Errorf("event %q", e.Message)
				}
			}
		},
	)
	runGroup(t, env, workflows.GroupInput{Spec: spec(0, 0, 5, "h1", "h2")})
}

// TestScaleInCancelsAProvisioningVictimInsteadOfWaiting: a VM whose
// provisioning would take long (a node waiting to be Ready, here a slow
// boot) is cancelled by a scale-in; its compensation removes what it
// created, and nothing counts as a failure.
func TestScaleInCancelsAProvisioningVictimInsteadOfWaiting(t *testing.T) {
	f := newFake("h1")
	env := newEnv(t, f, 10*time.Minute) // very slow boots
	env.RegisterDelayedCallback(func() { setDesired(t, env, 2) }, 11*time.Minute)
	env.RegisterDelayedCallback(func() {
		if st := status(t, env); st.Provisioning != 1 || st.Running != 1 {
			t.Errorf("web-2 not provisioning when scale-in arrives: %+v", st)
		}
		setDesired(t, env, 1)
	}, 12*time.Minute)
	env.RegisterDelayedCallback(func() {
		st := status(t, env)
		if !st.Settled() || st.Running != 1 || len(st.Members) != 1 || st.Members[0].Name != "web-1" {
			t.Errorf("two minutes after the scale-in: %+v, want only web-1 (web-2's boot had 8 more minutes)", st)
		}
		if f.volumeCount() != 1 || !slices.Equal(f.running(), []string{"web-1"}) {
			t.Errorf("libvirt holds running %v and %d volumes, want web-1 alone", f.running(), f.volumeCount())
		}
		if !st.BackoffUntil.IsZero() || st.LastError != "" {
			t.Errorf("a cancelled provisioning counted as a failure: backoff %v, last error %q", st.BackoffUntil, st.LastError)
		}
		found := false
		for _, e := range st.Events {
			found = found || strings.Contains(e.Message, "provisioning of web-2 cancelled by scale-in")
		}
		if !found {
			t.Errorf("no event says web-2's provisioning was cancelled: %v", st.Events)
		}
		env.CancelWorkflow()
	}, 14*time.Minute)
	runGroup(t, env, workflows.GroupInput{Spec: spec(1, 0, 3, "h1")})
}

// TestLeastPodsScaleInWhileAProvisioningFailsDoesNotPanic: leastPods
// scale-in counts pods (an activity, so the loop blocks) after choosing its
// candidates; a provisioning child that fails meanwhile removes its member.
// The victims must come from the members as they are after the count: the
// group settles at desired instead of panicking on every replay.
func TestLeastPodsScaleInWhileAProvisioningFailsDoesNotPanic(t *testing.T) {
	f := newFake("h1")
	f.cloneDelay = 10 * time.Second
	f.defineErr["web-3"] = temporal.NewNonRetryableApplicationError("define refused", "Test", nil)
	env := newEnv(t, f)
	env.RegisterActivity(&activities.Kubernetes{})
	var k *activities.Kubernetes
	counted := 0
	env.OnActivity(k.PodCounts, mock.Anything, mock.Anything).After(30 * time.Second).Return(
		func(context.Context, activities.PodCountsInput) (activities.PodCountsOutput, error) {
			counted++
			return activities.PodCountsOutput{Pods: map[string]int{}}, nil
		})
	// web-1 and web-2 run by 1m; web-3's clone takes 10 s, then its define
	// fails at about 1m10s, while the pods counted from 1m02s take 30 s.
	env.RegisterDelayedCallback(func() { setDesired(t, env, 3) }, time.Minute)
	env.RegisterDelayedCallback(func() {
		if st := status(t, env); st.Provisioning != 1 {
			t.Errorf("web-3 not provisioning at scale-in: %+v", st.Members)
		}
		setDesired(t, env, 1)
	}, time.Minute+2*time.Second)
	env.RegisterDelayedCallback(func() {
		st := status(t, env)
		if !st.Settled() || st.Desired != 1 || len(st.Members) != 1 {
			t.Errorf("status after scale-in = %d running, %d provisioning, %d decommissioning, desired %d, members %+v; want 1 settled",
				st.Running, st.Provisioning, st.Decommissioning, st.Desired, st.Members)
		}
		if got := f.running(); !slices.Equal(got, []string{"web-1"}) {
			t.Errorf("running domains = %v, want [web-1]", got)
		}
		if n := f.volumeCount(); n != 1 {
			t.Errorf("%d volumes left, want 1", n)
		}
	}, 4*time.Minute)
	env.RegisterDelayedCallback(env.CancelWorkflow, 5*time.Minute)
	s := spec(2, 0, 5, "h1")
	s.Scaling.ScaleIn.Selection = policy.SelectLeastPods
	runGroup(t, env, workflows.GroupInput{Spec: s})
	if counted == 0 {
		t.Error("PodCounts never ran: the scale-in did not take the leastPods path")
	}
}

// TestFailedCleanupKeepsTheMemberUntilItsVMIsRemoved: a provisioning fails
// and so does its cleanup (the host refuses to stop the domain for longer
// than the cleanup's deadline). The member stays, failed and visible, its
// disk is not forgotten, and once the host cooperates again the group
// removes it; a replacement runs meanwhile.
func TestFailedCleanupKeepsTheMemberUntilItsVMIsRemoved(t *testing.T) {
	f := newFake("h1")
	f.defineErr["web-1"] = temporal.NewNonRetryableApplicationError("define refused", "Test", nil)
	f.stopErr["web-1"] = errors.New("host not answering")
	env := newEnv(t, f)
	env.RegisterDelayedCallback(func() {
		st := status(t, env)
		var m *workflows.Member
		for i := range st.Members {
			if st.Members[i].Name == "web-1" {
				m = &st.Members[i]
			}
		}
		// Failed, or being decommissioned again (retried each evaluation).
		if m == nil || (m.State != workflows.MemberFailed && m.State != workflows.MemberDecommissioning) || m.Error == "" {
			t.Errorf("web-1 after its cleanup failed = %+v, want kept as failed with its error; members %+v", m, st.Members)
		}
		if !slices.ContainsFunc(st.Events, func(e workflows.Event) bool { return strings.Contains(e.Message, "cleanup too") }) {
			t.Errorf("no event says the cleanup failed: %+v", st.Events)
		}
		if st.Running != 1 || st.Settled() {
			t.Errorf("status = %d running, settled %v; want the replacement running and the group not settled while web-1 is failed", st.Running, st.Settled())
		}
		if n := f.volumeCount(); n != 2 {
			t.Errorf("%d volumes, want 2 (web-1's not yet removed, the replacement's)", n)
		}
		f.mu.Lock()
		delete(f.stopErr, "web-1")
		f.mu.Unlock()
	}, 15*time.Minute)
	env.RegisterDelayedCallback(func() {
		st := status(t, env)
		if !st.Settled() || len(st.Members) != 1 || st.Members[0].Name == "web-1" {
			t.Errorf("after the host recovered: members %+v, want only the replacement", st.Members)
		}
		if n := f.volumeCount(); n != 1 {
			t.Errorf("%d volumes after the cleanup succeeded, want 1", n)
		}
	}, 18*time.Minute)
	env.RegisterDelayedCallback(env.CancelWorkflow, 19*time.Minute)
	runGroup(t, env, workflows.GroupInput{Spec: spec(1, 0, 3, "h1")})
}

// TestNonRunningMembersAreRecoveredWithinTheGraceOrReplaced: a domain
// paused behind the group's back is resumed, not destroyed; one shut off
// that will not start again is kept through the unhealthy grace period
// (counted, not replaced) and then replaced.
func TestNonRunningMembersAreRecoveredWithinTheGraceOrReplaced(t *testing.T) {
	f := newFake("h1")
	env := newEnv(t, f)
	env.RegisterDelayedCallback(func() {
		f.mu.Lock()
		f.paused["web-1"] = true
		f.domains["h1"]["web-2"] = false
		f.stuck["web-2"] = true
		f.mu.Unlock()
	}, time.Minute)
	env.RegisterDelayedCallback(func() {
		st := status(t, env)
		if got := f.running(); !slices.Equal(got, []string{"web-1"}) {
			t.Errorf("running domains = %v, want web-1 resumed and web-2 still shut off", got)
		}
		if len(st.Members) != 2 || st.Running != 2 {
			t.Errorf("within the grace: members %+v, want web-1 and web-2 kept", st.Members)
		}
		for _, m := range st.Members {
			if m.Name == "web-2" && (m.UnhealthySince.IsZero() || m.DomainState != "shut-off") {
				t.Errorf("web-2 = %+v, want it marked unhealthy since it was seen shut off", m)
			}
		}
		if !slices.ContainsFunc(st.Events, func(e workflows.Event) bool {
			return strings.Contains(e.Message, "web-1 was paused on host h1: resumed")
		}) {
			t.Errorf("no event says web-1 was resumed: %+v", st.Events)
		}
	}, 2*time.Minute)
	env.RegisterDelayedCallback(func() {
		st := status(t, env)
		names := []string{}
		for _, m := range st.Members {
			names = append(names, m.Name)
		}
		if !st.Settled() || !slices.Equal(names, []string{"web-1", "web-3"}) {
			t.Errorf("after the grace: members %v (%+v), want web-1 kept and web-2 replaced by web-3", names, st)
		}
		if n := f.volumeCount(); n != 2 {
			t.Errorf("%d volumes, want 2", n)
		}
	}, 4*time.Minute)
	env.RegisterDelayedCallback(env.CancelWorkflow, 5*time.Minute)
	s := spec(2, 0, 3, "h1")
	s.UnhealthyGracePeriod = 2 * time.Minute
	runGroup(t, env, workflows.GroupInput{Spec: s})
}

// TestMembersOnHostsRemovedFromTheGroupAreReplaced: h2 leaves the group's
// hosts but stays configured, h3 leaves the configuration. The member on
// h2 is decommissioned through it; the one on h3, which nothing can reach
// now, is marked lost and left alone; both are replaced on h1.
func TestMembersOnHostsRemovedFromTheGroupAreReplaced(t *testing.T) {
	f := newFake("h1", "h2", "h3")
	env := newEnv(t, f)
	s := spec(3, 0, 5, "h1", "h2", "h3")
	env.RegisterDelayedCallback(func() {
		if got := f.perHost(); got["h1"] != 1 || got["h2"] != 1 || got["h3"] != 1 {
			t.Errorf("before: per host %v, want one each", got)
		}
		narrowed := spec(3, 0, 5, "h1")
		narrowed.RetiredHosts = []activities.HostRef{s.Hosts[1]}
		env.SignalWorkflow(workflows.SignalSpec, narrowed)
	}, time.Minute)
	env.RegisterDelayedCallback(func() {
		st := status(t, env)
		if got := f.perHost(); got["h1"] != 3 || got["h2"] != 0 || got["h3"] != 1 {
			t.Errorf("after: per host %v, want 3 on h1, h2 emptied, h3's VM left untouched", got)
		}
		if !st.Settled() || st.Running != 3 || st.Lost != 1 {
			t.Errorf("after: %d running, %d lost, settled %v; want 3 running on h1 and h3's member lost", st.Running, st.Lost, st.Settled())
		}
		for _, m := range st.Members {
			if m.Host == "h3" && (m.State != workflows.MemberLost || !strings.Contains(m.Error, "no longer configured")) {
				t.Errorf("member on h3 = %+v, want lost, saying its host is no longer configured", m)
			}
			if m.Host == "h2" {
				t.Errorf("member on h2 still listed: %+v", m)
			}
		}
	}, 3*time.Minute)
	env.RegisterDelayedCallback(env.CancelWorkflow, 4*time.Minute)
	runGroup(t, env, workflows.GroupInput{Spec: s})
}

// withKube mocks the Kubernetes activities of a group whose VMs join a
// cluster: nodes are Ready at once; a drain of a VM in abortDrain times
// out. It returns the VMs drained, in order.
func withKube(t *testing.T, env *testsuite.TestWorkflowEnvironment, abortDrain ...string) *kubeCalls {
	t.Helper()
	env.RegisterActivity(&activities.Kubernetes{})
	var k *activities.Kubernetes
	var mu sync.Mutex
	vmOf := map[string]string{} // provider ID -> VM
	drained := &kubeCalls{}
	env.OnActivity(k.CreateJoinToken, mock.Anything, mock.Anything).Return(activities.JoinTokenOutput{TokenID: "abcdef"}, nil)
	env.OnActivity(k.CreateSeedVolume, mock.Anything, mock.Anything).Return(func(_ context.Context, in activities.SeedInput) (activities.SeedOutput, error) {
		mu.Lock()
		vmOf[activities.ProviderID(in.Group, in.InstanceID)] = in.VM
		mu.Unlock()
		return activities.SeedOutput{Volume: activities.SeedVolumeName(in.VM)}, nil
	})
	env.OnActivity(k.NodeStatus, mock.Anything, mock.Anything).Return(activities.NodeStatusOutput{Exists: true, Ready: true}, nil)
	env.OnActivity(k.DeleteJoinTokens, mock.Anything, mock.Anything).Return(nil)
	env.OnActivity(k.DeleteNode, mock.Anything, mock.Anything).Return(nil)
	env.OnActivity(k.UncordonNode, mock.Anything, mock.Anything).Return(nil)
	env.OnActivity(k.PodCounts, mock.Anything, mock.Anything).Return(activities.PodCountsOutput{}, nil)
	env.OnActivity(k.DrainNode, mock.Anything, mock.Anything).Return(func(_ context.Context, in activities.DrainInput) (activities.DrainOutput, error) {
		mu.Lock()
		vm := vmOf[in.ProviderID]
		mu.Unlock()
		drained.add(vm)
		if slices.Contains(abortDrain, vm) {
			return activities.DrainOutput{}, temporal.NewNonRetryableApplicationError("drain node "+vm+": not done within 1m0s", activities.ErrTypeDrainTimeout, nil)
		}
		return activities.DrainOutput{Node: vm}, nil
	})
	return drained
}

// TestDrainAbortBacksOffThatNodeAndScaleInChoosesAnother: the newest
// node's drain aborts (a PodDisruptionBudget holds it past the drain
// timeout); the scale-in does not pick it again at once but removes the
// next one, and the group settles.
func TestDrainAbortBacksOffThatNodeAndScaleInChoosesAnother(t *testing.T) {
	f := newFake("h1")
	env := newEnv(t, f)
	drained := withKube(t, env, "web-2")
	env.RegisterDelayedCallback(func() { setDesired(t, env, 1) }, time.Minute)
	env.RegisterDelayedCallback(func() {
		st := status(t, env)
		if !st.Settled() || len(st.Members) != 1 || st.Members[0].Name != "web-2" {
			t.Errorf("members %+v (settled %v), want web-2 kept (its drain aborted) and web-1 removed", st.Members, st.Settled())
		}
		if len(st.Members) == 1 && (st.Members[0].DrainAborts != 1 || st.Members[0].DrainBackoffUntil.IsZero()) {
			t.Errorf("web-2 = %+v, want one drain abort and a backoff", st.Members[0])
		}
		if got := drained.String(); got != "web-2 web-1" {
			t.Errorf("drained %q, want web-2 once, then web-1", got)
		}
	}, 3*time.Minute)
	env.RegisterDelayedCallback(env.CancelWorkflow, 4*time.Minute)
	s := spec(2, 0, 3, "h1")
	s.Kubernetes = &workflows.KubernetesSpec{
		Join: config.JoinKubeadm, NodeName: "{{.VM}}", ReadyTimeout: 15 * time.Minute,
		Drain: workflows.Drain{Timeout: time.Minute, OnTimeout: config.DrainAbort}, TokenTTL: 30 * time.Minute,
	}
	runGroup(t, env, workflows.GroupInput{Spec: s})
}

// TestLongHistoryStopsStartingChildrenAndContinuesAsNew: once Temporal
// suggests continue-as-new, the group starts no new child (here: the two
// VMs a later scale-out asks for) and continues as new as soon as the ones
// in flight are done, carrying desired forward; under constant churn it
// would otherwise never find a moment with nothing in flight.
func TestLongHistoryStopsStartingChildrenAndContinuesAsNew(t *testing.T) {
	f := newFake("h1")
	env := newEnv(t, f, 2*time.Minute) // each VM takes 2 minutes to boot
	start := env.Now()
	env.RegisterDelayedCallback(func() { env.SetContinueAsNewSuggested(true) }, 30*time.Second)
	env.RegisterDelayedCallback(func() { setDesired(t, env, 5) }, time.Minute)
	env.ExecuteWorkflow(workflows.GroupWorkflowName, workflows.GroupInput{Spec: spec(3, 0, 5, "h1")})
	var can *workflow.ContinueAsNewError
	if err := env.GetWorkflowError(); !errors.As(err, &can) {
		t.Fatalf("workflow ended with %v, want continue-as-new", err)
	}
	if d := env.Now().Sub(start); d > 3*time.Minute {
		t.Errorf("continued as new after %s, want once the first VMs were up (about 2m)", d)
	}
	var in workflows.GroupInput
	if err := converterFor(can, &in); err != nil {
		t.Fatal(err)
	}
	if in.State == nil || in.State.Desired != 5 || len(in.State.Members) != 3 || in.State.NextSeq != 4 {
		t.Fatalf("carried state = %+v, want desired 5 with the 3 members that were in flight, next seq 4", in.State)
	}
	if slices.ContainsFunc(f.calls, func(c string) bool { return strings.HasPrefix(c, "clone web-4") }) {
		t.Errorf("a new VM was started after continue-as-new was due: %v", f.calls)
	}
}

// TestPauseAndResumeUpdatesApplyInTheOrderSent: "resume then pause" ends
// paused and "pause then resume" ends resumed, also when both arrive
// together (as Updates; see UpdatePause for signals).
func TestPauseAndResumeUpdatesApplyInTheOrderSent(t *testing.T) {
	f := newFake("h1")
	env := newEnv(t, f)
	send := func(name string) {
		env.UpdateWorkflow(name, name+env.Now().String(), &testsuite.TestUpdateCallback{
			OnAccept: func() {}, OnReject: func(err error) { t.Errorf("%s rejected: %v", name, err) }, OnComplete: func(any, error) {},
		})
	}
	env.RegisterDelayedCallback(func() { send(workflows.UpdatePause); send(workflows.UpdateResume) }, time.Minute)
	env.RegisterDelayedCallback(func() {
		if status(t, env).Paused {
			t.Error("pause then resume left the group paused")
		}
		send(workflows.UpdateResume)
		send(workflows.UpdatePause)
	}, 2*time.Minute)
	env.RegisterDelayedCallback(func() {
		if !status(t, env).Paused {
			t.Error("resume then pause left the group resumed")
		}
		setDesired(t, env, 2)
	}, 3*time.Minute)
	env.RegisterDelayedCallback(func() {
		if got := f.running(); len(got) != 1 {
			t.Errorf("a paused group scaled: running %v", got)
		}
	}, 4*time.Minute)
	env.RegisterDelayedCallback(env.CancelWorkflow, 5*time.Minute)
	runGroup(t, env, workflows.GroupInput{Spec: spec(1, 0, 3, "h1")})
}

// TestSignalsArrivingTogetherApplyInArrivalOrder: "resume then pause" sent
// as signals that reach the workflow in one task ends paused, and "pause
// then resume" ends resumed (SignalOrder tells the workflow their order).
func TestSignalsArrivingTogetherApplyInArrivalOrder(t *testing.T) {
	f := newFake("h1")
	env := newEnv(t, f)
	env.RegisterDelayedCallback(func() {
		env.SignalWorkflow(workflows.SignalPause, nil)
		env.SignalWorkflow(workflows.SignalResume, nil)
	}, time.Minute)
	env.RegisterDelayedCallback(func() {
		if status(t, env).Paused {
			t.Error("pause then resume, as signals together, left the group paused")
		}
		env.SignalWorkflow(workflows.SignalResume, nil)
		env.SignalWorkflow(workflows.SignalPause, nil)
	}, 2*time.Minute)
	env.RegisterDelayedCallback(func() {
		if !status(t, env).Paused {
			t.Error("resume then pause, as signals together, left the group resumed")
		}
	}, 3*time.Minute)
	env.RegisterDelayedCallback(env.CancelWorkflow, 4*time.Minute)
	runGroup(t, env, workflows.GroupInput{Spec: spec(1, 0, 3, "h1")})
}

func TestSpecSignalThatFailsValidationIsRefused(t *testing.T) {
	f := newFake("h1")
	env := newEnv(t, f)
	steps(env,
		func() {
			bad := spec(2_000_000_000, 0, 2_000_000_000, "h1")
			bad.EvaluationInterval = 0
			env.SignalWorkflow(workflows.SignalSpec, bad)
		},
		func() {
			st := status(t, env)
			if st.Max != 3 || st.Desired != 1 || st.Running != 1 {
				t.Errorf("after an invalid spec: max %d desired %d running %d, want the old 3, 1, 1", st.Max, st.Desired, st.Running)
			}
			var refused string
			for _, e := range st.Events {
				if strings.Contains(e.Message, "spec refused") {
					refused = e.Message
				}
			}
			if !containsAll(refused, "spec.max", "spec.evaluationInterval", "spec.desired") {
				t.Errorf("no event names every refused field: %q", refused)
			}
		},
	)
	runGroup(t, env, workflows.GroupInput{Spec: spec(1, 0, 3, "h1")})
}

// configuredWorker makes env's worker check specs against want, as a
// worker whose configuration makes want of the group does.
func configuredWorker(env *testsuite.TestWorkflowEnvironment, want workflows.GroupSpec) {
	env.OnActivity(workflows.CheckGroupSpecName, mock.Anything, mock.Anything).Return(
		func(_ context.Context, got workflows.GroupSpec) (workflows.SpecCheck, error) {
			return workflows.SpecCheck{Refused: workflows.DiffSpecs(got, want)}, nil
		})
}

// TestSpecSignalBeyondTheWorkersConfigurationIsRefused: a spec signal
// that passes validation but is not what the worker's configuration makes
// of the group (max 1000 where it says 3, a forced drain) is refused with
// every differing field named, and the group keeps its spec; the
// configured spec, sent again, is taken.
func TestSpecSignalBeyondTheWorkersConfigurationIsRefused(t *testing.T) {
	f := newFake("h1")
	env := newEnv(t, f)
	configured := spec(1, 0, 3, "h1")
	configuredWorker(env, configured)
	steps(env,
		func() {
			forged := configured
			forged.Max, forged.Desired = 1000, 50
			forged.Template.VCPUs = 64
			env.SignalWorkflow(workflows.SignalSpec, forged)
		},
		func() {
			st := status(t, env)
			if st.Max != 3 || st.Desired != 1 || st.Running != 1 || st.Provisioning != 0 {
				t.Errorf("after a forged spec: max %d desired %d running %d provisioning %d, want the configured 3, 1, 1, 0", st.Max, st.Desired, st.Running, st.Provisioning)
			}
			var refused string
			for _, e := range st.Events {
				if strings.Contains(e.Message, "refused by this worker") {
					refused = e.Message
				}
			}
			if !containsAll(refused, "max: 1000, this worker's configuration has 3", "desired: 50", `"vcpus":64`) {
				t.Errorf("no event names every refused field: %q", refused)
			}
			env.SignalWorkflow(workflows.SignalSpec, configured)
		},
		func() {
			for _, e := range status(t, env).Events {
				if strings.Contains(e.Message, "refused") && e.At.After(env.Now().Add(-time.Minute)) {
					t.Errorf("the configured spec was refused: %s", e.Message)
				}
			}
		},
	)
	runGroup(t, env, workflows.GroupInput{Spec: configured})
}

// TestGroupStartedWithASpecTheWorkerDoesNotConfigureFails: a fresh group
// whose input is not what the worker's configuration makes of it (a group
// it does not configure, or other bounds) ends refused before any
// activity.
func TestGroupStartedWithASpecTheWorkerDoesNotConfigureFails(t *testing.T) {
	f := newFake("h1")
	env := newEnv(t, f)
	configured := spec(1, 0, 3, "h1")
	configuredWorker(env, configured)
	forged := configured
	forged.Max, forged.Desired = 1000, 1000
	env.ExecuteWorkflow(workflows.GroupWorkflowName, workflows.GroupInput{Spec: forged})
	err := env.GetWorkflowError()
	var ae *temporal.ApplicationError
	if !errors.As(err, &ae) || ae.Type() != workflows.ErrTypeRefused || !containsAll(err.Error(), "max: 1000", "desired: 1000") {
		t.Fatalf("err = %v, want %s naming max and desired", err, workflows.ErrTypeRefused)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.calls) != 0 {
		t.Errorf("the refused group called %v", f.calls)
	}
}

func TestGroupStartedWithAnInvalidSpecFails(t *testing.T) {
	env := newEnv(t, newFake("h1"))
	bad := spec(1, 0, config.MaxGroupSize+1)
	env.ExecuteWorkflow(workflows.GroupWorkflowName, workflows.GroupInput{Spec: bad})
	err := env.GetWorkflowError()
	var ae *temporal.ApplicationError
	if !errors.As(err, &ae) || ae.Type() != workflows.ErrTypeInvalidSpec || !containsAll(err.Error(), "spec.max", "spec.hosts") {
		t.Fatalf("err = %v, want %s naming spec.max and spec.hosts", err, workflows.ErrTypeInvalidSpec)
	}
}

// TestGroupStartedUnderAnotherIDRefuses: a second workflow of group web,
// started by hand under another ID (with members of its own, say), ends
// refused before it creates or touches anything.
func TestGroupStartedUnderAnotherIDRefuses(t *testing.T) {
	f := newFake("h1")
	env := newEnv(t, f)
	env.SetStartWorkflowOptions(client.StartWorkflowOptions{ID: workflows.GroupWorkflowID("web-shadow")})
	env.ExecuteWorkflow(workflows.GroupWorkflowName, workflows.GroupInput{Spec: spec(2, 0, 3, "h1")})
	if !env.IsWorkflowCompleted() {
		t.Fatal("group workflow did not end")
	}
	err := env.GetWorkflowError()
	var ae *temporal.ApplicationError
	if !errors.As(err, &ae) || ae.Type() != workflows.ErrTypeRefused || !ae.NonRetryable() || !containsAll(err.Error(), `"premiscale/group/web-shadow"`, "premiscale/group/web;") {
		t.Fatalf("err = %v, want a non-retryable %s naming both IDs", err, workflows.ErrTypeRefused)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.calls) != 0 {
		t.Errorf("the refused group called %v", f.calls)
	}
}

func TestScaleOutProvisionsAtMostMaxProvisioningAtOnce(t *testing.T) {
	f := newFake("h1", "h2", "h3", "h4", "h5")
	env := newEnv(t, f, 5*time.Minute)
	want := workflows.MaxProvisioning + 10
	env.RegisterDelayedCallback(func() { setDesired(t, env, want) }, time.Minute)
	env.RegisterDelayedCallback(func() {
		if st := status(t, env); st.Provisioning != workflows.MaxProvisioning {
			t.Errorf("right after desired 0 -> %d: %d provisioning, want the cap %d", want, st.Provisioning, workflows.MaxProvisioning)
		}
	}, 2*time.Minute)
	env.RegisterDelayedCallback(func() {
		if st := status(t, env); st.Running != want {
			t.Errorf("later: %d running (%d provisioning), want %d", st.Running, st.Provisioning, want)
		}
	}, 20*time.Minute)
	env.RegisterDelayedCallback(env.CancelWorkflow, 21*time.Minute)
	runGroup(t, env, workflows.GroupInput{Spec: spec(0, 0, want, "h1", "h2", "h3", "h4", "h5")})
}

func TestNewVMsSkipNamesInUseOnAnyHost(t *testing.T) {
	f := newFake("h1", "h2")
	f.foreign = map[string][]string{"h1": {"web-1", "web-3"}, "h2": {"web-2"}}
	env := newEnv(t, f)
	steps(env,
		func() { setDesired(t, env, 2) },
		func() {
			st := status(t, env)
			var names []string
			for _, m := range st.Members {
				names = append(names, m.Name)
			}
			if !slices.Equal(names, []string{"web-4", "web-5"}) || st.Running != 2 {
				t.Errorf("members %v (%d running), want web-4 and web-5 running: web-1..3 are in use on the hosts", names, st.Running)
			}
		},
	)
	runGroup(t, env, workflows.GroupInput{Spec: spec(0, 0, 5, "h1", "h2")})
}

// TestHostChangeOfARunningMemberIsObservedAtOnce: with evaluations ten
// minutes apart, a host watcher's change of a running member makes the
// group observe at once (the vanished member is replaced within seconds);
// a change of a domain that is not a member does not.
func TestHostChangeOfARunningMemberIsObservedAtOnce(t *testing.T) {
	for _, tc := range []struct {
		name, domain string
		want         []string
	}{
		{"member", "web-1", []string{"web-2", "web-3"}},
		{"not a member", "web-9", []string{"web-2"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFake("h1")
			env := newEnv(t, f)
			s := spec(2, 0, 3, "h1")
			s.EvaluationInterval = 10 * time.Minute
			env.RegisterDelayedCallback(func() {
				f.mu.Lock()
				delete(f.domains["h1"], "web-1") // undefined out of band
				f.mu.Unlock()
				env.SignalWorkflow(workflows.SignalHostChange, activities.HostChange{Host: "h1", Domain: tc.domain, Event: "undefined"})
			}, time.Minute)
			env.RegisterDelayedCallback(func() {
				if got := f.running(); !slices.Equal(got, tc.want) {
					t.Errorf("running 30 s after a change of %s = %v, want %v", tc.domain, got, tc.want)
				}
				env.CancelWorkflow()
			}, time.Minute+30*time.Second)
			runGroup(t, env, workflows.GroupInput{Spec: s})
		})
	}
}

// A quiet group (no checks, every member running) with a resync interval
// observes its hosts once per resync interval instead of every evaluation
// interval; a watcher's disconnection signal makes it observe at once, and
// a host that does not answer puts it back on the evaluation interval.
func TestQuietGroupObservesOnResyncOnly(t *testing.T) {
	for _, tc := range []struct {
		name   string
		resync time.Duration
		// quietMax bounds the listings in 20 quiet minutes; downMin is
		// the least in the 2 minutes after h1 went down.
		quietMax, downMin int
	}{
		{"resync 5m", 5 * time.Minute, 5, 6},
		{"no watchers", 0, 81, 6},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFake("h1", "h2")
			env := newEnv(t, f)
			s := spec(2, 0, 3, "h1", "h2")
			s.ResyncInterval = tc.resync
			// h2 stays up: one listing per observation.
			listings := func() int { f.mu.Lock(); defer f.mu.Unlock(); return f.listings["h2"] }
			var atQuiet, atDown int
			env.RegisterDelayedCallback(func() { atQuiet = listings() }, time.Minute)
			env.RegisterDelayedCallback(func() {
				if n := listings() - atQuiet; n > tc.quietMax || (tc.resync == 0 && n < 79) {
					t.Errorf("observations in 20 quiet minutes = %d, want at most %d (and about 80 without watchers)", n, tc.quietMax)
				}
				if got := f.running(); len(got) != 2 {
					t.Errorf("running %v, want 2", got)
				}
				f.setDown("h1", true)
				atDown = listings()
				env.SignalWorkflow(workflows.SignalHostChange, activities.HostChange{Host: "h1", Event: activities.EventDisconnected})
			}, 21*time.Minute)
			env.RegisterDelayedCallback(func() {
				if n := listings() - atDown; n < tc.downMin {
					t.Errorf("observations in the 2 minutes after h1 went down = %d, want at least %d (each evaluation interval)", n, tc.downMin)
				}
				st := status(t, env)
				if !slices.Equal(st.UnreachableHosts, []string{"h1"}) {
					t.Errorf("unreachable hosts %v, want [h1]", st.UnreachableHosts)
				}
				env.CancelWorkflow()
			}, 23*time.Minute)
			runGroup(t, env, workflows.GroupInput{Spec: s})
		})
	}
}
