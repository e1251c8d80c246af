package activities

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"

	"github.com/digitalocean/go-libvirt"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/client"
)

// InventoryInput names the host to take stock of.
type InventoryInput struct {
	Host HostRef `json:"host"`
}

// Inventory is a host's capacity and what its domains claim, as placement
// needs it. Sizes are in bytes.
type Inventory struct {
	CPUs            int    `json:"cpus"`
	MemoryBytes     uint64 `json:"memoryBytes"`
	FreeMemoryBytes uint64 `json:"freeMemoryBytes"`
	// AllocatedVCPUs and AllocatedMemoryBytes sum every defined domain's
	// vCPUs and maximum memory, PremiScale's or not, running or not.
	AllocatedVCPUs       int    `json:"allocatedVCPUs"`
	AllocatedMemoryBytes uint64 `json:"allocatedMemoryBytes"`
	Domains              int    `json:"domains"`
	// PoolCapacityBytes and PoolAvailableBytes describe the host's pool.
	PoolCapacityBytes  uint64 `json:"poolCapacityBytes"`
	PoolAvailableBytes uint64 `json:"poolAvailableBytes"`
	// Owned lists the domains that carry this installation's mark.
	Owned []DomainInfo `json:"owned"`
	// Taken lists every name a new VM may not have on this host: every
	// domain's (anyone's) and every VM name that a volume in the pool is
	// named for (VolumeName, SeedVolumeName), sorted. After a state loss,
	// or beside another installation, a new VM skips them, so that nothing
	// of theirs is adopted, replaced or destroyed as its own.
	Taken []string `json:"taken,omitempty"`
}

// HostInventory reports a host's CPUs and memory (NodeGetInfo), free
// memory (NodeGetFreeMemory), its pool's capacity and free space, and what
// every defined domain claims, with PremiScale's own domains listed.
// Read-only, so always safe to retry. Fails without retry if the pool does
// not exist.
func (l *Libvirt) HostInventory(ctx context.Context, in InventoryInput) (Inventory, error) {
	lv, release, err := l.conn(ctx, &in.Host)
	if err != nil {
		return Inventory{}, err
	}
	defer release()
	_, memKiB, cpus, _, _, _, _, _, err := lv.NodeGetInfo()
	if err != nil {
		return Inventory{}, fmt.Errorf("host %s node info: %w", in.Host.Name, err)
	}
	free, err := lv.NodeGetFreeMemory()
	if err != nil {
		return Inventory{}, fmt.Errorf("host %s free memory: %w", in.Host.Name, err)
	}
	inv := Inventory{CPUs: int(cpus), MemoryBytes: memKiB << 10, FreeMemoryBytes: free, Owned: []DomainInfo{}}
	pool, err := lv.StoragePoolLookupByName(in.Host.Pool)
	if err != nil {
		if isLibvirtCode(err, libvirt.ErrNoStoragePool) {
			return Inventory{}, nonRetryable(ErrTypeInvalidConfig, "host %s: storage pool %q not found", in.Host.Name, in.Host.Pool)
		}
		return Inventory{}, fmt.Errorf("lookup pool %q: %w", in.Host.Pool, err)
	}
	if _, capacity, _, available, err := lv.StoragePoolGetInfo(pool); err != nil {
		return Inventory{}, fmt.Errorf("pool %q info: %w", in.Host.Pool, err)
	} else {
		inv.PoolCapacityBytes, inv.PoolAvailableBytes = capacity, available
	}
	taken := map[string]bool{}
	vols, _, err := lv.StoragePoolListAllVolumes(pool, 1, 0)
	if err != nil {
		return Inventory{}, fmt.Errorf("list volumes of pool %q: %w", in.Host.Pool, err)
	}
	for _, v := range vols {
		if vm, ok := VolumeVM(v.Name); ok {
			taken[vm] = true
		}
	}
	doms, _, err := lv.ConnectListAllDomains(1, 0)
	if err != nil {
		return Inventory{}, fmt.Errorf("list domains on %s: %w", in.Host.Name, err)
	}
	for _, dom := range doms {
		state, maxMemKiB, _, vcpus, _, err := lv.DomainGetInfo(dom)
		if libvirt.IsNotFound(err) {
			continue // undefined while we listed
		}
		if err != nil {
			return Inventory{}, fmt.Errorf("domain %s info: %w", dom.Name, err)
		}
		inv.Domains++
		taken[dom.Name] = true
		inv.AllocatedVCPUs += int(vcpus)
		inv.AllocatedMemoryBytes += maxMemKiB << 10
		doc, err := lv.DomainGetXMLDesc(dom, 0)
		if err != nil {
			continue
		}
		if owner, ok, _ := parseOwner(doc); ok && l.Catalog.ours(owner) {
			s := libvirt.DomainState(state)
			inv.Owned = append(inv.Owned, DomainInfo{Name: dom.Name, Owner: owner, Running: s == libvirt.DomainRunning, State: stateName(s)})
		}
	}
	inv.Taken = slices.Sorted(maps.Keys(taken))
	if activity.IsActivity(ctx) { // not when premiscale hosts check calls it
		recordInventory(activity.GetMetricsHandler(ctx).WithTags(map[string]string{"host": in.Host.Name}), inv)
	}
	return inv, nil
}

// recordInventory exports a host's inventory as premiscale_host_* gauges,
// refreshed by every placement and observation that reads it.
func recordInventory(m client.MetricsHandler, inv Inventory) {
	for name, v := range map[string]float64{
		"premiscale_host_cpus":                   float64(inv.CPUs),
		"premiscale_host_allocated_vcpus":        float64(inv.AllocatedVCPUs),
		"premiscale_host_memory_bytes":           float64(inv.MemoryBytes),
		"premiscale_host_free_memory_bytes":      float64(inv.FreeMemoryBytes),
		"premiscale_host_allocated_memory_bytes": float64(inv.AllocatedMemoryBytes),
		"premiscale_host_pool_capacity_bytes":    float64(inv.PoolCapacityBytes),
		"premiscale_host_pool_available_bytes":   float64(inv.PoolAvailableBytes),
		"premiscale_host_domains":                float64(inv.Domains),
	} {
		m.Gauge(name).Update(v)
	}
}

// ListOwnedInput names the host to scan for PremiScale's resources.
type ListOwnedInput struct {
	Host HostRef `json:"host"`
}

// ListOwnedOutput lists what PremiScale owns on a host, of every group.
type ListOwnedOutput struct {
	Domains []DomainInfo `json:"domains"`
	// Volumes are the pool's volumes named with VolumePrefix.
	Volumes []string `json:"volumes"`
	// VolumeUsers maps each of those volumes that some domain (anyone's)
	// has as a disk to the names of those domains.
	VolumeUsers map[string][]string `json:"volumeUsers,omitempty"`
}

// ListOwned reports every domain on the host that carries PremiScale's mark
// (of any group; those of other installations flagged Foreign) and every
// volume in the host's pool named with VolumePrefix, with the domains using
// each. Read-only, so always safe to
// retry.
func (l *Libvirt) ListOwned(ctx context.Context, in ListOwnedInput) (ListOwnedOutput, error) {
	lv, release, err := l.conn(ctx, &in.Host)
	if err != nil {
		return ListOwnedOutput{}, err
	}
	defer release()
	docs, err := domainDocs(lv, in.Host.Name)
	if err != nil {
		return ListOwnedOutput{}, err
	}
	owned, err := ownedDomains(lv, docs, "", l.Catalog, true)
	if err != nil {
		return ListOwnedOutput{}, err
	}
	out := ListOwnedOutput{Domains: owned, Volumes: []string{}}
	pool, err := lv.StoragePoolLookupByName(in.Host.Pool)
	if err != nil {
		return ListOwnedOutput{}, fmt.Errorf("lookup pool %q: %w", in.Host.Pool, err)
	}
	vols, _, err := lv.StoragePoolListAllVolumes(pool, 1, 0)
	if err != nil {
		return ListOwnedOutput{}, fmt.Errorf("list volumes of pool %q: %w", in.Host.Pool, err)
	}
	for _, v := range vols {
		if strings.HasPrefix(v.Name, VolumePrefix) {
			out.Volumes = append(out.Volumes, v.Name)
		}
	}
	sort.Strings(out.Volumes)
	users, err := volumeUsers(lv, in.Host.Pool, docs)
	if err != nil {
		return ListOwnedOutput{}, err
	}
	for _, v := range out.Volumes {
		if u := users[v]; len(u) > 0 {
			if out.VolumeUsers == nil {
				out.VolumeUsers = map[string][]string{}
			}
			out.VolumeUsers[v] = u
		}
	}
	return out, nil
}
