package test

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/premiscale/premiscale/config"
	"github.com/premiscale/premiscale/starter"
	"github.com/premiscale/premiscale/workflows"
)

// memberNames lists a group's members by name, sorted.
func memberNames(st workflows.GroupStatus) []string {
	var names []string
	for _, m := range st.Members {
		names = append(names, m.Name)
	}
	slices.Sort(names)
	return names
}

// TestTwoInstallationsOnOneHostNeverTouchEachOther runs two PremiScale
// installations (each its own Temporal server and identity) on one
// libvirtd host, both with a group of the same name and the orphan
// collector deleting, unconfigured groups included. The second skips the
// first's VM names; over several grace periods, while both resize, neither
// takes the other's VMs for members or orphans, and nothing of either is
// deleted but by its own scale-in.
func TestTwoInstallationsOnOneHostNeverTouchEachOther(t *testing.T) {
	lv := requireLibvirt(t, testDriverURI)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	const group = "twin"
	collect := config.Orphans{Action: config.OrphansDelete, GracePeriod: 2 * time.Second, ScanInterval: time.Second, DeleteUnconfiguredGroups: true}
	a, _ := startInProcessOrphans(t, ctx, collect, testDriverGroup(group, 0, 3))
	b, _ := startInProcessOrphans(t, ctx, collect, testDriverGroup(group, 0, 3))
	if a.Config.Controller.Installation == b.Config.Controller.Installation {
		t.Fatal("both installations have the same identity")
	}
	settle := func(s *starter.Starter, n int) workflows.GroupStatus {
		t.Helper()
		if _, err := s.Scale(ctx, group, n); err != nil {
			t.Fatal(err)
		}
		wctx, wcancel := context.WithTimeout(ctx, time.Minute)
		defer wcancel()
		st, err := s.WaitSettled(wctx, group, 100*time.Millisecond)
		if err != nil {
			t.Fatal(err)
		}
		return st
	}
	t.Cleanup(func() {
		for _, s := range []*starter.Starter{a, b} {
			cctx, ccancel := context.WithTimeout(context.Background(), time.Minute)
			_, _ = s.Scale(cctx, group, 0)
			_, _ = s.WaitSettled(cctx, group, 100*time.Millisecond)
			ccancel()
		}
	})
	stA := settle(a, 2)
	stB := settle(b, 2)
	namesA, namesB := memberNames(stA), memberNames(stB)
	if !slices.Equal(namesA, []string{"twin-1", "twin-2"}) || !slices.Equal(namesB, []string{"twin-3", "twin-4"}) {
		t.Fatalf("members: first %v, second %v; want twin-1,2 and twin-3,4 (the second skips names in use)", namesA, namesB)
	}

	for _, s := range []*starter.Starter{a, b} {
		if err := s.EnsureOrphanCollector(ctx); err != nil {
			t.Fatal(err)
		}
	}
	// Several grace periods, with each installation resizing once.
	// Both collectors finish rounds while the other installation resizes.
	rounds := func(s *starter.Starter) func() (workflows.OrphanStatus, error) {
		return func() (workflows.OrphanStatus, error) { return s.OrphanCollectorStatus(ctx) }
	}
	collectorRounds(t, rounds(a), 2, func() {
		collectorRounds(t, rounds(b), 2, func() {
			settle(a, 3)
			time.Sleep(4 * time.Second)
			stA = settle(a, 2)
			settle(b, 3)
			time.Sleep(4 * time.Second)
			stB = settle(b, 2)
		})
	})

	if got := memberNames(stA); !slices.Equal(got, namesA) {
		t.Errorf("first installation's members %v, want %v", got, namesA)
	}
	if got := memberNames(stB); !slices.Equal(got, namesB) {
		t.Errorf("second installation's members %v, want %v", got, namesB)
	}
	running := viewGroup(t, lv, group).running
	for _, name := range append(append([]string{}, namesA...), namesB...) {
		if !slices.Contains(running, name) {
			t.Errorf("%s no longer runs on the host (running: %v)", name, running)
		}
	}
	for _, s := range []*starter.Starter{a, b} {
		// A report from scans that began after the groups settled: one
		// taken during the last scale-in may list its disk between the
		// member's removal and the disk's deletion (kept by the grace
		// period, never deleted; st.Deleted below checks that).
		var st workflows.OrphanStatus
		for last, scans := (time.Time{}), 0; scans < 3; time.Sleep(200 * time.Millisecond) {
			var err error
			if st, err = s.OrphanCollectorStatus(ctx); err != nil {
				t.Fatal(err)
			}
			if !st.LastScanAt.Equal(last) {
				last, scans = st.LastScanAt, scans+1
			}
		}
		// The other's VMs are listed as its, kept; nothing is deleted.
		for _, o := range st.Orphans {
			if o.Group == group && (o.Kept == "" || !strings.Contains(o.Reason, "marked by installation")) {
				t.Errorf("installation %s's collector may delete %s %s (%s; kept: %q)", s.Config.Controller.Installation, o.Kind, o.Name, o.Reason, o.Kept)
			}
		}
		for _, o := range st.Deleted {
			t.Errorf("installation %s's collector deleted %s %s (%s)", s.Config.Controller.Installation, o.Kind, o.Name, o.Reason)
		}
		for _, m := range []*workflows.GroupStatus{&stA, &stB} {
			if len(m.Strays) > 0 {
				t.Errorf("strays %v: another installation's VMs taken for this group's", m.Strays)
			}
		}
	}
}
