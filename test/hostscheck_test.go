package test

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/uuid"

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
	}

	out, err = exec.Command(premiscaleBin, "hosts", "check", "-c", path, "h1").CombinedOutput()
	if err != nil || !strings.HasPrefix(string(out), "h1") || !strings.Contains(string(out), base) {
		t.Errorf("hosts check h1: %v\n%s", err, out)
	}
	if out, err := exec.Command(premiscaleBin, "hosts", "check", "-c", path, "nosuch").CombinedOutput(); err == nil || !strings.Contains(string(out), `HOST "nosuch"`) {
		t.Errorf("hosts check of an unknown host: %v\n%s", err, out)
	}
}
