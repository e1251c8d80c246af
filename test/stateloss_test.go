package test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/digitalocean/go-libvirt"

	"github.com/premiscale/premiscale/config"
	"github.com/premiscale/premiscale/starter"
	"github.com/premiscale/premiscale/workflows"
)

// TestStateLossNeverDestroysRunningVMsNorReusesTheirNames: a controller
// runs two VMs, then its state is lost (a new, empty Temporal server, as
// after a wiped state dir or a fresh namespace). The new controller
// converges to desired with new names, and over several observations and
// orphan grace periods (deletion on, unconfigured groups included) the old
// VMs keep running, untouched, reported as kept: as another
// installation's (a generated identity comes with the state), or, with
// controller.installation set explicitly, as this one's from an earlier
// history of the group.
func TestStateLossNeverDestroysRunningVMsNorReusesTheirNames(t *testing.T) {
	lv := requireLibvirt(t, testDriverURI)
	for _, tc := range []struct {
		name, installation, reason string
	}{
		{"new identity", "", "marked by installation"},
		{"same identity set explicitly", fmt.Sprintf("explicit-%d", time.Now().UnixNano()), "made under an earlier history"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			stateLoss(t, lv, tc.installation, tc.reason)
		})
	}
}

func stateLoss(t *testing.T, lv *libvirt.Libvirt, installation, reason string) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	const group = "sloss"
	purgeGroup(t, lv, testPool, group)
	t.Cleanup(func() { purgeGroup(t, lv, testPool, group) })
	newConfig := func() *config.Config {
		return &config.Config{
			Version: config.Version,
			// A quiet group observes every resync interval: short here, so
			// that the window below holds observations.
			Controller: config.Controller{Installation: installation, HostWatch: config.HostWatch{ResyncInterval: 10 * time.Second}},
			Autoscale: config.Autoscale{
				Hosts:  []config.Host{{Name: "testhost", URI: testDriverURI, Pool: testPool, CPUOvercommit: 16, MemoryOvercommit: 16}},
				Groups: []config.Group{testDriverGroup(group, 0, 3)},
			},
		}
	}
	var old []string
	t.Run("before the loss", func(t *testing.T) {
		s, _ := startInProcessConfig(t, ctx, newConfig(), nil)
		if _, err := s.Scale(ctx, group, 2); err != nil {
			t.Fatal(err)
		}
		st, err := s.WaitSettled(ctx, group, 100*time.Millisecond)
		if err != nil {
			t.Fatal(err)
		}
		old = memberNames(st)
	}) // its server and worker stop here; the VMs stay
	if len(old) != 2 {
		t.Fatalf("before the loss: members %v", old)
	}

	s, _ := startInProcessTuned(t, ctx, newConfig(), nil, testLogger(t),
		withOrphans(config.Orphans{Action: config.OrphansDelete, GracePeriod: 2 * time.Second, ScanInterval: time.Second, DeleteUnconfiguredGroups: true}))
	if err := s.EnsureOrphanCollector(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Scale(ctx, group, 2); err != nil {
		t.Fatal(err)
	}
	st, err := s.WaitSettled(ctx, group, 100*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	fresh := memberNames(st)
	for _, n := range fresh {
		if slices.Contains(old, n) {
			t.Errorf("new member %s reuses the name of a VM from before the loss (%v)", n, old)
		}
	}
	// Grace periods of the collector (rounds every second, grace 2s) and
	// an observation of the settled, quiet group (every resync interval,
	// 10s) run in the window.
	collectorRounds(t, func() (workflows.OrphanStatus, error) { return s.OrphanCollectorStatus(ctx) }, 4, func() {
		groupHolds(t, func() (workflows.GroupStatus, error) { return s.Status(ctx, group) }, 12*time.Second, 1, func(workflows.GroupStatus) string { return "" })
	})
	running := viewGroup(t, lv, group).running
	for _, n := range append(append([]string{}, old...), fresh...) {
		if !slices.Contains(running, n) {
			t.Errorf("%s no longer runs (running: %v)", n, running)
		}
	}
	if st, err = s.Status(ctx, group); err != nil || !st.Settled() || !slices.Equal(memberNames(st), fresh) {
		t.Errorf("after: members %v settled %v (%v), want %v settled", memberNames(st), st.Settled(), err, fresh)
	}
	rep, err := s.Orphans(ctx)
	if err != nil {
		t.Fatal(err)
	}
	reported := map[string]string{}
	for _, o := range rep.Orphans {
		if o.Kind == "domain" {
			reported[o.Name] = o.Reason + "; kept: " + o.Kept
		}
	}
	for _, n := range old {
		if r := reported[n]; !strings.Contains(r, reason) || !strings.Contains(r, "kept: ") || strings.HasSuffix(r, "kept: ") {
			t.Errorf("old VM %s reported as %q, want %q and kept", n, r, reason)
		}
	}
}

// TestFreshNamespaceKeepsTheOldVMsAndTheirNames: the real binary runs two
// VMs in one Temporal namespace, then is pointed at a fresh one (as when
// moving to a cluster, or by mistake) with the same state dir: the group
// starts a new history there and converges with new names, and the VMs of
// the old namespace keep running, reported as kept (made under an earlier
// history of the group: the collector would not delete them either; the
// in-process state-loss test runs it with deletion on).
func TestFreshNamespaceKeepsTheOldVMsAndTheirNames(t *testing.T) {
	lv := requireLibvirt(t, testDriverURI)
	const group = "nsloss"
	purgeGroup(t, lv, testPool, group)
	t.Cleanup(func() { purgeGroup(t, lv, testPool, group) })
	port := freePort(t)
	cfgPath, logPath := writeE2EConfig(t, group, port)
	base, err := os.ReadFile(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	inNamespace := func(ns string) {
		body := strings.Replace(string(base), "  temporal:\n", "  temporal:\n    namespace: "+ns+"\n", 1)
		if err := os.WriteFile(cfgPath, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	inNamespace("first")
	c := &controller{t: t, config: cfgPath, log: logPath}
	c.start()
	t.Cleanup(func() { c.kill(syscall.SIGKILL) })
	c.mustCLI("scale", group, "2")
	old := memberNames(c.waitSettled(group, 2, time.Minute))
	c.kill(syscall.SIGTERM)

	inNamespace("second")
	c.start()
	c.mustCLI("scale", group, "2")
	fresh := memberNames(c.waitSettled(group, 2, time.Minute))
	for _, n := range fresh {
		if slices.Contains(old, n) {
			t.Errorf("new member %s reuses the name of a VM of the first namespace (%v)", n, old)
		}
	}
	// The settled group is quiet: it observes every resync interval (10s
	// in this config), so a window of 12s holds at least one observation.
	groupHolds(t, c.statusOf(group), 12*time.Second, 1, func(workflows.GroupStatus) string { return "" })
	running := viewGroup(t, lv, group).running
	for _, n := range append(append([]string{}, old...), fresh...) {
		if !slices.Contains(running, n) {
			t.Errorf("%s no longer runs (running: %v)", n, running)
		}
	}
	var rep starter.OrphanReport
	if err := json.Unmarshal([]byte(c.mustCLI("status", "--orphans", "-o", "json")), &rep); err != nil {
		t.Fatal(err)
	}
	for _, n := range old {
		found := false
		for _, o := range rep.Orphans {
			if o.Kind == "domain" && o.Name == n {
				found = true
				if !strings.Contains(o.Reason, "made under an earlier history") || o.Kept == "" {
					t.Errorf("old VM %s reported as %q, kept %q", n, o.Reason, o.Kept)
				}
			}
		}
		if !found {
			t.Errorf("old VM %s not reported (report %+v)", n, rep.Orphans)
		}
	}
}
