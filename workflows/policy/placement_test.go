package policy

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

const gib = 1 << 30

// host is an empty reachable host with cpus CPUs and mem GiB of memory.
func host(name string, cpus int, mem uint64) HostCapacity {
	return HostCapacity{Name: name, Reachable: true, CPUs: cpus, MemoryBytes: mem * gib, PoolAvailableBytes: 100 * gib}
}

var small = VMShape{VCPUs: 1, MemoryBytes: 1 * gib, DiskBytes: 1 * gib}

func TestPlaceStrategies(t *testing.T) {
	busy := host("busy", 8, 16)
	busy.AllocatedVCPUs, busy.AllocatedMemoryBytes = 4, 8*gib
	idle := host("idle", 8, 16)
	big := host("big", 32, 64)
	tests := []struct {
		name     string
		strategy string
		hosts    []HostCapacity
		want     string
	}{
		{"spread: fewest group members", PlaceSpread, []HostCapacity{withMembers(idle, 2), withMembers(busy, 1)}, "busy"},
		{"spread: tie on members, most free memory", PlaceSpread, []HostCapacity{busy, idle}, "idle"},
		{"spread: full tie, first listed", PlaceSpread, []HostCapacity{idle, host("idle2", 8, 16)}, "idle"},
		{"vacancy: most room for the template", PlaceVacancy, []HostCapacity{idle, big, busy}, "big"},
		{"binpack: fullest host that fits", PlaceBinpack, []HostCapacity{idle, big, busy}, "busy"},
		{"unknown strategy falls back to spread", "", []HostCapacity{withMembers(idle, 1), busy}, "busy"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Place(PlaceInput{Strategy: tt.strategy, Hosts: tt.hosts, VM: small})
			if err != nil || got != tt.want {
				t.Errorf("Place = %q, %v; want %q", got, err, tt.want)
			}
		})
	}
}

func withMembers(h HostCapacity, n int) HostCapacity {
	h.GroupMembers = n
	return h
}

func TestPlaceNeverOvercommitsAndExplainsNoFit(t *testing.T) {
	tests := []struct {
		name    string
		h       HostCapacity
		vm      VMShape
		max     int
		fit     bool
		because string
	}{
		{"fits", host("h", 4, 8), small, 0, true, ""},
		{"unreachable", HostCapacity{Name: "h", CPUs: 4, MemoryBytes: 8 * gib}, small, 0, false, "unreachable"},
		{"memory taken by other domains", func() HostCapacity { h := host("h", 4, 8); h.AllocatedMemoryBytes = 7*gib + 1; return h }(), small, 0, false, "memory free"},
		{"memory reservation counts", func() HostCapacity { h := host("h", 4, 8); h.ReservedMemoryBytes = 7*gib + 1; return h }(), small, 0, false, "memory free"},
		{"cpu reservation counts", func() HostCapacity { h := host("h", 2, 8); h.ReservedCPUs = 2; return h }(), small, 0, false, "vCPUs free"},
		{"vcpus full without overcommit", func() HostCapacity { h := host("h", 4, 8); h.AllocatedVCPUs = 4; return h }(), small, 0, false, "vCPUs free"},
		{"overcommit makes room", func() HostCapacity { h := host("h", 4, 8); h.AllocatedVCPUs = 4; h.CPUOvercommit = 2; return h }(), small, 0, true, ""},
		{"memory overcommit makes room", func() HostCapacity {
			h := host("h", 4, 8)
			h.AllocatedMemoryBytes, h.MemoryOvercommit = 8*gib, 1.5
			return h
		}(), small, 0, true, ""},
		{"memory overcommit applies after the reservation", func() HostCapacity {
			h := host("h", 4, 8)
			h.ReservedMemoryBytes, h.AllocatedMemoryBytes, h.MemoryOvercommit = 4*gib, 8*gib, 2
			return h
		}(), small, 0, false, "memory free"},
		{"overcommit applies after the reservation", func() HostCapacity {
			h := host("h", 4, 8)
			h.ReservedCPUs, h.CPUOvercommit, h.AllocatedVCPUs = 2, 2, 4
			return h
		}(), small, 0, false, "vCPUs free"},
		{"in-flight VMs count", func() HostCapacity { h := host("h", 4, 8); h.InFlightMemoryBytes = 7*gib + 1; return h }(), small, 0, false, "memory free"},
		{"in-flight disks count", func() HostCapacity {
			h := host("h", 4, 8)
			h.PoolAvailableBytes, h.InFlightDiskBytes = 2*gib, gib+1
			return h
		}(), small, 0, false, "pool space"},
		{"maxPerHost", withMembers(host("h", 4, 8), 2), small, 2, false, "maxPerHost 2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Place(PlaceInput{Strategy: PlaceSpread, Hosts: []HostCapacity{tt.h}, VM: tt.vm, MaxPerHost: tt.max})
			if tt.fit {
				if err != nil || got != "h" {
					t.Errorf("Place = %q, %v; want h", got, err)
				}
				return
			}
			if !errors.Is(err, ErrNoCapacity) || !strings.Contains(err.Error(), tt.because) {
				t.Errorf("Place = %q, %v; want insufficient capacity because %q", got, err, tt.because)
			}
		})
	}
}

func TestPlaceManySpreadsTwoTwoTwoAndBinpackFillsOneHostFirst(t *testing.T) {
	hosts := []HostCapacity{host("a", 4, 8), host("b", 4, 8), host("c", 4, 8)}
	count := func(names []string) string {
		m := map[string]int{}
		for _, n := range names {
			m[n]++
		}
		return fmt.Sprintf("a=%d b=%d c=%d", m["a"], m["b"], m["c"])
	}
	got, err := PlaceMany(PlaceInput{Strategy: PlaceSpread, Hosts: hosts, VM: small}, 6, nil)
	if err != nil || count(got) != "a=2 b=2 c=2" {
		t.Errorf("spread 6 = %v (%s), %v; want 2/2/2", got, count(got), err)
	}
	got, err = PlaceMany(PlaceInput{Strategy: PlaceBinpack, Hosts: hosts, VM: small}, 6, nil)
	if err != nil || count(got) != "a=4 b=2 c=0" {
		t.Errorf("binpack 6 = %v (%s), %v; want a filled (4 vCPUs) first", got, count(got), err)
	}
	got, err = PlaceMany(PlaceInput{Strategy: PlaceSpread, Hosts: hosts, VM: small}, 13, nil)
	if !errors.Is(err, ErrNoCapacity) || len(got) != 12 {
		t.Errorf("13 on 12 slots: %d placed, %v; want 12 and insufficient capacity", len(got), err)
	}
}

func TestPlaceRandomIsDeterministicPerSeedAndOnlyPicksFits(t *testing.T) {
	full := host("full", 1, 8)
	full.AllocatedVCPUs = 1
	hosts := []HostCapacity{host("a", 4, 8), full, host("c", 4, 8)}
	seen := map[string]bool{}
	for i := range 50 {
		seed := fmt.Sprintf("vm-%d", i)
		first, err := Place(PlaceInput{Strategy: PlaceRandom, Hosts: hosts, VM: small, Seed: seed})
		again, _ := Place(PlaceInput{Strategy: PlaceRandom, Hosts: hosts, VM: small, Seed: seed})
		if err != nil || first != again {
			t.Fatalf("seed %s: %q then %q (%v); want the same host", seed, first, again, err)
		}
		seen[first] = true
	}
	if seen["full"] || !seen["a"] || !seen["c"] {
		t.Errorf("random picked %v; want a and c, never full", seen)
	}
}
