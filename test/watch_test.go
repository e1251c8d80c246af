package test

import (
	"fmt"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/digitalocean/go-libvirt"
)

// TestDomainRemovedByHandIsNoticedAtOnce: with evaluations ten minutes
// apart, a running member's domain destroyed and undefined by hand (as an
// operator with virsh would) is noticed through the worker's host watcher
// (libvirt lifecycle events) and replaced within seconds, with its volumes
// deleted; nothing else on the host is touched.
func TestDomainRemovedByHandIsNoticedAtOnce(t *testing.T) {
	hosts := requireHosts(t, 1)
	const group = "wd"
	conns := qemuConns(t, hosts, group)
	lv := conns[hosts[0].name]
	port := freePort(t)
	cfg, logPath := multiHostConfig(t, port, hosts, libvirtHost.qemuURI, guestPool, ", cpuOvercommit: 8, memoryOvercommit: 4",
		fmt.Sprintf(`    - name: %s
      max: 2
      scaling: {evaluationInterval: 10m}
      template: {diskSize: 16MiB, vcpus: 1, memory: 64MiB, domainType: qemu, shutdownTimeout: 0s}
`, group))
	c := &controller{t: t, config: cfg, log: logPath}
	c.start()
	t.Cleanup(func() { c.kill(syscall.SIGKILL) })
	t.Cleanup(func() { c.recordHistories(port, "host_watch") })
	c.mustCLI("scale", group, "2")
	st := c.waitSettled(group, 2, 2*time.Minute)
	victim := st.Members[0].Name

	removeByHand(t, lv, victim)
	removed := time.Now()
	for {
		st = c.status(group)
		gone := true
		for _, m := range st.Members {
			if m.Name == victim {
				gone = false
			}
		}
		if gone && st.Settled() && len(st.Members) == 2 {
			break
		}
		if time.Since(removed) > time.Minute {
			c.dumpLog()
			t.Fatalf("a minute after %s was removed by hand (next evaluation in 10 minutes), status is %+v", victim, st)
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("%s removed by hand: replaced %s later: %s", victim, time.Since(removed).Round(100*time.Millisecond), checkInvariant(t, conns, guestPool, st))
	c.checkWorkflowTasks(port)
}

// TestQuietGroupSleepsAndStillNoticesAHungHost: a group with nothing to
// evaluate does not observe its hosts each evaluation interval (2 s here)
// but once per resync interval (5 min by default); when one of its hosts'
// libvirtd hangs (SIGSTOP: the socket stays open, nothing answers), the
// watcher's keepalive goes unanswered, the group is told, and status shows
// the host unreachable within about 30 s. After the thaw it answers again.
func TestQuietGroupSleepsAndStillNoticesAHungHost(t *testing.T) {
	hosts := requireHosts(t, 2)
	const group = "wq"
	conns := map[string]*libvirt.Libvirt{}
	for _, h := range hosts {
		conns[h.name] = connectURI(t, h.testURI())
	}
	port := freePort(t)
	cfg, logPath := multiHostConfig(t, port, hosts, libvirtHost.testURI, testPool, ", cpuOvercommit: 16, memoryOvercommit: 16",
		fmt.Sprintf(`    - name: %s
      max: 2
      scaling: {evaluationInterval: 2s}
      template: {diskSize: 64MiB, memory: 64MiB, domainType: qemu, shutdownTimeout: 0s}
`, group))
	c := &controller{t: t, config: cfg, log: logPath}
	c.start()
	t.Cleanup(func() { c.kill(syscall.SIGKILL) })
	c.mustCLI("scale", group, "2")
	st := c.waitSettled(group, 2, 2*time.Minute)
	t.Logf("settled: %s", checkInvariant(t, conns, testPool, st))

	// Quiet: the loop sleeps on the resync interval (its next pass minutes
	// away, not an evaluation interval), and no observation comes for
	// 10 s, five evaluation intervals.
	quietBy := time.Now().Add(30 * time.Second)
	for st = c.status(group); st.NextPassAt.Sub(st.LastObservedAt) < time.Minute; st = c.status(group) {
		if time.Now().After(quietBy) {
			t.Fatalf("settled group not quiet after 30 s: last observation %s, next pass %s", st.LastObservedAt, st.NextPassAt)
		}
		time.Sleep(200 * time.Millisecond)
	}
	last, next := st.LastObservedAt, st.NextPassAt
	time.Sleep(10 * time.Second)
	if st := c.status(group); !st.LastObservedAt.Equal(last) || !st.NextPassAt.Equal(next) {
		t.Fatalf("quiet group ran a pass: observed at %s (before %s), next pass %s (before %s); it should sleep on the resync interval", st.LastObservedAt, last, st.NextPassAt, next)
	}

	victim := hosts[1]
	thaw := freezeHost(t, victim)
	frozen := time.Now()
	for !slices.Contains(c.status(group).UnreachableHosts, victim.name) {
		if time.Since(frozen) > 45*time.Second {
			c.dumpLog()
			t.Fatalf("%s frozen for 45 s, not reported unreachable: %+v", victim.name, c.status(group))
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Logf("%s frozen: reported unreachable %s later", victim.name, time.Since(frozen).Round(100*time.Millisecond))
	thaw()
	back := time.Now()
	for slices.Contains(c.status(group).UnreachableHosts, victim.name) {
		if time.Since(back) > time.Minute {
			t.Fatalf("%s thawed a minute ago, still unreachable in status", victim.name)
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Logf("%s thawed: answers again in status %s later", victim.name, time.Since(back).Round(100*time.Millisecond))
	c.checkWorkflowTasks(port)
}

// removeByHand destroys and undefines a domain behind PremiScale's back,
// as an operator with virsh would; its volume stays.
func removeByHand(tb testing.TB, lv *libvirt.Libvirt, name string) {
	tb.Helper()
	d, err := lv.DomainLookupByName(name)
	if err != nil {
		tb.Fatal(err)
	}
	if err := lv.DomainDestroy(d); err != nil {
		tb.Fatal(err)
	}
	if err := lv.DomainUndefine(d); err != nil {
		tb.Fatal(err)
	}
}
