// Orphans: the one-off scan behind status --orphans, and the collector
// workflow's start and status.

package starter

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"

	"github.com/premiscale/premiscale/activities"
	"github.com/premiscale/premiscale/config"
	"github.com/premiscale/premiscale/workflows"
)

// Orphan is a resource that carries PremiScale's mark but that no
// configured group counts among its members.
type Orphan = workflows.Orphan

// OrphanReport is what Orphans found.
type OrphanReport struct {
	Orphans []Orphan `json:"orphans"`
	// Unscanned lists hosts that could not be scanned, with the reason.
	Unscanned []string `json:"unscanned"`
}

// Orphans scans every configured host (through the ScanOwned workflow, so
// the workers' libvirt connections do the reading) and reports PremiScale's
// domains and volumes that belong to no member of any configured group. It
// only reports. Members are read before and after the scan, so a VM created
// or removed meanwhile is not reported.
func (s *Starter) Orphans(ctx context.Context) (OrphanReport, error) {
	members := workflows.NewMemberSet(s.Config.GroupNames())
	removed, err := s.RemovedGroups(ctx)
	if err != nil {
		return OrphanReport{}, err
	}
	collect := func() error {
		// A removed group's members (its VMs kept) are not orphans either.
		for _, name := range append(s.Config.GroupNames(), removed...) {
			st, err := s.Status(ctx, name)
			if err != nil {
				return err
			}
			for _, m := range st.Members {
				members.Add(name, activities.MemberRef{Name: m.Name, Volume: m.Volume})
			}
			members.Epochs[name] = st.Epoch
		}
		return nil
	}
	if err := collect(); err != nil {
		return OrphanReport{}, err
	}
	run, err := s.Client.ExecuteWorkflow(ctx, client.StartWorkflowOptions{
		ID:        "premiscale/scan/" + time.Now().UTC().Format("20060102T150405.000000000"),
		TaskQueue: s.Config.Controller.Temporal.TaskQueue,
	}, workflows.ScanWorkflowName, workflows.ScanInput{Hosts: s.hostRefs()})
	if err != nil {
		return OrphanReport{}, fmt.Errorf("start scan: %w", err)
	}
	var out workflows.ScanOutput
	if err := run.Get(ctx, &out); err != nil {
		return OrphanReport{}, fmt.Errorf("scan: %w", err)
	}
	if err := collect(); err != nil {
		return OrphanReport{}, err
	}
	var rep OrphanReport
	rep.Orphans, rep.Unscanned = workflows.FindOrphans(out, members)
	return rep, nil
}

func (s *Starter) hostRefs() []activities.HostRef {
	refs := make([]activities.HostRef, 0, len(s.Config.Autoscale.Hosts))
	for _, h := range s.Config.Autoscale.Hosts {
		refs = append(refs, activities.HostRef{Name: h.Name})
	}
	return refs
}

// EnsureOrphanCollector starts the orphan collector, or hands it the
// current configuration, when orphans are to be deleted; otherwise it tells
// a running collector to end. Call it after EnsureGroups.
func (s *Starter) EnsureOrphanCollector(ctx context.Context) error {
	o := s.Config.Autoscale.Orphans
	removed, err := s.RemovedGroups(ctx)
	if err != nil {
		return err
	}
	spec := workflows.OrphanSpec{
		Removed:            removed,
		Hosts:              s.hostRefs(),
		Groups:             s.Config.GroupNames(),
		Delete:             o.Action == config.OrphansDelete,
		DeleteUnconfigured: o.DeleteUnconfiguredGroups,
		GracePeriod:        o.GracePeriod,
		ScanInterval:       o.ScanInterval,
	}
	if !spec.Delete {
		err := s.Client.SignalWorkflow(ctx, workflows.OrphanWorkflowID, "", workflows.SignalOrphanSpec, spec)
		var notFound *serviceerror.NotFound
		if err != nil && !errors.As(err, &notFound) {
			return fmt.Errorf("stop orphan collector: %w", err)
		}
		return nil
	}
	_, err = s.Client.SignalWithStartWorkflow(ctx, workflows.OrphanWorkflowID, workflows.SignalOrphanSpec, spec,
		client.StartWorkflowOptions{ID: workflows.OrphanWorkflowID, TaskQueue: s.Config.Controller.Temporal.TaskQueue},
		workflows.OrphanWorkflowName, workflows.OrphanInput{Spec: spec})
	if err != nil {
		return fmt.Errorf("ensure orphan collector: %w", err)
	}
	return nil
}

// OrphanCollectorStatus reads the running collector's state.
func (s *Starter) OrphanCollectorStatus(ctx context.Context) (workflows.OrphanStatus, error) {
	var st workflows.OrphanStatus
	v, err := s.Client.QueryWorkflow(ctx, workflows.OrphanWorkflowID, "", workflows.QueryOrphans)
	if err != nil {
		return st, fmt.Errorf("query orphan collector: %w", err)
	}
	return st, v.Get(&st)
}
