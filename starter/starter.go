// Package starter is PremiScale's client side: it connects to Temporal,
// ensures one workflow per configured group, and scales, pauses, resumes and
// queries groups on behalf of the CLI.
package starter

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strings"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"
	sdklog "go.temporal.io/sdk/log"
	"go.temporal.io/sdk/temporal"
	"golang.org/x/sync/errgroup"

	"github.com/premiscale/premiscale/activities"
	"github.com/premiscale/premiscale/config"
	"github.com/premiscale/premiscale/workflows"
)

// ErrUnknownGroup is returned for a group name the configuration lacks.
var ErrUnknownGroup = errors.New("unknown group")

// ErrOutOfRange is returned for a desired size outside [min, max].
var ErrOutOfRange = errors.New("desired size out of range")

// ErrUnreachable is returned when no Temporal frontend answers.
var ErrUnreachable = errors.New("no PremiScale controller reachable")

// DialTimeout bounds the first connection to Temporal.
const DialTimeout = 5 * time.Second

// Dial connects to the Temporal service the configuration names (the
// embedded server's address when none is set).
func Dial(ctx context.Context, cfg *config.Config, logger *slog.Logger) (client.Client, error) {
	return DialWithMetrics(ctx, cfg, logger, nil)
}

// Identity is this process's identity towards Temporal: in pollers, in the
// history of every task it completes, and in readiness checks.
func Identity() string {
	host, _ := os.Hostname()
	return fmt.Sprintf("%d@%s@premiscale", os.Getpid(), host)
}

// DialWithMetrics is Dial with the SDK's metrics (client and the workers
// built on it) sent to metrics; nil sends them nowhere.
func DialWithMetrics(ctx context.Context, cfg *config.Config, logger *slog.Logger, metrics client.MetricsHandler) (client.Client, error) {
	t := cfg.Controller.Temporal
	opts := client.Options{
		HostPort:       cfg.TemporalAddress(),
		Namespace:      t.Namespace,
		Logger:         sdklog.NewStructuredLogger(logger),
		Identity:       Identity(),
		MetricsHandler: metrics,
	}
	if ct := cfg.ClientTLS(); ct.Enabled {
		if cfg.UsesEmbedded() && t.Embedded.TLS.Generated() {
			if _, err := os.Stat(ct.CAFile); errors.Is(err, os.ErrNotExist) {
				// The controller generates the CA at its first start.
				return nil, fmt.Errorf("%w at %s (namespace %s): no controller has run on controller.stateDir %s yet (no %s); start `premiscale -c CONFIG`",
					ErrUnreachable, opts.HostPort, opts.Namespace, cfg.Controller.StateDir, ct.CAFile)
			}
		}
		tc, err := TLSConfig(ct)
		if err != nil {
			return nil, err
		}
		opts.ConnectionOptions.TLS = tc
	}
	switch {
	case t.APIKey != "":
		opts.Credentials = client.NewAPIKeyStaticCredentials(t.APIKey)
	case t.APIKeyFile != "":
		// Read at each call, so that a rotated key is used without a restart.
		file := t.APIKeyFile
		opts.Credentials = client.NewAPIKeyDynamicCredentials(func(context.Context) (string, error) {
			b, err := os.ReadFile(file)
			if err != nil {
				return "", fmt.Errorf("controller.temporal.apiKeyFile: %w", err)
			}
			return strings.TrimSpace(string(b)), nil
		})
	}
	dctx, cancel := context.WithTimeout(ctx, DialTimeout)
	defer cancel()
	c, err := client.DialContext(dctx, opts)
	if err != nil {
		return nil, fmt.Errorf("%w at %s (namespace %s): is `premiscale -c CONFIG` running? %v",
			ErrUnreachable, opts.HostPort, opts.Namespace, err)
	}
	return c, nil
}

// TLSConfig is the client TLS that t describes (CA, client certificate,
// server name); an error names the field whose file does not load.
func TLSConfig(t config.TLS) (*tls.Config, error) {
	tc := &tls.Config{ServerName: t.ServerName, InsecureSkipVerify: t.InsecureSkipVerify, MinVersion: tls.VersionTLS12} //nolint:gosec // skip-verify is the user's explicit choice
	if t.CAFile != "" {
		pem, err := os.ReadFile(t.CAFile)
		if err != nil {
			return nil, fmt.Errorf("controller.temporal.tls.caFile: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("controller.temporal.tls.caFile: no certificate in %s", t.CAFile)
		}
		tc.RootCAs = pool
	}
	if t.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("controller.temporal.tls.certFile/keyFile: %w", err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return tc, nil
}

// Starter acts on group workflows for one configuration.
type Starter struct {
	Client client.Client
	Config *config.Config
}

// EnsureGroups starts the workflow of every configured group that is not
// running and hands its current configuration to every one that is
// (signal-with-start, so both cases are one atomic call).
func (s *Starter) EnsureGroups(ctx context.Context) error {
	var errs []error
	for _, g := range s.Config.Autoscale.Groups {
		spec := workflows.SpecFromConfig(s.Config, g)
		_, err := s.Client.SignalWithStartWorkflow(ctx, workflows.GroupWorkflowID(g.Name), workflows.SignalSpec, spec,
			client.StartWorkflowOptions{
				ID:        workflows.GroupWorkflowID(g.Name),
				TaskQueue: s.Config.Controller.Temporal.TaskQueue,
			},
			workflows.GroupWorkflowName, workflows.GroupInput{Spec: spec})
		if err != nil {
			errs = append(errs, fmt.Errorf("ensure group %s: %w", g.Name, err))
		}
	}
	// After the specs, so that each group knows its schedules before one
	// of them fires.
	if err := s.EnsureSchedules(ctx); err != nil {
		errs = append(errs, err)
	}
	removed, err := s.RemovedGroups(ctx)
	if err != nil {
		return errors.Join(append(errs, err)...)
	}
	req := workflows.RemoveRequest{DeleteVMs: s.Config.Autoscale.Orphans.DeleteUnconfiguredGroups}
	for _, name := range removed {
		if err := s.Client.SignalWorkflow(ctx, workflows.GroupWorkflowID(name), "", workflows.SignalRemove, req); err != nil {
			errs = append(errs, fmt.Errorf("tell removed group %s: %w", name, err))
		}
	}
	return errors.Join(errs...)
}

// RemovedGroups lists groups whose workflow still runs but that the
// configuration no longer holds (a removal that deletes VMs, or one that
// keeps them unmanaged until the group is configured again).
func (s *Starter) RemovedGroups(ctx context.Context) ([]string, error) {
	running, err := s.runningGroups(ctx)
	if err != nil {
		return nil, err
	}
	var names []string
	for name := range running {
		if _, configured := s.Config.Group(name); !configured {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	return names, nil
}

// runningGroups lists the running group workflows from Temporal's
// visibility store, each with the summary its memo holds (nil if none).
func (s *Starter) runningGroups(ctx context.Context) (map[string]*workflows.GroupSummary, error) {
	query := fmt.Sprintf("WorkflowType = '%s' AND ExecutionStatus = 'Running'", workflows.GroupWorkflowName)
	out := map[string]*workflows.GroupSummary{}
	var token []byte
	for {
		resp, err := s.Client.ListWorkflow(ctx, &workflowservice.ListWorkflowExecutionsRequest{
			Namespace: s.Config.Controller.Temporal.Namespace, Query: query, NextPageToken: token,
		})
		if err != nil {
			return nil, fmt.Errorf("list group workflows: %w", err)
		}
		for _, e := range resp.Executions {
			name, ok := strings.CutPrefix(e.GetExecution().GetWorkflowId(), workflows.GroupWorkflowID(""))
			if !ok {
				continue
			}
			var sum *workflows.GroupSummary
			if p := e.GetMemo().GetFields()[workflows.MemoSummary]; p != nil {
				var v workflows.GroupSummary
				// A summary that does not decode is as good as none: the
				// group is asked by Query.
				if converter.GetDefaultDataConverter().FromPayload(p, &v) == nil && v.Group == name {
					sum = &v
				}
			}
			if out[name] == nil {
				out[name] = sum
			}
		}
		if token = resp.NextPageToken; len(token) == 0 {
			break
		}
	}
	return out, nil
}

// PublishedSummaries returns the summaries the running group workflows
// publish, by group, from one listing of Temporal's visibility store: no
// workflow runs a task for it. A group whose workflow has not published
// one yet is absent.
func (s *Starter) PublishedSummaries(ctx context.Context) (map[string]workflows.GroupSummary, error) {
	running, err := s.runningGroups(ctx)
	if err != nil {
		return nil, err
	}
	out := make(map[string]workflows.GroupSummary, len(running))
	for name, sum := range running {
		if sum != nil {
			out[name] = *sum
		}
	}
	return out, nil
}

// Summaries returns every group's summary, the configured groups in the
// configuration's order and then the removed groups whose workflow still
// runs, by name. One listing of Temporal's visibility store reads them all
// without waking a single workflow; a group whose workflow has not
// published a summary yet (just started, or running code from before
// summaries) is asked by status Query, as is, to report why, a configured
// group with no running workflow. A summary lags the status Query by at
// most a pass of the group's loop and the visibility store's update.
func (s *Starter) Summaries(ctx context.Context) ([]workflows.GroupSummary, error) {
	running, err := s.runningGroups(ctx)
	if err != nil {
		return nil, err
	}
	names := s.Config.GroupNames()
	var removed []string
	for name := range running {
		if _, configured := s.Config.Group(name); !configured {
			removed = append(removed, name)
		}
	}
	slices.Sort(removed)
	names = append(names, removed...)
	out := make([]workflows.GroupSummary, 0, len(names))
	for _, name := range names {
		if sum := running[name]; sum != nil {
			out = append(out, *sum)
			continue
		}
		st, err := s.Status(ctx, name)
		if err != nil && !errors.Is(err, ErrUnreachable) && !s.runs(ctx, name) {
			// Not running (the listing can lag a termination), and so not
			// answering: a closed workflow's Query fails with the way it
			// closed.
			return nil, fmt.Errorf("group %s has no running workflow (%s); start the controller with this config: %w",
				name, workflows.GroupWorkflowID(name), err)
		}
		if err != nil {
			return nil, err
		}
		out = append(out, st.Summary())
	}
	return out, nil
}

// runs reports whether the group's workflow is known to be running.
func (s *Starter) runs(ctx context.Context, name string) bool {
	d, err := s.Client.DescribeWorkflowExecution(ctx, workflows.GroupWorkflowID(name), "")
	return err == nil && d.GetWorkflowExecutionInfo().GetStatus() == enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING
}

// Statuses queries the named groups' workflows, at most parallel at once,
// and returns their status in the order of names; the first error ends it.
func (s *Starter) Statuses(ctx context.Context, names []string, parallel int) ([]workflows.GroupStatus, error) {
	out := make([]workflows.GroupStatus, len(names))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(max(parallel, 1))
	for i, name := range names {
		g.Go(func() error {
			st, err := s.Status(gctx, name)
			out[i] = st
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	return out, nil
}

func (s *Starter) group(name string) (config.Group, error) {
	g, ok := s.Config.Group(name)
	if !ok {
		return config.Group{}, fmt.Errorf("%w %q (configured groups: %s)", ErrUnknownGroup, name, strings.Join(s.Config.GroupNames(), ", "))
	}
	return g, nil
}

// Scale sets a group's desired size through the set-desired Update and
// returns once the workflow accepted it. A size outside [min, max] is refused
// before anything is sent.
func (s *Starter) Scale(ctx context.Context, name string, desired int) (workflows.DesiredResult, error) {
	g, err := s.group(name)
	if err != nil {
		return workflows.DesiredResult{}, err
	}
	if desired < g.Min {
		return workflows.DesiredResult{}, fmt.Errorf("%w: %d is below min (%d) of group %s", ErrOutOfRange, desired, g.Min, name)
	}
	if desired > g.Max {
		return workflows.DesiredResult{}, fmt.Errorf("%w: %d is above max (%d) of group %s", ErrOutOfRange, desired, g.Max, name)
	}
	return s.Update(ctx, name, workflows.UpdateSetDesired, workflows.DesiredRequest{Desired: desired})
}

// ErrRefused is returned when a group's validator refuses an Update that
// names no bound (e.g. a node of another group).
var ErrRefused = errors.New("refused")

// Update sends the named Update to a group's workflow and waits for its
// result (the handlers record intent and return at once). A refusal by the
// validator is ErrOutOfRange (a bound) or ErrRefused, with its message.
func (s *Starter) Update(ctx context.Context, name, update string, arg any) (workflows.DesiredResult, error) {
	var res workflows.DesiredResult
	if err := s.update(ctx, name, update, []any{arg}, &res); err != nil {
		return workflows.DesiredResult{}, err
	}
	return res, nil
}

// update sends an Update with args and decodes its result into out.
func (s *Starter) update(ctx context.Context, name, update string, args []any, out any) error {
	if _, err := s.group(name); err != nil {
		return err
	}
	h, err := s.Client.UpdateWorkflow(ctx, client.UpdateWorkflowOptions{
		WorkflowID:   workflows.GroupWorkflowID(name),
		UpdateName:   update,
		Args:         args,
		WaitForStage: client.WorkflowUpdateStageCompleted,
	})
	if err != nil {
		return s.explain(name, err)
	}
	if err := h.Get(ctx, out); err != nil {
		var ae *temporal.ApplicationError
		if errors.As(err, &ae) {
			if ae.Type() == "OutOfRange" {
				return fmt.Errorf("%w: %s", ErrOutOfRange, ae.Message())
			}
			return fmt.Errorf("%w: %s", ErrRefused, ae.Message())
		}
		return s.explain(name, err)
	}
	return nil
}

// Refresh starts a rolling refresh of a group (UpdateRefresh); with
// rollback, a return to the template revision it had before
// (UpdateRefreshRollback).
func (s *Starter) Refresh(ctx context.Context, name string, req workflows.RefreshRequest, rollback bool) (workflows.Refresh, error) {
	update := workflows.UpdateRefresh
	if rollback {
		update = workflows.UpdateRefreshRollback
	}
	var r workflows.Refresh
	err := s.update(ctx, name, update, []any{req}, &r)
	return r, err
}

// CancelRefresh stops a group's running refresh.
func (s *Starter) CancelRefresh(ctx context.Context, name string) (workflows.Refresh, error) {
	var r workflows.Refresh
	err := s.update(ctx, name, workflows.UpdateRefreshCancel, nil, &r)
	return r, err
}

// ContinueRefresh ends the wait of a group's refresh at a checkpoint.
func (s *Starter) ContinueRefresh(ctx context.Context, name string) (workflows.Refresh, error) {
	var r workflows.Refresh
	err := s.update(ctx, name, workflows.UpdateRefreshContinue, nil, &r)
	return r, err
}

// WaitRefresh polls a group's status until refresh id has ended and the
// group is settled, calling watch (if set) with each status. A refresh
// that ended cancelled is an error.
func (s *Starter) WaitRefresh(ctx context.Context, name string, id int, poll time.Duration, watch func(workflows.GroupStatus)) (workflows.GroupStatus, error) {
	for {
		st, err := s.Status(ctx, name)
		if err == nil {
			if watch != nil {
				watch(st)
			}
			r := st.Refresh
			switch {
			case r == nil || r.ID != id:
				return st, fmt.Errorf("group %s: refresh %d is no longer the group's refresh", name, id)
			case r.Status == workflows.RefreshCancelled:
				return st, fmt.Errorf("group %s: refresh %d was cancelled after replacing %d of %d members", name, id, r.Replaced, r.Total)
			case r.Status == workflows.RefreshDone && st.Settled():
				return st, nil
			}
		}
		select {
		case <-ctx.Done():
			if err != nil {
				return st, err
			}
			return st, fmt.Errorf("group %s: refresh %d not done: %w", name, id, ctx.Err())
		case <-time.After(poll):
		}
	}
}

// Protect sets or clears a member's scale-in protection.
func (s *Starter) Protect(ctx context.Context, group, vm string, protected bool) error {
	_, err := s.Update(ctx, group, workflows.UpdateProtect, workflows.ProtectRequest{VM: vm, Protected: protected})
	return err
}

// Status queries a group's workflow: a configured group's, or a removed
// group's whose workflow still runs.
func (s *Starter) Status(ctx context.Context, name string) (workflows.GroupStatus, error) {
	if _, err := s.group(name); err != nil {
		removed, lerr := s.RemovedGroups(ctx)
		if lerr != nil || !slices.Contains(removed, name) {
			return workflows.GroupStatus{}, err
		}
	}
	v, err := s.queryStatus(ctx, name)
	if err != nil {
		return workflows.GroupStatus{}, s.explain(name, err)
	}
	var st workflows.GroupStatus
	if err := v.Get(&st); err != nil {
		return workflows.GroupStatus{}, fmt.Errorf("decode status of group %s: %w", name, err)
	}
	return st, nil
}

// queryAttempts is how many times a status Query the worker failed is
// asked.
const queryAttempts = 3

// queryStatus sends a group's status Query. A worker fails a Query with the
// workflow task it dropped (right after a restart the SDK at times panics
// on a task it already completed, drops it, and recovers with the next:
// TMPRL1100); the Query is asked again after a pause, queryAttempts times
// in all, so that a status read does not fail on that moment.
func (s *Starter) queryStatus(ctx context.Context, name string) (converter.EncodedValue, error) {
	for attempt := 1; ; attempt++ {
		v, err := s.Client.QueryWorkflow(ctx, workflows.GroupWorkflowID(name), "", workflows.QueryStatus)
		var failed *serviceerror.QueryFailed
		if err == nil || !errors.As(err, &failed) || attempt == queryAttempts {
			return v, err
		}
		select {
		case <-ctx.Done():
			return nil, err
		case <-time.After(time.Duration(attempt) * 300 * time.Millisecond):
		}
	}
}

// Pause stops a group's scaling and reconciliation until Resume.
// It is an Update, so a pause and a resume sent one after the other are
// applied in that order.
func (s *Starter) Pause(ctx context.Context, name string) error {
	return s.pause(ctx, name, workflows.UpdatePause)
}

// Resume undoes Pause.
func (s *Starter) Resume(ctx context.Context, name string) error {
	return s.pause(ctx, name, workflows.UpdateResume)
}

func (s *Starter) pause(ctx context.Context, name, update string) error {
	if _, err := s.group(name); err != nil {
		return err
	}
	h, err := s.Client.UpdateWorkflow(ctx, client.UpdateWorkflowOptions{
		WorkflowID: workflows.GroupWorkflowID(name), UpdateName: update,
		WaitForStage: client.WorkflowUpdateStageCompleted,
	})
	if err == nil {
		err = h.Get(ctx, nil)
	}
	if err != nil {
		return s.explain(name, err)
	}
	return nil
}

// WaitSettled polls a group's status until it holds exactly its desired size
// with nothing in flight, or ctx ends.
func (s *Starter) WaitSettled(ctx context.Context, name string, poll time.Duration) (workflows.GroupStatus, error) {
	return s.WaitSettledWatching(ctx, name, poll, nil)
}

// WaitSettledWatching is WaitSettled calling watch with every status read
// before the group settles.
func (s *Starter) WaitSettledWatching(ctx context.Context, name string, poll time.Duration, watch func(workflows.GroupStatus)) (workflows.GroupStatus, error) {
	for {
		st, err := s.Status(ctx, name)
		if err == nil && st.Settled() {
			return st, nil
		}
		if err == nil && watch != nil {
			watch(st)
		}
		select {
		case <-ctx.Done():
			if err != nil {
				return st, err
			}
			return st, fmt.Errorf("group %s not settled: %d running, %d provisioning, %d decommissioning, desired %d: %w",
				name, st.Running, st.Provisioning, st.Decommissioning, st.Desired, ctx.Err())
		case <-time.After(poll):
		}
	}
}

func (s *Starter) explain(name string, err error) error {
	var nf *serviceerror.NotFound
	if errors.As(err, &nf) {
		return fmt.Errorf("group %s has no running workflow (%s); start the controller with this config: %w",
			name, workflows.GroupWorkflowID(name), err)
	}
	var unavailable *serviceerror.Unavailable
	if errors.As(err, &unavailable) || errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("%w at %s: %v", ErrUnreachable, s.Config.TemporalAddress(), err)
	}
	return fmt.Errorf("group %s: %w", name, err)
}

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

// Steps asks each member of st in flight (provisioning or
// decommissioning) which step its VM workflow is at; a member whose
// workflow does not answer (finished meanwhile) is left out.
func (s *Starter) Steps(ctx context.Context, st workflows.GroupStatus) map[string]string {
	out := map[string]string{}
	for _, m := range st.Members {
		var id string
		switch {
		case m.State == workflows.MemberProvisioning && !m.ActivatedAt.IsZero():
			id = workflows.ActivateWorkflowID(st.Group, m.Name)
		case m.State == workflows.MemberProvisioning:
			id = workflows.ProvisionWorkflowID(st.Group, m.Name)
		case m.State == workflows.MemberDecommissioning:
			id = workflows.DecommissionWorkflowID(st.Group, m.Name)
		default:
			continue
		}
		qctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		v, err := s.Client.QueryWorkflow(qctx, id, "", workflows.QueryStep)
		cancel()
		var step string
		if err == nil && v.Get(&step) == nil {
			out[m.Name] = step
		}
	}
	return out
}
