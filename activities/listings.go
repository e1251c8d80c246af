// Listings: the domains of a host that belong to a group or to this
// installation, as observations and the orphan scan read them.

package activities

import (
	"context"
	"fmt"

	"github.com/digitalocean/go-libvirt"
)

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
