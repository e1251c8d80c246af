package policy

import (
	"errors"
	"fmt"
	"hash/fnv"
	"sort"
	"strings"
)

// Placement strategies.
const (
	// PlaceSpread: fewest members of this group, then most free memory.
	PlaceSpread = "spread"
	// PlaceVacancy: the host with room for the most VMs of this shape.
	PlaceVacancy = "vacancy"
	// PlaceBinpack: the fullest host that still fits.
	PlaceBinpack = "binpack"
	// PlaceRandom: any host that fits, chosen by a seed.
	PlaceRandom = "random"
)

// ErrNoCapacity is returned when no host can take the VM; the error's text
// says why for each host.
var ErrNoCapacity = errors.New("insufficient capacity")

// HostCapacity is what placement knows about one host: its size, what its
// defined domains already claim, and what PremiScale is still creating on it.
type HostCapacity struct {
	Name      string
	Reachable bool
	// CPUs and MemoryBytes are the host's physical size.
	CPUs        int
	MemoryBytes uint64
	// ReservedCPUs and ReservedMemoryBytes are kept for the host itself.
	ReservedCPUs        int
	ReservedMemoryBytes uint64
	// CPUOvercommit multiplies the schedulable CPUs into vCPUs, and
	// MemoryOvercommit the schedulable memory; below 1 (including unset)
	// means 1.
	CPUOvercommit    float64
	MemoryOvercommit float64
	// AllocatedVCPUs and AllocatedMemoryBytes sum the domains defined on
	// the host, PremiScale's or not.
	AllocatedVCPUs       int
	AllocatedMemoryBytes uint64
	// PoolAvailableBytes is free space in the host's storage pool.
	PoolAvailableBytes uint64
	// InFlight* are VMs being provisioned here that the inventory may not
	// show yet.
	InFlightVCPUs       int
	InFlightMemoryBytes uint64
	InFlightDiskBytes   uint64
	// GroupMembers counts this group's VMs here, running or provisioning.
	GroupMembers int
}

// VMShape is what one VM of the template needs.
type VMShape struct {
	VCPUs       int
	MemoryBytes uint64
	// DiskBytes is the pool space to set aside for the VM's disk.
	DiskBytes uint64
}

// PlaceInput is everything Place needs.
type PlaceInput struct {
	Strategy string
	Hosts    []HostCapacity
	VM       VMShape
	// MaxPerHost caps the group's VMs on one host; zero means no cap.
	MaxPerHost int
	// Seed drives PlaceRandom; the same seed gives the same host.
	Seed string
}

func (h HostCapacity) vcpuRoom() int {
	over := h.CPUOvercommit
	if over < 1 {
		over = 1
	}
	return int(float64(h.CPUs-h.ReservedCPUs)*over) - h.AllocatedVCPUs - h.InFlightVCPUs
}

func (h HostCapacity) memoryRoom() int64 {
	over := h.MemoryOvercommit
	if over < 1 {
		over = 1
	}
	schedulable := int64(float64(int64(h.MemoryBytes)-int64(h.ReservedMemoryBytes)) * over)
	return schedulable - int64(h.AllocatedMemoryBytes) - int64(h.InFlightMemoryBytes)
}

func (h HostCapacity) diskRoom() int64 {
	return int64(h.PoolAvailableBytes) - int64(h.InFlightDiskBytes)
}

// fits explains why vm does not fit on h, or returns "".
func fits(h HostCapacity, vm VMShape, maxPerHost int) string {
	switch {
	case !h.Reachable:
		return "unreachable"
	case maxPerHost > 0 && h.GroupMembers >= maxPerHost:
		return fmt.Sprintf("already holds %d of the group (maxPerHost %d)", h.GroupMembers, maxPerHost)
	case h.vcpuRoom() < vm.VCPUs:
		return fmt.Sprintf("%d vCPUs free, need %d", max(h.vcpuRoom(), 0), vm.VCPUs)
	case h.memoryRoom() < int64(vm.MemoryBytes):
		return fmt.Sprintf("%d MiB memory free, need %d MiB", max(h.memoryRoom(), 0)>>20, vm.MemoryBytes>>20)
	case h.diskRoom() < int64(vm.DiskBytes):
		return fmt.Sprintf("%d MiB pool space free, need %d MiB", max(h.diskRoom(), 0)>>20, vm.DiskBytes>>20)
	}
	return ""
}

// Slots is how many more VMs of this shape fit on h (after reservations,
// overcommit, what its domains claim and what is in flight); it may be
// negative on an overfull host.
func Slots(h HostCapacity, vm VMShape) int64 {
	n := int64(h.vcpuRoom() / max(vm.VCPUs, 1))
	if vm.MemoryBytes > 0 {
		n = min(n, h.memoryRoom()/int64(vm.MemoryBytes))
	}
	if vm.DiskBytes > 0 {
		n = min(n, h.diskRoom()/int64(vm.DiskBytes))
	}
	return n
}

// Place picks the host for one VM by the strategy among the hosts where it
// fits: memory and vCPUs (after reservations and overcommit) and pool
// space, counting VMs still in flight, and maxPerHost. Ties go to the host
// listed first. With no fit it returns ErrNoCapacity with each host's reason.
func Place(in PlaceInput) (string, error) {
	var cands []int
	var why []string
	for i, h := range in.Hosts {
		if r := fits(h, in.VM, in.MaxPerHost); r != "" {
			why = append(why, h.Name+": "+r)
			continue
		}
		cands = append(cands, i)
	}
	if len(cands) == 0 {
		if len(why) == 0 {
			why = append(why, "no hosts")
		}
		return "", fmt.Errorf("%w: %s", ErrNoCapacity, strings.Join(why, "; "))
	}
	hs := in.Hosts
	var less func(a, b int) bool
	switch in.Strategy {
	case PlaceVacancy:
		less = func(a, b int) bool { return Slots(hs[a], in.VM) > Slots(hs[b], in.VM) }
	case PlaceBinpack:
		less = func(a, b int) bool { return Slots(hs[a], in.VM) < Slots(hs[b], in.VM) }
	case PlaceRandom:
		f := fnv.New64a()
		_, _ = f.Write([]byte(in.Seed))
		return hs[cands[f.Sum64()%uint64(len(cands))]].Name, nil
	default: // PlaceSpread
		less = func(a, b int) bool {
			if hs[a].GroupMembers != hs[b].GroupMembers {
				return hs[a].GroupMembers < hs[b].GroupMembers
			}
			return hs[a].memoryRoom() > hs[b].memoryRoom()
		}
	}
	sort.SliceStable(cands, func(i, j int) bool { return less(cands[i], cands[j]) })
	return hs[cands[0]].Name, nil
}

// PlaceMany places n VMs one after another, each seeing the ones before it
// as in flight. It stops at the first that does not fit, returning the hosts
// chosen so far and ErrNoCapacity.
func PlaceMany(in PlaceInput, n int, seeds []string) ([]string, error) {
	hosts := append([]HostCapacity(nil), in.Hosts...)
	out := make([]string, 0, n)
	for i := range n {
		step := in
		step.Hosts = hosts
		if i < len(seeds) {
			step.Seed = seeds[i]
		}
		name, err := Place(step)
		if err != nil {
			return out, err
		}
		for j := range hosts {
			if hosts[j].Name == name {
				hosts[j].InFlightVCPUs += in.VM.VCPUs
				hosts[j].InFlightMemoryBytes += in.VM.MemoryBytes
				hosts[j].InFlightDiskBytes += in.VM.DiskBytes
				hosts[j].GroupMembers++
			}
		}
		out = append(out, name)
	}
	return out, nil
}
