package activities

import (
	"github.com/digitalocean/go-libvirt"
	"slices"
	"strconv"
	"strings"

	"github.com/premiscale/premiscale/config"
)

// Error types of activity refusals by the worker's catalog.
const (
	// ErrTypeUnknownHost: the workflow named a host this worker's
	// configuration does not have.
	ErrTypeUnknownHost = "UnknownHost"
	// ErrTypeUnknownGroup: the workflow named a group this worker's
	// configuration does not have, or a VM name that is not the group's.
	ErrTypeUnknownGroup = "UnknownGroup"
	// ErrTypeConfigMismatch: the workflow's revision of the group's
	// configuration is not this worker's (see config.Group.Revision).
	ErrTypeConfigMismatch = "ConfigMismatch"
)

// Catalog is the worker's own configuration as activities resolve it: the
// hosts (with their URIs and pools) and the groups (with their templates and
// join settings). Workflows hand activities names only, and anyone who can
// reach the Temporal frontend can start a workflow, so an activity never
// dials a URI, defines a template or writes user-data that came from its
// input: it looks the name up here, and refuses, without retry, a name the
// worker does not know.
type Catalog struct {
	// Installation is this installation's identity, written into every
	// domain's mark (controller.installation, resolved at start).
	Installation string
	hosts        map[string]config.Host
	groups       map[string]config.Group
	kube         config.Kubernetes
	// kept holds earlier revisions of groups (KeepRevisions), by group
	// and revision.
	kept map[string]map[string]config.Group
	// hostOrder and groupOrder are the configured names, in config order.
	hostOrder, groupOrder []string
	orphans               config.Orphans
	cfg                   *config.Config
}

// NewCatalog indexes a loaded (defaulted and validated) configuration.
func NewCatalog(cfg *config.Config) *Catalog {
	c := &Catalog{Installation: cfg.Controller.Installation, hosts: map[string]config.Host{}, groups: map[string]config.Group{},
		kube: cfg.Controller.Kubernetes, orphans: cfg.Autoscale.Orphans, cfg: cfg}
	for _, h := range cfg.Autoscale.Hosts {
		c.hosts[h.Name] = h
		c.hostOrder = append(c.hostOrder, h.Name)
	}
	for _, g := range cfg.Autoscale.Groups {
		c.groups[g.Name] = g
		c.groupOrder = append(c.groupOrder, g.Name)
	}
	return c
}

// Host resolves h by name: the returned reference carries the configured
// URI and pool, whatever h held.
func (c *Catalog) Host(h HostRef) (HostRef, error) {
	if c == nil {
		return HostRef{}, nonRetryable(ErrTypeUnknownHost, "host %s: this worker has no configuration", h.Name)
	}
	hc, ok := c.hosts[h.Name]
	if !ok {
		return HostRef{}, nonRetryable(ErrTypeUnknownHost, "host %q is not in this worker's configuration (autoscale.hosts); refusing", h.Name)
	}
	h.URI, h.Pool = hc.URI, hc.Pool
	return h, nil
}

// Group resolves the group a new VM is created for: Member, and host must
// be one of the group's hosts.
func (c *Catalog) Group(group, revision, vm, host string) (config.Group, error) {
	g, err := c.Member(group, revision, vm)
	if err != nil {
		return config.Group{}, err
	}
	if !slices.Contains(g.Hosts, host) {
		return config.Group{}, nonRetryable(ErrTypeUnknownHost, "host %q is not one of group %s's hosts in this worker's configuration; refusing", host, group)
	}
	return g, nil
}

// Member resolves the group of a VM about to be created: the group must be
// configured, vm must be one of its names (<group>-<n>), and revision the
// group's revision in this worker.
func (c *Catalog) Member(group, revision, vm string) (config.Group, error) {
	if c == nil {
		return config.Group{}, nonRetryable(ErrTypeUnknownGroup, "group %s: this worker has no configuration", group)
	}
	g, ok := c.groups[group]
	if !ok {
		return config.Group{}, nonRetryable(ErrTypeUnknownGroup, "group %q is not in this worker's configuration (autoscale.groups); refusing", group)
	}
	if !IsMemberName(group, vm) {
		return config.Group{}, nonRetryable(ErrTypeUnknownGroup, "%q is not a VM name of group %s (%s-<number>); refusing", vm, group, group)
	}
	if rev := g.Revision(); revision != rev {
		if old, ok := c.kept[group][revision]; ok {
			return old, nil // an earlier revision, for a rollback
		}
		return config.Group{}, nonRetryable(ErrTypeConfigMismatch,
			"group %s: the workflow carries configuration revision %q and this worker has %q (nor did it run with it before); run every worker with the same configuration file (the controller hands the group its new revision when it restarts)", group, revision, rev)
	}
	return g, nil
}

// Config is the configuration the catalog was made from (nil for a nil
// catalog), for checks that need a whole group as the starter sees it.
func (c *Catalog) Config() *config.Config {
	if c == nil {
		return nil
	}
	return c.cfg
}

// Kubernetes is the worker's cluster settings (API server endpoint, CA
// hashes, token TTL).
func (c *Catalog) Kubernetes() config.Kubernetes {
	if c == nil {
		return config.Kubernetes{}
	}
	return c.kube
}

// IsMemberName reports whether vm is a name the group workflow gives its
// VMs: the group's name, a dash and a positive number.
func IsMemberName(group, vm string) bool {
	rest, ok := strings.CutPrefix(vm, group+"-")
	if !ok || rest == "" || rest[0] == '0' {
		return false
	}
	n, err := strconv.Atoi(rest)
	return err == nil && n > 0 && strconv.Itoa(n) == rest
}

// Revision is the configured group's revision ("" for a group the catalog
// does not have).
func (c *Catalog) Revision(group string) string {
	if g, ok := c.groups[group]; ok {
		return g.Revision()
	}
	return ""
}

// groupHosts resolves a configured group's hosts (none for a group the
// catalog does not have, such as one removed from the configuration).
func (c *Catalog) groupHosts(group string) []HostRef {
	if c == nil {
		return nil
	}
	var out []HostRef
	for _, name := range c.groups[group].Hosts {
		if h, err := c.Host(HostRef{Name: name}); err == nil {
			out = append(out, h)
		}
	}
	return out
}

// hostGroups lists the configured groups that use the host, by name.
func (c *Catalog) hostGroups(host string) []config.Group {
	if c == nil {
		return nil
	}
	var out []config.Group
	for _, g := range c.groups {
		if slices.Contains(g.Hosts, host) {
			out = append(out, g)
		}
	}
	slices.SortFunc(out, func(a, b config.Group) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// hostConfig is the configured host of that name.
func (c *Catalog) hostConfig(name string) (config.Host, bool) {
	if c == nil {
		return config.Host{}, false
	}
	h, ok := c.hosts[name]
	return h, ok
}

// ours reports whether a mark is this installation's: its installation is
// ours, or empty (a domain marked before marks named installations).
func (c *Catalog) ours(o Owner) bool {
	return o.Installation == "" || (c != nil && o.Installation == c.Installation)
}

// DomainGroup names the configured group of this installation that owns d
// on host, by d's mark, or "": no mark, another installation's, a group
// the configuration does not have or does not put on host, or d gone.
func (c *Catalog) DomainGroup(lv *libvirt.Libvirt, host string, d libvirt.Domain) string {
	o, ok, _, err := readMark(lv, d)
	if err != nil || !ok || !c.ours(o) {
		return ""
	}
	g, ok := c.groups[o.Group]
	if !ok || (len(g.Hosts) > 0 && !slices.Contains(g.Hosts, host)) {
		return ""
	}
	return o.Group
}

// HostGroups names the configured groups that use host (a group with no
// hosts uses every one), sorted.
func (c *Catalog) HostGroups(host string) []string {
	var out []string
	for name, g := range c.groups {
		if len(g.Hosts) == 0 || slices.Contains(g.Hosts, host) {
			out = append(out, name)
		}
	}
	slices.Sort(out)
	return out
}
