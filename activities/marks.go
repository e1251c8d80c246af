package activities

import (
	"encoding/xml"
	"fmt"
	"sync"

	"github.com/digitalocean/go-libvirt"
)

// readMark reads d's PremiScale mark alone (DomainGetMetadata: a few
// hundred bytes, where the domain's XML is kilobytes). ok is false when d
// has no mark, or one that names another domain; gone when d was undefined
// meanwhile.
func readMark(lv *libvirt.Libvirt, d libvirt.Domain) (o Owner, ok, gone bool, err error) {
	md, err := lv.DomainGetMetadata(d, int32(libvirt.DomainMetadataElement), libvirt.OptString{MetadataNamespace}, libvirt.DomainAffectCurrent)
	switch {
	case libvirt.IsNotFound(err):
		return Owner{}, false, true, nil
	case isLibvirtCode(err, libvirt.ErrNoDomainMetadata):
		return Owner{}, false, false, nil
	case err != nil:
		return Owner{}, false, false, fmt.Errorf("domain %s mark: %w", d.Name, err)
	}
	// libvirt returns the element without its namespace: read the
	// attributes whatever the element's name space.
	var m struct {
		Group        string `xml:"group,attr"`
		VM           string `xml:"vm,attr"`
		Volume       string `xml:"volume,attr"`
		Installation string `xml:"installation,attr"`
		Epoch        string `xml:"epoch,attr"`
	}
	if xml.Unmarshal([]byte(md), &m) != nil || m.Group == "" || m.VM != d.Name {
		return Owner{}, false, false, nil
	}
	return Owner{Group: m.Group, VM: m.VM, Volume: m.Volume, Installation: m.Installation, Epoch: m.Epoch}, true, false, nil
}

// markCache remembers the marks of each host's domains by UUID and name,
// so that a listing reads only the marks of domains it has not seen: a
// mark is written when PremiScale defines the domain and not changed
// after. Entries of domains no longer listed are dropped at each listing.
type markCache struct {
	mu    sync.Mutex
	hosts map[string]map[markKey]markEntry
}

type markKey struct {
	uuid libvirt.UUID
	name string
}

type markEntry struct {
	owner Owner
	ok    bool
}

// domainMark is one listed domain and its mark.
type domainMark struct {
	dom   libvirt.Domain
	owner Owner
	ok    bool
}

// list lists host's domains with their marks: cached ones as remembered,
// the others read (domains undefined meanwhile are left out).
func (c *markCache) list(lv *libvirt.Libvirt, host string) ([]domainMark, error) {
	doms, _, err := lv.ConnectListAllDomains(1, 0)
	if err != nil {
		return nil, fmt.Errorf("list domains on %s: %w", host, err)
	}
	c.mu.Lock()
	known := c.hosts[host]
	c.mu.Unlock()
	out := make([]domainMark, 0, len(doms))
	fresh := make(map[markKey]markEntry, len(doms))
	for _, d := range doms {
		k := markKey{d.UUID, d.Name}
		e, hit := known[k]
		if !hit {
			o, ok, gone, err := readMark(lv, d)
			if err != nil {
				return nil, err
			}
			if gone {
				continue
			}
			e = markEntry{owner: o, ok: ok}
		}
		fresh[k] = e
		out = append(out, domainMark{dom: d, owner: e.owner, ok: e.ok})
	}
	c.mu.Lock()
	if c.hosts == nil {
		c.hosts = map[string]map[markKey]markEntry{}
	}
	c.hosts[host] = fresh
	c.mu.Unlock()
	return out, nil
}
