package test

import (
	"fmt"
	"math/rand/v2"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/digitalocean/go-libvirt"

	"github.com/premiscale/premiscale/workflows"
)

// runningSampler counts a group's running domains across hosts, through
// its own connections, every few milliseconds until stopped: what actually
// runs, whatever the controller (killed or not) believes.
type runningSampler struct {
	mu      sync.Mutex
	fewest  int
	samples int
	stop    chan struct{}
	done    chan struct{}
}

func sampleRunningDomains(t testing.TB, conns map[string]*libvirt.Libvirt, group string) *runningSampler {
	s := &runningSampler{fewest: 1 << 30, stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(s.done)
		for {
			select {
			case <-s.stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
			n := 0
			for _, lv := range conns {
				doms, _, err := lv.ConnectListAllDomains(1, libvirt.ConnectListDomainsActive)
				if err != nil {
					t.Errorf("list domains: %v", err)
					return
				}
				for _, d := range doms {
					if strings.HasPrefix(d.Name, group+"-") {
						n++
					}
				}
			}
			s.mu.Lock()
			s.fewest, s.samples = min(s.fewest, n), s.samples+1
			s.mu.Unlock()
		}
	}()
	return s
}

func (s *runningSampler) result() (fewest, samples int) {
	close(s.stop)
	<-s.done
	return s.fewest, s.samples
}

// waitRefresh polls status until refresh id (or a later one) is done and
// the group settled, and checks that every member is of the revision in
// force.
func (c *controller) waitRefresh(group string, id int, timeout time.Duration) workflows.GroupStatus {
	c.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		st := c.status(group)
		if r := st.Refresh; r != nil && r.ID >= id && r.Status == workflows.RefreshDone && st.Settled() && len(st.Members) == st.Desired {
			for _, m := range st.Members {
				if m.Revision != st.Revision {
					c.t.Fatalf("refresh %d done but %s is of revision %s, not %s", r.ID, m.Name, m.Revision, st.Revision)
				}
			}
			return st
		}
		if time.Now().After(deadline) {
			c.dumpLog()
			c.t.Fatalf("refresh %d of %s not done within %s: %+v", id, group, timeout, st)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// waitCheckpoint polls status until refresh id waits at a checkpoint with
// replaced members replaced and the group settled, and returns that status.
func (c *controller) waitCheckpoint(group string, id, replaced int, timeout time.Duration) workflows.GroupStatus {
	c.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		st := c.status(group)
		r := st.Refresh
		if r != nil && r.ID == id && r.Replaced > replaced {
			c.t.Fatalf("refresh %d went past its checkpoint at %d replaced: %+v", id, replaced, r)
		}
		if r != nil && r.ID == id && r.Status == workflows.RefreshRunning && !r.WaitingUntil.IsZero() && r.Replaced == replaced && st.Settled() {
			return st
		}
		if time.Now().After(deadline) {
			c.dumpLog()
			c.t.Fatalf("refresh %d of %s not waiting at %d replaced within %s: %+v", id, group, replaced, timeout, st)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// TestRefreshUnderTheKillLoopKeepsMinHealthy: a group of 6 on three
// libvirtd hosts (test driver) with refresh {mode: auto, minHealthy: 66%,
// batch: 2}. Each round changes the template in the file and restarts the
// controller (which starts a refresh), SIGKILLs it at a random moment of
// the refresh, restarts it, and once the refresh is done checks the crash
// invariant (nothing leaked or duplicated) and that every member is of the
// new revision. Throughout, a sampler counts the running domains on the
// hosts: never fewer than 4 (ceil(66% of 6)). Then a rollback by the CLI
// returns the members to the previous template, and a refresh with
// checkpoints waits at each, across a SIGKILL, until continued.
func TestRefreshUnderTheKillLoopKeepsMinHealthy(t *testing.T) {
	hosts := requireHosts(t, 3)
	conns := map[string]*libvirt.Libvirt{}
	for _, h := range hosts {
		conns[h.name] = connectURI(t, h.testURI())
	}
	const group = "rf"
	port := freePort(t)
	groupYAML := func(memory string) string {
		return fmt.Sprintf(`    - name: %s
      max: 8
      desired: 6
      refresh: {mode: auto, minHealthy: 66%%, batch: 2}
      scaling: {evaluationInterval: 1s}
      template: {diskSize: 64MiB, memory: %s, domainType: qemu, shutdownTimeout: 0s}
`, group, memory)
	}
	cfg, logPath := multiHostConfig(t, port, hosts, libvirtHost.testURI, testPool, ", cpuOvercommit: 16, memoryOvercommit: 16", groupYAML("64MiB"))
	c := &controller{t: t, config: cfg, log: logPath}
	c.start()
	t.Cleanup(func() { c.kill(syscall.SIGKILL) })
	t.Cleanup(func() { c.checkLogForPanics() })
	t.Cleanup(func() { c.recordHistories(port, "refreshkill") })
	first := c.waitSettled(group, 6, 3*time.Minute)
	checkInvariant(t, conns, testPool, first)
	if first.Refresh != nil || first.Outdated != 0 {
		t.Fatalf("a new group has a refresh or outdated members: %+v", first)
	}

	sampler := sampleRunningDomains(t, conns, group)
	body, err := os.ReadFile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	memory := "64MiB"
	revisions := []string{first.Revision}
	for round := 1; round <= 4; round++ {
		next := map[string]string{"64MiB": "96MiB", "96MiB": "64MiB"}[memory]
		body = []byte(strings.Replace(string(body), "memory: "+memory, "memory: "+next, 1))
		memory = next
		if err := os.WriteFile(cfg, body, 0o600); err != nil {
			t.Fatal(err)
		}
		c.kill(syscall.SIGKILL)
		c.start() // hands the group its new template: a refresh starts
		time.Sleep(time.Duration(rand.IntN(2500)) * time.Millisecond)
		c.kill(syscall.SIGKILL)
		c.start()
		restarted := time.Now()
		st := c.waitRefresh(group, round, 3*time.Minute)
		if st.Revision == revisions[len(revisions)-1] {
			t.Fatalf("round %d: the revision did not change (%s)", round, st.Revision)
		}
		revisions = append(revisions, st.Revision)
		t.Logf("round %d: refresh %d done %s after the restart, %d replaced: %s", round, st.Refresh.ID,
			time.Since(restarted).Round(time.Millisecond), st.Refresh.Replaced, checkInvariant(t, conns, testPool, st))
		c.checkWorkflowTasks(port)
	}

	// The CLI: a bad percentage is refused before anything is sent; a
	// rollback returns to the template of the round before.
	if _, stderr, err := c.cli("refresh", group, "--min-healthy", "120%"); err == nil || !strings.Contains(stderr, "--min-healthy") {
		t.Errorf("refresh --min-healthy 120%%: err %v, stderr %q; want a refusal naming --min-healthy", err, stderr)
	}
	out := c.mustCLI("refresh", group, "--rollback", "--min-healthy", "66%", "--wait")
	st := c.status(group)
	if want := revisions[len(revisions)-2]; st.Revision != want || st.ConfigRevision != revisions[len(revisions)-1] || !st.Refresh.Rollback {
		t.Errorf("after rollback: revision %s (configuration %s), refresh %+v; want %s\n%s", st.Revision, st.ConfigRevision, st.Refresh, want, out)
	}
	checkInvariant(t, conns, testPool, st)
	for _, m := range st.Members {
		if m.Revision != st.Revision {
			t.Errorf("after rollback %s is of revision %s", m.Name, m.Revision)
		}
	}
	// Checkpoints, by the CLI: --all replaces the 6 of the current revision;
	// at 34% (3 of 6) the refresh waits its hour, across a SIGKILL of the
	// controller, until --continue; at 100% again, until --continue.
	if _, stderr, err := c.cli("refresh", group, "--checkpoints", "50,20"); err == nil || !strings.Contains(stderr, "--checkpoints") {
		t.Errorf("refresh --checkpoints 50,20: err %v, stderr %q; want a refusal naming --checkpoints", err, stderr)
	}
	c.mustCLI("refresh", group, "--all", "--min-healthy", "66%", "--checkpoints", "34,100", "--checkpoint-delay", "1h")
	id := st.Refresh.ID + 1
	at := c.waitCheckpoint(group, id, 3, 3*time.Minute)
	c.kill(syscall.SIGKILL)
	c.start()
	// A few passes of the loop after the restart: nothing may move during
	// the wait.
	groupHolds(t, c.statusOf(group), 4*time.Second, 2, func(st workflows.GroupStatus) string {
		if st.Refresh == nil || !st.Refresh.WaitingUntil.Equal(at.Refresh.WaitingUntil) {
			return fmt.Sprintf("the checkpoint wait moved: %+v, before the restart %+v", st.Refresh, at.Refresh)
		}
		return ""
	})
	if again := c.waitCheckpoint(group, id, 3, time.Minute); !again.Refresh.WaitingUntil.Equal(at.Refresh.WaitingUntil) {
		t.Errorf("after a restart the checkpoint wait ends at %s, before it at %s", again.Refresh.WaitingUntil, at.Refresh.WaitingUntil)
	}
	if out := c.mustCLI("status", group); !strings.Contains(out, "waiting at a checkpoint until") {
		t.Errorf("status during a checkpoint wait does not show it:\n%s", out)
	}
	c.mustCLI("refresh", group, "--continue")
	c.waitCheckpoint(group, id, 6, 3*time.Minute)
	c.mustCLI("refresh", group, "--continue")
	st = c.waitRefresh(group, id, 3*time.Minute)
	if r := st.Refresh; r.ID != id || r.Replaced != 6 || r.Stopped {
		t.Errorf("refresh with checkpoints: %+v; want 6 replaced", r)
	}
	checkInvariant(t, conns, testPool, st)

	fewest, samples := sampler.result()
	t.Logf("running domains sampled %d times across 4 refreshes, 8 kills, a rollback and a refresh with checkpoints: fewest %d", samples, fewest)
	if samples < 100 || fewest < 4 {
		t.Errorf("fewest running domains %d over %d samples, want >= 4 (66%% of 6)", fewest, samples)
	}
	c.checkWorkflowTasks(port)
}
