package test

import (
	"context"
	"fmt"
	"testing"
	"time"

	enumspb "go.temporal.io/api/enums/v1"

	"github.com/premiscale/premiscale/activities"
	"github.com/premiscale/premiscale/config"
	"github.com/premiscale/premiscale/workflows"
)

func TestOrphansReportsOwnedLeftoversButNeverMembersOrForeignDomains(t *testing.T) {
	requireLibvirt(t, testDriverURI)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	const group = "orph"
	s, _ := startInProcess(t, ctx, config.Prometheus{}, testDriverGroup(group, 0, 3))
	if _, err := s.Scale(ctx, group, 2); err != nil {
		t.Fatal(err)
	}
	wctx, wcancel := context.WithTimeout(ctx, time.Minute)
	defer wcancel()
	if _, err := s.WaitSettled(wctx, group, 100*time.Millisecond); err != nil {
		t.Fatal(err)
	}

	// Leftovers marked as PremiScale's: a domain of a group that is not
	// configured, and a volume no member uses.
	// (made by a worker whose configuration has the group ghost)
	acts, rev := testActs(t, config.Host{Name: "testhost", URI: testDriverURI, Pool: testPool},
		map[string]config.Template{"ghost": config.Template{VCPUs: 1, Memory: "64MiB", DomainType: "qemu", Arch: "x86_64", DiskSize: "64MiB"}, group: config.Template{VCPUs: 1, Memory: "64MiB", DomainType: "qemu", Arch: "x86_64", DiskSize: "64MiB"}})
	acts.Catalog.Installation = s.Config.Controller.Installation
	env := activityEnv(t, acts)
	var a *activities.Libvirt
	host := activities.HostRef{Name: "testhost"}
	ghost := fmt.Sprintf("ghost-%d", 1+time.Now().UnixNano()%100000)
	ghostRef := activities.DomainRef{Host: host, Group: "ghost", VM: ghost}
	if err := run(t, env, a.DefineDomain, activities.DefineDomainInput{Domain: ghostRef, Volume: activities.VolumeName(ghost), Revision: rev("ghost")}, nil); err != nil {
		t.Fatal(err)
	}
	leftover := group + "-99"
	if err := run(t, env, a.CloneVolume, activities.CloneVolumeInput{Host: host, Group: group, VM: leftover, Revision: rev(group)}, nil); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = run(t, env, a.UndefineDomain, ghostRef, nil)
		_ = run(t, env, a.DeleteVolume, activities.DeleteVolumeInput{Host: host, VM: leftover}, nil)
	})

	rep, err := s.Orphans(ctx)
	if err != nil {
		t.Fatal(err)
	}
	found := map[string]string{}
	for _, o := range rep.Orphans {
		found[o.Kind+" "+o.Name] = o.Group + ": " + o.Reason
	}
	if r, ok := found["domain "+ghost]; !ok || r != "ghost: group ghost is not configured" {
		t.Errorf("orphans %v lack domain %s of the unconfigured group ghost", found, ghost)
	}
	if r, ok := found["volume "+activities.VolumeName(leftover)]; !ok || r != group+": no member uses it" {
		t.Errorf("orphans %v lack volume %s", found, activities.VolumeName(leftover))
	}
	for _, m := range []string{group + "-1", group + "-2"} {
		if _, bad := found["domain "+m]; bad {
			t.Errorf("member %s reported as an orphan", m)
		}
		if _, bad := found["volume "+activities.VolumeName(m)]; bad {
			t.Errorf("member %s's volume reported as an orphan", m)
		}
	}
	if _, bad := found["domain test"]; bad {
		t.Error("the test driver's own unmarked domain reported as PremiScale's")
	}
	if len(rep.Unscanned) != 0 {
		t.Errorf("unscanned = %v", rep.Unscanned)
	}
}

func TestOrphanCollectorDeletesOwnedOrphansAfterGraceOnly(t *testing.T) {
	lv := requireLibvirt(t, testDriverURI)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	const group = "coll"
	const grace = 4 * time.Second
	s, hc := startInProcessOrphans(t, ctx, config.Orphans{Action: config.OrphansDelete, GracePeriod: grace, ScanInterval: time.Second, DeleteUnconfiguredGroups: true},
		testDriverGroup(group, 0, 4))
	t.Cleanup(func() { recordHistories(t, hc, "orphans") })
	if _, err := s.Scale(ctx, group, 2); err != nil {
		t.Fatal(err)
	}
	wctx, wcancel := context.WithTimeout(ctx, time.Minute)
	defer wcancel()
	if _, err := s.WaitSettled(wctx, group, 100*time.Millisecond); err != nil {
		t.Fatal(err)
	}

	acts, rev := testActs(t, config.Host{Name: "testhost", URI: testDriverURI, Pool: testPool},
		map[string]config.Template{"ghost": config.Template{VCPUs: 1, Memory: "64MiB", DomainType: "qemu", Arch: "x86_64", DiskSize: "64MiB"}, group: config.Template{VCPUs: 1, Memory: "64MiB", DomainType: "qemu", Arch: "x86_64", DiskSize: "64MiB"}, "foreign": config.Template{VCPUs: 1, Memory: "64MiB", DomainType: "qemu", Arch: "x86_64", DiskSize: "64MiB"}})
	acts.Catalog.Installation = s.Config.Controller.Installation
	env := activityEnv(t, acts)
	var a *activities.Libvirt
	host := activities.HostRef{Name: "testhost"}
	suffix := 1 + time.Now().UnixNano()%100000
	// An owned orphan domain of an unconfigured group, with its volume.
	ghost := fmt.Sprintf("ghost-%d", suffix)
	ghostRef := activities.DomainRef{Host: host, Group: "ghost", VM: ghost}
	if err := run(t, env, a.CloneVolume, activities.CloneVolumeInput{Host: host, Group: "ghost", VM: ghost, Revision: rev("ghost")}, nil); err != nil {
		t.Fatal(err)
	}
	if err := run(t, env, a.DefineDomain, activities.DefineDomainInput{Domain: ghostRef, Volume: activities.VolumeName(ghost), Revision: rev("ghost")}, nil); err != nil {
		t.Fatal(err)
	}
	// A volume of the group that no member uses.
	leftover := group + "-99"
	if err := run(t, env, a.CloneVolume, activities.CloneVolumeInput{Host: host, Group: group, VM: leftover, Revision: rev(group)}, nil); err != nil {
		t.Fatal(err)
	}
	// A domain without PremiScale's mark whose disk is a volume named like
	// PremiScale's: neither may be touched.
	foreign := fmt.Sprintf("foreign-%d", suffix)
	if err := run(t, env, a.CloneVolume, activities.CloneVolumeInput{Host: host, Group: "foreign", VM: foreign, Revision: rev("foreign")}, nil); err != nil {
		t.Fatal(err)
	}
	dom, err := lv.DomainDefineXML(fmt.Sprintf(`<domain type='qemu'><name>%s</name><memory unit='MiB'>64</memory>
<os><type arch='x86_64'>hvm</type></os>
<devices><disk type='volume' device='disk'><source pool='%s' volume='%s'/><target dev='vda' bus='virtio'/></disk></devices></domain>`,
		foreign, testPool, activities.VolumeName(foreign)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = lv.DomainUndefine(dom)
		_ = run(t, env, a.DeleteVolume, activities.DeleteVolumeInput{Host: host, VM: foreign}, nil)
		_ = run(t, env, a.UndefineDomain, ghostRef, nil)
		_ = run(t, env, a.DeleteVolume, activities.DeleteVolumeInput{Host: host, VM: ghost}, nil)
		_ = run(t, env, a.DeleteVolume, activities.DeleteVolumeInput{Host: host, VM: leftover}, nil)
	})

	started := time.Now()
	if err := s.EnsureOrphanCollector(ctx); err != nil {
		t.Fatal(err)
	}
	// The group keeps changing size while the collector runs: members being
	// created or removed are never orphans.
	if _, err := s.Scale(ctx, group, 4); err != nil {
		t.Fatal(err)
	}

	exists := func() (ghostDom, ghostVol, leftoverVol bool) {
		v := viewGroup(t, lv, "ghost")
		o := viewGroup(t, lv, group)
		return len(v.defined) > 0 && contains(v.defined, ghost), contains(v.volumes, activities.VolumeName(ghost)), contains(o.volumes, activities.VolumeName(leftover))
	}
	for {
		gd, gv, lvol := exists()
		if !gd && !gv && !lvol {
			break
		}
		if time.Since(started) < grace-time.Second && (!gd || !gv || !lvol) {
			t.Fatalf("orphans deleted %s after the collector started, before the %s grace period (domain %v volume %v leftover %v)",
				time.Since(started), grace, gd, gv, lvol)
		}
		if time.Since(started) > grace+30*time.Second {
			st, _ := s.OrphanCollectorStatus(ctx)
			t.Fatalf("orphans still there %s after start (domain %v volume %v leftover %v); collector: %+v", time.Since(started), gd, gv, lvol, st)
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Logf("owned orphans deleted %s after the collector started (grace %s)", time.Since(started).Round(time.Millisecond), grace)

	// Let the collector run a few more rounds past the grace period of
	// everything else, then check nothing else was touched.
	time.Sleep(grace + 2*time.Second)
	if _, err := s.WaitSettled(wctx, group, 100*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	checkExactly(t, lv, group, 4)
	fv := viewGroup(t, lv, "foreign")
	if !contains(fv.defined, foreign) {
		t.Errorf("unmarked domain %s was removed", foreign)
	}
	if !contains(fv.volumes, activities.VolumeName(foreign)) {
		t.Errorf("volume %s, the disk of an unmarked domain, was removed", activities.VolumeName(foreign))
	}
	if _, err := lv.DomainLookupByName("test"); err != nil {
		t.Errorf("the test driver's own domain: %v", err)
	}
	st, err := s.OrphanCollectorStatus(ctx)
	if err != nil {
		t.Fatal(err)
	}
	deleted := map[string]bool{}
	for _, o := range st.Deleted {
		deleted[o.Kind+" "+o.Name] = true
	}
	for _, want := range []string{"domain " + ghost, "volume " + activities.VolumeName(ghost), "volume " + activities.VolumeName(leftover)} {
		if !deleted[want] {
			t.Errorf("collector's deletions %v lack %s", deleted, want)
		}
	}
	for _, o := range st.Deleted {
		if o.Group == group && o.Kind == "domain" || o.Name == foreign || o.Name == activities.VolumeName(foreign) {
			t.Errorf("collector deleted %s %s", o.Kind, o.Name)
		}
	}
	for _, o := range st.Orphans {
		if o.Name == activities.VolumeName(foreign) {
			t.Errorf("the disk of unmarked domain %s is listed as an orphan: %+v", foreign, o)
		}
	}
	if st.LastError != "" {
		t.Errorf("collector's last error: %s", st.LastError)
	}

	// Back to report: the collector ends.
	s.Config.Autoscale.Orphans.Action = config.OrphansReport
	if err := s.EnsureOrphanCollector(ctx); err != nil {
		t.Fatal(err)
	}
	desc, err := s.Client.DescribeWorkflowExecution(ctx, workflows.OrphanWorkflowID, "")
	for i := 0; err == nil && desc.GetWorkflowExecutionInfo().GetStatus() == enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING && i < 50; i++ {
		time.Sleep(100 * time.Millisecond)
		desc, err = s.Client.DescribeWorkflowExecution(ctx, workflows.OrphanWorkflowID, "")
	}
	if err != nil || desc.GetWorkflowExecutionInfo().GetStatus() != enumspb.WORKFLOW_EXECUTION_STATUS_COMPLETED {
		t.Errorf("collector after action report: %v %v, want completed", desc.GetWorkflowExecutionInfo().GetStatus(), err)
	}
}
