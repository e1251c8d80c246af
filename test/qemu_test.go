package test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/premiscale/premiscale/activities"
	"github.com/premiscale/premiscale/config"
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
	dir := os.Getenv("TINY_GUEST_DIR")
	if dir == "" {
		t.Skip("TINY_GUEST_DIR not set: run through make test, which builds the tiny guest")
	}
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
