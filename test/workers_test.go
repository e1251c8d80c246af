package test

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	enumspb "go.temporal.io/api/enums/v1"

	"github.com/premiscale/premiscale/config"
	"github.com/premiscale/premiscale/workflows"
)

// TestTwoWorkersOnASeparateTemporalServer runs PremiScale the way it
// scales past one process: the Temporal server alone (`premiscale
// server`), two `premiscale worker` processes and a controller without a
// worker (`premiscale --no-worker`), all separate processes on the same
// address. A group over three real QEMU hosts scales out; one worker is
// SIGKILLed while it holds a started activity of a provisioning, and the
// other finishes the scale-out with nothing leaked or duplicated. Then the
// controller is SIGKILLed right after a scale-in is accepted and restarted:
// the workers carry the scale-in out meanwhile.
func TestTwoWorkersOnASeparateTemporalServer(t *testing.T) {
	hosts := requireHosts(t, 3)
	const group, size = "tw", 6
	conns := qemuConns(t, hosts, group)
	port := freePort(t)
	cfg, _ := multiHostConfig(t, port, hosts, libvirtHost.qemuURI, guestPool, ", cpuOvercommit: 8, memoryOvercommit: 4",
		fmt.Sprintf(`    - name: %s
      max: %d
      scaling: {evaluationInterval: 1s}
      template: {diskSize: 16MiB, vcpus: 1, memory: 64MiB, domainType: qemu, shutdownTimeout: 0s}
`, group, size))
	b, err := os.ReadFile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	dir := t.TempDir()
	// Every process reads the same file; the server ignores the address
	// and serves mutual TLS from the CA it generates in the state dir.
	// The workers and the controller reach it with a certificate issued
	// from that CA with the role worker, once the server has made it.
	certs := filepath.Join(dir, "certs")
	b = bytes.Replace(b, []byte("  temporal:\n"), fmt.Appendf(nil, "  temporal:\n    address: %q\n    tls: {enabled: true, caFile: %s/ca.crt, certFile: %s/workers.crt, keyFile: %s/workers.key}\n",
		addr, certs, certs, certs), 1)
	if err := os.WriteFile(cfg, b, 0o600); err != nil {
		t.Fatal(err)
	}
	proc := func(name string, args ...string) *controller {
		log := filepath.Join(dir, name+".log")
		return &controller{t: t, config: cfg, log: log, args: append(args, "--log-file", log)}
	}

	server := proc("server", "server")
	server.spawn()
	t.Cleanup(func() { server.kill(syscall.SIGKILL) })
	for deadline := time.Now().Add(time.Minute); ; {
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			_ = c.Close()
			break
		}
		if time.Now().After(deadline) {
			server.dumpLog()
			t.Fatal("premiscale server did not listen within a minute")
		}
		time.Sleep(200 * time.Millisecond)
	}
	issuer := proc("issue")
	if out, stderr, err := issuer.cli("tls", "issue", "workers", "--role", "worker", "-o", certs); err != nil {
		t.Fatalf("tls issue: %v\n%s%s", err, out, stderr)
	}
	workers := []*controller{proc("worker-a", "worker"), proc("worker-b", "worker")}
	for _, w := range workers {
		w.spawn()
		t.Cleanup(func() { w.kill(syscall.SIGKILL) })
	}
	ctl := proc("controller", "--no-worker")
	ctl.start()
	t.Cleanup(func() { ctl.kill(syscall.SIGKILL) })
	for _, p := range append([]*controller{server, ctl}, workers...) {
		t.Cleanup(p.checkLogForPanics)
	}

	cl := ctl.mustDial()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	// Both workers poll the queue (and the controller does not).
	ident := map[string]*controller{}
	for _, w := range workers {
		ident[fmt.Sprintf("%d@", w.cmd.Process.Pid)] = w
	}
	for deadline := time.Now().Add(time.Minute); ; {
		resp, err := cl.DescribeTaskQueue(ctx, config.DefaultTaskQueue, enumspb.TASK_QUEUE_TYPE_ACTIVITY)
		if err != nil {
			t.Fatal(err)
		}
		seen := map[*controller]bool{}
		for _, p := range resp.GetPollers() {
			pid, _, _ := strings.Cut(p.GetIdentity(), "@")
			if pid == fmt.Sprint(ctl.cmd.Process.Pid) {
				t.Fatalf("the --no-worker controller polls the task queue as %s", p.GetIdentity())
			}
			if w := ident[pid+"@"]; w != nil {
				seen[w] = true
			}
		}
		if len(seen) == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("pollers on the activity queue: %v, want both workers", resp.GetPollers())
		}
		time.Sleep(250 * time.Millisecond)
	}

	// One installation: the controller and both workers resolved the same
	// identity, generated once and kept in the Temporal server.
	var identities []string
	for _, p := range append([]*controller{ctl}, workers...) {
		b, err := os.ReadFile(p.log)
		if err != nil {
			t.Fatal(err)
		}
		m := regexp.MustCompile(`msg=installation id=(\S+)`).FindSubmatch(b)
		if m == nil {
			t.Fatalf("%s logged no installation", p.log)
		}
		identities = append(identities, string(m[1]))
	}
	if !strings.HasPrefix(identities[0], "ps-") || identities[1] != identities[0] || identities[2] != identities[0] {
		t.Errorf("controller and workers resolved installations %v, want one generated identity", identities)
	}

	// Scale out; kill the worker that holds a started activity.
	ctl.mustCLI("scale", group, fmt.Sprint(size))
	var victim *controller
	var held string
	for victim == nil {
		if ctx.Err() != nil {
			t.Fatal("no worker ever held a started activity of a provisioning")
		}
		for i := 1; i <= size && victim == nil; i++ {
			d, err := cl.DescribeWorkflowExecution(ctx, workflows.ProvisionWorkflowID(group, fmt.Sprintf("%s-%d", group, i)), "")
			if err != nil {
				continue
			}
			for _, a := range d.GetPendingActivities() {
				pid, _, _ := strings.Cut(a.GetLastWorkerIdentity(), "@")
				if a.GetState() == enumspb.PENDING_ACTIVITY_STATE_STARTED && ident[pid+"@"] != nil {
					victim, held = ident[pid+"@"], fmt.Sprintf("%s of %s-%d", a.GetActivityType().GetName(), group, i)
					break
				}
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	victim.kill(syscall.SIGKILL)
	killed := time.Now()
	st := ctl.waitSettled(group, size, 4*time.Minute)
	t.Logf("worker killed holding %s; the other finished the scale-out %s later: %s", held,
		time.Since(killed).Round(100*time.Millisecond), checkInvariant(t, conns, guestPool, st))
	if len(st.Members) != size {
		t.Fatalf("%d members after the scale-out, want %d", len(st.Members), size)
	}

	// Scale in; kill the controller at once. The workflows go on on the
	// remaining worker; the restarted controller finds them done.
	ctl.mustCLI("scale", group, "0")
	ctl.kill(syscall.SIGKILL)
	killed = time.Now()
	for {
		v := viewHosts(t, conns, guestPool, group)
		n := 0
		for _, hv := range v {
			n += len(hv.defined) + len(hv.volumes)
		}
		if n == 0 {
			break
		}
		if time.Since(killed) > 3*time.Minute {
			t.Fatalf("scale-in not carried out without the controller: %v", v)
		}
		time.Sleep(250 * time.Millisecond)
	}
	t.Logf("scale-in carried out by the worker %s after the controller was killed", time.Since(killed).Round(100*time.Millisecond))
	ctl.start()
	st = ctl.waitSettled(group, 0, time.Minute)
	checkInvariant(t, conns, guestPool, st)
	ctl.checkWorkflowTasks(port)
}
