package worker

import (
	"context"
	"fmt"
	"slices"
	"strconv"

	"go.temporal.io/sdk/temporal"

	"github.com/premiscale/premiscale/activities"
	"github.com/premiscale/premiscale/config"
	"github.com/premiscale/premiscale/workflows"
)

// Authority answers the workflows' questions about this worker's own
// configuration, so that what a workflow is handed (by the controller, or
// by whoever else reaches the frontend) is checked by the worker that acts
// on it. Its methods are local activities: no I/O, quick, safe to retry.
type Authority struct {
	Catalog *activities.Catalog
}

// CheckGroupSpec compares spec with what this worker's configuration makes
// of the group of that name (workflows.SpecFromConfig) and lists every
// field that differs; a group this worker does not configure is refused
// by name. Registered as workflows.CheckGroupSpecName.
func (a *Authority) CheckGroupSpec(_ context.Context, spec workflows.GroupSpec) (workflows.SpecCheck, error) {
	cfg := a.Catalog.Config()
	if cfg == nil {
		return workflows.SpecCheck{}, temporal.NewNonRetryableApplicationError("check group spec: this worker has no configuration", activities.ErrTypeUnknownGroup, nil)
	}
	g, ok := cfg.Group(spec.Name)
	if !ok {
		return workflows.SpecCheck{Refused: []string{fmt.Sprintf("name: group %q is not in this worker's configuration (autoscale.groups)", spec.Name)}}, nil
	}
	want := workflows.SpecFromConfig(cfg, g)
	// The history limit only decides when the group continues as new, not
	// what it may do to VMs; Validate bounds it, and tests lower it.
	want.HistoryLimit = spec.HistoryLimit
	return workflows.SpecCheck{Refused: workflows.DiffSpecs(spec, want)}, nil
}

// CheckRemove answers a group's remove signal from this worker's
// configuration: whether it still configures the group (then the group is
// not removed) and whether it deletes unconfigured groups' VMs. Registered
// as workflows.CheckRemoveName.
func (a *Authority) CheckRemove(_ context.Context, in workflows.RemoveCheckInput) (workflows.RemoveCheck, error) {
	cfg := a.Catalog.Config()
	if cfg == nil {
		return workflows.RemoveCheck{}, temporal.NewNonRetryableApplicationError("check remove: this worker has no configuration", activities.ErrTypeUnknownGroup, nil)
	}
	_, configured := cfg.Group(in.Group)
	return workflows.RemoveCheck{Configured: configured, DeleteVMs: cfg.Autoscale.Orphans.DeleteUnconfiguredGroups}, nil
}

// CheckWindow compares a schedule window a group is asked to open with the
// group's schedule of that name in this worker's configuration: its min,
// max and desired, its order, and its duration (Until - Start) must be the
// configured ones. When it starts is not checked: a window opened early is
// what triggering the Temporal Schedule by hand does. Registered as
// workflows.CheckWindowName.
func (a *Authority) CheckWindow(_ context.Context, in workflows.WindowCheckInput) (workflows.WindowCheck, error) {
	cfg := a.Catalog.Config()
	if cfg == nil {
		return workflows.WindowCheck{}, temporal.NewNonRetryableApplicationError("check window: this worker has no configuration", activities.ErrTypeUnknownGroup, nil)
	}
	w := in.Window
	g, ok := cfg.Group(in.Group)
	if !ok {
		return workflows.WindowCheck{Refused: []string{fmt.Sprintf("group %q is not in this worker's configuration", in.Group)}}, nil
	}
	order := slices.IndexFunc(g.Schedules, func(s config.Schedule) bool { return s.Name == w.Schedule })
	if order < 0 {
		return workflows.WindowCheck{Refused: []string{fmt.Sprintf("schedule %q is not among group %s's schedules", w.Schedule, in.Group)}}, nil
	}
	sc := g.Schedules[order]
	var refused []string
	for _, f := range []struct {
		name      string
		got, want *int
	}{{"min", w.Min, sc.Min}, {"max", w.Max, sc.Max}, {"desired", w.Desired, sc.Desired}} {
		if show(f.got) != show(f.want) {
			refused = append(refused, fmt.Sprintf("%s %s, configured %s", f.name, show(f.got), show(f.want)))
		}
	}
	if w.Order != order {
		refused = append(refused, fmt.Sprintf("order %d, configured %d", w.Order, order))
	}
	if d := w.Until.Sub(w.Start); d != sc.Duration {
		refused = append(refused, fmt.Sprintf("duration %s, configured %s", d, sc.Duration))
	}
	return workflows.WindowCheck{Refused: refused}, nil
}

// show prints an optional number ("unset" for none).
func show(v *int) string {
	if v == nil {
		return "unset"
	}
	return strconv.Itoa(*v)
}
