package config

import (
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"time"

	"libvirt.org/go/libvirtxml"
)

// Network types a template may use.
const (
	NetworkNone    = "none"
	NetworkUser    = "user"
	NetworkNetwork = "network"
	NetworkBridge  = "bridge"
)

// Template describes the VMs of a group.
type Template struct {
	// BaseVolume names a volume in the host's pool that each VM's disk
	// overlays (qcow2 backing store). Empty means a blank disk of DiskSize.
	BaseVolume string `koanf:"baseVolume" json:"baseVolume,omitempty"`
	// DiskSize is the VM disk's virtual size ("10GiB"); empty means the base
	// volume's size.
	DiskSize   string  `koanf:"diskSize" json:"diskSize,omitempty"`
	VCPUs      int     `koanf:"vcpus" json:"vcpus"`
	Memory     string  `koanf:"memory" json:"memory"`
	DomainType string  `koanf:"domainType" json:"domainType"`
	Arch       string  `koanf:"arch" json:"arch"`
	Machine    string  `koanf:"machine" json:"machine,omitempty"`
	Kernel     string  `koanf:"kernel" json:"kernel,omitempty"`
	Initrd     string  `koanf:"initrd" json:"initrd,omitempty"`
	Cmdline    string  `koanf:"cmdline" json:"cmdline,omitempty"`
	Network    Network `koanf:"network" json:"network"`
	// ConsoleLog, when true, logs the serial console to
	// /var/log/libvirt/qemu/<vm>-console.log on the host.
	ConsoleLog bool `koanf:"consoleLog" json:"consoleLog,omitempty"`
	// ExtraDevicesXML is libvirt domain XML for extra <devices> children.
	ExtraDevicesXML string `koanf:"extraDevicesXML" json:"extraDevicesXML,omitempty"`
	// ShutdownTimeout bounds a graceful ACPI shutdown before the VM is
	// destroyed; 0s destroys at once. Unset means DefaultShutdownTimeout.
	ShutdownTimeout *time.Duration `koanf:"shutdownTimeout" json:"shutdownTimeout,omitempty"`
}

// ShutdownGrace is the effective ShutdownTimeout.
func (t Template) ShutdownGrace() time.Duration {
	if t.ShutdownTimeout == nil {
		return DefaultShutdownTimeout
	}
	return *t.ShutdownTimeout
}

// Network is a VM's single network interface.
type Network struct {
	Type   string `koanf:"type" json:"type"`
	Source string `koanf:"source" json:"source,omitempty"`
	Model  string `koanf:"model" json:"model,omitempty"`
}

func (v *validator) template(p string, t Template) {
	if t.VCPUs < 1 {
		v.add(p+".vcpus", "must be >= 1, got %d", t.VCPUs)
	}
	if mem, err := ParseSize(t.Memory); err != nil {
		v.add(p+".memory", "%v", err)
	} else if mem < MinMemory {
		v.add(p+".memory", "must be at least 32MiB, got %q", t.Memory)
	}
	if t.DiskSize != "" {
		if n, err := ParseSize(t.DiskSize); err != nil {
			v.add(p+".diskSize", "%v", err)
		} else if n < 1<<20 {
			v.add(p+".diskSize", "must be at least 1MiB, got %q", t.DiskSize)
		}
	}
	if t.BaseVolume == "" && t.DiskSize == "" {
		v.add(p+".diskSize", "must be set when template.baseVolume is empty")
	}
	if strings.ContainsAny(t.BaseVolume, "/\x00") {
		v.add(p+".baseVolume", "must be a volume name in the host's pool, not a path: %q", t.BaseVolume)
	}
	if strings.HasPrefix(t.BaseVolume, "premiscale-") {
		v.add(p+".baseVolume", "must not start with \"premiscale-\": that prefix names the volumes PremiScale creates and deletes; rename %q", t.BaseVolume)
	}
	v.oneOf(p+".domainType", t.DomainType, domainTypes)
	if t.Arch == "" {
		v.add(p+".arch", "must not be empty")
	}
	if t.Kernel == "" && (t.Initrd != "" || t.Cmdline != "") {
		v.add(p+".kernel", "must be set when initrd or cmdline is")
	}
	v.oneOf(p+".network.type", t.Network.Type, networkTypes)
	switch t.Network.Type {
	case NetworkNetwork, NetworkBridge:
		if t.Network.Source == "" {
			v.add(p+".network.source", "must name the %s for network type %q", t.Network.Type, t.Network.Type)
		}
	case NetworkNone, NetworkUser:
		if t.Network.Source != "" {
			v.add(p+".network.source", "must be empty for network type %q", t.Network.Type)
		}
	}
	if t.ExtraDevicesXML != "" {
		if err := checkDevicesXML(t.ExtraDevicesXML); err != nil {
			v.add(p+".extraDevicesXML", "%v", err)
		}
	}
	if t.ShutdownGrace() < 0 {
		v.add(p+".shutdownTimeout", "must be >= 0, got %s", t.ShutdownGrace())
	}
}

// checkDevicesXML parses extra <devices> children as libvirt's Go types do
// when the domain is defined, and refuses XML they would not carry over
// whole: an element or attribute they do not know would be dropped
// silently, and the VM would lack a device its user asked for.
func checkDevicesXML(doc string) error {
	var devs libvirtxml.DomainDeviceList
	if err := xml.Unmarshal([]byte("<devices>"+doc+"</devices>"), &devs); err != nil {
		return fmt.Errorf("not valid libvirt <devices> XML: %v", err)
	}
	out, err := xml.Marshal(devs)
	if err != nil {
		return fmt.Errorf("cannot be written back as libvirt XML: %v", err)
	}
	want, err := xmlShape("<devices>" + doc + "</devices>")
	if err != nil {
		return fmt.Errorf("not valid XML: %v", err)
	}
	got, err := xmlShape(string(out))
	if err != nil {
		return fmt.Errorf("cannot be written back as libvirt XML: %v", err)
	}
	for _, k := range slices.Sorted(maps.Keys(want)) {
		if got[k] < want[k] {
			return fmt.Errorf("%s is not known to libvirt's domain schema as PremiScale reads it, and would be dropped", k)
		}
	}
	return nil
}

// xmlShape counts each element path and attribute (path@name) of doc.
func xmlShape(doc string) (map[string]int, error) {
	d := xml.NewDecoder(strings.NewReader(doc))
	shape := map[string]int{}
	var path []string
	for {
		tok, err := d.Token()
		if errors.Is(err, io.EOF) {
			return shape, nil
		}
		if err != nil {
			return nil, err
		}
		switch e := tok.(type) {
		case xml.StartElement:
			path = append(path, e.Name.Local)
			p := strings.Join(path[1:], "/") // without the <devices> around
			if p == "" {
				continue
			}
			shape["element <"+p+">"]++
			for _, a := range e.Attr {
				shape["attribute "+a.Name.Local+" of <"+p+">"]++
			}
		case xml.EndElement:
			path = path[:len(path)-1]
		}
	}
}
