package test

import (
	"bufio"
	"bytes"
	"flag"
	"fmt"
	"maps"
	"math/rand/v2"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/digitalocean/go-libvirt"

	"github.com/premiscale/premiscale/activities"
	"github.com/premiscale/premiscale/workflows"
)

var crashKills = flag.Int("crash.kills", 50, "SIGKILLs of the controller in TestKillLoop (CI's short run is 50; raise it for a long run)")

// hostsScript starts, kills and restarts the independent libvirtd hosts.
const hostsScript = "scripts/hosts.sh"

// libvirtHost is one of the independent libvirtd daemons of hosts.sh, each
// in its own mount namespace and listening on its own loopback port.
type libvirtHost struct {
	name string
	num  int
	port int
}

func (h libvirtHost) testURI() string { return fmt.Sprintf("test+tcp://127.0.0.1:%d/default", h.port) }
func (h libvirtHost) qemuURI() string { return fmt.Sprintf("qemu+tcp://127.0.0.1:%d/system", h.port) }

// requireHosts returns the hosts started by `hosts.sh start`, at least n of
// them, or skips (fails under PSTEST_REQUIRE_ALL=1).
func requireHosts(t testing.TB, n int) []libvirtHost {
	t.Helper()
	out, err := exec.Command(hostsScript, "uris").Output()
	var hosts []libvirtHost
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) != 2 {
			continue
		}
		port, perr := strconv.Atoi(f[1])
		num, nerr := strconv.Atoi(strings.TrimPrefix(f[0], "h"))
		if perr == nil && nerr == nil {
			hosts = append(hosts, libvirtHost{name: f[0], num: num, port: port})
		}
	}
	if err != nil || len(hosts) < n {
		msg := fmt.Sprintf("need %d libvirtd hosts from test/scripts/hosts.sh, have %d (%v)", n, len(hosts), err)
		if os.Getenv("PSTEST_REQUIRE_ALL") == "1" {
			t.Fatal(msg)
		}
		t.Skip(msg + "; run through make test")
	}
	return hosts[:n]
}

// freezeHost stops (SIGSTOP) h's libvirtd: its socket still accepts
// connections and nothing answers. thaw continues it, and so does the
// test's cleanup if thaw was not called.
func freezeHost(t *testing.T, h libvirtHost) (thaw func()) {
	t.Helper()
	hostCtl(t, "freeze", h)
	var once sync.Once
	thaw = func() { once.Do(func() { hostCtl(t, "thaw", h) }) }
	t.Cleanup(thaw)
	return thaw
}

// hostCtl runs `hosts.sh ACTION NUM`.
func hostCtl(t *testing.T, action string, h libvirtHost) {
	t.Helper()
	out, err := exec.Command(hostsScript, action, strconv.Itoa(h.num)).CombinedOutput()
	if err != nil {
		t.Fatalf("hosts.sh %s %d: %v\n%s", action, h.num, err, out)
	}
}

func connectURI(t testing.TB, uri string) *libvirt.Libvirt {
	t.Helper()
	u, err := url.Parse(uri)
	if err != nil {
		t.Fatal(err)
	}
	lv, err := libvirt.ConnectToURI(u)
	if err != nil {
		t.Fatalf("connect %s: %v", uri, err)
	}
	closeAtCleanup(t, lv)
	return lv
}

// multiHostConfig writes a controller config for hosts (given as name ->
// URI) and groups (YAML list items, indented for autoscale.groups).
func multiHostConfig(t testing.TB, port int, hosts []libvirtHost, uri func(libvirtHost) string, pool, hostExtra, groups string) (cfgPath, logPath string) {
	dir := t.TempDir()
	cfgPath = filepath.Join(dir, "config.yaml")
	logPath = filepath.Join(dir, "controller.log")
	var hs strings.Builder
	for _, h := range hosts {
		fmt.Fprintf(&hs, "    - {name: %s, uri: \"%s\", pool: %s%s}\n", h.name, uri(h), pool, hostExtra)
	}
	body := fmt.Sprintf(`version: v1alpha1
controller:
  stateDir: %s/state
  log: {level: debug, file: %s}
  metrics: {listen: "127.0.0.1:0"}
  temporal:
    embedded: {port: %d}
autoscale:
  hosts:
%s  groups:
%s`, dir, logPath, port, hs.String(), groups)
	if err := os.WriteFile(cfgPath, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return cfgPath, logPath
}

// hostView is one group's resources on every host.
type hostView map[string]libvirtView

func viewHosts(t testing.TB, conns map[string]*libvirt.Libvirt, pool, group string) hostView {
	t.Helper()
	v := hostView{}
	for name, lv := range conns {
		v[name] = viewGroupIn(t, lv, pool, group)
	}
	return v
}

// counts returns how many domains of the group each host has, sorted
// descending (host names dropped), e.g. [2 2 2].
func (v hostView) counts() []int {
	var c []int
	for _, hv := range v {
		c = append(c, len(hv.defined))
	}
	sort.Sort(sort.Reverse(sort.IntSlice(c)))
	return c
}

// checkInvariant asserts what must hold after every crash once the group
// settles: exactly desired members, all running, each domain on exactly one
// host (no duplicates), each with its own volume on that host, no volume
// without its domain, and the group's status agreeing with libvirt on
// which host holds which member. It returns a one-line summary.
func checkInvariant(t testing.TB, conns map[string]*libvirt.Libvirt, pool string, st workflows.GroupStatus) string {
	t.Helper()
	v := viewHosts(t, conns, pool, st.Group)
	where := map[string]string{}
	running := 0
	var summary []string
	for _, host := range slices.Sorted(maps.Keys(v)) {
		hv := v[host]
		summary = append(summary, fmt.Sprintf("%s:%d", host, len(hv.defined)))
		running += len(hv.running)
		for _, d := range hv.defined {
			if other, dup := where[d]; dup {
				t.Fatalf("duplicate: domain %s is defined on %s and %s", d, other, host)
			}
			where[d] = host
			if vol := hv.diskOf[d]; vol != activities.VolumeName(d) {
				t.Fatalf("domain %s on %s uses volume %q, want its own %q", d, host, vol, activities.VolumeName(d))
			}
			if !slices.Contains(hv.volumes, activities.VolumeName(d)) {
				t.Fatalf("domain %s on %s has no volume %s", d, host, activities.VolumeName(d))
			}
		}
		for _, vol := range hv.volumes {
			// A root disk (.qcow2) or, for a joining VM, its seed (.seed.iso).
			owner := strings.TrimSuffix(strings.TrimSuffix(strings.TrimPrefix(vol, activities.VolumePrefix), ".qcow2"), ".seed.iso")
			if !slices.Contains(hv.defined, owner) {
				t.Fatalf("leaked volume %s on %s: no domain of %s uses it", vol, host, st.Group)
			}
		}
	}
	if len(where) != st.Desired || running != st.Desired {
		t.Fatalf("group %s: %d defined, %d running across hosts (%v), want exactly desired %d", st.Group, len(where), running, summary, st.Desired)
	}
	for _, m := range st.Members {
		if where[m.Name] != m.Host {
			t.Fatalf("status says %s is on %q, libvirt has it on %q", m.Name, m.Host, where[m.Name])
		}
	}
	if len(st.Members) != st.Desired {
		t.Fatalf("status lists %d members, want %d", len(st.Members), st.Desired)
	}
	return strings.Join(summary, " ")
}

// waitSettled polls the group's status until it settles at desired.
func (c *controller) waitSettled(group string, desired int, timeout time.Duration) workflows.GroupStatus {
	c.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		st := c.status(group)
		if st.Desired != desired {
			c.t.Fatalf("group %s desired = %d, want %d", group, st.Desired, desired)
		}
		if st.Settled() && len(st.UnreachableHosts) == 0 {
			return st
		}
		if time.Now().After(deadline) {
			c.dumpLog()
			c.t.Fatalf("group %s did not settle at %d within %s: %+v", group, desired, timeout, st)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// TestKillLoopAcrossThreeHostsKeepsEveryInvariant SIGKILLs the whole
// controller (worker and embedded Temporal server) at random moments while
// two groups spread over three libvirtd hosts scale out and in, restarts
// it, and after each settle checks the invariant of checkInvariant for both
// groups and that no workflow task failed for non-determinism or a panic.
// Every other round scales to max and straight back first, so that kills
// also land during the cleanups of cancelled provisionings. CI runs 50
// kills; -crash.kills=N runs more.
func TestKillLoopAcrossThreeHostsKeepsEveryInvariant(t *testing.T) {
	hosts := requireHosts(t, 3)
	conns := map[string]*libvirt.Libvirt{}
	for _, h := range hosts {
		// Also keeps each daemon's test-driver state alive across kills.
		conns[h.name] = connectURI(t, h.testURI())
	}
	groups := []string{"ka", "kb"}
	const max = 6
	port := freePort(t)
	cfg, logPath := multiHostConfig(t, port, hosts, libvirtHost.testURI, testPool,
		", cpuOvercommit: 16, memoryOvercommit: 16", fmt.Sprintf(`    - name: ka
      max: %d
      scaling: {evaluationInterval: 1s}
      template: {diskSize: 64MiB, memory: 64MiB, domainType: qemu, shutdownTimeout: 0s}
    - name: kb
      max: %d
      placement: {strategy: binpack}
      scaling: {evaluationInterval: 1s}
      template: {diskSize: 64MiB, memory: 64MiB, domainType: qemu, shutdownTimeout: 0s}
`, max, max))
	c := &controller{t: t, config: cfg, log: logPath}
	c.start()
	t.Cleanup(func() { c.kill(syscall.SIGKILL) })
	t.Cleanup(func() { c.checkLogForPanics() })

	var settle []time.Duration
	midChange := 0 // kills that left libvirt short of the targets
	began := time.Now()
	for i := 1; i <= *crashKills; i++ {
		want := map[string]int{}
		for _, g := range groups {
			want[g] = rand.IntN(max + 1)
			if i%2 == 0 {
				// Up to max and straight back: the scale-in cancels
				// provisionings in flight, so the kill lands during their
				// cleanups (compensation) as well as during provisioning
				// and decommissioning.
				c.mustCLI("scale", g, strconv.Itoa(max))
			}
			c.mustCLI("scale", g, strconv.Itoa(want[g]))
		}
		// The test driver completes a step in about a millisecond, so a
		// scale takes some 100-500 ms of workflow work: kill within it.
		time.Sleep(time.Duration(rand.IntN(400)) * time.Millisecond)
		c.kill(syscall.SIGKILL)
		for _, g := range groups {
			if !groupAt(t, conns, g, want[g]) {
				midChange++
				break
			}
		}
		c.start()
		restarted := time.Now()
		var lines []string
		for _, g := range groups {
			st := c.waitSettled(g, want[g], 3*time.Minute)
			lines = append(lines, g+"="+strconv.Itoa(want[g])+" ["+checkInvariant(t, conns, testPool, st)+"]")
		}
		settle = append(settle, time.Since(restarted))
		c.checkWorkflowTasks(port)
		t.Logf("kill %d/%d: settled in %s: %s", i, *crashKills, settle[len(settle)-1].Round(time.Millisecond), strings.Join(lines, " "))
	}
	slices.Sort(settle)
	t.Logf("survived %d kills (%d of them mid-change) in %s; time to settle after restart: min %s, median %s, max %s",
		len(settle), midChange, time.Since(began).Round(time.Second), settle[0].Round(time.Millisecond),
		settle[len(settle)/2].Round(time.Millisecond), settle[len(settle)-1].Round(time.Millisecond))

	for _, g := range groups {
		c.mustCLI("scale", g, "0")
	}
	for _, g := range groups {
		checkInvariant(t, conns, testPool, c.waitSettled(g, 0, 2*time.Minute))
	}
	c.checkWorkflowTasks(port)
}

// groupAt reports whether libvirt holds exactly n running domains of group,
// each with its volume, across the hosts.
func groupAt(t testing.TB, conns map[string]*libvirt.Libvirt, group string, n int) bool {
	running, defined, volumes := 0, 0, 0
	for _, hv := range viewHosts(t, conns, testPool, group) {
		running, defined, volumes = running+len(hv.running), defined+len(hv.defined), volumes+len(hv.volumes)
	}
	return running == n && defined == n && volumes == n
}

// qemuHostGroups are the groups of TestThreeQEMUHosts: small QEMU/TCG
// domains on a blank disk (SeaBIOS finds nothing to boot and idles, which
// keeps eight of them cheap on two cores; test/qemu_test.go boots a real
// guest). Each host has 2 CPUs: with cpuOvercommit 2, a 1-vCPU "sp" VM
// fits 4 times per host and a 2-vCPU "bp" VM twice.
const qemuHostGroups = `    - name: sp
      max: 6
      hostFailureGracePeriod: 5s
      scaling: {evaluationInterval: 1s}
      template: {diskSize: 16MiB, vcpus: 1, memory: 64MiB, domainType: qemu, shutdownTimeout: 0s}
    - name: bp
      max: 6
      placement: {strategy: binpack}
      scaling: {evaluationInterval: 1s}
      template: {diskSize: 16MiB, vcpus: 2, memory: 64MiB, domainType: qemu, shutdownTimeout: 0s}
`

// TestThreeQEMUHostsSpreadBinpackAndHostFailure runs on three real QEMU
// libvirtd hosts: spread places 6 VMs 2/2/2; a host whose libvirtd dies has
// its members replaced on the others after hostFailureGracePeriod, and once
// it answers again its stale domains and volumes are removed, leaving
// exactly desired; binpack fills one host before using the next.
func TestThreeQEMUHostsSpreadBinpackAndHostFailure(t *testing.T) {
	hosts := requireHosts(t, 3)
	conns := map[string]*libvirt.Libvirt{}
	for _, h := range hosts {
		conns[h.name] = connectURI(t, h.qemuURI())
	}
	port := freePort(t)
	cfg, logPath := multiHostConfig(t, port, hosts, libvirtHost.qemuURI, guestPool, ", cpuOvercommit: 2", qemuHostGroups)
	c := &controller{t: t, config: cfg, log: logPath}
	c.start()
	t.Cleanup(func() { c.kill(syscall.SIGKILL) })
	t.Cleanup(func() { c.checkLogForPanics() })

	// --wait shows progress off a terminal as plain lines, with the step
	// of each VM in flight (QEMU guests take seconds to boot here).
	out := c.mustCLI("scale", "sp", "6", "--wait", "--timeout", "3m")
	if !regexp.MustCompile(`(?m)^group sp: \d/6 running, \d provisioning, \d decommissioning \(sp-\d+: (clone|define|start|boot)`).MatchString(out) {
		t.Errorf("scale --wait showed no progress with steps:\n%s", out)
	}
	st := c.waitSettled("sp", 6, time.Minute)
	t.Logf("spread 6: %s", checkInvariant(t, conns, guestPool, st))
	if got := viewHosts(t, conns, guestPool, "sp").counts(); !slices.Equal(got, []int{2, 2, 2}) {
		t.Fatalf("spread placed 6 VMs as %v, want 2/2/2", got)
	}

	// libvirtd of one host dies; its QEMU guests keep running, unreachable.
	victim := hosts[1]
	lost := viewGroupIn(t, conns[victim.name], guestPool, "sp").defined
	hostCtl(t, "kill", victim)
	killed := time.Now()
	delete(conns, victim.name)
	deadline := killed.Add(2 * time.Minute)
	for {
		st = c.status("sp")
		if slices.Contains(st.UnreachableHosts, victim.name) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("host %s never reported unreachable: %+v", victim.name, st)
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Logf("%s unreachable in status %s after its libvirtd died", victim.name, time.Since(killed).Round(time.Millisecond))
	// Replacement on the other two hosts, not before the grace period.
	for {
		st = c.status("sp")
		others := viewHosts(t, conns, guestPool, "sp")
		n := 0
		for _, hv := range others {
			n += len(hv.running)
		}
		if n == 6 {
			break
		}
		if n > 4 && time.Since(killed) < 5*time.Second {
			t.Fatalf("members replaced %s after the host died, before hostFailureGracePeriod 5s", time.Since(killed))
		}
		if time.Since(killed) > 3*time.Minute {
			c.dumpLog()
			t.Fatalf("members of %s not replaced on the other hosts: %d running there; status %+v", victim.name, n, st)
		}
		time.Sleep(250 * time.Millisecond)
	}
	t.Logf("2 members of %s replaced on the other hosts %s after its libvirtd died", victim.name, time.Since(killed).Round(time.Millisecond))

	// The host comes back with its stale domains still running.
	hostCtl(t, "restart", victim)
	back := time.Now()
	conns[victim.name] = connectURI(t, victim.qemuURI())
	if got := viewGroupIn(t, conns[victim.name], guestPool, "sp").running; !slices.Equal(got, lost) {
		t.Logf("after restart %s holds %v (before its death: %v)", victim.name, got, lost)
	}
	for {
		stale := viewGroupIn(t, conns[victim.name], guestPool, "sp")
		if len(stale.defined) == 0 && len(stale.volumes) == 0 {
			break
		}
		if time.Since(back) > 3*time.Minute {
			c.dumpLog()
			t.Fatalf("stale members on %s not removed after it returned: %v, volumes %v", victim.name, stale.defined, stale.volumes)
		}
		time.Sleep(250 * time.Millisecond)
	}
	st = c.waitSettled("sp", 6, 2*time.Minute)
	t.Logf("%s returned; its stale members removed in %s: %s", victim.name, time.Since(back).Round(time.Millisecond), checkInvariant(t, conns, guestPool, st))

	c.mustCLI("scale", "sp", "0", "--wait", "--timeout", "3m")
	checkInvariant(t, conns, guestPool, c.waitSettled("sp", 0, time.Minute))

	// binpack: 2-vCPU VMs, 2 per host; 3 VMs fill one host, then the next.
	for n := 1; n <= 3; n++ {
		c.mustCLI("scale", "bp", strconv.Itoa(n), "--wait", "--timeout", "3m")
		st := c.waitSettled("bp", n, time.Minute)
		summary := checkInvariant(t, conns, guestPool, st)
		want := map[int][]int{1: {1, 0, 0}, 2: {2, 0, 0}, 3: {2, 1, 0}}[n]
		if got := viewHosts(t, conns, guestPool, "bp").counts(); !slices.Equal(got, want) {
			t.Fatalf("binpack placed %d VMs as %v (%s), want %v", n, got, summary, want)
		}
		t.Logf("binpack %d: %s", n, summary)
	}
	c.mustCLI("scale", "bp", "0", "--wait", "--timeout", "3m")
	checkInvariant(t, conns, guestPool, c.waitSettled("bp", 0, time.Minute))
	c.checkWorkflowTasks(port)
	c.recordHistories(port, "lost_host")
}

// TestHungHostDoesNotStallTheOthers freezes (SIGSTOP) one of three hosts'
// libvirtd during a scale-out: its socket still accepts connections and
// nothing answers, as with a daemon stuck on a dead NFS pool. The VMs
// placed on the other two hosts must run within the time a normal
// scale-out takes plus one evaluation interval (with slack for a shared
// machine); the frozen host must show as unreachable in status; once it is
// thawed the group converges with nothing leaked or duplicated.
func TestHungHostDoesNotStallTheOthers(t *testing.T) {
	hosts := requireHosts(t, 3)
	conns := map[string]*libvirt.Libvirt{}
	for _, h := range hosts {
		conns[h.name] = connectURI(t, h.testURI())
	}
	const group, n, interval = "hung", 6, time.Second
	port := freePort(t)
	cfg, logPath := multiHostConfig(t, port, hosts, libvirtHost.testURI, testPool,
		", cpuOvercommit: 16, memoryOvercommit: 16", fmt.Sprintf(`    - name: %s
      max: %d
      scaling: {evaluationInterval: %s}
      template: {diskSize: 64MiB, memory: 64MiB, domainType: qemu, shutdownTimeout: 0s}
`, group, n, interval))
	c := &controller{t: t, config: cfg, log: logPath}
	c.start()
	t.Cleanup(func() { c.kill(syscall.SIGKILL) })
	t.Cleanup(func() { c.checkLogForPanics() })

	// The normal time of this scale-out, all hosts answering.
	began := time.Now()
	c.mustCLI("scale", group, strconv.Itoa(n))
	checkInvariant(t, conns, testPool, c.waitSettled(group, n, 2*time.Minute))
	normal := time.Since(began)
	c.mustCLI("scale", group, "0")
	checkInvariant(t, conns, testPool, c.waitSettled(group, 0, 2*time.Minute))

	victim := hosts[1]
	others := []string{hosts[0].name, hosts[2].name}
	c.mustCLI("scale", group, strconv.Itoa(n))
	thaw := freezeHost(t, victim)
	frozen := time.Now()
	// The members placed on the answering hosts run in about the normal time.
	bound := normal + interval + 10*time.Second + normal/2
	var onOthers, unreachableAfter time.Duration
	for onOthers == 0 || unreachableAfter == 0 {
		st := c.status(group)
		placed, running := 0, 0
		for _, m := range st.Members {
			if slices.Contains(others, m.Host) {
				placed++
				if m.State == workflows.MemberRunning {
					running++
				}
			}
		}
		if onOthers == 0 && placed > 0 && running == placed {
			onOthers = time.Since(frozen)
		}
		if unreachableAfter == 0 && slices.Contains(st.UnreachableHosts, victim.name) {
			unreachableAfter = time.Since(frozen)
		}
		if time.Since(frozen) > bound+30*time.Second {
			c.dumpLog()
			t.Fatalf("%s frozen for %s: running on the other hosts %d of %d placed there (after %s), unreachable reported after %s; status %+v",
				victim.name, time.Since(frozen).Round(time.Second), running, placed, onOthers, unreachableAfter, st)
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Logf("normal scale-out 0 -> %d: %s; with %s frozen, the members on the other hosts ran after %s, %s reported unreachable after %s",
		n, normal.Round(time.Millisecond), victim.name, onOthers.Round(time.Millisecond), victim.name, unreachableAfter.Round(time.Millisecond))
	if onOthers > bound {
		t.Errorf("members on the answering hosts ran after %s, past %s (normal %s + interval %s + slack)", onOthers, bound, normal, interval)
	}
	if unreachableAfter > 30*time.Second {
		t.Errorf("frozen host reported unreachable after %s, want within the 15 s host query timeout plus an interval", unreachableAfter)
	}

	thaw()
	back := time.Now()
	st := c.waitSettled(group, n, 3*time.Minute)
	t.Logf("after the thaw the group converged in %s: %s", time.Since(back).Round(time.Millisecond), checkInvariant(t, conns, testPool, st))
	c.mustCLI("scale", group, "0")
	checkInvariant(t, conns, testPool, c.waitSettled(group, 0, 2*time.Minute))
	c.checkWorkflowTasks(port)
	c.recordHistories(port, "hung_host")
}

// TestLibvirtdRestartMidProvisionConvergesWithoutLeaksOrDuplicates
// SIGKILLs one real QEMU host's libvirtd while the group's VMs are being
// cloned, defined and started there, and starts it again: the group must
// converge to desired with each VM defined once, with its own volume, and
// no volume left over.
func TestLibvirtdRestartMidProvisionConvergesWithoutLeaksOrDuplicates(t *testing.T) {
	const group = "mid"
	h, conns, c, port := oneQEMUHostController(t, group, "max: 3, hostFailureGracePeriod: 5m")

	for round, delay := range []time.Duration{150 * time.Millisecond, 700 * time.Millisecond, 1500 * time.Millisecond} {
		c.mustCLI("scale", group, "3")
		time.Sleep(delay)
		hostCtl(t, "kill", h)
		killed := time.Now()
		time.Sleep(time.Second)
		hostCtl(t, "restart", h)
		conns[h.name] = connectURI(t, h.qemuURI())
		st := c.waitSettled(group, 3, 3*time.Minute)
		t.Logf("round %d: libvirtd killed %s into the scale-out; converged %s after the kill: %s",
			round+1, delay, time.Since(killed).Round(time.Millisecond), checkInvariant(t, conns, guestPool, st))
		c.mustCLI("scale", group, "0")
		checkInvariant(t, conns, guestPool, c.waitSettled(group, 0, 2*time.Minute))
	}
	c.checkWorkflowTasks(port)
}

// TestFailedCleanupKeepsTheMemberUntilItsHostReturns: a real QEMU host's
// libvirtd dies while a VM is being provisioned there and the group is
// scaled back to 0, so the cleanup cannot reach the host. The member must
// stay, as failed, in status (not be forgotten with its domain and disk on
// the host); once the host is back, its domain and volume are removed and
// the group settles with nothing left.
func TestFailedCleanupKeepsTheMemberUntilItsHostReturns(t *testing.T) {
	const group = "cf"
	h, conns, c, port := oneQEMUHostController(t, group, "max: 2, hostFailureGracePeriod: 10m, cleanupTimeout: 5s")

	c.mustCLI("scale", group, "1")
	time.Sleep(400 * time.Millisecond) // into the clone, define and start
	hostCtl(t, "kill", h)
	restarted := false
	t.Cleanup(func() {
		if !restarted {
			hostCtl(t, "restart", h)
		}
	})
	c.mustCLI("scale", group, "0")
	killed := time.Now()
	var failed workflows.Member
	for failed.Name == "" {
		st := c.status(group)
		for _, m := range st.Members {
			if m.State == workflows.MemberFailed {
				failed = m
			}
		}
		if failed.Name == "" && len(st.Members) == 0 {
			c.dumpLog()
			t.Fatalf("the member was forgotten while its host was down: %+v", st)
		}
		if time.Since(killed) > 90*time.Second {
			c.dumpLog()
			t.Fatalf("no member reported failed %s after the host died: %+v", time.Since(killed), st)
		}
		time.Sleep(250 * time.Millisecond)
	}
	t.Logf("member %s failed %s after its host died: %s", failed.Name, time.Since(killed).Round(time.Millisecond), failed.Error)
	st := c.status(group)
	if st.Settled() {
		t.Errorf("group settled with a failed member: %+v", st)
	}
	for _, e := range st.Events {
		t.Logf("event: %s", e.Message)
	}

	hostCtl(t, "restart", h)
	restarted = true
	back := time.Now()
	conns[h.name] = connectURI(t, h.qemuURI())
	st = c.waitSettled(group, 0, 2*time.Minute)
	t.Logf("host back; %s removed and the group settled in %s: %s", failed.Name, time.Since(back).Round(time.Millisecond), checkInvariant(t, conns, guestPool, st))
	c.checkWorkflowTasks(port)
}

// oneQEMUHostController starts a controller with one group of small QEMU
// domains (1 vCPU, 64 MiB, SeaBIOS idling on a blank disk) on the first
// hosts.sh host, evaluated every second; settings are more of the group's
// keys in YAML flow style.
func oneQEMUHostController(t *testing.T, group, settings string) (libvirtHost, map[string]*libvirt.Libvirt, *controller, int) {
	t.Helper()
	hosts := requireHosts(t, 1)
	h := hosts[0]
	conns := map[string]*libvirt.Libvirt{h.name: connectURI(t, h.qemuURI())}
	port := freePort(t)
	cfg, logPath := multiHostConfig(t, port, hosts, libvirtHost.qemuURI, guestPool, ", cpuOvercommit: 4", fmt.Sprintf(`    - {name: %s, %s,
       scaling: {evaluationInterval: 1s},
       template: {diskSize: 16MiB, vcpus: 1, memory: 64MiB, domainType: qemu, shutdownTimeout: 0s}}
`, group, settings))
	c := &controller{t: t, config: cfg, log: logPath}
	c.start()
	t.Cleanup(func() { c.kill(syscall.SIGKILL) })
	t.Cleanup(func() { c.checkLogForPanics() })
	return h, conns, c, port
}
