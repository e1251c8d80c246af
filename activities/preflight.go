package activities

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/digitalocean/go-libvirt"
	"libvirt.org/go/libvirtxml"

	"github.com/premiscale/premiscale/config"
	"github.com/premiscale/premiscale/workflows/policy"
)

// Severities of a preflight finding.
const (
	SeverityOK    = "ok"
	SeverityWarn  = "warn"
	SeverityError = "error"
)

// Finding is one thing a host check looked at, with what it found.
type Finding struct {
	// Check names what was looked at: "connect", "pool", "base volume",
	// "network", "domain type", "capacity".
	Check string `json:"check"`
	// Group is the group it concerns, if any.
	Group    string `json:"group,omitempty"`
	Severity string `json:"severity"`
	Message  string `json:"message"`
}

// HostReport is what checking one host found: its versions and size, and
// every finding, each an error (the groups cannot work there as
// configured), a warning, or fine.
type HostReport struct {
	Host              string `json:"host"`
	Reachable         bool   `json:"reachable"`
	LibvirtVersion    string `json:"libvirtVersion,omitempty"`
	Hypervisor        string `json:"hypervisor,omitempty"`
	HypervisorVersion string `json:"hypervisorVersion,omitempty"`
	CPUs              int    `json:"cpus,omitempty"`
	MemoryBytes       uint64 `json:"memoryBytes,omitempty"`
	Pool              string `json:"pool"`
	PoolCapacityBytes uint64 `json:"poolCapacityBytes,omitempty"`
	PoolFreeBytes     uint64 `json:"poolFreeBytes,omitempty"`
	// ClockSkewSeconds is how far the host's clock is ahead of this
	// machine's (negative: behind), when ClockMeasured.
	ClockSkewSeconds float64   `json:"clockSkewSeconds,omitempty"`
	ClockMeasured    bool      `json:"clockMeasured,omitempty"`
	Findings         []Finding `json:"findings"`
	CheckedAt        time.Time `json:"checkedAt"`
}

// Worst is the report's most severe finding's severity.
func (r HostReport) Worst() string {
	worst := SeverityOK
	for _, f := range r.Findings {
		switch {
		case f.Severity == SeverityError:
			return SeverityError
		case f.Severity == SeverityWarn:
			worst = SeverityWarn
		}
	}
	return worst
}

func (r *HostReport) add(check, group, severity, format string, args ...any) {
	r.Findings = append(r.Findings, Finding{Check: check, Group: group, Severity: severity, Message: fmt.Sprintf(format, args...)})
}

// CheckHostInput names the host to check.
type CheckHostInput struct {
	Host HostRef `json:"host"`
}

// CheckHost connects to a configured host and checks what the groups that
// use it need there, before they need it: the connection and its
// versions, the storage pool (present, active, its free space), each
// group's base volume (present, its format and size), network or bridge,
// whether the host runs the group's domain type (kvm needs /dev/kvm), and
// whether the group's VMs fit (one VM at least, and its max across its
// hosts), and how far the host's clock is from this machine's. A problem
// is a finding, not an error: CheckHost fails only for a host the worker
// does not have. It changes nothing but an empty probe volume it creates
// and deletes (checkClock), so it is safe to retry.
func (l *Libvirt) CheckHost(ctx context.Context, in CheckHostInput) (HostReport, error) {
	h, err := l.Catalog.Host(in.Host)
	if err != nil {
		return HostReport{}, err
	}
	r := HostReport{Host: h.Name, Pool: h.Pool, Findings: []Finding{}, CheckedAt: time.Now().UTC()}
	lv, release, err := l.Hosts.Acquire(ctx, h.Name, h.URI)
	if err != nil {
		r.add("connect", "", SeverityError, "cannot connect: %v", err)
		return r, nil
	}
	defer release()
	r.Reachable = true
	if v, err := lv.ConnectGetLibVersion(); err == nil {
		r.LibvirtVersion = libvirtVersion(v)
	}
	if t, err := lv.ConnectGetType(); err == nil {
		r.Hypervisor = t
	}
	if v, err := lv.ConnectGetVersion(); err == nil {
		r.HypervisorVersion = libvirtVersion(v)
	}
	_, memKiB, cpus, _, _, _, _, _, err := lv.NodeGetInfo()
	if err != nil {
		r.add("connect", "", SeverityError, "node info: %v", err)
		return r, nil
	}
	r.CPUs, r.MemoryBytes = int(cpus), memKiB<<10
	r.add("connect", "", SeverityOK, "libvirt %s, %s %s, %d CPUs, %d MiB", r.LibvirtVersion, r.Hypervisor, r.HypervisorVersion, r.CPUs, r.MemoryBytes>>20)

	groups := l.Catalog.hostGroups(h.Name)
	pool, poolOK := l.checkPool(lv, h, &r)
	if poolOK {
		for _, g := range groups {
			checkBaseVolume(lv, pool, g, &r)
		}
	}
	for _, g := range groups {
		checkNetwork(lv, g, &r)
	}
	checkDomainTypes(lv, groups, &r)
	if poolOK {
		l.checkCapacity(ctx, h, groups, &r)
		checkClock(lv, pool, &r)
	}
	return r, nil
}

func libvirtVersion(v uint64) string {
	return strconv.FormatUint(v/1000000, 10) + "." + strconv.FormatUint(v/1000%1000, 10) + "." + strconv.FormatUint(v%1000, 10)
}

func (l *Libvirt) checkPool(lv *libvirt.Libvirt, h HostRef, r *HostReport) (libvirt.StoragePool, bool) {
	pool, err := lv.StoragePoolLookupByName(h.Pool)
	if err != nil {
		r.add("pool", "", SeverityError, "storage pool %q: %v", h.Pool, err)
		return pool, false
	}
	state, capacity, _, available, err := lv.StoragePoolGetInfo(pool)
	if err != nil {
		r.add("pool", "", SeverityError, "storage pool %q: %v", h.Pool, err)
		return pool, false
	}
	if libvirt.StoragePoolState(state) != libvirt.StoragePoolRunning {
		r.add("pool", "", SeverityError, "storage pool %q is not active (virsh pool-start %s; pool-autostart)", h.Pool, h.Pool)
		return pool, false
	}
	r.PoolCapacityBytes, r.PoolFreeBytes = capacity, available
	r.add("pool", "", SeverityOK, "storage pool %q active, %d MiB free of %d MiB", h.Pool, available>>20, capacity>>20)
	return pool, true
}

func checkBaseVolume(lv *libvirt.Libvirt, pool libvirt.StoragePool, g config.Group, r *HostReport) {
	base := g.Template.BaseVolume
	if base == "" {
		return // a blank disk of diskSize: nothing to find
	}
	vol, err := lv.StorageVolLookupByName(pool, base)
	if err != nil {
		r.add("base volume", g.Name, SeverityError, "base volume %q is not in pool %q (upload it to every host of the group)", base, r.Pool)
		return
	}
	doc, err := lv.StorageVolGetXMLDesc(vol, 0)
	var v libvirtxml.StorageVolume
	if err != nil || v.Unmarshal(doc) != nil {
		r.add("base volume", g.Name, SeverityWarn, "base volume %q: cannot read its description: %v", base, err)
		return
	}
	format := "unknown"
	if v.Target != nil && v.Target.Format != nil && v.Target.Format.Type != "" {
		format = v.Target.Format.Type
	}
	var size uint64
	if v.Capacity != nil {
		size = v.Capacity.Value * unitBytes(v.Capacity.Unit)
	}
	sev := SeverityOK
	note := ""
	if format != "qcow2" && format != "raw" {
		sev, note = SeverityWarn, "; clones are qcow2 overlays of a qcow2 or raw base"
	}
	r.add("base volume", g.Name, sev, "base volume %q: %s, %d MiB%s", base, format, size>>20, note)
}

func checkNetwork(lv *libvirt.Libvirt, g config.Group, r *HostReport) {
	n := g.Template.Network
	switch n.Type {
	case config.NetworkNetwork:
		net, err := lv.NetworkLookupByName(n.Source)
		if err != nil {
			r.add("network", g.Name, SeverityError, "libvirt network %q not found", n.Source)
			return
		}
		if active, err := lv.NetworkIsActive(net); err != nil || active == 0 {
			r.add("network", g.Name, SeverityError, "libvirt network %q is not active (virsh net-start %s; net-autostart)", n.Source, n.Source)
			return
		}
		r.add("network", g.Name, SeverityOK, "libvirt network %q active", n.Source)
	case config.NetworkBridge:
		if _, err := lv.InterfaceLookupByName(n.Source); err != nil {
			if isLibvirtCode(err, libvirt.ErrNoInterface) {
				r.add("network", g.Name, SeverityError, "bridge %q not found on the host", n.Source)
				return
			}
			r.add("network", g.Name, SeverityWarn, "bridge %q: the host cannot tell (%v)", n.Source, err)
			return
		}
		r.add("network", g.Name, SeverityOK, "bridge %q present", n.Source)
	}
}

// checkDomainTypes reads the host's capabilities: a group whose domain type
// (kvm, qemu) the host does not offer for its arch cannot define a VM.
func checkDomainTypes(lv *libvirt.Libvirt, groups []config.Group, r *HostReport) {
	doc, err := lv.ConnectGetCapabilities()
	var caps libvirtxml.Caps
	if err != nil || caps.Unmarshal(doc) != nil {
		r.add("domain type", "", SeverityWarn, "cannot read the host's capabilities: %v", err)
		return
	}
	for _, g := range groups {
		t := g.Template
		var offered []string
		for _, guest := range caps.Guests {
			if guest.OSType != "hvm" || guest.Arch.Name != t.Arch {
				continue
			}
			for _, d := range guest.Arch.Domains {
				offered = append(offered, d.Type)
			}
		}
		if slices.Contains(offered, "test") {
			r.add("domain type", g.Name, SeverityOK, "libvirt's test driver takes any domain type")
			continue
		}
		if !slices.Contains(offered, t.DomainType) {
			hint := ""
			if t.DomainType == "kvm" {
				hint = " (no usable /dev/kvm; template.domainType: qemu emulates, slowly)"
			}
			r.add("domain type", g.Name, SeverityError, "the host offers %v for %s guests, not %s%s", offered, t.Arch, t.DomainType, hint)
			continue
		}
		r.add("domain type", g.Name, SeverityOK, "%s guests of type %s", t.Arch, t.DomainType)
	}
}

// checkCapacity: each group's VM must fit on this host now, and its max
// should fit on its hosts' physical size (what placement would find if
// every host were empty of other domains).
func (l *Libvirt) checkCapacity(ctx context.Context, h HostRef, groups []config.Group, r *HostReport) {
	inv, err := l.HostInventory(ctx, InventoryInput{Host: h})
	if err != nil {
		r.add("capacity", "", SeverityWarn, "inventory: %v", err)
		return
	}
	hc, ok := l.Catalog.hostConfig(h.Name)
	if !ok {
		return
	}
	reservedMem, _ := config.ParseSize(hc.Reserved.Memory)
	now := policy.HostCapacity{
		Name: h.Name, Reachable: true, CPUs: inv.CPUs, MemoryBytes: inv.MemoryBytes,
		ReservedCPUs: hc.Reserved.CPUs, ReservedMemoryBytes: reservedMem,
		CPUOvercommit: hc.CPUOvercommit, MemoryOvercommit: hc.MemoryOvercommit,
		AllocatedVCPUs: inv.AllocatedVCPUs, AllocatedMemoryBytes: inv.AllocatedMemoryBytes,
		PoolAvailableBytes: inv.PoolAvailableBytes,
	}
	empty := now
	empty.AllocatedVCPUs, empty.AllocatedMemoryBytes, empty.PoolAvailableBytes = 0, 0, inv.PoolCapacityBytes
	for _, g := range groups {
		shape, err := groupShape(g)
		if err != nil {
			continue
		}
		room := policy.Slots(now, shape)
		most := policy.Slots(empty, shape)
		switch {
		case most < 1:
			r.add("capacity", g.Name, SeverityError, "not even one VM (%d vCPUs, %d MiB) fits on this host's %d CPUs and %d MiB (after reservations and overcommit)", shape.VCPUs, shape.MemoryBytes>>20, inv.CPUs, inv.MemoryBytes>>20)
		case room < 1:
			r.add("capacity", g.Name, SeverityWarn, "no room for another VM (%d vCPUs, %d MiB) now: the host's %d domains claim %d vCPUs and %d MiB", shape.VCPUs, shape.MemoryBytes>>20, inv.Domains, inv.AllocatedVCPUs, inv.AllocatedMemoryBytes>>20)
		case most*int64(len(g.Hosts)) < int64(g.Max):
			r.add("capacity", g.Name, SeverityWarn, "room for %d more VMs now; at most %d on this host, so its %d hosts cannot hold max %d if they are alike", room, most, len(g.Hosts), g.Max)
		default:
			r.add("capacity", g.Name, SeverityOK, "room for %d more VMs now, at most %d on this host", room, most)
		}
	}
}

// groupShape is what one VM of the group needs (policy.VMShape).
func groupShape(g config.Group) (policy.VMShape, error) {
	mem, err := config.ParseSize(g.Template.Memory)
	if err != nil {
		return policy.VMShape{}, err
	}
	return policy.VMShape{VCPUs: g.Template.VCPUs, MemoryBytes: mem}, nil
}
