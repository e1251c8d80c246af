package config

import (
	"errors"
	"fmt"
	"maps"
	"math"
	"net/url"
	"slices"
	"strings"
)

// Host is one libvirt hypervisor.
type Host struct {
	Name string `koanf:"name" json:"name"`
	// URI is a libvirt connection URI, e.g. qemu+tcp://10.0.0.5/system.
	URI string `koanf:"uri" json:"uri"`
	// Pool is the libvirt storage pool that holds base and VM volumes.
	Pool string `koanf:"pool" json:"pool"`
	// Reserved is kept for the host itself and never given to VMs.
	Reserved Reserved `koanf:"reserved" json:"reserved"`
	// CPUOvercommit is how many vCPUs each schedulable CPU may carry; 1
	// (the default) means none.
	CPUOvercommit float64 `koanf:"cpuOvercommit" json:"cpuOvercommit"`
	// MemoryOvercommit is how much VM memory each byte of schedulable host
	// memory may carry; 1 (the default) means none.
	MemoryOvercommit float64 `koanf:"memoryOvercommit" json:"memoryOvercommit"`
	// MaxConcurrentCalls bounds the libvirt calls each worker makes to the
	// host at once (restores, boots, clones, listings); 0: the default, 8.
	MaxConcurrentCalls int `koanf:"maxConcurrentCalls" json:"maxConcurrentCalls,omitempty"`
}

// MaxConcurrentCalls bounds autoscale.hosts[].maxConcurrentCalls.
const MaxConcurrentCalls = 64

// Reserved is host capacity kept out of placement.
type Reserved struct {
	Memory string `koanf:"memory" json:"memory,omitempty"`
	CPUs   int    `koanf:"cpus" json:"cpus,omitempty"`
}

// Host returns the host named name.
func (c *Config) Host(name string) (Host, bool) {
	for _, h := range c.Autoscale.Hosts {
		if h.Name == name {
			return h, true
		}
	}
	return Host{}, false
}

// hosts checks autoscale.hosts and returns their names; some must be
// listed when groups are.
func (v *validator) hosts(hs []Host, groups bool) map[string]bool {
	hosts := map[string]bool{}
	if len(hs) == 0 && groups {
		v.add("autoscale.hosts", "must list at least one host")
	}
	for i, h := range hs {
		p := fmt.Sprintf("autoscale.hosts[%d]", i)
		v.name(p+".name", h.Name)
		if hosts[h.Name] {
			v.add(p+".name", "duplicate host name %q", h.Name)
		}
		hosts[h.Name] = true
		v.uri(p+".uri", h.URI)
		if h.Pool == "" {
			v.add(p+".pool", "must not be empty")
		}
		if h.Reserved.Memory != "" {
			if _, err := ParseSize(h.Reserved.Memory); err != nil {
				v.add(p+".reserved.memory", "%v", err)
			}
		}
		if h.Reserved.CPUs < 0 {
			v.add(p+".reserved.cpus", "must be >= 0, got %d", h.Reserved.CPUs)
		}
		if h.CPUOvercommit < 1 || math.IsInf(h.CPUOvercommit, 0) || math.IsNaN(h.CPUOvercommit) {
			v.add(p+".cpuOvercommit", "must be >= 1, got %v", h.CPUOvercommit)
		}
		if h.MemoryOvercommit < 1 || math.IsInf(h.MemoryOvercommit, 0) || math.IsNaN(h.MemoryOvercommit) {
			v.add(p+".memoryOvercommit", "must be >= 1, got %v", h.MemoryOvercommit)
		}
		if h.MaxConcurrentCalls < 0 || h.MaxConcurrentCalls > MaxConcurrentCalls {
			v.add(p+".maxConcurrentCalls", "must be from 1 to %d (0: the default, 8), got %d", MaxConcurrentCalls, h.MaxConcurrentCalls)
		}
	}

	return hosts
}

func (v *validator) uri(path, got string) {
	if got == "" {
		v.add(path, "must not be empty")
		return
	}
	u, err := url.Parse(got)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // without the URI, which may hold credentials
		}
		v.add(path, "not a libvirt URI: %v", err)
		return
	}
	if _, ok := u.User.Password(); ok {
		v.add(path, "must not hold a password (it would be kept in plain text in the configuration and shown wherever the URI is): use SSH keys (qemu+libssh://…?keyfile=…&known_hosts=…) or TLS client certificates (qemu+tls://…?pkipath=…)")
		return
	}
	driver, transport, _ := strings.Cut(u.Scheme, "+")
	if driver == "" {
		v.add(path, "not a libvirt URI (want e.g. qemu:///system or qemu+tcp://host/system)")
		return
	}
	read, ok := uriOptions[transport]
	if !ok {
		v.add(path, "unsupported transport %q (want one of unix, tcp, tls, ssh, libssh)", transport)
		return
	}
	// go-libvirt, PremiScale's libvirt client, reads fewer options than
	// libvirt's C client, and refuses or ignores the others: say so here,
	// not at the first dial. Values are never repeated (they may be paths
	// an operator does not want in logs, never secrets, but the rule holds).
	for _, opt := range slices.Sorted(maps.Keys(u.Query())) {
		if opt == "name" || slices.Contains(read, opt) {
			continue
		}
		switch {
		case transport == "ssh" && slices.Contains(uriOptions["libssh"], opt):
			v.add(path, "?%s is not read by the ssh transport (it uses ~/.ssh of the user PremiScale runs as): use %s+libssh://… for known_hosts, known_hosts_verify and sshauth", opt, driver)
		case transport == "libssh" && opt == "no_verify":
			v.add(path, "?no_verify is refused by the libssh transport: pin the host's keys with known_hosts (ssh-keyscan HOST)")
		default:
			v.add(path, "?%s is not an option the %s transport reads (it reads %s)", opt, orUnix(transport), strings.Join(read, ", "))
		}
	}
	if m := u.Query().Get("known_hosts_verify"); m != "" && !slices.Contains([]string{"normal", "auto", "ignore"}, m) {
		v.add(path, "?known_hosts_verify must be normal, auto or ignore, got %q", m)
	}
	if m := strings.ToLower(u.Query().Get("mode")); m != "" && m != "legacy" && m != "auto" {
		v.add(path, "?mode must be legacy or auto (direct is not supported), got %q", m)
	}
}

func orUnix(transport string) string {
	if transport == "" {
		return "unix"
	}
	return transport
}

// uriOptions is, per transport, the query options go-libvirt reads
// (socket/dialers and connect_uri.go; ?name= is read by every transport).
var uriOptions = map[string][]string{
	"":        {"socket", "mode"},
	"unix":    {"socket", "mode"},
	"tcp":     {},
	"tls":     {"pkipath", "no_verify"},
	"ssh":     {"keyfile", "socket", "mode", "no_verify"},
	"libssh":  {"keyfile", "socket", "mode", "known_hosts", "known_hosts_verify", "sshauth"},
	"libssh2": {"keyfile", "socket", "mode", "known_hosts", "known_hosts_verify", "sshauth"},
}
