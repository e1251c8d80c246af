package test

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/digitalocean/go-libvirt"
	"github.com/google/uuid"
	"libvirt.org/go/libvirtxml"
	"sigs.k8s.io/yaml"

	"github.com/premiscale/premiscale/activities"
)

// TestHostsCheckReportsEachBrokenHost runs `premiscale hosts check` as a
// person types it, against the three real libvirtd hosts, each with a
// problem made on purpose, and one host nobody listens on:
//
//	h1         healthy: its pool, the group's base volume            -> ok
//	h2         a pool that is defined but not started                -> pool
//	h3         the group's base volume is not in the pool            -> base volume
//	h1-net     a group on a libvirt network the host does not have   -> network
//	h1-arch    a group of aarch64 guests (no qemu-system-aarch64)    -> domain type
//	h3-big     a group whose one VM needs more memory than the host  -> capacity
//	down       nothing listens                                       -> connect
//
// The healthy host's clock is measured (an empty probe volume's creation
// time): within 2 s of this machine's, and no probe is left behind.
// It exits 1 and its JSON says exactly that, each error on its host and
// group; checking h1 alone exits 0.
func TestHostsCheckReportsEachBrokenHost(t *testing.T) {
	hosts := requireHosts(t, 3)
	h1, h2, h3 := hosts[0], hosts[1], hosts[2]
	suffix := uuid.NewString()[:8]
	base := "hc-base-" + suffix + ".qcow2"
	lv1 := requireLibvirt(t, h1.qemuURI())
	pool, err := lv1.StoragePoolLookupByName(guestPool)
	if err != nil {
		t.Fatal(err)
	}
	vol, err := lv1.StorageVolCreateXML(pool, fmt.Sprintf(`<volume><name>%s</name><capacity unit='MiB'>16</capacity><target><format type='qcow2'/></target></volume>`, base), 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = lv1.StorageVolDelete(vol, 0) })
	lv2 := requireLibvirt(t, h2.qemuURI())
	inactive := "hc-inactive-" + suffix
	p2, err := lv2.StoragePoolDefineXML(fmt.Sprintf(`<pool type='dir'><name>%s</name><target><path>%s</path></target></pool>`, inactive, t.TempDir()), 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = lv2.StoragePoolUndefine(p2) })

	cfg := fmt.Sprintf(`version: v1alpha1
controller:
  stateDir: %[1]s
autoscale:
  hosts:
    - {name: h1, uri: "%[2]s", pool: %[5]s}
    - {name: h2, uri: "%[3]s", pool: %[6]s}
    - {name: h3, uri: "%[4]s", pool: %[5]s}
    - {name: h1-net, uri: "%[2]s", pool: %[5]s}
    - {name: h1-arch, uri: "%[2]s", pool: %[5]s}
    - {name: h3-big, uri: "%[4]s", pool: %[5]s}
    - {name: down, uri: "qemu+tcp://127.0.0.1:1/system", pool: %[5]s}
  groups:
    - {name: good, hosts: [h1], max: 2, template: {baseVolume: %[7]s, domainType: qemu, memory: 64MiB}}
    - {name: inactive, hosts: [h2], max: 2, template: {baseVolume: %[7]s, domainType: qemu, memory: 64MiB}}
    - {name: nobase, hosts: [h3], max: 2, template: {baseVolume: hc-missing-%[8]s.qcow2, domainType: qemu, memory: 64MiB}}
    - {name: badnet, hosts: [h1-net], max: 2, template: {baseVolume: %[7]s, domainType: qemu, memory: 64MiB, network: {type: network, source: hc-nonet-%[8]s}}}
    - {name: badarch, hosts: [h1-arch], max: 2, template: {baseVolume: %[7]s, domainType: qemu, memory: 64MiB, arch: aarch64}}
    - {name: huge, hosts: [h3-big], max: 2, template: {diskSize: 1GiB, domainType: qemu, memory: 64TiB}}
    - {name: nowhere, hosts: [down], max: 2, template: {diskSize: 1GiB, domainType: qemu, memory: 64MiB}}
`, t.TempDir(), h1.qemuURI(), h2.qemuURI(), h3.qemuURI(), guestPool, inactive, base, suffix)
	path := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}

	out, err := exec.Command(premiscaleBin, "hosts", "check", "-c", path, "-o", "json", "--timeout", "15s").Output()
	var ee *exec.ExitError
	if err == nil || !strings.Contains(err.Error(), "exit status 1") {
		t.Fatalf("hosts check with broken hosts: %v, want exit status 1\n%s", err, out)
	}
	if errors.As(err, &ee) && !strings.Contains(string(ee.Stderr), "6 of 7 hosts not ready") {
		t.Errorf("stderr %q, want the count of hosts not ready", ee.Stderr)
	}
	var reports []activities.HostReport
	if err := json.Unmarshal(out, &reports); err != nil || len(reports) != 7 {
		t.Fatalf("json: %v, %d reports\n%s", err, len(reports), out)
	}
	want := map[string]struct{ check, group string }{
		"h1":      {},
		"h2":      {"pool", ""},
		"h3":      {"base volume", "nobase"},
		"h1-net":  {"network", "badnet"},
		"h1-arch": {"domain type", "badarch"},
		"h3-big":  {"capacity", "huge"},
		"down":    {"connect", ""},
	}
	for _, r := range reports {
		w, ok := want[r.Host]
		if !ok {
			t.Errorf("report of unknown host %s", r.Host)
			continue
		}
		var errs []activities.Finding
		for _, f := range r.Findings {
			if f.Severity == activities.SeverityError {
				errs = append(errs, f)
			}
		}
		switch {
		case w.check == "" && len(errs) > 0:
			t.Errorf("%s is healthy, yet: %+v", r.Host, errs)
		case w.check != "" && (len(errs) != 1 || errs[0].Check != w.check || errs[0].Group != w.group):
			t.Errorf("%s: errors %+v, want exactly one %q error of group %q", r.Host, errs, w.check, w.group)
		}
		if r.Host == "h1" && (!r.Reachable || r.LibvirtVersion == "" || r.HypervisorVersion == "" || r.CPUs == 0 || r.PoolFreeBytes == 0) {
			t.Errorf("h1's report lacks its versions or sizes: %+v", r)
		}
		if r.Host == "h1" {
			// The same machine's clock: measured, and within the window.
			clock := slices.IndexFunc(r.Findings, func(f activities.Finding) bool { return f.Check == "clock" })
			if clock < 0 || r.Findings[clock].Severity != activities.SeverityOK || !r.ClockMeasured || math.Abs(r.ClockSkewSeconds) > activities.ClockSkewWarn.Seconds() {
				t.Errorf("h1's clock: measured %v, skew %.3fs, findings %+v", r.ClockMeasured, r.ClockSkewSeconds, r.Findings)
			}
		}
	}
	// The probe volumes are gone again.
	vols, _, err := lv1.StoragePoolListAllVolumes(pool, 1, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range vols {
		if strings.HasPrefix(v.Name, activities.ClockProbePrefix) {
			t.Errorf("clock probe %s left in h1's pool", v.Name)
		}
	}

	out, err = exec.Command(premiscaleBin, "hosts", "check", "-c", path, "h1").CombinedOutput()
	if err != nil || !strings.HasPrefix(string(out), "h1") || !strings.Contains(string(out), base) {
		t.Errorf("hosts check h1: %v\n%s", err, out)
	}
	if out, err := exec.Command(premiscaleBin, "hosts", "check", "-c", path, "nosuch").CombinedOutput(); err == nil || !strings.Contains(string(out), `HOST "nosuch"`) {
		t.Errorf("hosts check of an unknown host: %v\n%s", err, out)
	}
}

// TestHostsUploadPutsTheImageOnEveryHostOfItsGroups uploads a qcow2 image
// (resized to 48 MiB, as the golden-image recipe resizes its disk) with
// `premiscale hosts upload` to the hosts of the groups whose baseVolume it
// is: on each, a qcow2 volume of the image's disk size with the image's
// bytes; none on a host whose groups use another base. Uploading again is
// refused without --replace and done with it; hosts check then finds the
// base volume on every host.
func TestHostsUploadPutsTheImageOnEveryHostOfItsGroups(t *testing.T) {
	hosts := requireHosts(t, 3)
	dir := t.TempDir()
	raw := filepath.Join(dir, "disk.raw")
	data := make([]byte, 3<<20)
	for i := range data {
		data[i] = byte(i*7 + i>>9)
	}
	if err := os.WriteFile(raw, data, 0o600); err != nil {
		t.Fatal(err)
	}
	img := filepath.Join(dir, "node.qcow2")
	for _, args := range [][]string{{"convert", "-f", "raw", "-O", "qcow2", raw, img}, {"resize", img, "48M"}} {
		if out, err := exec.Command("qemu-img", args...).CombinedOutput(); err != nil {
			t.Fatalf("qemu-img %v: %v\n%s", args, err, out)
		}
	}
	name := "hu-" + uuid.NewString()[:8] + ".qcow2"
	conns := map[string]*libvirt.Libvirt{}
	for _, h := range hosts[:3] {
		lv := requireLibvirt(t, h.qemuURI())
		conns[h.name] = lv
		t.Cleanup(func() {
			if p, err := lv.StoragePoolLookupByName(guestPool); err == nil {
				if v, err := lv.StorageVolLookupByName(p, name); err == nil {
					_ = lv.StorageVolDelete(v, 0)
				}
			}
		})
	}
	cfg := fmt.Sprintf(`version: v1alpha1
controller:
  stateDir: %s
autoscale:
  hosts:
    - {name: h1, uri: "%s", pool: %s}
    - {name: h2, uri: "%s", pool: %s}
    - {name: h3, uri: "%s", pool: %s}
  groups:
    - {name: nodes, hosts: [h1, h2], max: 2, template: {baseVolume: %s, domainType: qemu, memory: 64MiB}}
    - {name: others, hosts: [h3], max: 2, template: {baseVolume: other.qcow2, domainType: qemu, memory: 64MiB}}
`, t.TempDir(), hosts[0].qemuURI(), guestPool, hosts[1].qemuURI(), guestPool, hosts[2].qemuURI(), guestPool, name)
	path := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	upload := func(extra ...string) (string, error) {
		out, err := exec.Command(premiscaleBin, append([]string{"hosts", "upload", img, "--volume", name, "-c", path}, extra...)...).CombinedOutput()
		return string(out), err
	}
	out, err := upload()
	if err != nil || strings.Count(out, "checksum verified") != 2 || strings.Contains(out, "h3") {
		t.Fatalf("hosts upload: %v\n%s", err, out)
	}
	for host, lv := range conns {
		p, err := lv.StoragePoolLookupByName(guestPool)
		if err != nil {
			t.Fatal(err)
		}
		v, err := lv.StorageVolLookupByName(p, name)
		if host == "h3" {
			if err == nil {
				t.Errorf("%s got the image, though its groups use another base", host)
			}
			continue
		}
		if err != nil {
			t.Fatalf("%s: %v", host, err)
		}
		doc, err := lv.StorageVolGetXMLDesc(v, 0)
		if err != nil {
			t.Fatal(err)
		}
		var vx libvirtxml.StorageVolume
		if err := vx.Unmarshal(doc); err != nil {
			t.Fatal(err)
		}
		if vx.Target == nil || vx.Target.Format == nil || vx.Target.Format.Type != "qcow2" || vx.Capacity == nil || vx.Capacity.Value != 48<<20 {
			t.Errorf("%s: volume %s, want qcow2 of 48 MiB", host, doc)
		}
	}
	if out, err := upload(); err == nil || !strings.Contains(out, "--replace") {
		t.Errorf("a second upload without --replace: %v\n%s", err, out)
	}
	if out, err := upload("--replace"); err != nil || strings.Count(out, "replaced") != 2 {
		t.Errorf("upload --replace: %v\n%s", err, out)
	}
	if out, err := exec.Command(premiscaleBin, "hosts", "check", "-c", path, "h1", "h2").CombinedOutput(); err != nil || strings.Count(string(out), "base volume (nodes)") != 2 {
		t.Errorf("hosts check after the upload: %v\n%s", err, out)
	}
}

// TestGoldenImageRecipeWritesWhatKubeadmNeeds runs the node image recipe
// offline and reads what it would put in the image and run: the sysctls
// and modules kubeadm's preflight checks (ip_forward above all), the
// Kubernetes package repository of the minor in go.mod, cloud-init growing
// each clone's root to its disk, swap off, containerd on systemd cgroups,
// no machine identity; and a build that resizes the disk before it is
// customized, then uploads it to every host of its groups and checks them.
func TestGoldenImageRecipeWritesWhatKubeadmNeeds(t *testing.T) {
	out := t.TempDir()
	cmd := exec.Command("../deploy/golden-image/recipe.sh", out, "--disk-size", "30G")
	cmd.Env = []string{"PATH=/usr/bin:/bin"} // and no network: it needs none
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("recipe.sh: %v\n%s", err, b)
	}
	gomod, err := os.ReadFile("../go.mod")
	if err != nil {
		t.Fatal(err)
	}
	minor := ""
	for _, line := range strings.Split(string(gomod), "\n") {
		if f := strings.Fields(line); len(f) == 2 && f[0] == "k8s.io/api" {
			minor = strings.Split(f[1], ".")[1]
		}
	}
	read := func(p string) string {
		t.Helper()
		b, err := os.ReadFile(filepath.Join(out, p))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	sysctl := read("files/etc/sysctl.d/99-kubernetes.conf")
	for _, want := range []string{"net.ipv4.ip_forward = 1", "net.bridge.bridge-nf-call-iptables = 1", "net.bridge.bridge-nf-call-ip6tables = 1"} {
		if !strings.Contains(sysctl, want) {
			t.Errorf("sysctl lacks %q:\n%s", want, sysctl)
		}
	}
	if mods := read("files/etc/modules-load.d/kubernetes.conf"); !strings.Contains(mods, "br_netfilter") || !strings.Contains(mods, "overlay") {
		t.Errorf("modules: %q", mods)
	}
	if repo := read("files/etc/apt/sources.list.d/kubernetes.list"); !strings.Contains(repo, "/core:/stable:/v1."+minor+"/deb/") {
		t.Errorf("repository %q is not Kubernetes 1.%s's", repo, minor)
	}
	var ci struct {
		Growpart struct {
			Mode    string   `json:"mode"`
			Devices []string `json:"devices"`
		} `json:"growpart"`
		ResizeRootfs  bool `json:"resize_rootfs"`
		SSHDeletekeys bool `json:"ssh_deletekeys"`
	}
	if err := yaml.Unmarshal([]byte(read("files/etc/cloud/cloud.cfg.d/90-premiscale.cfg")), &ci); err != nil ||
		ci.Growpart.Mode != "auto" || !slices.Contains(ci.Growpart.Devices, "/") || !ci.ResizeRootfs || !ci.SSHDeletekeys {
		t.Errorf("cloud-init: %+v %v", ci, err)
	}
	cmds := read("customize.cmds")
	for _, want := range []string{
		"copy-in " + out + "/files/etc/sysctl.d/99-kubernetes.conf:/etc/sysctl.d",
		"copy-in " + out + "/files/etc/modules-load.d/kubernetes.conf:/etc/modules-load.d",
		"copy-in " + out + "/files/etc/cloud/cloud.cfg.d/90-premiscale.cfg:/etc/cloud/cloud.cfg.d",
		"install kubeadm,kubelet,kubectl", "SystemdCgroup = true", "swap", "systemctl enable containerd kubelet",
		"cloud-init clean --machine-id", "rm -f /etc/ssh/ssh_host_*",
	} {
		if !strings.Contains(cmds, want) {
			t.Errorf("customize.cmds lacks %q:\n%s", want, cmds)
		}
	}
	build := read("build.sh")
	resize, customize, upload := strings.Index(build, "qemu-img resize k8s-node.qcow2 30G"), strings.Index(build, "virt-customize"), strings.Index(build, "hosts upload k8s-node.qcow2 --volume k8s-node.qcow2")
	if resize < 0 || customize < resize || upload < customize || !strings.Contains(build, "hosts check") {
		t.Errorf("build.sh must resize, then customize, then upload to the hosts and check them:\n%s", build)
	}
	if b, err := exec.Command("../deploy/golden-image/recipe.sh", t.TempDir(), "--kubernetes", "1.37").CombinedOutput(); err == nil || !strings.Contains(string(b), "--kubernetes") {
		t.Errorf("recipe.sh --kubernetes 1.37: %v %s, want refused naming the flag", err, b)
	}
}
