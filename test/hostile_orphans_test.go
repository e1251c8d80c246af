package test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"

	"github.com/premiscale/premiscale/activities"
	"github.com/premiscale/premiscale/config"
	"github.com/premiscale/premiscale/workflows"
)

// TestForgedOrphanCollectorDeletesNothingTheConfigKeeps plays the issue's
// attack as a client of the frontend would: with a group of two members,
// the VM of a group no longer configured (kept: deleteUnconfiguredGroups
// is off) and an owned leftover volume (deletable, after the 30 s grace
// period), it starts an OrphanCollector under another workflow ID asking
// for no configured groups, unconfigured groups deleted, no grace period
// and no scan interval, then signals the same spec to the real collector.
// The forged start fails, refused, naming the ID; the real collector keeps
// the worker's bounds for rounds counted inside the window, reports what it
// refused, and deletes nothing: not the members, not the kept VM, not the
// leftover before its grace period.
func TestForgedOrphanCollectorDeletesNothingTheConfigKeeps(t *testing.T) {
	lv := requireLibvirt(t, testDriverURI)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	const group, grace = "keepme", 30 * time.Second
	s, c := startInProcessOrphans(t, ctx, config.Orphans{Action: config.OrphansDelete, GracePeriod: grace, ScanInterval: time.Second},
		testDriverGroup(group, 0, 3))
	// The collector's history with the worker's policy applied and a
	// refused spec: the new side of changeOrphansWorkerPolicy.
	t.Cleanup(func() { recordHistories(t, c, "orphans_policy", workflows.OrphanWorkflowName) })
	if _, err := s.Scale(ctx, group, 2); err != nil {
		t.Fatal(err)
	}
	wctx, wcancel := context.WithTimeout(ctx, time.Minute)
	defer wcancel()
	if _, err := s.WaitSettled(wctx, group, 100*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cctx, ccancel := context.WithTimeout(context.Background(), time.Minute)
		defer ccancel()
		_, _ = s.Scale(cctx, group, 0)
		_, _ = s.WaitSettled(cctx, group, 100*time.Millisecond)
	})

	tmpl := config.Template{VCPUs: 1, Memory: "64MiB", DomainType: "qemu", Arch: "x86_64", DiskSize: "64MiB"}
	acts, rev := testActs(t, config.Host{Name: "testhost", URI: testDriverURI, Pool: testPool},
		map[string]config.Template{"retired": tmpl, group: tmpl})
	acts.Catalog.Installation = s.Config.Controller.Installation
	env := activityEnv(t, acts)
	var a *activities.Libvirt
	host := activities.HostRef{Name: "testhost"}
	retired := fmt.Sprintf("retired-%d", 1+time.Now().UnixNano()%100000)
	retiredRef := activities.DomainRef{Host: host, Group: "retired", VM: retired}
	if err := run(t, env, a.CloneVolume, activities.CloneVolumeInput{Host: host, Group: "retired", VM: retired, Revision: rev("retired")}, nil); err != nil {
		t.Fatal(err)
	}
	if err := run(t, env, a.DefineDomain, activities.DefineDomainInput{Domain: retiredRef, Volume: activities.VolumeName(retired), Revision: rev("retired")}, nil); err != nil {
		t.Fatal(err)
	}
	leftover := group + "-99"
	if err := run(t, env, a.CloneVolume, activities.CloneVolumeInput{Host: host, Group: group, VM: leftover, Revision: rev(group)}, nil); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = run(t, env, a.UndefineDomain, retiredRef, nil)
		_ = run(t, env, a.DeleteVolume, activities.DeleteVolumeInput{Host: host, VM: retired}, nil)
		_ = run(t, env, a.DeleteVolume, activities.DeleteVolumeInput{Host: host, VM: leftover}, nil)
	})
	if err := s.EnsureOrphanCollector(ctx); err != nil {
		t.Fatal(err)
	}
	started := time.Now()

	forged := workflows.OrphanSpec{Hosts: []activities.HostRef{{Name: "testhost"}}, Groups: []string{}, Delete: true, DeleteUnconfigured: true}
	forgedRun, err := c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: "forged/orphans", TaskQueue: s.Config.Controller.Temporal.TaskQueue},
		workflows.OrphanWorkflowName, workflows.OrphanInput{Spec: forged})
	if err != nil {
		t.Fatal(err)
	}
	rctx, rcancel := context.WithTimeout(ctx, 30*time.Second)
	defer rcancel()
	err = forgedRun.Get(rctx, nil)
	var ae *temporal.ApplicationError
	if !errors.As(err, &ae) || ae.Type() != workflows.ErrTypeRefused || !strings.Contains(ae.Error(), `"forged/orphans"`) {
		t.Errorf("collector started under another ID ended with %v, want it refused naming the ID", err)
	}

	before, err := s.OrphanCollectorStatus(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.SignalWorkflow(ctx, workflows.OrphanWorkflowID, "", workflows.SignalOrphanSpec, forged); err != nil {
		t.Fatal(err)
	}
	signalled := time.Now()
	var st workflows.OrphanStatus
	waitFor(t, 30*time.Second, "five rounds of the collector after the forged spec", func() bool {
		st, err = s.OrphanCollectorStatus(ctx)
		return err == nil && st.Rounds >= before.Rounds+5
	})
	window := time.Since(signalled)
	if since := time.Since(started); since >= grace {
		t.Fatalf("the window took until %s after the collector started, past the %s grace period: the check below proves nothing", since, grace)
	}
	// Five rounds at the worker's 1 s interval take about 4 s; the forged
	// 0 s interval would run them back to back.
	if window < 3*time.Second {
		t.Errorf("five rounds in %s after the forged spec: its 0s scan interval was taken", window)
	}
	if v := viewGroup(t, lv, group); !slices.Equal(v.running, []string{group + "-1", group + "-2"}) || !slices.Equal(v.defined, v.running) {
		t.Errorf("members after the forged collector: running %v, defined %v; want %s-1 and %s-2 untouched", v.running, v.defined, group, group)
	}
	if v := viewGroup(t, lv, "retired"); !slices.Contains(v.defined, retired) || !slices.Contains(v.volumes, activities.VolumeName(retired)) {
		t.Errorf("the kept VM %s of an unconfigured group was deleted: defined %v volumes %v", retired, v.defined, v.volumes)
	}
	if v := viewGroup(t, lv, group); !slices.Contains(v.volumes, activities.VolumeName(leftover)) {
		t.Errorf("leftover volume %s deleted %s after it was first seen, before the %s grace period", activities.VolumeName(leftover), time.Since(started), grace)
	}
	for _, w := range []string{"gracePeriod", "scanInterval", "deleteUnconfigured"} {
		if !slices.ContainsFunc(st.Refused, func(r string) bool { return strings.HasPrefix(r, w+":") }) {
			t.Errorf("collector's status refused %q, want %s named", st.Refused, w)
		}
	}
	if st.Spec.GracePeriod != grace || st.Spec.DeleteUnconfigured || !slices.Equal(st.Spec.Groups, []string{group}) {
		t.Errorf("collector's spec after the forged signal: %+v", st.Spec)
	}
	if len(st.Deleted) != 0 {
		t.Errorf("collector deleted %+v", st.Deleted)
	}
}
