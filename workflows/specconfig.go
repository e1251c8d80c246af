package workflows

import (
	"hash/fnv"
	"slices"

	"github.com/premiscale/premiscale/activities"
	"github.com/premiscale/premiscale/config"
)

// HistoryLimit is a group's history length for continue-as-new: spread
// over [3000, 4000) by a hash of its name, so that groups started together
// (and ticking alike) do not all continue as new in the same minute. Below
// 4096, where the server starts suggesting continue-as-new, so the spread
// holds.
func HistoryLimit(group string) int {
	h := fnv.New32a()
	h.Write([]byte(group))
	return 3000 + int(h.Sum32()%1000)
}

// SpecFromConfig turns a configured group into the workflow's GroupSpec:
// what the starter hands a group, and what a worker checks every spec it
// is handed against (CheckGroupSpecName). Pure.
func SpecFromConfig(cfg *config.Config, g config.Group) GroupSpec {
	spec := GroupSpec{
		Name:                   g.Name,
		Revision:               g.Revision(),
		Min:                    g.Min,
		Max:                    g.Max,
		Desired:                g.Min,
		Template:               templateFrom(g.Template),
		EvaluationInterval:     g.Scaling.EvaluationInterval,
		Scaling:                scalingFrom(g.Scaling),
		Placement:              Placement(g.Placement),
		HostFailureGracePeriod: g.HostFailureGracePeriod,
		UnhealthyGracePeriod:   g.UnhealthyGracePeriod,
		CleanupTimeout:         g.CleanupTimeout,
		HistoryLimit:           HistoryLimit(g.Name),
	}
	if cfg.Controller.HostWatch.On() {
		spec.ResyncInterval = cfg.Controller.HostWatch.ResyncInterval
	}
	for _, sc := range g.Schedules {
		spec.Schedules = append(spec.Schedules, sc.Name)
	}
	spec.WarmPool = warmPoolFrom(g.WarmPool)
	if r := g.Refresh; (r.Mode != "" && r.Mode != config.RefreshManual) || r.MinHealthy != "" || r.Batch != 0 ||
		len(r.Checkpoints) > 0 || r.CheckpointDelay != nil {
		rs := RefreshSettings(r)
		spec.Refresh = &rs // only when set: the spec of a group without stays as it was
	}
	if g.Desired != nil {
		spec.Desired = *g.Desired
	}
	if k := g.Kubernetes; k.Join != config.JoinNone && k.Join != "" {
		kc := cfg.Controller.Kubernetes
		spec.Kubernetes = &KubernetesSpec{
			Join: k.Join, NodeName: k.NodeName, Labels: k.Labels, Taints: taintsFrom(k.Taints),
			ReadyTimeout: k.ReadyTimeout, Drain: Drain(k.Drain),
			APIServerEndpoint: kc.APIServerEndpoint, CACertHashes: kc.CACertHashes, TokenTTL: kc.TokenTTL,
		}
	}
	for _, name := range g.Hosts {
		if h, ok := cfg.Host(name); ok {
			reserved, _ := config.ParseSize(h.Reserved.Memory) // validated; empty is 0
			spec.Hosts = append(spec.Hosts, activities.HostRef{
				Name:                h.Name,
				ReservedMemoryBytes: reserved, ReservedCPUs: h.Reserved.CPUs,
				CPUOvercommit: h.CPUOvercommit, MemoryOvercommit: h.MemoryOvercommit,
			})
		}
	}
	for _, h := range cfg.Autoscale.Hosts {
		if !slices.Contains(g.Hosts, h.Name) {
			spec.RetiredHosts = append(spec.RetiredHosts, activities.HostRef{Name: h.Name})
		}
	}
	return spec
}
