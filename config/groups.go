package config

import (
	"fmt"
	"time"
)

// Group is an autoscaling group: VMs from one template held between Min and Max.
type Group struct {
	Name  string   `koanf:"name" json:"name"`
	Hosts []string `koanf:"hosts" json:"hosts"`
	Min   int      `koanf:"min" json:"min"`
	Max   int      `koanf:"max" json:"max"`
	// Desired is the size when the group is first created, or when this value
	// changes in the file; nil means Min.
	Desired   *int      `koanf:"desired" json:"desired,omitempty"`
	Scaling   Scaling   `koanf:"scaling" json:"scaling"`
	Placement Placement `koanf:"placement" json:"placement"`
	// HostFailureGracePeriod is how long a host may stay unreachable before
	// its members are replaced on other hosts.
	HostFailureGracePeriod time.Duration `koanf:"hostFailureGracePeriod" json:"hostFailureGracePeriod"`
	// UnhealthyGracePeriod is how long a member's domain may stay defined
	// but not running (paused, shut off, crashed, suspended) while the
	// group tries to bring it back, before it is replaced.
	UnhealthyGracePeriod time.Duration `koanf:"unhealthyGracePeriod" json:"unhealthyGracePeriod"`
	// CleanupTimeout bounds the retries of each step that removes a VM
	// before its member is reported failed (and retried each evaluation).
	CleanupTimeout time.Duration `koanf:"cleanupTimeout" json:"cleanupTimeout"`
	Template       Template      `koanf:"template" json:"template"`
	// Kubernetes makes the group's VMs nodes of the controller's cluster.
	Kubernetes GroupKubernetes `koanf:"kubernetes" json:"kubernetes"`
	// Schedules change the group's min, max or desired for windows of
	// time, each one a Temporal Schedule (see Schedule).
	Schedules []Schedule `koanf:"schedules" json:"schedules,omitempty"`
	// WarmPool keeps VMs booted and parked beside the group (see WarmPool).
	WarmPool *WarmPool `koanf:"warmPool" json:"warmPool,omitempty"`
	// Refresh says how a rolling refresh replaces VMs made from an older
	// template revision, and whether a template change starts one.
	Refresh Refresh `koanf:"refresh" json:"refresh"`
}

// Autoscale lists the hypervisors and the groups of VMs kept on them.
type Autoscale struct {
	Hosts   []Host  `koanf:"hosts" json:"hosts"`
	Groups  []Group `koanf:"groups" json:"groups"`
	Orphans Orphans `koanf:"orphans" json:"orphans"`
}

// Group returns the group named name.
func (c *Config) Group(name string) (Group, bool) {
	for _, g := range c.Autoscale.Groups {
		if g.Name == name {
			return g, true
		}
	}
	return Group{}, false
}

// GroupNames lists the configured groups in file order.
func (c *Config) GroupNames() []string {
	names := make([]string, 0, len(c.Autoscale.Groups))
	for _, g := range c.Autoscale.Groups {
		names = append(names, g.Name)
	}
	return names
}

// group checks autoscale.groups[i] (at path p): seen holds the names of
// the groups before it, hosts the configured hosts' names.
func (v *validator) group(p string, g Group, seen, hosts map[string]bool, ctl Controller) {
	v.name(p+".name", g.Name)
	if seen[g.Name] {
		v.add(p+".name", "duplicate group name %q", g.Name)
	}
	seen[g.Name] = true
	if len(g.Hosts) == 0 {
		v.add(p+".hosts", "must name at least one host")
	}
	listed := map[string]bool{}
	for j, h := range g.Hosts {
		if !hosts[h] {
			v.add(fmt.Sprintf("%s.hosts[%d]", p, j), "unknown host %q", h)
		}
		if listed[h] {
			v.add(fmt.Sprintf("%s.hosts[%d]", p, j), "host %q listed twice", h)
		}
		listed[h] = true
	}
	if g.Min < 0 {
		v.add(p+".min", "must be >= 0, got %d", g.Min)
	}
	if g.Max < g.Min {
		v.add(p+".max", "must be >= min (%d), got %d", g.Min, g.Max)
	}
	if g.Max < 1 {
		v.add(p+".max", "must be >= 1, got %d", g.Max)
	}
	if g.Max > MaxGroupSize {
		v.add(p+".max", "must be <= %d (the largest group PremiScale runs), got %d", MaxGroupSize, g.Max)
	}
	if g.Desired != nil && (*g.Desired < g.Min || *g.Desired > g.Max) {
		v.add(p+".desired", "must be within [min, max] = [%d, %d], got %d", g.Min, g.Max, *g.Desired)
	}
	if g.Scaling.EvaluationInterval < MinEvaluationInterval {
		v.add(p+".scaling.evaluationInterval", "must be >= %s, got %s", MinEvaluationInterval, g.Scaling.EvaluationInterval)
	}
	v.scaling(p+".scaling", g.Scaling)
	v.oneOf(p+".placement.strategy", g.Placement.Strategy, []string{PlacementSpread, PlacementVacancy, PlacementBinpack, PlacementRandom})
	v.atLeast(p+".hostFailureGracePeriod", g.HostFailureGracePeriod, MinHostFailureGracePeriod)
	v.atLeast(p+".unhealthyGracePeriod", g.UnhealthyGracePeriod, MinUnhealthyGracePeriod)
	v.atLeast(p+".cleanupTimeout", g.CleanupTimeout, MinCleanupTimeout)
	if g.Placement.MaxPerHost < 0 {
		v.add(p+".placement.maxPerHost", "must be >= 0, got %d", g.Placement.MaxPerHost)
	}
	v.template(p+".template", g.Template)
	v.kubernetes(p+".kubernetes", g.Kubernetes, ctl.Kubernetes)
	v.schedules(p, g)
	v.warmPool(p+".warmPool", g)
	v.refresh(p+".refresh", g.Refresh)
	if g.Kubernetes.Join != JoinNone && g.Kubernetes.Join != "" && nameRE.MatchString(g.Name) {
		// The longest name the group's VMs can have.
		vm := fmt.Sprintf("%s-%d", g.Name, 10*MaxGroupSize*MaxGroupSize)
		if name, err := RenderNodeName(g.Kubernetes.NodeName, g.Name, vm); err != nil {
			v.add(p+".kubernetes.nodeName", "%v", err)
		} else if !dns1123RE.MatchString(name) || len(name) > 253 {
			v.add(p+".kubernetes.nodeName", "renders %q for VM %s, which is not a valid node name (DNS-1123: lower-case letters, digits, '-' and '.', at most 253)", name, vm)
		}
	}
	if g.Scaling.Mode == ModeClusterAutoscaler {
		if ca := ctl.ClusterAutoscaler; ca.Listen == "" {
			v.add(p+".scaling.mode", "clusterAutoscaler needs controller.clusterAutoscaler.listen")
		}
		if len(g.Scaling.Checks) > 0 {
			v.add(p+".scaling.checks", "must be empty in clusterAutoscaler mode: the cluster-autoscaler sizes the group")
		}
		if g.Kubernetes.Join == JoinNone {
			v.add(p+".kubernetes.join", "must not be none in clusterAutoscaler mode: the cluster-autoscaler needs the VMs as nodes")
		}
	}
	if g.Scaling.ScaleIn.Selection == SelectLeastPods && g.Kubernetes.Join == JoinNone {
		v.add(p+".scaling.scaleIn.selection", "leastPods needs the group's VMs to be nodes (kubernetes.join)")
	}
}
