package test

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"

	"github.com/premiscale/premiscale/activities"
	"github.com/premiscale/premiscale/config"
	"github.com/premiscale/premiscale/internal/hostconn"
)

// The tiny guest built by test/guest/build.sh: a Debian kernel, a busybox
// initramfs that prints guestReady once it sees its virtio disk, and a base
// volume in the libvirt pool "premiscale".
const (
	qemuURI     = "qemu:///system"
	guestPool   = "premiscale"
	guestBase   = "tiny-base.qcow2"
	guestReady  = "PREMISCALE-GUEST-READY disk=yes"
	bootTimeout = 3 * time.Minute
)

func TestTinyQEMUGuestBootsFromClonedOverlayAndIsTornDown(t *testing.T) {
	dir := tinyGuestDir(t)
	for _, f := range []string{"vmlinuz", "initrd.img"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Fatalf("tiny guest incomplete: %v (test/guest/build.sh builds it)", err)
		}
	}
	lv := requireLibvirt(t, qemuURI)
	shutdownNow := time.Duration(0)
	tmpl := config.Template{
		BaseVolume: guestBase, VCPUs: 1, Memory: "256MiB", DomainType: "qemu", Arch: "x86_64",
		Kernel: filepath.Join(dir, "vmlinuz"), Initrd: filepath.Join(dir, "initrd.img"),
		Cmdline: "console=ttyS0 quiet panic=-1", ConsoleLog: true,
		Network: config.Network{Type: config.NetworkNone}, ShutdownTimeout: &shutdownNow,
	}
	acts, rev := testActs(t, config.Host{Name: "local", URI: qemuURI, Pool: guestPool}, map[string]config.Template{"itqemu": tmpl})
	env := activityEnv(t, acts)
	var a *activities.Libvirt
	host := activities.HostRef{Name: "local"}
	vm := "itqemu-1"
	ref := activities.DomainRef{Host: host, Group: "itqemu", VM: vm}
	consoleLog := "/var/log/libvirt/qemu/" + vm + "-console.log"
	_ = os.Remove(consoleLog)
	teardown := func() {
		_ = run(t, env, a.StopDomain, activities.StopDomainInput{Domain: ref}, nil)
		_ = run(t, env, a.UndefineDomain, ref, nil)
		_ = run(t, env, a.DeleteVolume, activities.DeleteVolumeInput{Host: host, VM: vm}, nil)
	}
	teardown() // a previous run killed half-way
	t.Cleanup(teardown)

	var vol activities.CloneVolumeOutput
	if err := run(t, env, a.CloneVolume, activities.CloneVolumeInput{Host: host, Group: "itqemu", VM: vm, Revision: rev("itqemu")}, &vol); err != nil {
		t.Fatalf("clone: %v", err)
	}
	x, ok := volumeXML(t, lv, guestPool, vol.Volume)
	if !ok || x.BackingStore == nil || !strings.HasSuffix(x.BackingStore.Path, guestBase) {
		t.Fatalf("VM disk is not an overlay of %s: %+v", guestBase, x.BackingStore)
	}
	start := time.Now()
	if err := run(t, env, a.DefineDomain, activities.DefineDomainInput{Domain: ref, Volume: vol.Volume, Revision: rev("itqemu")}, nil); err != nil {
		t.Fatalf("define: %v", err)
	}
	if err := run(t, env, a.StartDomain, ref, nil); err != nil {
		t.Fatalf("start: %v", err)
	}
	if err := run(t, env, a.WaitRunning, ref, nil); err != nil {
		t.Fatalf("wait running: %v", err)
	}
	running := time.Since(start)

	deadline := time.Now().Add(bootTimeout)
	for {
		b, _ := os.ReadFile(consoleLog)
		if strings.Contains(string(b), guestReady) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("guest did not print %q within %s; console:\n%s", guestReady, bootTimeout, b)
		}
		time.Sleep(250 * time.Millisecond)
	}
	t.Logf("domain running after %s, guest saw its disk after %s", running.Round(time.Millisecond), time.Since(start).Round(time.Millisecond))

	if err := run(t, env, a.StopDomain, activities.StopDomainInput{Domain: ref}, nil); err != nil {
		t.Fatalf("stop: %v", err)
	}
	if err := run(t, env, a.UndefineDomain, ref, nil); err != nil {
		t.Fatalf("undefine: %v", err)
	}
	if err := run(t, env, a.DeleteVolume, activities.DeleteVolumeInput{Host: host, VM: vm}, nil); err != nil {
		t.Fatalf("delete volume: %v", err)
	}
	if exists, _ := domainExists(t, lv, vm); exists {
		t.Error("domain still defined after teardown")
	}
	if _, ok := volumeXML(t, lv, guestPool, vol.Volume); ok {
		t.Error("overlay still in the pool after teardown")
	}
}

// TestSeedOfAnotherInstanceIsNeverReplaced: a retried seed step replaces
// its own seed; a seed of that name with another instance ID (another
// installation's VM of the same name) is refused as not ours and keeps its
// content.
func TestSeedOfAnotherInstanceIsNeverReplaced(t *testing.T) {
	lv := requireLibvirt(t, qemuURI)
	const group = "itseed"
	cfg := &config.Config{Autoscale: config.Autoscale{
		Hosts: []config.Host{{Name: "local", URI: qemuURI, Pool: guestPool}},
		Groups: []config.Group{{Name: group, Hosts: []string{"local"}, Max: 1,
			Template:   config.Template{DiskSize: "64MiB", Memory: "64MiB", DomainType: "qemu"},
			Kubernetes: config.GroupKubernetes{Join: config.JoinUserData, UserData: "#cloud-config\nhostname: {{.NodeName}}\n"}}},
	}}
	cfg.ApplyDefaults()
	cat := activities.NewCatalog(cfg)
	hosts := hostconn.NewHosts(nil)
	t.Cleanup(func() { _ = hosts.Close() })
	var s testsuite.WorkflowTestSuite
	env := s.NewTestActivityEnvironment()
	env.RegisterActivity(&activities.Kubernetes{Hosts: hosts, Catalog: cat})
	env.RegisterActivity(&activities.Libvirt{Hosts: hosts, Catalog: cat})
	vm := fmt.Sprintf("%s-%d", group, 1+time.Now().UnixNano()%100000)
	host := activities.HostRef{Name: "local"}
	var k *activities.Kubernetes
	var a *activities.Libvirt
	t.Cleanup(func() { _ = run(t, env, a.DeleteVolume, activities.DeleteVolumeInput{Host: host, VM: vm}, nil) })
	mine, theirs := "0b5c3e52-6c3e-4b8e-9d7a-1f1f1f1f1f01", "0b5c3e52-6c3e-4b8e-9d7a-2f2f2f2f2f02"
	in := activities.SeedInput{Host: host, Group: group, VM: vm, Revision: cat.Revision(group), InstanceID: theirs}
	if err := run(t, env, k.CreateSeedVolume, in, nil); err != nil {
		t.Fatal(err)
	}
	instance := func() string {
		files, _, err := activities.ReadSeedISO(downloadVolume(t, lv, guestPool, activities.SeedVolumeName(vm)))
		if err != nil {
			t.Fatal(err)
		}
		return files["meta-data"]
	}
	if err := run(t, env, k.CreateSeedVolume, in, nil); err != nil {
		t.Fatalf("the same instance's seed step again: %v", err)
	}
	in.InstanceID = mine
	err := run(t, env, k.CreateSeedVolume, in, nil)
	var ae *temporal.ApplicationError
	if !errors.As(err, &ae) || ae.Type() != activities.ErrTypeNameTaken || !strings.Contains(err.Error(), theirs) {
		t.Fatalf("seed over another instance's: err = %v, want %s naming %s", err, activities.ErrTypeNameTaken, theirs)
	}
	if md := instance(); !strings.Contains(md, theirs) {
		t.Fatalf("the other instance's seed was replaced: %q", md)
	}
}
