package activities

import (
	"encoding/xml"
	"fmt"
	"reflect"
	"strings"

	"libvirt.org/go/libvirtxml"

	"github.com/premiscale/premiscale/config"
)

// MetadataNamespace is the XML namespace of PremiScale's ownership mark in a
// domain's <metadata>. A domain without it is never touched.
const MetadataNamespace = "https://premiscale.com/xmlns/libvirt/v1alpha1"

// VolumePrefix starts the name of every volume PremiScale creates; a volume
// without it is never touched.
const VolumePrefix = "premiscale-"

// VolumeName is the name of the disk volume of the VM named vm.
func VolumeName(vm string) string { return VolumePrefix + vm + ".qcow2" }

// VolumeVM is the VM a volume named VolumeName(vm) or SeedVolumeName(vm) is
// for; ok is false for any other name.
func VolumeVM(vol string) (vm string, ok bool) {
	rest, ok := strings.CutPrefix(vol, VolumePrefix)
	if !ok {
		return "", false
	}
	if vm, ok := strings.CutSuffix(rest, ".seed.iso"); ok {
		return vm, vm != ""
	}
	vm, ok = strings.CutSuffix(rest, ".qcow2")
	return vm, ok && vm != ""
}

// Owner is PremiScale's ownership mark on a domain.
type Owner struct {
	XMLName xml.Name `xml:"https://premiscale.com/xmlns/libvirt/v1alpha1 owner" json:"-"`
	Group   string   `xml:"group,attr" json:"group"`
	VM      string   `xml:"vm,attr" json:"vm"`
	Volume  string   `xml:"volume,attr" json:"volume"`
	// Installation is the PremiScale installation that created the domain
	// (controller.installation); empty on domains created before marks
	// carried it ("legacy"). A domain of another installation is never
	// touched, listed as a member or taken for an orphan.
	Installation string `xml:"installation,attr,omitempty" json:"installation,omitempty"`
	// Epoch names the history of its group that created the domain (the
	// group workflow's first run ID); empty on older marks. A domain of a
	// configured group from another epoch (an earlier history, lost) is
	// never deleted as an orphan.
	Epoch string `xml:"epoch,attr,omitempty" json:"epoch,omitempty"`
}

// ownerXML renders the mark with an explicit prefix, as libvirt requires.
func ownerXML(o Owner) string {
	inst := ""
	if o.Installation != "" {
		inst = fmt.Sprintf(" installation=%q", xmlEscape(o.Installation))
	}
	if o.Epoch != "" {
		inst += fmt.Sprintf(" epoch=%q", xmlEscape(o.Epoch))
	}
	return fmt.Sprintf(`<premiscale:owner xmlns:premiscale=%q group=%q vm=%q volume=%q%s/>`,
		MetadataNamespace, xmlEscape(o.Group), xmlEscape(o.VM), xmlEscape(o.Volume), inst)
}

func xmlEscape(s string) string {
	var b strings.Builder
	_ = xml.EscapeText(&b, []byte(s))
	return b.String()
}

// parseOwner finds PremiScale's mark in a domain's XML; ok is false when the
// domain is not PremiScale's.
func parseOwner(domainXML string) (Owner, bool, error) {
	var d libvirtxml.Domain
	if err := d.Unmarshal(domainXML); err != nil {
		return Owner{}, false, fmt.Errorf("parse domain xml: %w", err)
	}
	if d.Metadata == nil || d.Metadata.XML == "" {
		return Owner{}, false, nil
	}
	var m struct {
		Owners []Owner `xml:"https://premiscale.com/xmlns/libvirt/v1alpha1 owner"`
	}
	if err := xml.Unmarshal([]byte("<metadata>"+d.Metadata.XML+"</metadata>"), &m); err != nil {
		return Owner{}, false, fmt.Errorf("parse domain metadata: %w", err)
	}
	if len(m.Owners) == 0 || m.Owners[0].Group == "" {
		return Owner{}, false, nil
	}
	return m.Owners[0], true, nil
}

// DomainXML renders the libvirt domain for one VM of a group. The disk is
// the VM's volume in pool, referenced by pool and volume name so that any
// pool type works.
func DomainXML(name string, owner Owner, pool string, t config.Template) (string, error) {
	return DomainXMLWith(name, owner, pool, t, DomainExtras{})
}

// DomainExtras are per-VM additions to the template's domain.
type DomainExtras struct {
	// UUID fixes the domain's UUID (it is part of a node's provider ID).
	UUID string `json:"uuid,omitempty"`
	// Seed is a volume in the pool attached as a read-only CD-ROM (the
	// NoCloud seed).
	Seed string `json:"seed,omitempty"`
}

// DomainXMLWith is DomainXML with the extras.
func DomainXMLWith(name string, owner Owner, pool string, t config.Template, x DomainExtras) (string, error) {
	mem, err := config.ParseSize(t.Memory)
	if err != nil {
		return "", fmt.Errorf("template.memory: %w", err)
	}
	port := uint(0)
	d := libvirtxml.Domain{
		Type:     t.DomainType,
		Name:     name,
		Metadata: &libvirtxml.DomainMetadata{XML: ownerXML(owner)},
		Memory:   &libvirtxml.DomainMemory{Value: uint(mem >> 10), Unit: "KiB"},
		VCPU:     &libvirtxml.DomainVCPU{Value: uint(t.VCPUs)},
		OS: &libvirtxml.DomainOS{
			Type:    &libvirtxml.DomainOSType{Arch: t.Arch, Machine: t.Machine, Type: "hvm"},
			Kernel:  t.Kernel,
			Initrd:  t.Initrd,
			Cmdline: t.Cmdline,
		},
		Features:   &libvirtxml.DomainFeatureList{ACPI: &libvirtxml.DomainFeature{}},
		OnPoweroff: "destroy",
		OnCrash:    "destroy",
		Devices: &libvirtxml.DomainDeviceList{
			Disks: []libvirtxml.DomainDisk{{
				Device: "disk",
				Driver: &libvirtxml.DomainDiskDriver{Name: "qemu", Type: "qcow2"},
				Source: &libvirtxml.DomainDiskSource{Volume: &libvirtxml.DomainDiskSourceVolume{Pool: pool, Volume: owner.Volume}},
				Target: &libvirtxml.DomainDiskTarget{Dev: "vda", Bus: "virtio"},
			}},
			Serials: []libvirtxml.DomainSerial{{
				Source: &libvirtxml.DomainChardevSource{Pty: &libvirtxml.DomainChardevSourcePty{}},
				Target: &libvirtxml.DomainSerialTarget{Port: &port},
			}},
			Consoles: []libvirtxml.DomainConsole{{
				Source: &libvirtxml.DomainChardevSource{Pty: &libvirtxml.DomainChardevSourcePty{}},
				Target: &libvirtxml.DomainConsoleTarget{Type: "serial", Port: &port},
			}},
		},
	}
	if t.Kernel == "" {
		d.OS.BootDevices = []libvirtxml.DomainBootDevice{{Dev: "hd"}}
	}
	d.UUID = x.UUID
	if x.Seed != "" {
		target := &libvirtxml.DomainDiskTarget{Dev: "hdc", Bus: "ide"}
		if strings.Contains(t.Machine, "q35") {
			target = &libvirtxml.DomainDiskTarget{Dev: "sda", Bus: "sata"}
		}
		d.Devices.Disks = append(d.Devices.Disks, libvirtxml.DomainDisk{
			Device:   "cdrom",
			Driver:   &libvirtxml.DomainDiskDriver{Name: "qemu", Type: "raw"},
			Source:   &libvirtxml.DomainDiskSource{Volume: &libvirtxml.DomainDiskSourceVolume{Pool: pool, Volume: x.Seed}},
			Target:   target,
			ReadOnly: &libvirtxml.DomainDiskReadOnly{},
		})
	}
	if t.ConsoleLog {
		d.Devices.Serials[0].Log = &libvirtxml.DomainChardevLog{
			File: "/var/log/libvirt/qemu/" + name + "-console.log", Append: "off",
		}
	}
	if iface := domainInterface(t.Network); iface != nil {
		d.Devices.Interfaces = append(d.Devices.Interfaces, *iface)
	}
	if t.ExtraDevicesXML != "" {
		var extra libvirtxml.DomainDeviceList
		if err := xml.Unmarshal([]byte("<devices>"+t.ExtraDevicesXML+"</devices>"), &extra); err != nil {
			return "", fmt.Errorf("template.extraDevicesXML: %w", err)
		}
		appendDevices(d.Devices, &extra)
	}
	return d.Marshal()
}

func domainInterface(n config.Network) *libvirtxml.DomainInterface {
	var src *libvirtxml.DomainInterfaceSource
	switch n.Type {
	case config.NetworkUser:
		src = &libvirtxml.DomainInterfaceSource{User: &libvirtxml.DomainInterfaceSourceUser{}}
	case config.NetworkNetwork:
		src = &libvirtxml.DomainInterfaceSource{Network: &libvirtxml.DomainInterfaceSourceNetwork{Network: n.Source}}
	case config.NetworkBridge:
		src = &libvirtxml.DomainInterfaceSource{Bridge: &libvirtxml.DomainInterfaceSourceBridge{Bridge: n.Source}}
	default:
		return nil
	}
	iface := &libvirtxml.DomainInterface{Source: src}
	if n.Model != "" {
		iface.Model = &libvirtxml.DomainInterfaceModel{Type: n.Model}
	}
	return iface
}

// appendDevices appends every device list of extra to dst.
func appendDevices(dst, extra *libvirtxml.DomainDeviceList) {
	dv, ev := reflect.ValueOf(dst).Elem(), reflect.ValueOf(extra).Elem()
	for i := range dv.NumField() {
		f := dv.Field(i)
		switch f.Kind() {
		case reflect.Slice:
			f.Set(reflect.AppendSlice(f, ev.Field(i)))
		case reflect.Pointer:
			if f.IsNil() && !ev.Field(i).IsNil() {
				f.Set(ev.Field(i))
			}
		}
	}
}
