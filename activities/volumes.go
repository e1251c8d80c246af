// Volumes: cloning a VM's disk from its base, deleting it, and what in a
// pool uses what (domains' disks, backing chains), which no deletion may
// break.

package activities

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sort"
	"strings"

	"github.com/digitalocean/go-libvirt"
	"go.temporal.io/sdk/temporal"
	"libvirt.org/go/libvirtxml"

	"github.com/premiscale/premiscale/config"
)

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
