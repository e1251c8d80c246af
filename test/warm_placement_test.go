package test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/premiscale/premiscale/config"
	"github.com/premiscale/premiscale/workflows"
)

// TestHibernatedWarmVMKeepsItsMemoryFromPlacement: a hibernated warm VM
// is shut off with its memory saved to disk, and its host must still hold
// that memory for it, or waking the pool fails for room another group
// took meanwhile. On the test driver's host, set to have room for two
// 1 GiB VMs beside what it already runs (and not three), one group's pool
// parks one VM; another group then asks for two and gets one, with the
// reason in its status; the pool's VM then wakes into its group.
func TestHibernatedWarmVMKeepsItsMemoryFromPlacement(t *testing.T) {
	lv := requireLibvirt(t, testDriverURI)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	for _, g := range []string{"wpool", "wother"} {
		purgeGroup(t, lv, testPool, g)
		t.Cleanup(func() { purgeGroup(t, lv, testPool, g) })
	}

	// Room for 2.5 GiB of VMs: (node - reserved) * 4 - allocated.
	_, nodeKiB, _, _, _, _, _, _, err := lv.NodeGetInfo()
	if err != nil {
		t.Fatal(err)
	}
	doms, _, err := lv.ConnectListAllDomains(1, 0)
	if err != nil {
		t.Fatal(err)
	}
	var allocKiB uint64
	for _, d := range doms {
		_, maxKiB, _, _, _, err := lv.DomainGetInfo(d)
		if err != nil {
			t.Fatal(err)
		}
		allocKiB += maxKiB
	}
	const over, roomKiB = 4, 5 << 19 // 2.5 GiB
	if (allocKiB+roomKiB)/over > nodeKiB {
		t.Fatalf("the test driver's host already holds %d KiB: no way to leave exactly 2.5 GiB of room", allocKiB)
	}
	reserved := fmt.Sprintf("%dKiB", nodeKiB-(allocKiB+roomKiB)/over)

	one := 1
	zero := time.Duration(0)
	tmpl := config.Template{DiskSize: "64MiB", Memory: "1GiB", DomainType: "qemu", ShutdownTimeout: &zero}
	pool := config.Group{
		Name: "wpool", Hosts: []string{"testhost"}, Min: 0, Max: 1,
		Scaling: config.Scaling{EvaluationInterval: time.Second}, Template: tmpl,
		WarmPool: &config.WarmPool{Size: &one, State: config.WarmHibernated},
	}
	other := config.Group{
		Name: "wother", Hosts: []string{"testhost"}, Min: 0, Max: 2,
		Scaling: config.Scaling{EvaluationInterval: time.Second}, Template: tmpl,
	}
	cfg := &config.Config{Version: config.Version, Autoscale: config.Autoscale{
		Hosts:  []config.Host{{Name: "testhost", URI: testDriverURI, Pool: testPool, CPUOvercommit: 16, MemoryOvercommit: over, Reserved: config.Reserved{Memory: reserved}}},
		Groups: []config.Group{pool, other},
	}}
	s, _ := startInProcessConfig(t, ctx, cfg, nil)

	var parked string
	waitFor(t, time.Minute, "the pool's VM hibernated", func() bool {
		st, err := s.Status(ctx, "wpool")
		if err != nil || st.Warm != 1 || st.Warming != 0 {
			return false
		}
		for _, m := range st.Members {
			if m.State == workflows.MemberWarm && m.WarmState == config.WarmHibernated {
				parked = m.Name
			}
		}
		return parked != ""
	})
	if v := viewGroup(t, lv, "wpool"); len(v.running) != 0 || len(v.defined) != 1 {
		t.Fatalf("the pool's domains: running %v, defined %v; want one defined, shut off", v.running, v.defined)
	}

	if _, err := s.Scale(ctx, "wother", 2); err != nil {
		t.Fatal(err)
	}
	var st workflows.GroupStatus
	waitFor(t, time.Minute, "the other group placed what fits and said why not the rest", func() bool {
		st, err = s.Status(ctx, "wother")
		return err == nil && st.NoCapacity != "" && len(membersIn(st, workflows.MemberRunning)) == 1 &&
			len(membersIn(st, workflows.MemberProvisioning)) == 0
	})
	t.Logf("the other group: %s", st.NoCapacity)
	if v := viewGroup(t, lv, "wother"); len(v.running) != 1 {
		t.Fatalf("the other group's domains: running %v, want one (the warm VM's memory is taken)", v.running)
	}

	// The pool's VM wakes into its group: its memory was kept for it.
	if _, err := s.Scale(ctx, "wpool", 1); err != nil {
		t.Fatal(err)
	}
	waitFor(t, time.Minute, "the warm VM running in its group", func() bool {
		st, err := s.Status(ctx, "wpool")
		running := membersIn(st, workflows.MemberRunning)
		return err == nil && len(running) == 1 && running[0] == parked
	})
	if v := viewGroup(t, lv, "wpool"); len(v.running) != 1 || v.running[0] != parked {
		t.Fatalf("the pool's group runs %v, want %s woken", v.running, parked)
	}
}
