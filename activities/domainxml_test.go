package activities

import (
	"strings"
	"testing"

	"libvirt.org/go/libvirtxml"

	"github.com/premiscale/premiscale/config"
)

func baseTemplate() config.Template {
	return config.Template{VCPUs: 2, Memory: "256MiB", DomainType: "qemu", Arch: "x86_64", Network: config.Network{Type: config.NetworkNone}}
}

func TestDomainXMLCarriesOwnershipMarkThatParsesBack(t *testing.T) {
	owner := Owner{Group: "web", VM: "web-3", Volume: VolumeName("web-3")}
	doc, err := DomainXML("web-3", owner, "pool1", baseTemplate())
	if err != nil {
		t.Fatal(err)
	}
	got, ok, err := parseOwner(doc)
	if err != nil || !ok {
		t.Fatalf("parseOwner = %v, %v; want the mark", ok, err)
	}
	if got.Group != owner.Group || got.VM != owner.VM || got.Volume != owner.Volume {
		t.Errorf("owner = %+v, want %+v", got, owner)
	}
}

func TestParseOwnerIgnoresDomainsWithoutOurMark(t *testing.T) {
	tests := []struct {
		name string
		doc  string
	}{
		{"no metadata", `<domain type='kvm'><name>x</name></domain>`},
		{"another app's metadata", `<domain type='kvm'><name>x</name><metadata><app:owner xmlns:app="https://example.com/app" group="web"/></metadata></domain>`},
		{"our element without a group", `<domain type='kvm'><name>x</name><metadata><p:owner xmlns:p="` + MetadataNamespace + `" vm="x"/></metadata></domain>`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, ok, err := parseOwner(tt.doc); ok || err != nil {
				t.Errorf("parseOwner = %v, %v; want not ours, no error", ok, err)
			}
		})
	}
}

func TestDomainXMLFollowsTheTemplate(t *testing.T) {
	tests := []struct {
		name  string
		edit  func(*config.Template)
		check func(t *testing.T, d libvirtxml.Domain)
	}{
		{"memory and vcpus", func(*config.Template) {}, func(t *testing.T, d libvirtxml.Domain) {
			if d.Memory.Value != 256*1024 || d.Memory.Unit != "KiB" || d.VCPU.Value != 2 || d.Type != "qemu" {
				t.Errorf("memory %d %s, vcpu %d, type %s", d.Memory.Value, d.Memory.Unit, d.VCPU.Value, d.Type)
			}
		}},
		{"disk is the pool volume, boots from it without a kernel", func(*config.Template) {}, func(t *testing.T, d libvirtxml.Domain) {
			disk := d.Devices.Disks[0]
			if disk.Source.Volume == nil || disk.Source.Volume.Pool != "pool1" || disk.Source.Volume.Volume != VolumeName("vm-1") || disk.Driver.Type != "qcow2" {
				t.Errorf("disk = %+v", disk.Source)
			}
			if len(d.OS.BootDevices) != 1 || d.OS.BootDevices[0].Dev != "hd" {
				t.Errorf("boot devices = %+v, want hd", d.OS.BootDevices)
			}
		}},
		{"direct kernel boot", func(tp *config.Template) { tp.Kernel, tp.Initrd, tp.Cmdline = "/k", "/i", "console=ttyS0" }, func(t *testing.T, d libvirtxml.Domain) {
			if d.OS.Kernel != "/k" || d.OS.Initrd != "/i" || d.OS.Cmdline != "console=ttyS0" || len(d.OS.BootDevices) != 0 {
				t.Errorf("os = %+v", d.OS)
			}
		}},
		{"no network", func(*config.Template) {}, func(t *testing.T, d libvirtxml.Domain) {
			if len(d.Devices.Interfaces) != 0 {
				t.Errorf("interfaces = %+v, want none", d.Devices.Interfaces)
			}
		}},
		{"bridge network", func(tp *config.Template) {
			tp.Network = config.Network{Type: config.NetworkBridge, Source: "br0", Model: "virtio"}
		}, func(t *testing.T, d libvirtxml.Domain) {
			i := d.Devices.Interfaces
			if len(i) != 1 || i[0].Source.Bridge == nil || i[0].Source.Bridge.Bridge != "br0" || i[0].Model.Type != "virtio" {
				t.Errorf("interfaces = %+v", i)
			}
		}},
		{"libvirt network", func(tp *config.Template) { tp.Network = config.Network{Type: config.NetworkNetwork, Source: "lan"} }, func(t *testing.T, d libvirtxml.Domain) {
			i := d.Devices.Interfaces
			if len(i) != 1 || i[0].Source.Network == nil || i[0].Source.Network.Network != "lan" {
				t.Errorf("interfaces = %+v", i)
			}
		}},
		{"console log", func(tp *config.Template) { tp.ConsoleLog = true }, func(t *testing.T, d libvirtxml.Domain) {
			if l := d.Devices.Serials[0].Log; l == nil || l.File != "/var/log/libvirt/qemu/vm-1-console.log" {
				t.Errorf("serial log = %+v", l)
			}
		}},
		{"extra devices appended", func(tp *config.Template) {
			tp.ExtraDevicesXML = `<rng model='virtio'><backend model='random'>/dev/urandom</backend></rng><disk type='file' device='cdrom'><source file='/x.iso'/><target dev='sda' bus='sata'/></disk>`
		}, func(t *testing.T, d libvirtxml.Domain) {
			if len(d.Devices.RNGs) != 1 || len(d.Devices.Disks) != 2 || d.Devices.Disks[1].Device != "cdrom" {
				t.Errorf("rngs %d, disks %+v", len(d.Devices.RNGs), d.Devices.Disks)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tp := baseTemplate()
			tt.edit(&tp)
			doc, err := DomainXML("vm-1", Owner{Group: "g", VM: "vm-1", Volume: VolumeName("vm-1")}, "pool1", tp)
			if err != nil {
				t.Fatal(err)
			}
			var d libvirtxml.Domain
			if err := d.Unmarshal(doc); err != nil {
				t.Fatalf("output is not domain XML: %v\n%s", err, doc)
			}
			tt.check(t, d)
		})
	}
}

func TestDomainXMLRejectsBadMemory(t *testing.T) {
	tp := baseTemplate()
	tp.Memory = "lots"
	if _, err := DomainXML("vm-1", Owner{Group: "g", VM: "vm-1"}, "p", tp); err == nil || !strings.Contains(err.Error(), "template.memory") {
		t.Fatalf("err = %v, want template.memory named", err)
	}
}
