package workflows

import (
	"go.temporal.io/sdk/workflow"

	"github.com/premiscale/premiscale/activities"
)

// ScanWorkflowName is the registered name of ScanOwned.
const ScanWorkflowName = "ScanOwned"

// ScanInput lists the hosts to scan.
type ScanInput struct {
	Hosts []activities.HostRef `json:"hosts"`
}

// HostScan is one host's PremiScale resources, or why they are unknown.
type HostScan struct {
	Host    string                  `json:"host"`
	Domains []activities.DomainInfo `json:"domains"`
	Volumes []string                `json:"volumes"`
	// VolumeUsers maps volumes to the domains that have them as a disk.
	VolumeUsers map[string][]string `json:"volumeUsers,omitempty"`
	Error       string              `json:"error,omitempty"`
}

// ScanOutput holds one HostScan per host, in order.
type ScanOutput struct {
	Hosts []HostScan `json:"hosts"`
}

// ScanOwned lists, on every host at once, the domains that carry
// PremiScale's mark and the volumes named as PremiScale's. It only reads;
// `premiscale status --orphans` compares the result with the groups'
// members.
func ScanOwned(ctx workflow.Context, in ScanInput) (ScanOutput, error) {
	return scanHosts(ctx, in.Hosts), nil
}

// scanHosts lists PremiScale's resources on every host at once; a host that
// cannot be read carries the reason in its Error.
func scanHosts(ctx workflow.Context, hosts []activities.HostRef) ScanOutput {
	var a *activities.Libvirt
	actx := workflow.WithActivityOptions(ctx, quickTwiceOptions)
	futures := make([]workflow.Future, len(hosts))
	for i, h := range hosts {
		futures[i] = workflow.ExecuteActivity(actx, a.ListOwned, activities.ListOwnedInput{Host: h})
	}
	out := ScanOutput{Hosts: make([]HostScan, len(hosts))}
	for i, f := range futures {
		var res activities.ListOwnedOutput
		out.Hosts[i] = HostScan{Host: hosts[i].Name}
		if err := f.Get(ctx, &res); err != nil {
			out.Hosts[i].Error = rootCause(err)
			continue
		}
		out.Hosts[i].Domains, out.Hosts[i].Volumes, out.Hosts[i].VolumeUsers = res.Domains, res.Volumes, res.VolumeUsers
	}
	return out
}
