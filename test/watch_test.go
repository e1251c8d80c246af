package test

import (
	"fmt"
	"syscall"
	"testing"
	"time"
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

	d, err := lv.DomainLookupByName(victim)
	if err != nil {
		t.Fatal(err)
	}
	if err := lv.DomainDestroy(d); err != nil {
		t.Fatal(err)
	}
	if err := lv.DomainUndefine(d); err != nil {
		t.Fatal(err)
	}
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
