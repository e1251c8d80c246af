package test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/digitalocean/go-libvirt"
	enumspb "go.temporal.io/api/enums/v1"

	"github.com/premiscale/premiscale/activities"
	"github.com/premiscale/premiscale/workflows"
)

// tinyGuestDir is where test/guest/build.sh put the tiny guest, or skips.
func tinyGuestDir(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("TINY_GUEST_DIR")
	if dir == "" {
		if os.Getenv("PSTEST_REQUIRE_ALL") == "1" {
			t.Fatal("TINY_GUEST_DIR not set under PSTEST_REQUIRE_ALL")
		}
		t.Skip("TINY_GUEST_DIR not set: run through make test, which builds the tiny guest")
	}
	return dir
}

// warmController runs a controller whose group of tiny real guests (direct
// kernel boot, console logged, 256 MiB, no network) on the first hosts.sh
// host has the warm pool warm (YAML flow). It returns a connection to the
// host, the controller, its Temporal port and the directory of the guests'
// console logs.
func warmController(t *testing.T, group string, max int, warm string) (*libvirt.Libvirt, *controller, int, string) {
	t.Helper()
	hosts, conns, c, port, logDir := warmControllerOn(t, 1, group, max, warm, "")
	return conns[hosts[0].name], c, port, logDir
}

// warmControllerOn is warmController over the first n hosts.sh hosts, with
// more of the group's keys in extra (YAML lines indented under the group);
// logDir is the first host's.
func warmControllerOn(t *testing.T, n int, group string, max int, warm, extra string) ([]libvirtHost, map[string]*libvirt.Libvirt, *controller, int, string) {
	t.Helper()
	dir := tinyGuestDir(t)
	hosts := requireHosts(t, n)
	conns := map[string]*libvirt.Libvirt{}
	for _, h := range hosts {
		lv := connectURI(t, h.qemuURI())
		conns[h.name] = lv
		purgeGroup(t, lv, guestPool, group)
	}
	t.Cleanup(func() {
		for _, h := range hosts {
			// A fresh connection: the host may have been restarted.
			lv := connectURI(t, h.qemuURI())
			purgeGroup(t, lv, guestPool, group)
		}
	})
	out, err := exec.Command(hostsScript, "dir", strconv.Itoa(hosts[0].num)).Output()
	if err != nil {
		t.Fatalf("hosts.sh dir: %v", err)
	}
	logDir := filepath.Join(strings.TrimSpace(string(out)), "log", "qemu")
	port := freePort(t)
	cfg, logPath := multiHostConfig(t, port, hosts, libvirtHost.qemuURI, guestPool, ", cpuOvercommit: 4, memoryOvercommit: 4", fmt.Sprintf(`    - name: %s
      max: %d
      scaling: {evaluationInterval: 1s}
      warmPool: {%s}
      template: {diskSize: 16MiB, vcpus: 1, memory: 256MiB, domainType: qemu, shutdownTimeout: 0s,
                 kernel: %s, initrd: %s, cmdline: "console=ttyS0 quiet panic=-1",
                 consoleLog: true, network: {type: none}}
%s`, group, max, warm, filepath.Join(dir, "vmlinuz"), filepath.Join(dir, "initrd.img"), extra))
	c := &controller{t: t, config: cfg, log: logPath}
	c.start()
	t.Cleanup(func() { c.kill(syscall.SIGKILL) })
	t.Cleanup(func() { c.checkLogForPanics() })
	return hosts, conns, c, port, logDir
}

// waitWarm polls the group's status until it settles at desired with its
// warm pool full and nothing being prepared.
func (c *controller) waitWarm(group string, desired int, timeout time.Duration) workflows.GroupStatus {
	c.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		st := c.status(group)
		if st.Desired == desired && st.Settled() && len(st.UnreachableHosts) == 0 &&
			st.Warm == st.WarmTarget && st.Warming == 0 && len(st.Members) == st.Desired+st.Warm {
			return st
		}
		if time.Now().After(deadline) {
			c.dumpLog()
			c.t.Fatalf("group %s did not settle at %d with its warm pool full within %s: %+v", group, desired, timeout, st)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// membersIn lists the status's members in state, sorted.
func membersIn(st workflows.GroupStatus, state workflows.MemberState) []string {
	var out []string
	for _, m := range st.Members {
		if m.State == state {
			out = append(out, m.Name)
		}
	}
	slices.Sort(out)
	return out
}

// checkWarmInvariant asserts what must hold once a group with a
// hibernated warm pool has settled: the running domains are exactly the
// running members (desired of them); every other domain of the group is
// exactly a warm member, shut off with a managed save image; each domain
// on its own volume and no volume without its domain. No VM is both warm
// and in the group.
func checkWarmInvariant(t *testing.T, lv *libvirt.Libvirt, st workflows.GroupStatus) string {
	t.Helper()
	v := viewGroupIn(t, lv, guestPool, st.Group)
	running, warm := membersIn(st, workflows.MemberRunning), membersIn(st, workflows.MemberWarm)
	if !slices.Equal(v.running, running) || len(running) != st.Desired {
		t.Fatalf("running domains %v, running members %v, desired %d", v.running, running, st.Desired)
	}
	parked := slices.DeleteFunc(slices.Clone(v.defined), func(d string) bool { return slices.Contains(v.running, d) })
	if !slices.Equal(parked, warm) {
		t.Fatalf("domains defined but not running %v, warm members %v", parked, warm)
	}
	for _, name := range warm {
		if slices.Contains(running, name) {
			t.Fatalf("%s is both warm and in the group", name)
		}
		d, err := lv.DomainLookupByName(name)
		if err != nil {
			t.Fatal(err)
		}
		state, _, err := lv.DomainGetState(d, 0)
		if err != nil {
			t.Fatal(err)
		}
		saved, err := lv.DomainHasManagedSaveImage(d, 0)
		if err != nil {
			t.Fatal(err)
		}
		if libvirt.DomainState(state) != libvirt.DomainShutoff || saved != 1 {
			t.Fatalf("warm %s: state %d, managed save image %d; want shut off with an image", name, state, saved)
		}
	}
	for _, d := range v.defined {
		if v.diskOf[d] != activities.VolumeName(d) || !slices.Contains(v.volumes, activities.VolumeName(d)) {
			t.Fatalf("domain %s uses %q; volumes %v", d, v.diskOf[d], v.volumes)
		}
	}
	for _, vol := range v.volumes {
		if owner := strings.TrimSuffix(strings.TrimPrefix(vol, activities.VolumePrefix), ".qcow2"); !slices.Contains(v.defined, owner) {
			t.Fatalf("leaked volume %s", vol)
		}
	}
	return fmt.Sprintf("running %v warm %v", running, warm)
}

var tickRE = regexp.MustCompile(`PREMISCALE-GUEST-TICK (\d+)`)

// lastTick is the highest tick the guest printed to its console log (0 if
// none): the tiny guest counts seconds since it came up.
func lastTick(logDir, vm string) int {
	b, _ := os.ReadFile(filepath.Join(logDir, vm+"-console.log"))
	n := 0
	for _, m := range tickRE.FindAllSubmatch(b, -1) {
		if v, _ := strconv.Atoi(string(m[1])); v > n {
			n = v
		}
	}
	return n
}

// TestWarmPoolOfRealGuestsFillsActivatesAndRefills: a hibernated pool of
// two tiny QEMU guests fills (each booted until its console says it is up,
// then managed-saved); `scale 1 --wait` takes a warm VM, which goes on
// counting where it stopped (restored, not booted again); the pool then
// refills; a scale-in deletes (reuseOnScaleIn off).
func TestWarmPoolOfRealGuestsFillsActivatesAndRefills(t *testing.T) {
	const group = "wpa"
	lv, c, port, logDir := warmController(t, group, 3, `size: 2, state: hibernated, ready: {consoleLine: "PREMISCALE-GUEST-READY", timeout: 3m}`)
	t.Cleanup(func() { c.recordHistories(port, "warm") })
	st := c.waitWarm(group, 0, 5*time.Minute)
	t.Logf("pool filled: %s", checkWarmInvariant(t, lv, st))
	warm := membersIn(st, workflows.MemberWarm)
	before := map[string]int{}
	for _, vm := range warm {
		before[vm] = lastTick(logDir, vm)
	}

	start := time.Now()
	c.mustCLI("scale", group, "1", "--wait")
	took := time.Since(start)
	st = c.status(group)
	running := membersIn(st, workflows.MemberRunning)
	if len(running) != 1 || !slices.Contains(warm, running[0]) {
		t.Fatalf("running %v after scale 1, want one of the warm %v", running, warm)
	}
	vm := running[0]
	// A cold boot prints its first line ~8 s after start; a restored guest
	// ticks on from where it was saved within about a second.
	deadline := time.Now().Add(4 * time.Second)
	for lastTick(logDir, vm) <= before[vm] {
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(filepath.Join(logDir, vm+"-console.log"))
			t.Fatalf("%s did not tick on within 4 s of its activation (ticked to %d before); console:\n%s", vm, before[vm], b)
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("scale 1 --wait took %s; %s ticked on from %d to %d", took.Round(time.Millisecond), vm, before[vm], lastTick(logDir, vm))

	st = c.waitWarm(group, 1, 5*time.Minute)
	t.Logf("pool refilled: %s", checkWarmInvariant(t, lv, st))

	c.mustCLI("scale", group, "0", "--wait")
	st = c.waitWarm(group, 0, 3*time.Minute)
	if slices.Contains(membersIn(st, workflows.MemberWarm), vm) {
		t.Errorf("%s returned to the pool although reuseOnScaleIn is off", vm)
	}
	t.Logf("scaled in: %s", checkWarmInvariant(t, lv, st))
	if out := c.mustCLI("status", group); !strings.Contains(out, "warm pool: 2 of 2 hibernated") {
		t.Errorf("status does not show the pool:\n%s", out)
	}
	c.checkWorkflowTasks(port)
}

// TestWarmPoolSurvivesSIGKILLDuringActivationAndRefill SIGKILLs the
// controller while warm VMs are restored into the group, returned to the
// pool (reuseOnScaleIn) and the pool refilled, restarts it, and after each
// settle checks checkWarmInvariant: nothing leaked, nothing duplicated, no
// VM both warm and in the group.
func TestWarmPoolSurvivesSIGKILLDuringActivationAndRefill(t *testing.T) {
	const group = "wpk"
	// Prepared capacity 2: the pool holds 2 - desired, so every scale-in
	// has room to return its VMs and every scale-out takes warm ones.
	lv, c, port, _ := warmController(t, group, 2, `maxPreparedSize: 2, state: hibernated, reuseOnScaleIn: true, ready: {consoleLine: "PREMISCALE-GUEST-READY", timeout: 3m}`)
	t.Cleanup(func() { c.recordHistories(port, "warmkill") })
	c.waitWarm(group, 0, 5*time.Minute)
	for i, want := range []int{1, 0, 2, 1, 0} {
		c.mustCLI("scale", group, strconv.Itoa(want))
		time.Sleep(time.Duration(rand.IntN(6000)) * time.Millisecond)
		c.kill(syscall.SIGKILL)
		c.start()
		restarted := time.Now()
		st := c.waitWarm(group, want, 5*time.Minute)
		t.Logf("kill %d (scale to %d): settled in %s: %s", i+1, want, time.Since(restarted).Round(time.Millisecond), checkWarmInvariant(t, lv, st))
		c.checkWorkflowTasks(port)
	}
	// Only the first two VMs ever existed: scale-ins returned them to the
	// pool and scale-outs took them back.
	if st := c.status(group); !slices.Equal(membersIn(st, workflows.MemberWarm), []string{"wpk-1", "wpk-2"}) {
		t.Errorf("warm at the end %v, want [wpk-1 wpk-2]: VMs were deleted and made again instead of reused", membersIn(st, workflows.MemberWarm))
	}
}

// TestWarmVMWhoseReadyLineWentByUnwatchedIsRemadeAtOnce: the controller
// (the only worker) is SIGKILLed while a warming VM's WaitConsoleLine
// watches its console, and stays down until the guest has printed its
// ready line. libvirt keeps no console history, so the retry cannot see the
// line: it must give the VM up at once (ReadyUnseen) and make another,
// rather than wait the 10-minute readiness timeout for a line that went by.
func TestWarmVMWhoseReadyLineWentByUnwatchedIsRemadeAtOnce(t *testing.T) {
	const group = "wpu"
	_, c, port, logDir := warmController(t, group, 1, `size: 1, state: hibernated, ready: {consoleLine: "PREMISCALE-GUEST-READY", timeout: 10m}`)
	t.Cleanup(func() { c.recordHistories(port, "warmunseen") })
	tc := c.mustDial()
	vm := group + "-1"
	deadline := time.Now().Add(3 * time.Minute)
	for watching := false; !watching; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			c.dumpLog()
			t.Fatalf("no WaitConsoleLine of %s started within 3 minutes", vm)
		}
		d, err := tc.DescribeWorkflowExecution(context.Background(), workflows.ProvisionWorkflowID(group, vm), "")
		if err != nil {
			continue
		}
		for _, a := range d.GetPendingActivities() {
			if a.GetActivityType().GetName() == "WaitConsoleLine" && a.GetState() == enumspb.PENDING_ACTIVITY_STATE_STARTED {
				watching = true
			}
		}
	}
	if strings.Contains(consoleLog(logDir, vm), "PREMISCALE-GUEST-READY") {
		t.Fatalf("%s printed its ready line before its console was watched (it takes ~8 s to boot)", vm)
	}
	c.kill(syscall.SIGKILL)
	for !strings.Contains(consoleLog(logDir, vm), "PREMISCALE-GUEST-READY") {
		if time.Now().After(deadline) {
			t.Fatalf("%s never printed its ready line:\n%s", vm, consoleLog(logDir, vm))
		}
		time.Sleep(100 * time.Millisecond)
	}
	c.start()
	restarted := time.Now()
	st := c.waitWarm(group, 0, 3*time.Minute)
	warm := membersIn(st, workflows.MemberWarm)
	if slices.Contains(warm, vm) {
		t.Errorf("warm %v: %s, whose ready line nobody saw, was kept", warm, vm)
	}
	t.Logf("pool full again %s after the restart, with %v", time.Since(restarted).Round(time.Millisecond), warm)
	if b, _ := os.ReadFile(c.log); !strings.Contains(string(b), "went unwatched") {
		t.Errorf("the controller's log does not say why %s was given up (ReadyUnseen)", vm)
	}
	c.checkWorkflowTasks(port)
}

// consoleLog is what vm's serial console printed so far (consoleLog: true).
func consoleLog(logDir, vm string) string {
	b, _ := os.ReadFile(filepath.Join(logDir, vm+"-console.log"))
	return string(b)
}

// TestWarmVMWhoseHostDiesIsReplacedElsewhere: the libvirtd of the host of
// one of two warm VMs dies; past hostFailureGracePeriod the warm VM is
// lost and the pool refilled on the other host; when the host returns,
// the lost VM (domain, save image and volume) is removed from it.
func TestWarmVMWhoseHostDiesIsReplacedElsewhere(t *testing.T) {
	const group = "wph"
	hosts, conns, c, port, _ := warmControllerOn(t, 2, group, 2,
		`size: 2, state: hibernated, ready: {consoleLine: "PREMISCALE-GUEST-READY", timeout: 3m}`,
		"      hostFailureGracePeriod: 5s\n")
	st := c.waitWarm(group, 0, 5*time.Minute)
	on := map[string]string{}
	for _, m := range st.Members {
		on[m.Name] = m.Host
	}
	victim, survivor := hosts[1], hosts[0]
	var doomed string
	for vm, h := range on {
		if h == victim.name {
			doomed = vm
		}
	}
	if doomed == "" {
		t.Fatalf("spread placed no warm VM on %s: %v", victim.name, on)
	}
	hostCtl(t, "kill", victim)
	killed := time.Now()
	deadline := killed.Add(4 * time.Minute)
	for {
		st = c.status(group)
		warmOn := map[string]int{}
		for _, m := range st.Members {
			if m.State == workflows.MemberWarm {
				warmOn[m.Host]++
			}
		}
		if st.Lost == 1 && warmOn[survivor.name] == 2 && st.Warming == 0 {
			break
		}
		if time.Now().After(deadline) {
			c.dumpLog()
			t.Fatalf("warm %s on dead %s not replaced on %s: %+v", doomed, victim.name, survivor.name, st)
		}
		time.Sleep(250 * time.Millisecond)
	}
	t.Logf("warm %s lost with %s and replaced on %s %s after the host died", doomed, victim.name, survivor.name, time.Since(killed).Round(time.Millisecond))

	hostCtl(t, "restart", victim)
	back := time.Now()
	lv := connectURI(t, victim.qemuURI())
	for {
		stale := viewGroupIn(t, lv, guestPool, group)
		if len(stale.defined) == 0 && len(stale.volumes) == 0 {
			break
		}
		if time.Since(back) > 3*time.Minute {
			c.dumpLog()
			t.Fatalf("lost warm VM not removed from %s after it returned: %v, volumes %v", victim.name, stale.defined, stale.volumes)
		}
		time.Sleep(250 * time.Millisecond)
	}
	st = c.waitWarm(group, 0, 2*time.Minute)
	t.Logf("%s returned; the lost warm VM removed in %s: %s", victim.name, time.Since(back).Round(time.Millisecond), checkWarmInvariant(t, conns[survivor.name], st))
	c.checkWorkflowTasks(port)
}
