// Package activities holds PremiScale's side effects as Temporal activities:
// one struct per system it talks to. Every activity is idempotent, so that
// Temporal may retry it after any failure, including a crash of the worker
// after the side effect happened but before its result was recorded.
package activities

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/digitalocean/go-libvirt"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"
	"libvirt.org/go/libvirtxml"

	"github.com/premiscale/premiscale/config"
)

// Error types of non-retryable activity failures; workflows branch on them.
const (
	// ErrTypeNotOwned: a domain with the wanted name exists but is not
	// PremiScale's (or belongs to another group); it is never touched.
	ErrTypeNotOwned = "NotOwned"
	// ErrTypeNameTaken: a disk or seed volume of the new VM's name exists
	// and is not this provisioning's (CloneVolume, CreateSeedVolume); it is
	// left as it is, and the provisioning gives up the name.
	ErrTypeNameTaken = "NameTaken"
	// ErrTypeInvalidConfig: the template or host cannot work as configured
	// (missing pool or base volume, invalid XML); retrying cannot help.
	ErrTypeInvalidConfig = "InvalidConfig"
	// ErrTypeBootFailed: the domain stopped on its own while booting.
	ErrTypeBootFailed = "BootFailed"
	// ErrTypeReadyUnseen: nobody watched the console of a booting warm VM
	// for a while (a worker was lost); its ready line may have gone by.
	ErrTypeReadyUnseen = "ReadyUnseen"
	// ErrTypeMissing: a resource an earlier step created has vanished.
	ErrTypeMissing = "Missing"
	// ErrTypeInUse: a volume to delete is still a disk of some domain.
	ErrTypeInUse = "InUse"
)

// HostRef says which hypervisor an activity acts on. Only its name (and
// placement's numbers) travels in workflow history: URI and Pool are never
// serialized, and an activity fills them in from the worker's Catalog.
type HostRef struct {
	Name string `json:"name"`
	URI  string `json:"-"`
	Pool string `json:"-"`
	// ReservedMemoryBytes, ReservedCPUs and CPUOvercommit shape placement.
	ReservedMemoryBytes uint64  `json:"reservedMemoryBytes,omitempty"`
	ReservedCPUs        int     `json:"reservedCPUs,omitempty"`
	CPUOvercommit       float64 `json:"cpuOvercommit,omitempty"`
	MemoryOvercommit    float64 `json:"memoryOvercommit,omitempty"`
}

// DomainRef names one VM of a group on a host.
type DomainRef struct {
	Host  HostRef `json:"host"`
	Group string  `json:"group"`
	VM    string  `json:"vm"`
}

// Libvirt is the set of libvirt activities; it holds the pooled connections
// and the worker's catalog of hosts and groups.
type Libvirt struct {
	Hosts   *Hosts
	Catalog *Catalog
	// PollInterval is how often waits poll a domain's state; zero means 250 ms.
	PollInterval time.Duration

	marks markCache
}

// conn resolves *h by name in the worker's catalog (filling in its URI and
// pool), then takes one of its connection slots and returns the
// connection; release gives the slot back (see Hosts).
func (l *Libvirt) conn(ctx context.Context, h *HostRef) (lv *libvirt.Libvirt, release func(), err error) {
	r, err := l.Catalog.Host(*h)
	if err != nil {
		return nil, nil, err
	}
	*h = r
	return l.Hosts.Acquire(ctx, h.Name, h.URI)
}

// keepAlive heartbeats every second until stop is called. With a short
// HeartbeatTimeout on the activity, Temporal notices a dead worker within
// seconds and retries elsewhere, instead of waiting out StartToClose.
func keepAlive(ctx context.Context) (stop func()) {
	if !activity.IsActivity(ctx) {
		return func() {}
	}
	done := make(chan struct{})
	go func() {
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-ctx.Done():
				return
			case <-t.C:
				activity.RecordHeartbeat(ctx)
			}
		}
	}()
	return func() { close(done) }
}

func (l *Libvirt) poll() time.Duration {
	if l.PollInterval > 0 {
		return l.PollInterval
	}
	return 250 * time.Millisecond
}

func nonRetryable(errType string, format string, args ...any) error {
	err := fmt.Errorf(format, args...)
	return temporal.NewNonRetryableApplicationError(err.Error(), errType, errors.Unwrap(err))
}

func isLibvirtCode(err error, code libvirt.ErrorNumber) bool {
	var le libvirt.Error
	return errors.As(err, &le) && le.Code == uint32(code)
}

// CloneVolumeInput asks for the disk volume of one VM of a group. The base
// volume and disk size are the group's template's in the worker's catalog.
type CloneVolumeInput struct {
	Host  HostRef `json:"host"`
	Group string  `json:"group"`
	VM    string  `json:"vm"`
	// Revision is the group's configuration revision the workflow holds;
	// it must be the worker's (config.Group.Revision).
	Revision string `json:"revision"`
}

// CloneVolumeOutput describes the VM's volume.
type CloneVolumeOutput struct {
	Volume string `json:"volume"`
	Path   string `json:"path"`
}

// CloneVolume creates the VM's disk, VolumeName(vm), in the host's pool: a
// qcow2 overlay on the base volume (or a blank qcow2 without one).
// Idempotent: a volume of that name that is exactly what this step makes
// (format, base, size) and that no domain uses is taken as made by an
// earlier attempt; any other is refused without retry (ErrTypeNameTaken) and
// left alone. Fails without retry when the pool or the base volume does not
// exist, and when the catalog refuses the group, VM name, host or revision.
func (l *Libvirt) CloneVolume(ctx context.Context, in CloneVolumeInput) (CloneVolumeOutput, error) {
	defer keepAlive(ctx)()
	g, err := l.Catalog.Group(in.Group, in.Revision, in.VM, in.Host.Name)
	if err != nil {
		return CloneVolumeOutput{}, err
	}
	baseVolume, diskSize := g.Template.BaseVolume, g.Template.DiskSize
	lv, release, err := l.conn(ctx, &in.Host)
	if err != nil {
		return CloneVolumeOutput{}, err
	}
	defer release()
	name := VolumeName(in.VM)
	pool, err := lv.StoragePoolLookupByName(in.Host.Pool)
	if err != nil {
		if isLibvirtCode(err, libvirt.ErrNoStoragePool) {
			return CloneVolumeOutput{}, nonRetryable(ErrTypeInvalidConfig, "host %s: storage pool %q not found", in.Host.Name, in.Host.Pool)
		}
		return CloneVolumeOutput{}, fmt.Errorf("lookup pool %q: %w", in.Host.Pool, err)
	}
	var capacity uint64
	if diskSize != "" {
		if capacity, err = config.ParseSize(diskSize); err != nil {
			return CloneVolumeOutput{}, nonRetryable(ErrTypeInvalidConfig, "template.diskSize: %w", err)
		}
	}
	spec := libvirtxml.StorageVolume{
		Name:   name,
		Target: &libvirtxml.StorageVolumeTarget{Format: &libvirtxml.StorageVolumeTargetFormat{Type: "qcow2"}},
	}
	if baseVolume != "" {
		base, err := lv.StorageVolLookupByName(pool, baseVolume)
		if isLibvirtCode(err, libvirt.ErrNoStorageVol) {
			// A file copied into a directory pool shows up only after a refresh.
			if rerr := lv.StoragePoolRefresh(pool, 0); rerr == nil {
				base, err = lv.StorageVolLookupByName(pool, baseVolume)
			}
		}
		if err != nil {
			if isLibvirtCode(err, libvirt.ErrNoStorageVol) {
				return CloneVolumeOutput{}, nonRetryable(ErrTypeInvalidConfig, "host %s: base volume %q not found in pool %q", in.Host.Name, baseVolume, in.Host.Pool)
			}
			return CloneVolumeOutput{}, fmt.Errorf("lookup base volume %q: %w", baseVolume, err)
		}
		baseXML, err := lv.StorageVolGetXMLDesc(base, 0)
		if err != nil {
			return CloneVolumeOutput{}, fmt.Errorf("base volume %q xml: %w", baseVolume, err)
		}
		var bv libvirtxml.StorageVolume
		if err := bv.Unmarshal(baseXML); err != nil {
			return CloneVolumeOutput{}, fmt.Errorf("base volume %q xml: %w", baseVolume, err)
		}
		format := "raw"
		if bv.Target != nil && bv.Target.Format != nil && bv.Target.Format.Type != "" {
			format = bv.Target.Format.Type
		}
		basePath := ""
		if bv.Target != nil {
			basePath = bv.Target.Path
		}
		if basePath == "" {
			if basePath, err = lv.StorageVolGetPath(base); err != nil {
				return CloneVolumeOutput{}, fmt.Errorf("base volume %q path: %w", baseVolume, err)
			}
		}
		if bv.Capacity != nil {
			capacity = max(capacity, bv.Capacity.Value*unitBytes(bv.Capacity.Unit))
		}
		spec.BackingStore = &libvirtxml.StorageVolumeBackingStore{
			Path:   basePath,
			Format: &libvirtxml.StorageVolumeTargetFormat{Type: format},
		}
	}
	if capacity == 0 {
		return CloneVolumeOutput{}, nonRetryable(ErrTypeInvalidConfig, "template: diskSize or a base volume with a size is required")
	}
	spec.Capacity = &libvirtxml.StorageVolumeSize{Unit: "bytes", Value: capacity}
	xmlDoc, err := spec.Marshal()
	if err != nil {
		return CloneVolumeOutput{}, fmt.Errorf("volume xml: %w", err)
	}
	// An existing volume was made by an earlier attempt of this step, or by
	// someone else (also between the lookup and the create: drivers differ
	// in the error they give then, so look again after any).
	vol, err := lv.StorageVolLookupByName(pool, name)
	if err == nil {
		err = adoptable(lv, in.Host.Name, pool, vol, spec)
	} else if isLibvirtCode(err, libvirt.ErrNoStorageVol) {
		var cerr error
		if vol, cerr = lv.StorageVolCreateXML(pool, xmlDoc, 0); cerr == nil {
			err = nil
		} else if vol, err = lv.StorageVolLookupByName(pool, name); err == nil {
			err = adoptable(lv, in.Host.Name, pool, vol, spec)
		} else {
			err = cerr
		}
	}
	var refusal *temporal.ApplicationError
	if errors.As(err, &refusal) {
		return CloneVolumeOutput{}, err // typed, not retried: wrapping would hide the type
	}
	if err != nil {
		return CloneVolumeOutput{}, fmt.Errorf("create volume %q: %w", name, err)
	}
	path, err := lv.StorageVolGetPath(vol)
	if err != nil {
		return CloneVolumeOutput{}, fmt.Errorf("volume %q path: %w", name, err)
	}
	return CloneVolumeOutput{Volume: name, Path: path}, nil
}

// adoptable refuses (ErrTypeNameTaken) an existing disk that this step
// would not have made exactly so: another format, base or size, or one that
// any domain has as a disk. Before its domain is defined nobody writes to a
// new overlay, so a disk that passes is indistinguishable from a fresh one,
// while one that a VM ran on (another installation's, or a leftover of a
// lost history, whose names new VMs skip) is never taken over.
func adoptable(lv *libvirt.Libvirt, host string, pool libvirt.StoragePool, vol libvirt.StorageVol, want libvirtxml.StorageVolume) error {
	doc, err := lv.StorageVolGetXMLDesc(vol, 0)
	if err != nil {
		return fmt.Errorf("volume %q xml: %w", vol.Name, err)
	}
	var got libvirtxml.StorageVolume
	if err := got.Unmarshal(doc); err != nil {
		return fmt.Errorf("volume %q xml: %w", vol.Name, err)
	}
	var why string
	gotBase, wantBase := "", ""
	if got.BackingStore != nil {
		gotBase = filepath.Clean(got.BackingStore.Path)
	}
	if want.BackingStore != nil {
		wantBase = filepath.Clean(want.BackingStore.Path)
	}
	switch {
	case got.Target == nil || got.Target.Format == nil || got.Target.Format.Type != "qcow2":
		why = "it is not qcow2"
	case gotBase != wantBase:
		why = fmt.Sprintf("its backing store is %q, not %q", gotBase, wantBase)
	case got.Capacity == nil || !sameSize(got.Capacity.Value*unitBytes(got.Capacity.Unit), want.Capacity.Value):
		why = "its size differs from the template's"
	default:
		use, err := readPoolUse(lv, host, pool)
		if err != nil {
			return err
		}
		if users := use.users[vol.Name]; len(users) > 0 {
			why = "domain " + users[0] + " has it as a disk"
		}
	}
	if why != "" {
		return nonRetryable(ErrTypeNameTaken, "host %s: volume %q already exists and is not one this provisioning made (%s); not adopting it", host, vol.Name, why)
	}
	return nil
}

// sameSize: qcow2 keeps a virtual size rounded up to 512-byte sectors.
func sameSize(got, want uint64) bool {
	return got >= want && got-want < 512
}

func unitBytes(unit string) uint64 {
	switch unit {
	case "", "bytes", "B", "b":
		return 1
	case "KiB", "K", "k":
		return 1 << 10
	case "MiB", "M":
		return 1 << 20
	case "GiB", "G":
		return 1 << 30
	case "TiB", "T":
		return 1 << 40
	}
	return 1
}

// DefineDomainInput asks for the persistent definition of one VM, from its
// group's template in the worker's catalog.
type DefineDomainInput struct {
	Domain DomainRef `json:"domain"`
	Volume string    `json:"volume"`
	// Revision is the group's configuration revision the workflow holds.
	Revision string `json:"revision"`
	// Epoch is written into the mark (Owner.Epoch).
	Epoch string `json:"epoch,omitempty"`
	// Extras fix the UUID and attach the seed, when the VM joins Kubernetes.
	Extras DomainExtras `json:"extras,omitzero"`
}

// DefineDomain defines (does not start) the VM's domain, marked with
// PremiScale's ownership metadata naming its group. Idempotent: a domain of
// that name already marked for this group and VM (and this installation and
// epoch) is accepted as is. A domain
// of that name that is not marked so is never touched: the activity fails
// without retry (ErrTypeNotOwned), as is a group, VM name, host or revision
// the catalog refuses. The volume must be the VM's own disk.
func (l *Libvirt) DefineDomain(ctx context.Context, in DefineDomainInput) error {
	defer keepAlive(ctx)()
	g, err := l.Catalog.Group(in.Domain.Group, in.Revision, in.Domain.VM, in.Domain.Host.Name)
	if err != nil {
		return err
	}
	if in.Volume != VolumeName(in.Domain.VM) {
		return nonRetryable(ErrTypeInvalidConfig, "domain %s: volume %q is not its disk %q; refusing", in.Domain.VM, in.Volume, VolumeName(in.Domain.VM))
	}
	if in.Extras.Seed != "" && in.Extras.Seed != SeedVolumeName(in.Domain.VM) {
		return nonRetryable(ErrTypeInvalidConfig, "domain %s: seed %q is not its seed %q; refusing", in.Domain.VM, in.Extras.Seed, SeedVolumeName(in.Domain.VM))
	}
	lv, release, err := l.conn(ctx, &in.Domain.Host)
	if err != nil {
		return err
	}
	defer release()
	if _, mark, found, err := l.ownedMark(lv, in.Domain); err != nil {
		return err
	} else if found {
		// Adopted only if this history of the group made it: a retry of
		// this provisioning. One of an earlier history (a lost state) is
		// not this VM, whatever its name.
		if mark.Epoch != "" && in.Epoch != "" && mark.Epoch != in.Epoch {
			return nonRetryable(ErrTypeNotOwned, "host %s: domain %s was made by an earlier history of group %s; not adopting it", in.Domain.Host.Name, in.Domain.VM, in.Domain.Group)
		}
		return nil
	}
	owner := Owner{Group: in.Domain.Group, VM: in.Domain.VM, Volume: in.Volume, Installation: l.Catalog.Installation, Epoch: in.Epoch}
	doc, err := DomainXMLWith(in.Domain.VM, owner, in.Domain.Host.Pool, g.Template, in.Extras)
	if err != nil {
		return nonRetryable(ErrTypeInvalidConfig, "domain %s: %w", in.Domain.VM, err)
	}
	if _, err := lv.DomainDefineXMLFlags(doc, libvirt.DomainDefineValidate); err != nil {
		if isLibvirtCode(err, libvirt.ErrXMLError) || isLibvirtCode(err, libvirt.ErrXMLDetail) || isLibvirtCode(err, libvirt.ErrConfigUnsupported) {
			return nonRetryable(ErrTypeInvalidConfig, "define domain %s on %s: %w", in.Domain.VM, in.Domain.Host.Name, err)
		}
		return fmt.Errorf("define domain %s: %w", in.Domain.VM, err)
	}
	return nil
}

// owned looks the domain up and checks PremiScale's mark on it. found is
// false if no domain has that name. A domain that exists without the mark for
// ref's group and VM yields a non-retryable ErrTypeNotOwned error.
func (l *Libvirt) owned(lv *libvirt.Libvirt, ref DomainRef) (libvirt.Domain, bool, error) {
	dom, _, found, err := l.ownedMark(lv, ref)
	return dom, found, err
}

// ownedMark is owned, also returning the domain's mark.
func (l *Libvirt) ownedMark(lv *libvirt.Libvirt, ref DomainRef) (libvirt.Domain, Owner, bool, error) {
	dom, err := lv.DomainLookupByName(ref.VM)
	if err != nil {
		if libvirt.IsNotFound(err) {
			return libvirt.Domain{}, Owner{}, false, nil
		}
		return libvirt.Domain{}, Owner{}, false, fmt.Errorf("lookup domain %s: %w", ref.VM, err)
	}
	doc, err := lv.DomainGetXMLDesc(dom, 0)
	if err != nil {
		if libvirt.IsNotFound(err) {
			return libvirt.Domain{}, Owner{}, false, nil
		}
		return libvirt.Domain{}, Owner{}, false, fmt.Errorf("domain %s xml: %w", ref.VM, err)
	}
	owner, ok, err := parseOwner(doc)
	if err != nil {
		return libvirt.Domain{}, Owner{}, false, err
	}
	if !ok || owner.Group != ref.Group || owner.VM != ref.VM {
		return libvirt.Domain{}, Owner{}, false, nonRetryable(ErrTypeNotOwned,
			"host %s: domain %s exists and is not PremiScale's VM of group %s; not touching it", ref.Host.Name, ref.VM, ref.Group)
	}
	if !l.Catalog.ours(owner) {
		return libvirt.Domain{}, Owner{}, false, nonRetryable(ErrTypeNotOwned,
			"host %s: domain %s belongs to another PremiScale installation (%s); not touching it", ref.Host.Name, ref.VM, owner.Installation)
	}
	return dom, owner, true, nil
}

// StartDomain boots the VM. Idempotent: a running domain is left running.
// Fails without retry if the domain is missing (ErrTypeMissing) or not
// PremiScale's.
func (l *Libvirt) StartDomain(ctx context.Context, ref DomainRef) error {
	defer keepAlive(ctx)()
	lv, release, err := l.conn(ctx, &ref.Host)
	if err != nil {
		return err
	}
	defer release()
	dom, found, err := l.owned(lv, ref)
	if err != nil {
		return err
	}
	if !found {
		return nonRetryable(ErrTypeMissing, "host %s: domain %s is not defined", ref.Host.Name, ref.VM)
	}
	state, _, err := lv.DomainGetState(dom, 0)
	if err != nil {
		return fmt.Errorf("domain %s state: %w", ref.VM, err)
	}
	if libvirt.DomainState(state) == libvirt.DomainRunning {
		return nil
	}
	if err := lv.DomainCreate(dom); err != nil {
		if isLibvirtCode(err, libvirt.ErrOperationInvalid) {
			// "domain is already running": a concurrent or earlier attempt won.
			if s, _, serr := lv.DomainGetState(dom, 0); serr == nil && libvirt.DomainState(s) == libvirt.DomainRunning {
				return nil
			}
		}
		return fmt.Errorf("start domain %s on %s: %w", ref.VM, ref.Host.Name, err)
	}
	return nil
}

// RecoverDomainOutput says what RecoverDomain found and did.
type RecoverDomainOutput struct {
	// State is the domain's state before: "paused", "shut-off", ...
	State string `json:"state"`
	// Action is what was done: "resumed", "woken", "started", "starting"
	// (nothing: it is being started or restored) or "" (the state is one
	// to wait out, e.g. shutting down, or it runs already).
	Action string `json:"action"`
}

// RecoverDomain tries to bring a VM that is not running back without
// replacing it: a paused domain (a full pool pauses guests on ENOSPC, or
// someone ran virsh suspend) is resumed, a pmsuspended one woken, a shut
// off or crashed one started again. It does nothing to a running domain or
// one that is shutting down. Idempotent; fails without retry if the domain
// is missing (ErrTypeMissing) or not PremiScale's.
func (l *Libvirt) RecoverDomain(ctx context.Context, ref DomainRef) (RecoverDomainOutput, error) {
	defer keepAlive(ctx)()
	lv, release, err := l.conn(ctx, &ref.Host)
	if err != nil {
		return RecoverDomainOutput{}, err
	}
	defer release()
	dom, found, err := l.owned(lv, ref)
	if err != nil {
		return RecoverDomainOutput{}, err
	}
	if !found {
		return RecoverDomainOutput{}, nonRetryable(ErrTypeMissing, "host %s: domain %s is not defined", ref.Host.Name, ref.VM)
	}
	state, reason, err := lv.DomainGetState(dom, 0)
	if err != nil {
		return RecoverDomainOutput{}, fmt.Errorf("domain %s state: %w", ref.VM, err)
	}
	out := RecoverDomainOutput{State: stateName(libvirt.DomainState(state))}
	switch libvirt.DomainState(state) {
	case libvirt.DomainPaused:
		if libvirt.DomainPausedReason(reason) == libvirt.DomainPausedStartingUp {
			// Being started or restored (by an earlier attempt of this
			// activity whose call libvirtd still serves): resuming it
			// fails with "already running"; it runs once that is done.
			out.Action = "starting"
			return out, nil
		}

		out.Action, err = "resumed", lv.DomainResume(dom)
	case libvirt.DomainPmsuspended:
		out.Action, err = "woken", lv.DomainPmWakeup(dom, 0)
	case libvirt.DomainShutoff, libvirt.DomainCrashed:
		out.Action, err = "started", lv.DomainCreate(dom)
	}
	if err != nil {
		return out, fmt.Errorf("%s: domain %s on %s: %w", out.Action, ref.VM, ref.Host.Name, err)
	}
	return out, nil
}

// WaitRunning blocks until the domain is running, heartbeating while it
// waits; the caller's StartToClose timeout bounds it. A domain that is shut
// off meanwhile fails without retry (ErrTypeBootFailed): it crashed or was
// stopped while booting.
func (l *Libvirt) WaitRunning(ctx context.Context, ref DomainRef) error {
	lv, release, err := l.conn(ctx, &ref.Host)
	if err != nil {
		return err
	}
	defer release()
	dom, found, err := l.owned(lv, ref)
	if err != nil {
		return err
	}
	if !found {
		return nonRetryable(ErrTypeMissing, "host %s: domain %s vanished while booting", ref.Host.Name, ref.VM)
	}
	for {
		state, _, err := lv.DomainGetState(dom, 0)
		if err != nil {
			return fmt.Errorf("domain %s state: %w", ref.VM, err)
		}
		switch libvirt.DomainState(state) {
		case libvirt.DomainRunning:
			return nil
		case libvirt.DomainShutoff, libvirt.DomainCrashed:
			return nonRetryable(ErrTypeBootFailed, "host %s: domain %s stopped while booting (state %d)", ref.Host.Name, ref.VM, state)
		}
		activity.RecordHeartbeat(ctx, state)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(l.poll()):
		}
	}
}

// StopDomainInput asks for a VM to be stopped.
type StopDomainInput struct {
	Domain DomainRef `json:"domain"`
	// GracePeriod is how long an ACPI shutdown may take before the domain is
	// destroyed; zero destroys at once.
	GracePeriod time.Duration `json:"gracePeriod"`
}

// StopDomain shuts the VM down: an ACPI shutdown bounded by GracePeriod,
// then a hard destroy. Idempotent: a missing or stopped domain is success.
// A domain that is not PremiScale's is never touched (ErrTypeNotOwned).
func (l *Libvirt) StopDomain(ctx context.Context, in StopDomainInput) error {
	defer keepAlive(ctx)()
	lv, release, err := l.conn(ctx, &in.Domain.Host)
	if err != nil {
		return err
	}
	defer release()
	dom, found, err := l.owned(lv, in.Domain)
	if err != nil || !found {
		return err
	}
	running := func() (bool, error) {
		s, _, err := lv.DomainGetState(dom, 0)
		if libvirt.IsNotFound(err) {
			return false, nil
		}
		if err != nil {
			return false, fmt.Errorf("domain %s state: %w", in.Domain.VM, err)
		}
		return libvirt.DomainState(s) != libvirt.DomainShutoff, nil
	}
	if up, err := running(); err != nil || !up {
		return err
	}
	if in.GracePeriod > 0 {
		if err := lv.DomainShutdown(dom); err == nil {
			deadline := time.Now().Add(in.GracePeriod)
			for time.Now().Before(deadline) {
				if up, err := running(); err != nil || !up {
					return err
				}
				activity.RecordHeartbeat(ctx)
				select {
				case <-ctx.Done():
					return ctx.Err()
				case <-time.After(l.poll()):
				}
			}
		}
	}
	if err := lv.DomainDestroy(dom); err != nil {
		if up, serr := running(); serr == nil && !up {
			return nil
		}
		return fmt.Errorf("destroy domain %s on %s: %w", in.Domain.VM, in.Domain.Host.Name, err)
	}
	return nil
}

// UndefineDomain removes the VM's definition, destroying it first if it
// still runs. Idempotent: a missing domain is success. A domain that is not
// PremiScale's is never touched (ErrTypeNotOwned).
func (l *Libvirt) UndefineDomain(ctx context.Context, ref DomainRef) error {
	defer keepAlive(ctx)()
	lv, release, err := l.conn(ctx, &ref.Host)
	if err != nil {
		return err
	}
	defer release()
	dom, found, err := l.owned(lv, ref)
	if err != nil || !found {
		return err
	}
	if s, _, err := lv.DomainGetState(dom, 0); err == nil && libvirt.DomainState(s) != libvirt.DomainShutoff {
		if err := lv.DomainDestroy(dom); err != nil && !libvirt.IsNotFound(err) && !isLibvirtCode(err, libvirt.ErrOperationInvalid) {
			return fmt.Errorf("destroy domain %s before undefine: %w", ref.VM, err)
		}
	}
	flags := libvirt.DomainUndefineManagedSave | libvirt.DomainUndefineSnapshotsMetadata |
		libvirt.DomainUndefineNvram | libvirt.DomainUndefineCheckpointsMetadata
	err = lv.DomainUndefineFlags(dom, flags)
	if err != nil && !libvirt.IsNotFound(err) {
		// Some drivers (the test driver among them) refuse the NVRAM flag.
		err = lv.DomainUndefine(dom)
	}
	if err != nil && !libvirt.IsNotFound(err) {
		return fmt.Errorf("undefine domain %s on %s: %w", ref.VM, ref.Host.Name, err)
	}
	return nil
}

// DeleteVolumeInput names the volume of one VM.
type DeleteVolumeInput struct {
	Host HostRef `json:"host"`
	VM   string  `json:"vm"`
	// Volume, if set, deletes that volume (named with VolumePrefix) instead
	// of the VM's disk and seed.
	Volume string `json:"volume,omitempty"`
	// IfUnused is kept for the histories that set it: every delete now
	// refuses (ErrTypeInUse) a volume that any domain on the host, of
	// anyone, has as a disk, or that backs another volume.
	IfUnused bool `json:"ifUnused,omitempty"`
}

// DeleteVolume deletes the VM's disk, VolumeName(vm), and its seed,
// SeedVolumeName(vm), from the host's pool; or only Volume, when set.
// Idempotent: a missing volume (or pool) is success. Only volumes named with
// VolumePrefix are ever deleted, and never one that a domain (anyone's) has
// as a disk or that backs another volume (ErrTypeInUse, no retry).
func (l *Libvirt) DeleteVolume(ctx context.Context, in DeleteVolumeInput) error {
	defer keepAlive(ctx)()
	names := []string{VolumeName(in.VM), SeedVolumeName(in.VM)}
	if in.Volume != "" {
		if !strings.HasPrefix(in.Volume, VolumePrefix) {
			return nonRetryable(ErrTypeNotOwned, "volume %q is not named as PremiScale's; not deleting it", in.Volume)
		}
		names = []string{in.Volume}
	}
	lv, release, err := l.conn(ctx, &in.Host)
	if err != nil {
		return err
	}
	defer release()
	pool, err := lv.StoragePoolLookupByName(in.Host.Pool)
	if err != nil {
		if isLibvirtCode(err, libvirt.ErrNoStoragePool) {
			return nil
		}
		return fmt.Errorf("lookup pool %q: %w", in.Host.Pool, err)
	}
	var use *poolUse // read once, at the first volume that exists
	for _, name := range names {
		vol, err := lv.StorageVolLookupByName(pool, name)
		if err != nil {
			if isLibvirtCode(err, libvirt.ErrNoStorageVol) {
				continue
			}
			return fmt.Errorf("lookup volume %q: %w", name, err)
		}
		if use == nil {
			if use, err = readPoolUse(lv, in.Host.Name, pool); err != nil {
				return err
			}
		}
		// Never the backing store of another volume (a base image some
		// overlay, anyone's, still reads), whatever its name.
		if backed, err := use.backedBy(lv, vol); err != nil {
			return err
		} else if len(backed) > 0 {
			return nonRetryable(ErrTypeInUse, "host %s: volume %q is the backing store of %s; not deleting it", in.Host.Name, name, strings.Join(backed, ", "))
		}
		// Never a disk of any domain (ours is undefined before its volumes
		// go; a domain that uses one is someone's, attached by hand).
		if users := use.users[name]; len(users) > 0 {
			return nonRetryable(ErrTypeInUse, "host %s: volume %q is a disk of domain %s; not deleting it", in.Host.Name, name, users[0])
		}
		if err := lv.StorageVolDelete(vol, 0); err != nil && !isLibvirtCode(err, libvirt.ErrNoStorageVol) {
			return fmt.Errorf("delete volume %q on %s: %w", name, in.Host.Name, err)
		}
	}
	return nil
}

// ListDomainsInput selects the PremiScale domains of one host.
type ListDomainsInput struct {
	Host HostRef `json:"host"`
	// Group, if set, keeps only that group's domains.
	Group string `json:"group,omitempty"`
}

// DomainInfo is one PremiScale domain as libvirt sees it.
type DomainInfo struct {
	Name  string `json:"name"`
	Owner Owner  `json:"owner"`
	// Foreign: the mark names another installation (ListOwned only).
	Foreign bool   `json:"foreign,omitempty"`
	Running bool   `json:"running"`
	State   string `json:"state"`
}

// ListDomainsOutput lists a host's PremiScale domains.
type ListDomainsOutput struct {
	Domains []DomainInfo `json:"domains"`
}

// ListDomains reports the domains on a host that carry PremiScale's mark
// (of one group, if given) and their state. Read-only, so always safe to retry.
func (l *Libvirt) ListDomains(ctx context.Context, in ListDomainsInput) (ListDomainsOutput, error) {
	lv, release, err := l.conn(ctx, &in.Host)
	if err != nil {
		return ListDomainsOutput{}, err
	}
	defer release()
	// Every group asks this of every one of its hosts at each observation:
	// one listing, the marks of new domains only, and the state of the
	// group's own.
	marked, err := l.marks.list(lv, in.Host.Name)
	if err != nil {
		return ListDomainsOutput{}, err
	}
	out := ListDomainsOutput{Domains: []DomainInfo{}}
	for _, d := range marked {
		if !d.ok || (in.Group != "" && d.owner.Group != in.Group) || !l.Catalog.ours(d.owner) {
			continue
		}
		info, found, err := domainInfo(lv, d.dom, d.owner, l.Catalog)
		if err != nil {
			return ListDomainsOutput{}, err
		}
		if found {
			out.Domains = append(out.Domains, info)
		}
	}
	return out, nil
}

// domainDoc is one domain and its XML, read once for every use of a scan.
type domainDoc struct {
	dom libvirt.Domain
	doc string
}

// domainDocs lists every domain on the host with its XML; a domain
// undefined meanwhile is left out.
func domainDocs(lv *libvirt.Libvirt, host string) ([]domainDoc, error) {
	doms, _, err := lv.ConnectListAllDomains(1, 0)
	if err != nil {
		return nil, fmt.Errorf("list domains on %s: %w", host, err)
	}
	out := make([]domainDoc, 0, len(doms))
	for _, dom := range doms {
		doc, err := lv.DomainGetXMLDesc(dom, 0)
		if libvirt.IsNotFound(err) {
			continue // undefined while we listed
		}
		if err != nil {
			return nil, fmt.Errorf("domain %s xml: %w", dom.Name, err)
		}
		out = append(out, domainDoc{dom: dom, doc: doc})
	}
	return out, nil
}

// ownedDomains keeps the domains with this installation's mark (of group,
// if set), and with foreign those of other installations too (flagged
// Foreign), and reads their state.
func ownedDomains(lv *libvirt.Libvirt, docs []domainDoc, group string, cat *Catalog, foreign bool) ([]DomainInfo, error) {
	out := []DomainInfo{}
	for _, d := range docs {
		owner, ok, err := parseOwner(d.doc)
		if err != nil || !ok || (group != "" && owner.Group != group) || (!foreign && !cat.ours(owner)) {
			continue
		}
		info, found, err := domainInfo(lv, d.dom, owner, cat)
		if err != nil {
			return nil, err
		}
		if found {
			out = append(out, info)
		}
	}
	return out, nil
}

// domainInfo reads a marked domain's state; found is false if it was
// undefined meanwhile.
func domainInfo(lv *libvirt.Libvirt, dom libvirt.Domain, owner Owner, cat *Catalog) (DomainInfo, bool, error) {
	state, _, err := lv.DomainGetState(dom, 0)
	if libvirt.IsNotFound(err) {
		return DomainInfo{}, false, nil
	}
	if err != nil {
		return DomainInfo{}, false, fmt.Errorf("domain %s state: %w", dom.Name, err)
	}
	return DomainInfo{
		Name:    dom.Name,
		Foreign: !cat.ours(owner),
		Owner:   owner,
		Running: libvirt.DomainState(state) == libvirt.DomainRunning,
		State:   stateName(libvirt.DomainState(state)),
	}, true, nil
}

func stateName(s libvirt.DomainState) string {
	switch s {
	case libvirt.DomainRunning:
		return "running"
	case libvirt.DomainBlocked:
		return "blocked"
	case libvirt.DomainPaused:
		return "paused"
	case libvirt.DomainShutdown:
		return "shutting-down"
	case libvirt.DomainShutoff:
		return "shut-off"
	case libvirt.DomainCrashed:
		return "crashed"
	case libvirt.DomainPmsuspended:
		return "suspended"
	}
	return "unknown"
}

// poolUse is what uses the volumes of one pool: the domains (anyone's) that
// have a volume as a disk, and the backing store of every volume. It is read
// once per DeleteVolume call, however many volumes that call deletes.
type poolUse struct {
	users   map[string][]string // volume name -> domains
	backing map[string]string   // volume name -> its backing store's path
}

// readPoolUse reads every domain's XML on the host and every volume's XML in
// the pool.
func readPoolUse(lv *libvirt.Libvirt, host string, pool libvirt.StoragePool) (*poolUse, error) {
	docs, err := domainDocs(lv, host)
	if err != nil {
		return nil, err
	}
	users, err := volumeUsers(lv, pool.Name, docs)
	if err != nil {
		return nil, err
	}
	vols, _, err := lv.StoragePoolListAllVolumes(pool, 1, 0)
	if err != nil {
		return nil, fmt.Errorf("list volumes of pool %q: %w", pool.Name, err)
	}
	backing := map[string]string{}
	for _, v := range vols {
		doc, err := lv.StorageVolGetXMLDesc(v, 0)
		if err != nil {
			if isLibvirtCode(err, libvirt.ErrNoStorageVol) {
				continue // deleted meanwhile
			}
			return nil, fmt.Errorf("volume %q xml: %w", v.Name, err)
		}
		var vx libvirtxml.StorageVolume
		if err := vx.Unmarshal(doc); err != nil {
			return nil, fmt.Errorf("volume %q xml: %w", v.Name, err)
		}
		if vx.BackingStore != nil && vx.BackingStore.Path != "" {
			backing[v.Name] = filepath.Clean(vx.BackingStore.Path)
		}
	}
	return &poolUse{users: users, backing: backing}, nil
}

// backedBy lists the volumes of the pool whose backing store is vol (by
// path), in name order.
func (u *poolUse) backedBy(lv *libvirt.Libvirt, vol libvirt.StorageVol) ([]string, error) {
	path, err := lv.StorageVolGetPath(vol)
	if err != nil {
		return nil, fmt.Errorf("volume %q path: %w", vol.Name, err)
	}
	var out []string
	for name, b := range u.backing {
		if name != vol.Name && b == filepath.Clean(path) {
			out = append(out, name)
		}
	}
	sort.Strings(out)
	return out, nil
}

// volumeUsers maps each volume of the pool that one of the domains
// (anyone's) has as a disk, by pool and volume name or by path, to those
// domains' names.
func volumeUsers(lv *libvirt.Libvirt, pool string, docs []domainDoc) (map[string][]string, error) {
	var poolDir string
	if p, err := lv.StoragePoolLookupByName(pool); err == nil {
		if doc, err := lv.StoragePoolGetXMLDesc(p, 0); err == nil {
			var px libvirtxml.StoragePool
			if px.Unmarshal(doc) == nil && px.Target != nil {
				poolDir = px.Target.Path
			}
		}
	}
	users := map[string][]string{}
	for _, d := range docs {
		var dx libvirtxml.Domain
		if err := dx.Unmarshal(d.doc); err != nil {
			return nil, fmt.Errorf("domain %s xml: %w", d.dom.Name, err)
		}
		if dx.Devices == nil {
			continue
		}
		for _, disk := range dx.Devices.Disks {
			src := disk.Source
			switch {
			case src == nil:
			case src.Volume != nil && src.Volume.Pool == pool:
				users[src.Volume.Volume] = append(users[src.Volume.Volume], d.dom.Name)
			case src.File != nil && poolDir != "" && filepath.Dir(src.File.File) == filepath.Clean(poolDir):
				name := filepath.Base(src.File.File)
				users[name] = append(users[name], d.dom.Name)
			}
		}
	}
	return users, nil
}
