package test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/premiscale/premiscale/activities"
	"github.com/premiscale/premiscale/config"
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
	hosts := activities.NewHosts(nil)
	defer hosts.Close()
	env := activityEnv(t, &activities.Libvirt{Hosts: hosts})
	var a *activities.Libvirt
	host := activities.HostRef{Name: "testhost", URI: testDriverURI, Pool: testPool}
	ghost := fmt.Sprintf("ghost-%d", time.Now().UnixNano()%100000)
	ghostRef := activities.DomainRef{Host: host, Group: "ghost", VM: ghost}
	tmpl := config.Template{VCPUs: 1, Memory: "64MiB", DomainType: "qemu", Arch: "x86_64"}
	if err := run(t, env, a.DefineDomain, activities.DefineDomainInput{Domain: ghostRef, Volume: "x", Template: tmpl}, nil); err != nil {
		t.Fatal(err)
	}
	leftover := group + "-99"
	if err := run(t, env, a.CloneVolume, activities.CloneVolumeInput{Host: host, VM: leftover, DiskSize: "64MiB"}, nil); err != nil {
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
