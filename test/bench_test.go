package test

import (
	"context"
	"fmt"
	"net/url"
	"testing"
	"time"

	"github.com/digitalocean/go-libvirt"
	"libvirt.org/go/libvirtxml"

	"github.com/premiscale/premiscale/activities"
	"github.com/premiscale/premiscale/config"
)

// BenchmarkScaleToRunning measures the time from `scale 0 -> N` to all N
// domains running and the group settled, on libvirt's test driver through
// the daemon, with the controller's parts in process (embedded Temporal on
// SQLite, one worker). Each iteration first makes the same libvirt calls
// directly with go-libvirt in a loop (create overlay volume, define, start,
// check state) as the baseline, then PremiScale; the ratio of the two is
// reported, measured side by side so that machine noise hits both.
func BenchmarkScaleToRunning(b *testing.B) {
	for _, n := range []int{1, 10, 50} {
		b.Run(fmt.Sprintf("N=%d", n), func(b *testing.B) { benchScale(b, n) })
	}
}

func benchScale(b *testing.B, n int) {
	lv := requireLibvirt(b, testDriverURI)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	group := fmt.Sprintf("bench%d", n)
	s, _ := startInProcess(b, ctx, config.Prometheus{}, testDriverGroup(group, 0, n))
	u, _ := url.Parse(testDriverURI)
	direct, err := libvirt.ConnectToURI(u)
	if err != nil {
		b.Fatal(err)
	}
	defer direct.Disconnect()
	pool, err := direct.StoragePoolLookupByName(testPool)
	if err != nil {
		b.Fatal(err)
	}
	waitSettled := func(want int) time.Duration {
		start := time.Now()
		if _, err := s.Scale(ctx, group, want); err != nil {
			b.Fatal(err)
		}
		wctx, wcancel := context.WithTimeout(ctx, 10*time.Minute)
		defer wcancel()
		if _, err := s.WaitSettled(wctx, group, 10*time.Millisecond); err != nil {
			b.Fatal(err)
		}
		return time.Since(start)
	}

	var directTotal, psTotal time.Duration
	b.ResetTimer()
	for i := range b.N {
		b.StopTimer()
		names := make([]string, n)
		for j := range n {
			names[j] = fmt.Sprintf("direct%d-%d-%d", n, i, j)
		}
		b.StartTimer()
		t0 := time.Now()
		for _, name := range names {
			directProvision(b, direct, pool, name)
		}
		d := time.Since(t0)
		b.StopTimer()
		for _, name := range names {
			directCleanup(direct, pool, name)
		}
		b.StartTimer()

		p := waitSettled(n)
		b.StopTimer()
		waitSettled(0)
		checkExactly(b, lv, group, 0)
		b.StartTimer()
		directTotal += d
		psTotal += p
	}
	b.StopTimer()
	iters := float64(b.N)
	b.ReportMetric(float64(directTotal.Milliseconds())/iters, "direct-ms")
	b.ReportMetric(float64(psTotal.Milliseconds())/iters, "premiscale-ms")
	b.ReportMetric(float64(psTotal.Microseconds())/iters/float64(n)/1000, "premiscale-ms/vm")
	b.ReportMetric(float64(psTotal)/float64(directTotal), "ratio")
}

// directProvision is the baseline: the libvirt calls PremiScale's
// provisioning makes, in a plain loop without Temporal.
func directProvision(b *testing.B, lv *libvirt.Libvirt, pool libvirt.StoragePool, name string) {
	volXML, _ := (&libvirtxml.StorageVolume{
		Name:     activities.VolumeName(name),
		Capacity: &libvirtxml.StorageVolumeSize{Unit: "bytes", Value: 64 << 20},
		Target:   &libvirtxml.StorageVolumeTarget{Format: &libvirtxml.StorageVolumeTargetFormat{Type: "qcow2"}},
	}).Marshal()
	if _, err := lv.StorageVolCreateXML(pool, volXML, 0); err != nil {
		b.Fatalf("create volume: %v", err)
	}
	doc, err := activities.DomainXML(name, activities.Owner{Group: "direct", VM: name, Volume: activities.VolumeName(name)}, testPool,
		config.Template{VCPUs: 1, Memory: "64MiB", DomainType: "qemu", Arch: "x86_64", Network: config.Network{Type: config.NetworkNone}})
	if err != nil {
		b.Fatal(err)
	}
	dom, err := lv.DomainDefineXMLFlags(doc, libvirt.DomainDefineValidate)
	if err != nil {
		b.Fatalf("define: %v", err)
	}
	if err := lv.DomainCreate(dom); err != nil {
		b.Fatalf("start: %v", err)
	}
	if s, _, err := lv.DomainGetState(dom, 0); err != nil || libvirt.DomainState(s) != libvirt.DomainRunning {
		b.Fatalf("state: %d %v", s, err)
	}
}

func directCleanup(lv *libvirt.Libvirt, pool libvirt.StoragePool, name string) {
	if dom, err := lv.DomainLookupByName(name); err == nil {
		_ = lv.DomainDestroy(dom)
		_ = lv.DomainUndefine(dom)
	}
	if vol, err := lv.StorageVolLookupByName(pool, activities.VolumeName(name)); err == nil {
		_ = lv.StorageVolDelete(vol, 0)
	}
}
