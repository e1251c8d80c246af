package test

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/digitalocean/go-libvirt"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"
	"libvirt.org/go/libvirtxml"

	"github.com/premiscale/premiscale/activities"
	"github.com/premiscale/premiscale/config"
	"github.com/premiscale/premiscale/internal/hostconn"
)

// testDriverURI reaches libvirt's test driver through the local daemon. All
// connections share one state, which lives while any connection is open.
const testDriverURI = "test+unix:///default"

const testPool = "default-pool"

// requireLibvirt connects to uri or skips (fails, when make test demands
// libvirt with PSTEST_REQUIRE_ALL=1).
func requireLibvirt(t testing.TB, uri string) *libvirt.Libvirt {
	t.Helper()
	u, err := url.Parse(uri)
	if err != nil {
		t.Fatal(err)
	}
	lv, err := libvirt.ConnectToURI(u)
	if err != nil {
		if os.Getenv("PSTEST_REQUIRE_ALL") == "1" {
			t.Fatalf("libvirtd not reachable at %s: %v (make test starts it)", uri, err)
		}
		t.Skipf("libvirtd not reachable at %s: %v (run through make test)", uri, err)
	}
	closeAtCleanup(t, lv)
	return lv
}

// closeAtCleanup disconnects a test connection when the test ends.
func closeAtCleanup(t testing.TB, lv *libvirt.Libvirt) {
	t.Cleanup(func() { _ = lv.Disconnect() })
}

// ensureVolume creates a raw volume in the test pool unless it exists.
func ensureVolume(t testing.TB, lv *libvirt.Libvirt, pool, name string, size uint64) {
	t.Helper()
	p, err := lv.StoragePoolLookupByName(pool)
	if err != nil {
		t.Fatalf("pool %s: %v", pool, err)
	}
	if _, err := lv.StorageVolLookupByName(p, name); err == nil {
		return
	}
	doc, _ := (&libvirtxml.StorageVolume{
		Name:     name,
		Capacity: &libvirtxml.StorageVolumeSize{Unit: "bytes", Value: size},
		Target:   &libvirtxml.StorageVolumeTarget{Format: &libvirtxml.StorageVolumeTargetFormat{Type: "qcow2"}},
	}).Marshal()
	if _, err := lv.StorageVolCreateXML(p, doc, 0); err != nil {
		t.Fatalf("create base volume %s: %v", name, err)
	}
}

func volumeXML(t testing.TB, lv *libvirt.Libvirt, pool, name string) (libvirtxml.StorageVolume, bool) {
	t.Helper()
	p, err := lv.StoragePoolLookupByName(pool)
	if err != nil {
		t.Fatalf("pool %s: %v", pool, err)
	}
	v, err := lv.StorageVolLookupByName(p, name)
	if err != nil {
		return libvirtxml.StorageVolume{}, false
	}
	doc, err := lv.StorageVolGetXMLDesc(v, 0)
	if err != nil {
		t.Fatalf("volume %s xml: %v", name, err)
	}
	var out libvirtxml.StorageVolume
	if err := out.Unmarshal(doc); err != nil {
		t.Fatal(err)
	}
	return out, true
}

func domainExists(t testing.TB, lv *libvirt.Libvirt, name string) (exists, running bool) {
	t.Helper()
	d, err := lv.DomainLookupByName(name)
	if err != nil {
		return false, false
	}
	s, _, err := lv.DomainGetState(d, 0)
	if err != nil {
		return false, false
	}
	return true, libvirt.DomainState(s) == libvirt.DomainRunning
}

// activityEnv runs activities through the SDK's activity test environment,
// so that heartbeats and errors behave as in a worker.
func activityEnv(t *testing.T, lv *activities.Libvirt) *testsuite.TestActivityEnvironment {
	var s testsuite.WorkflowTestSuite
	env := s.NewTestActivityEnvironment()
	env.RegisterActivity(lv)
	return env
}

// testActs returns libvirt activities whose worker catalog has host and,
// on it, one group per template (group name -> template), and a function
// that gives each group's revision.
func testActs(t *testing.T, host config.Host, groups map[string]config.Template) (*activities.Libvirt, func(group string) string) {
	t.Helper()
	cfg := &config.Config{Autoscale: config.Autoscale{Hosts: []config.Host{host}}}
	for name, tmpl := range groups {
		cfg.Autoscale.Groups = append(cfg.Autoscale.Groups, config.Group{Name: name, Hosts: []string{host.Name}, Max: 1, Template: tmpl})
	}
	cfg.ApplyDefaults()
	cat := activities.NewCatalog(cfg)
	hosts := hostconn.NewHosts(nil)
	t.Cleanup(func() { _ = hosts.Close() })
	return &activities.Libvirt{Hosts: hosts, Catalog: cat}, cat.Revision
}

func run(t *testing.T, env *testsuite.TestActivityEnvironment, fn any, in any, out any) error {
	t.Helper()
	v, err := env.ExecuteActivity(fn, in)
	if err == nil && out != nil {
		if gerr := v.Get(out); gerr != nil {
			t.Fatalf("decode result: %v", gerr)
		}
	}
	return err
}

func TestVMLifecycleIsIdempotentOnTheTestDriver(t *testing.T) {
	lv := requireLibvirt(t, testDriverURI)
	ensureVolume(t, lv, testPool, "it-base.qcow2", 64<<20)
	tmpl := config.Template{BaseVolume: "it-base.qcow2", VCPUs: 1, Memory: "128MiB", DomainType: "qemu", Arch: "x86_64", Network: config.Network{Type: config.NetworkUser, Model: "virtio"}}
	acts, rev := testActs(t, config.Host{Name: "test", URI: testDriverURI, Pool: testPool}, map[string]config.Template{"itlife": tmpl})
	acts.PollInterval = 20 * time.Millisecond
	env := activityEnv(t, acts)
	var a *activities.Libvirt

	host := activities.HostRef{Name: "test"}
	vm := fmt.Sprintf("itlife-%d", 1+time.Now().UnixNano()%100000)
	ref := activities.DomainRef{Host: host, Group: "itlife", VM: vm}

	// Clone twice: the second call finds the overlay and returns it.
	for i := range 2 {
		var out activities.CloneVolumeOutput
		if err := run(t, env, a.CloneVolume, activities.CloneVolumeInput{Host: host, Group: "itlife", VM: vm, Revision: rev("itlife")}, &out); err != nil {
			t.Fatalf("clone #%d: %v", i+1, err)
		}
		if out.Volume != activities.VolumeName(vm) {
			t.Fatalf("volume = %q, want %q", out.Volume, activities.VolumeName(vm))
		}
	}
	vol, ok := volumeXML(t, lv, testPool, activities.VolumeName(vm))
	if !ok {
		t.Fatal("cloned volume missing")
	}
	if vol.BackingStore == nil || !strings.HasSuffix(vol.BackingStore.Path, "it-base.qcow2") {
		t.Errorf("clone is not an overlay of the base: backing store %+v", vol.BackingStore)
	}
	if vol.Target == nil || vol.Target.Format == nil || vol.Target.Format.Type != "qcow2" {
		t.Errorf("clone format = %+v, want qcow2", vol.Target)
	}

	for i := range 2 {
		if err := run(t, env, a.DefineDomain, activities.DefineDomainInput{Domain: ref, Volume: activities.VolumeName(vm), Revision: rev("itlife"), Epoch: "history-1"}, nil); err != nil {
			t.Fatalf("define #%d: %v", i+1, err)
		}
	}
	// Another history of the group (its state lost) does not adopt it.
	err := run(t, env, a.DefineDomain, activities.DefineDomainInput{Domain: ref, Volume: activities.VolumeName(vm), Revision: rev("itlife"), Epoch: "history-2"}, nil)
	if ae := (*temporal.ApplicationError)(nil); !errors.As(err, &ae) || ae.Type() != activities.ErrTypeNotOwned {
		t.Fatalf("define by another history: err = %v, want %s", err, activities.ErrTypeNotOwned)
	}
	for i := range 2 {
		if err := run(t, env, a.StartDomain, ref, nil); err != nil {
			t.Fatalf("start #%d: %v", i+1, err)
		}
	}
	if err := run(t, env, a.WaitRunning, ref, nil); err != nil {
		t.Fatalf("wait running: %v", err)
	}
	var list activities.ListDomainsOutput
	if err := run(t, env, a.ListDomains, activities.ListDomainsInput{Host: host, Group: "itlife"}, &list); err != nil {
		t.Fatalf("list: %v", err)
	}
	if len(list.Domains) != 1 || list.Domains[0].Name != vm || !list.Domains[0].Running || list.Domains[0].Owner.Group != "itlife" {
		t.Fatalf("list = %+v, want %s running, owned by itlife", list.Domains, vm)
	}

	for i := range 2 {
		if err := run(t, env, a.StopDomain, activities.StopDomainInput{Domain: ref}, nil); err != nil {
			t.Fatalf("stop #%d: %v", i+1, err)
		}
	}
	if _, running := domainExists(t, lv, vm); running {
		t.Fatal("domain still running after stop")
	}
	for i := range 2 {
		if err := run(t, env, a.UndefineDomain, ref, nil); err != nil {
			t.Fatalf("undefine #%d: %v", i+1, err)
		}
		if err := run(t, env, a.DeleteVolume, activities.DeleteVolumeInput{Host: host, VM: vm}, nil); err != nil {
			t.Fatalf("delete volume #%d: %v", i+1, err)
		}
	}
	if exists, _ := domainExists(t, lv, vm); exists {
		t.Error("domain still defined after undefine")
	}
	if _, ok := volumeXML(t, lv, testPool, activities.VolumeName(vm)); ok {
		t.Error("volume still there after delete")
	}
}

func TestUnownedDomainIsNeverTouched(t *testing.T) {
	lv := requireLibvirt(t, testDriverURI)
	acts, rev := testActs(t, config.Host{Name: "test", URI: testDriverURI, Pool: testPool},
		map[string]config.Template{"itforeign": {VCPUs: 1, Memory: "64MiB", DomainType: "qemu", Arch: "x86_64"}})
	env := activityEnv(t, acts)
	var a *activities.Libvirt
	host := activities.HostRef{Name: "test"}

	// A domain someone else made, with a name PremiScale could generate.
	name := fmt.Sprintf("itforeign-%d", 1+time.Now().UnixNano()%100000)
	doc, _ := (&libvirtxml.Domain{Type: "test", Name: name, Memory: &libvirtxml.DomainMemory{Value: 65536, Unit: "KiB"},
		OS: &libvirtxml.DomainOS{Type: &libvirtxml.DomainOSType{Type: "hvm"}}}).Marshal()
	dom, err := lv.DomainDefineXML(doc)
	if err != nil {
		t.Fatalf("define foreign domain: %v", err)
	}
	if err := lv.DomainCreate(dom); err != nil {
		t.Fatalf("start foreign domain: %v", err)
	}
	t.Cleanup(func() { _ = lv.DomainDestroy(dom); _ = lv.DomainUndefine(dom) })

	ref := activities.DomainRef{Host: host, Group: "itforeign", VM: name}
	calls := map[string]error{
		"define":   run(t, env, a.DefineDomain, activities.DefineDomainInput{Domain: ref, Volume: activities.VolumeName(name), Revision: rev("itforeign")}, nil),
		"start":    run(t, env, a.StartDomain, ref, nil),
		"stop":     run(t, env, a.StopDomain, activities.StopDomainInput{Domain: ref}, nil),
		"undefine": run(t, env, a.UndefineDomain, ref, nil),
	}
	for op, err := range calls {
		var ae *temporal.ApplicationError
		if !errors.As(err, &ae) || ae.Type() != activities.ErrTypeNotOwned || !ae.NonRetryable() {
			t.Errorf("%s on a foreign domain: err = %v, want non-retryable %s", op, err, activities.ErrTypeNotOwned)
		}
	}
	if exists, running := domainExists(t, lv, name); !exists || !running {
		t.Errorf("foreign domain touched: exists=%v running=%v", exists, running)
	}
	var list activities.ListDomainsOutput
	if err := run(t, env, a.ListDomains, activities.ListDomainsInput{Host: host}, &list); err != nil {
		t.Fatal(err)
	}
	for _, d := range list.Domains {
		if d.Name == name {
			t.Errorf("foreign domain listed as PremiScale's: %+v", d)
		}
	}
}

func TestMissingBaseVolumeFailsWithoutRetry(t *testing.T) {
	requireLibvirt(t, testDriverURI)
	acts, rev := testActs(t, config.Host{Name: "test", URI: testDriverURI, Pool: testPool},
		map[string]config.Template{"itmissing": {BaseVolume: "no-such-base.qcow2"}})
	env := activityEnv(t, acts)
	var a *activities.Libvirt
	err := run(t, env, a.CloneVolume, activities.CloneVolumeInput{
		Host: activities.HostRef{Name: "test"}, Group: "itmissing", VM: "itmissing-1", Revision: rev("itmissing"),
	}, nil)
	var ae *temporal.ApplicationError
	if !errors.As(err, &ae) || ae.Type() != activities.ErrTypeInvalidConfig || !strings.Contains(err.Error(), "no-such-base.qcow2") {
		t.Fatalf("err = %v, want non-retryable InvalidConfig naming the base volume", err)
	}
}

func TestPooledConnectionIsRedialedAfterItDrops(t *testing.T) {
	requireLibvirt(t, testDriverURI)
	hosts := hostconn.NewHosts(nil)
	defer hosts.Close()
	ctx := context.Background()
	c1, err := hosts.Conn(ctx, testDriverURI)
	if err != nil {
		t.Fatal(err)
	}
	c2, _ := hosts.Conn(ctx, testDriverURI)
	if c1 != c2 {
		t.Fatal("second Conn dialed again instead of reusing the pooled connection")
	}
	if err := c1.Disconnect(); err != nil {
		t.Fatal(err)
	}
	c3, err := hosts.Conn(ctx, testDriverURI)
	if err != nil {
		t.Fatalf("redial: %v", err)
	}
	if c3 == c1 || !c3.IsConnected() {
		t.Fatal("dropped connection was not replaced by a live one")
	}
	if _, err := c3.ConnectGetLibVersion(); err != nil {
		t.Fatalf("redialed connection does not work: %v", err)
	}
}

func TestHostSlotsSpreadOverConnectionsOfFourCalls(t *testing.T) {
	requireLibvirt(t, testDriverURI)
	hosts := hostconn.NewHosts(nil)
	hosts.MaxPerHost = 8
	defer hosts.Close()
	ctx := context.Background()
	uses := map[*libvirt.Libvirt]int{}
	var releases []func()
	for range 8 {
		lv, release, err := hosts.Acquire(ctx, "h1", testDriverURI)
		if err != nil {
			t.Fatal(err)
		}
		uses[lv]++
		releases = append(releases, release)
	}
	if len(uses) != 2 {
		t.Fatalf("8 slots used %d connections, want 2 (libvirtd serves 5 calls of a connection at once)", len(uses))
	}
	for lv, n := range uses {
		if n != 4 {
			t.Errorf("a connection carries %d slots, want 4", n)
		}
		if _, err := lv.ConnectGetLibVersion(); err != nil {
			t.Errorf("pooled connection does not work: %v", err)
		}
	}
	short, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	if _, _, err := hosts.Acquire(short, "h1", testDriverURI); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("a ninth user: err = %v, want its deadline while all 8 slots are held", err)
	}
	releases[5]()
	lv, release, err := hosts.Acquire(ctx, "h1", testDriverURI)
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	if uses[lv] == 0 {
		t.Error("a freed slot came back on a connection not in the pool")
	}
	for i, r := range releases {
		if i != 5 {
			r()
		}
	}
}

func TestHostInventoryCountsEveryDomainAndListsOurs(t *testing.T) {
	requireLibvirt(t, testDriverURI)
	tmpl := config.Template{VCPUs: 2, Memory: "128MiB", DomainType: "qemu", Arch: "x86_64", DiskSize: "64MiB"}
	acts, rev := testActs(t, config.Host{Name: "test", URI: testDriverURI, Pool: testPool}, map[string]config.Template{"itinv": tmpl})
	env := activityEnv(t, acts)
	var a *activities.Libvirt
	host := activities.HostRef{Name: "test"}

	var before activities.Inventory
	if err := run(t, env, a.HostInventory, activities.InventoryInput{Host: host}, &before); err != nil {
		t.Fatal(err)
	}
	if before.CPUs < 1 || before.MemoryBytes == 0 || before.PoolCapacityBytes == 0 {
		t.Fatalf("inventory = %+v, want the node's CPUs, memory and the pool's size", before)
	}

	// One PremiScale VM (2 vCPUs, 128 MiB) joins the host.
	vm := fmt.Sprintf("itinv-%d", 1+time.Now().UnixNano()%100000)
	ref := activities.DomainRef{Host: host, Group: "itinv", VM: vm}
	if err := run(t, env, a.CloneVolume, activities.CloneVolumeInput{Host: host, Group: "itinv", VM: vm, Revision: rev("itinv")}, nil); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = run(t, env, a.UndefineDomain, ref, nil)
		_ = run(t, env, a.DeleteVolume, activities.DeleteVolumeInput{Host: host, VM: vm}, nil)
	})
	if err := run(t, env, a.DefineDomain, activities.DefineDomainInput{Domain: ref, Volume: activities.VolumeName(vm), Revision: rev("itinv")}, nil); err != nil {
		t.Fatal(err)
	}
	var after activities.Inventory
	if err := run(t, env, a.HostInventory, activities.InventoryInput{Host: host}, &after); err != nil {
		t.Fatal(err)
	}
	if after.Domains != before.Domains+1 || after.AllocatedVCPUs != before.AllocatedVCPUs+2 || after.AllocatedMemoryBytes != before.AllocatedMemoryBytes+128<<20 {
		t.Errorf("after defining a 2-vCPU 128 MiB VM: %d domains, %d vCPUs, %d bytes; before %d, %d, %d",
			after.Domains, after.AllocatedVCPUs, after.AllocatedMemoryBytes, before.Domains, before.AllocatedVCPUs, before.AllocatedMemoryBytes)
	}
	var ours bool
	for _, d := range after.Owned {
		ours = ours || (d.Name == vm && d.Owner.Group == "itinv")
	}
	if !ours {
		t.Errorf("owned = %+v, want %s of group itinv", after.Owned, vm)
	}
	for _, d := range after.Owned {
		if d.Name == "test" {
			t.Errorf("the test driver's own domain is listed as PremiScale's")
		}
	}
}

// clonedDisk makes a disk with CloneVolume for a new VM of group on the
// test driver's host, and returns the activity environment, the VM's name
// and the disk.
func clonedDisk(t *testing.T, group string) (*testsuite.TestActivityEnvironment, string, activities.CloneVolumeOutput) {
	t.Helper()
	acts, rev := testActs(t, config.Host{Name: "test", URI: testDriverURI, Pool: testPool},
		map[string]config.Template{group: {DiskSize: "64MiB", Memory: "64MiB", DomainType: "qemu", Arch: "x86_64"}})
	env := activityEnv(t, acts)
	var a *activities.Libvirt
	vm := fmt.Sprintf("%s-%d", group, 1+time.Now().UnixNano()%100000)
	var disk activities.CloneVolumeOutput
	if err := run(t, env, a.CloneVolume, activities.CloneVolumeInput{Host: activities.HostRef{Name: "test"}, Group: group, VM: vm, Revision: rev(group)}, &disk); err != nil {
		t.Fatal(err)
	}
	return env, vm, disk
}

// TestVolumeThatBacksAnotherIsNeverDeleted: someone made an overlay (a
// snapshot, a clone) on a PremiScale disk. Deleting the disk would corrupt
// it, so DeleteVolume refuses, whether or not the VM's domain is gone.
func TestVolumeThatBacksAnotherIsNeverDeleted(t *testing.T) {
	lv := requireLibvirt(t, testDriverURI)
	env, vm, disk := clonedDisk(t, "itback")
	var a *activities.Libvirt
	host := activities.HostRef{Name: "test"}
	p, err := lv.StoragePoolLookupByName(testPool)
	if err != nil {
		t.Fatal(err)
	}
	snap := "snapshot-of-" + vm + ".qcow2"
	doc, _ := (&libvirtxml.StorageVolume{
		Name:         snap,
		Capacity:     &libvirtxml.StorageVolumeSize{Unit: "bytes", Value: 64 << 20},
		Target:       &libvirtxml.StorageVolumeTarget{Format: &libvirtxml.StorageVolumeTargetFormat{Type: "qcow2"}},
		BackingStore: &libvirtxml.StorageVolumeBackingStore{Path: disk.Path, Format: &libvirtxml.StorageVolumeTargetFormat{Type: "qcow2"}},
	}).Marshal()
	sv, err := lv.StorageVolCreateXML(p, doc, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = lv.StorageVolDelete(sv, 0)
		_ = run(t, env, a.DeleteVolume, activities.DeleteVolumeInput{Host: host, VM: vm}, nil)
	})
	for _, in := range []activities.DeleteVolumeInput{{Host: host, VM: vm}, {Host: host, VM: vm, Volume: disk.Volume, IfUnused: true}} {
		err := run(t, env, a.DeleteVolume, in, nil)
		var ae *temporal.ApplicationError
		if !errors.As(err, &ae) || ae.Type() != activities.ErrTypeInUse || !strings.Contains(err.Error(), snap) {
			t.Errorf("delete %+v: err = %v, want %s naming %s", in, err, activities.ErrTypeInUse, snap)
		}
	}
	if _, ok := volumeXML(t, lv, testPool, disk.Volume); !ok {
		t.Fatal("the disk under the snapshot was deleted")
	}
	// Once the snapshot is gone, the disk goes.
	if err := lv.StorageVolDelete(sv, 0); err != nil {
		t.Fatal(err)
	}
	if err := run(t, env, a.DeleteVolume, activities.DeleteVolumeInput{Host: host, VM: vm}, nil); err != nil {
		t.Fatal(err)
	}
	if _, ok := volumeXML(t, lv, testPool, disk.Volume); ok {
		t.Error("disk still there after its snapshot went")
	}
}

// TestVolumeADomainUsesIsNeverDeleted: someone attached a PremiScale disk
// to a domain of theirs; no delete takes it from under them.
func TestVolumeADomainUsesIsNeverDeleted(t *testing.T) {
	lv := requireLibvirt(t, testDriverURI)
	env, vm, disk := clonedDisk(t, "itused")
	var a *activities.Libvirt
	host := activities.HostRef{Name: "test"}
	dom := defineTheirs(t, lv, "theirs-"+vm, disk.Volume)
	t.Cleanup(func() {
		_ = lv.DomainUndefine(dom)
		_ = run(t, env, a.DeleteVolume, activities.DeleteVolumeInput{Host: host, VM: vm}, nil)
	})
	err := run(t, env, a.DeleteVolume, activities.DeleteVolumeInput{Host: host, VM: vm}, nil)
	var ae *temporal.ApplicationError
	if !errors.As(err, &ae) || ae.Type() != activities.ErrTypeInUse || !strings.Contains(err.Error(), "theirs-"+vm) {
		t.Errorf("delete: err = %v, want %s naming their domain", err, activities.ErrTypeInUse)
	}
	if _, ok := volumeXML(t, lv, testPool, disk.Volume); !ok {
		t.Fatal("the disk their domain uses was deleted")
	}
}

// TestCloneVolumeAdoptsOnlyADiskItWouldHaveMade: a retried clone takes the
// disk its earlier attempt made; a disk of that name with another size or
// base (another installation's, made at the same moment) or one a domain
// uses is refused as not ours and left exactly as it was.
func TestCloneVolumeAdoptsOnlyADiskItWouldHaveMade(t *testing.T) {
	lv := requireLibvirt(t, testDriverURI)
	env, vm, disk := clonedDisk(t, "itadopt")
	var a *activities.Libvirt
	host := activities.HostRef{Name: "test"}
	t.Cleanup(func() { _ = run(t, env, a.DeleteVolume, activities.DeleteVolumeInput{Host: host, VM: vm}, nil) })
	_, rev := testActs(t, config.Host{Name: "test", URI: testDriverURI, Pool: testPool},
		map[string]config.Template{"itadopt": {DiskSize: "64MiB", Memory: "64MiB", DomainType: "qemu", Arch: "x86_64"}})
	in := activities.CloneVolumeInput{Host: host, Group: "itadopt", VM: vm, Revision: rev("itadopt")}
	var again activities.CloneVolumeOutput
	if err := run(t, env, a.CloneVolume, in, &again); err != nil || again != disk {
		t.Fatalf("retried clone: %+v %v, want %+v", again, err, disk)
	}
	taken := func(what string, err error) {
		t.Helper()
		var ae *temporal.ApplicationError
		if !errors.As(err, &ae) || ae.Type() != activities.ErrTypeNameTaken {
			t.Errorf("%s: err = %v, want %s", what, err, activities.ErrTypeNameTaken)
		}
	}

	// Someone's domain has the disk.
	dom := defineTheirs(t, lv, "theirs-"+vm, disk.Volume)
	taken("clone while a domain uses the disk", run(t, env, a.CloneVolume, in, nil))
	if err := lv.DomainUndefine(dom); err != nil {
		t.Fatal(err)
	}

	// A disk of the next name, another size: another installation's.
	vm2 := fmt.Sprintf("itadopt-%d", 100001+time.Now().UnixNano()%100000)
	p, err := lv.StoragePoolLookupByName(testPool)
	if err != nil {
		t.Fatal(err)
	}
	doc, _ := (&libvirtxml.StorageVolume{
		Name:     activities.VolumeName(vm2),
		Capacity: &libvirtxml.StorageVolumeSize{Unit: "bytes", Value: 128 << 20},
		Target:   &libvirtxml.StorageVolumeTarget{Format: &libvirtxml.StorageVolumeTargetFormat{Type: "qcow2"}},
	}).Marshal()
	theirs, err := lv.StorageVolCreateXML(p, doc, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = lv.StorageVolDelete(theirs, 0) })
	in.VM = vm2
	taken("clone over a disk of another size", run(t, env, a.CloneVolume, in, nil))
	if vx, ok := volumeXML(t, lv, testPool, activities.VolumeName(vm2)); !ok || vx.Capacity.Value != 128<<20 {
		t.Errorf("the other disk was changed or deleted: %+v %v", vx.Capacity, ok)
	}
}

// defineTheirs defines, on the test driver, a domain that is not
// PremiScale's (no mark) with volume of the test pool as its disk.
func defineTheirs(t *testing.T, lv *libvirt.Libvirt, name, volume string) libvirt.Domain {
	t.Helper()
	dom, err := lv.DomainDefineXML(fmt.Sprintf(`<domain type='test'><name>%s</name><memory unit='MiB'>64</memory>
<os><type arch='x86_64'>hvm</type></os>
<devices><disk type='volume' device='disk'><source pool='%s' volume='%s'/><target dev='vda' bus='virtio'/></disk></devices></domain>`,
		name, testPool, volume))
	if err != nil {
		t.Fatal(err)
	}
	return dom
}

// TestListingRemembersMarksByDomainUUID: ListDomains reads each domain's
// mark once and remembers it by UUID and name, so a domain replaced by
// hand under the same name (a new UUID, no mark) is not taken for the
// member it replaced, and one undefined is no longer listed.
func TestListingRemembersMarksByDomainUUID(t *testing.T) {
	lv := requireLibvirt(t, testDriverURI)
	ensureVolume(t, lv, testPool, "it-base.qcow2", 64<<20)
	tmpl := config.Template{BaseVolume: "it-base.qcow2", VCPUs: 1, Memory: "128MiB", DomainType: "qemu", Arch: "x86_64"}
	acts, rev := testActs(t, config.Host{Name: "test", URI: testDriverURI, Pool: testPool}, map[string]config.Template{"itmark": tmpl})
	env := activityEnv(t, acts)
	var a *activities.Libvirt
	host := activities.HostRef{Name: "test"}
	vm := fmt.Sprintf("itmark-%d", 1+time.Now().UnixNano()%100000)
	ref := activities.DomainRef{Host: host, Group: "itmark", VM: vm}
	list := func() []string {
		t.Helper()
		var out activities.ListDomainsOutput
		if err := run(t, env, a.ListDomains, activities.ListDomainsInput{Host: host, Group: "itmark"}, &out); err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, d := range out.Domains {
			names = append(names, d.Name)
		}
		return names
	}
	if err := run(t, env, a.CloneVolume, activities.CloneVolumeInput{Host: host, Group: "itmark", VM: vm, Revision: rev("itmark")}, nil); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = run(t, env, a.DeleteVolume, activities.DeleteVolumeInput{Host: host, VM: vm}, nil) })
	if err := run(t, env, a.DefineDomain, activities.DefineDomainInput{Domain: ref, Volume: activities.VolumeName(vm), Revision: rev("itmark")}, nil); err != nil {
		t.Fatal(err)
	}
	for i := range 2 { // the second from what the first remembered
		if got := list(); !slices.Equal(got, []string{vm}) {
			t.Fatalf("listing #%d = %v, want [%s]", i+1, got, vm)
		}
	}
	dom, err := lv.DomainLookupByName(vm)
	if err != nil {
		t.Fatal(err)
	}
	if err := lv.DomainUndefine(dom); err != nil {
		t.Fatal(err)
	}
	if got := list(); len(got) != 0 {
		t.Fatalf("after undefine: listing = %v, want none", got)
	}
	theirs := defineTheirs(t, lv, vm, activities.VolumeName(vm))
	t.Cleanup(func() { _ = lv.DomainUndefine(theirs) })
	if got := list(); len(got) != 0 {
		t.Fatalf("a domain of the same name without the mark listed as the member: %v", got)
	}
}
