package workflows

import (
	"time"

	"go.temporal.io/sdk/temporal"
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
	Error   string                  `json:"error,omitempty"`
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
	var a *activities.Libvirt
	actx := workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: quickActivityTimeout,
		RetryPolicy:         &temporal.RetryPolicy{InitialInterval: time.Second, MaximumAttempts: 2},
	})
	futures := make([]workflow.Future, len(in.Hosts))
	for i, h := range in.Hosts {
		futures[i] = workflow.ExecuteActivity(actx, a.ListOwned, activities.ListOwnedInput{Host: h})
	}
	out := ScanOutput{Hosts: make([]HostScan, len(in.Hosts))}
	for i, f := range futures {
		var res activities.ListOwnedOutput
		out.Hosts[i] = HostScan{Host: in.Hosts[i].Name}
		if err := f.Get(ctx, &res); err != nil {
			out.Hosts[i].Error = rootCause(err)
			continue
		}
		out.Hosts[i].Domains, out.Hosts[i].Volumes = res.Domains, res.Volumes
	}
	return out, nil
}
