package workflows

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/premiscale/premiscale/activities"
)

// Names of the orphan collector, its signal and its query.
const (
	OrphanWorkflowName = "OrphanCollector"
	// OrphanWorkflowID is the one collector per namespace and task queue.
	OrphanWorkflowID = "premiscale/orphans"
	// SignalOrphanSpec carries a new OrphanSpec; one without Delete ends
	// the collector.
	SignalOrphanSpec = "spec"
	// QueryOrphans returns OrphanStatus.
	QueryOrphans = "status"
)

// Kinds of orphan.
const (
	OrphanDomain = "domain"
	OrphanVolume = "volume"
)

// changeOrphansKeepUnconfigured: the collector keeps the VMs of groups no
// longer configured (unless DeleteUnconfigured) and domains whose mark names
// no installation (before: it deleted every orphan past the grace period).
const changeOrphansKeepUnconfigured = "orphans-keep-unconfigured"

// orphanRounds is how many scans one run makes before continuing as new.
const orphanRounds = 500

// Orphan is a resource that carries PremiScale's mark but that no member of
// any configured group owns.
type Orphan struct {
	Host   string `json:"host"`
	Kind   string `json:"kind"` // OrphanDomain or OrphanVolume
	Name   string `json:"name"`
	Group  string `json:"group"`
	Reason string `json:"reason"`
	// FirstSeen is when the collector first saw it orphaned (zero when the
	// orphan comes from a one-off report).
	FirstSeen time.Time `json:"firstSeen,omitzero"`
	// DeletedAt is set once the collector deleted it.
	DeletedAt time.Time `json:"deletedAt,omitzero"`
	// Kept says why the collector does not delete it, however long it stays
	// an orphan ("" when it may): the VM of a group that is no longer
	// configured (unless orphans.deleteUnconfiguredGroups), or a domain
	// marked before marks named their installation.
	Kept string `json:"kept,omitempty"`
}

func (o Orphan) key() string { return o.Host + "/" + o.Kind + "/" + o.Name }

// MemberSet is every member of the configured groups, by name and volume.
type MemberSet struct {
	// Members holds "group/vm".
	Members map[string]bool
	Volumes map[string]bool
	// Configured holds the configured groups' names.
	Configured map[string]bool
	// Epochs maps a group to its current history's epoch (Owner.Epoch).
	Epochs map[string]string
}

// NewMemberSet builds a MemberSet for the configured groups.
func NewMemberSet(configured []string) MemberSet {
	s := MemberSet{Members: map[string]bool{}, Volumes: map[string]bool{}, Configured: map[string]bool{}, Epochs: map[string]string{}}
	for _, g := range configured {
		s.Configured[g] = true
	}
	return s
}

// Add records one member of group; its volume counts both as recorded and
// as VolumeName(vm), so a member whose disk is still being created owns it.
func (s MemberSet) Add(group string, m activities.MemberRef) {
	s.Members[group+"/"+m.Name] = true
	s.Volumes[activities.VolumeName(m.Name)] = true
	s.Volumes[activities.SeedVolumeName(m.Name)] = true
	if m.Volume != "" {
		s.Volumes[m.Volume] = true
	}
}

// Why an orphan is kept (Orphan.Kept).
const (
	keptUnconfigured   = "its group is not configured (autoscale.orphans.deleteUnconfiguredGroups deletes it)"
	keptLegacy         = "its mark names no installation (made by an earlier PremiScale); delete it by hand"
	keptForeign        = "another installation's, or this one's before its state was lost; never touched"
	keptEarlierHistory = "this installation's from before its history was lost or replaced; delete it by hand"
)

// FindOrphans compares a scan with the members. Hosts that could not be
// scanned are returned in unscanned ("host: reason") and contribute no
// orphans. Pure and deterministic; the output is sorted by host, kind, name.
func FindOrphans(scan ScanOutput, members MemberSet) (orphans []Orphan, unscanned []string) {
	orphans, unscanned = []Orphan{}, []string{}
	for _, h := range scan.Hosts {
		if h.Error != "" {
			unscanned = append(unscanned, h.Host+": "+h.Error)
			continue
		}
		orphanDomains := map[string]bool{}
		keptDomains := map[string]string{}
		for _, d := range h.Domains {
			if members.Members[d.Owner.Group+"/"+d.Name] {
				continue
			}
			if !d.Foreign {
				// Another installation's domain is never deleted, so it
				// never frees its volumes.
				orphanDomains[d.Name] = true
			}
			o := Orphan{Host: h.Host, Kind: OrphanDomain, Name: d.Name, Group: d.Owner.Group, Reason: "not a member of group " + d.Owner.Group}
			if !members.Configured[d.Owner.Group] {
				o.Reason = "group " + d.Owner.Group + " is not configured"
				o.Kept = keptUnconfigured
			}
			if e := members.Epochs[d.Owner.Group]; e != "" && d.Owner.Epoch != "" && d.Owner.Epoch != e {
				o.Reason = "made under an earlier history of group " + d.Owner.Group
				o.Kept = keptEarlierHistory
			}
			if d.Owner.Installation == "" {
				o.Kept = keptLegacy
			}
			if d.Foreign {
				o.Reason = "marked by installation " + d.Owner.Installation
				o.Kept = keptForeign
			}
			keptDomains[d.Name] = o.Kept
			orphans = append(orphans, o)
		}
		for _, v := range h.Volumes {
			if members.Volumes[v] {
				continue
			}
			// A volume is an orphan only if no domain uses it, or only
			// orphan domains do (deleting them frees it).
			if slices.ContainsFunc(h.VolumeUsers[v], func(d string) bool { return !orphanDomains[d] }) {
				continue
			}
			o := Orphan{Host: h.Host, Kind: OrphanVolume, Name: v, Group: VolumeGroup(v), Reason: "no member uses it"}
			if !members.Configured[o.Group] {
				o.Kept = keptUnconfigured
			}
			for _, d := range h.VolumeUsers[v] {
				if k := keptDomains[d]; k != "" {
					o.Kept = k // its domain stays, so it does
				}
			}
			orphans = append(orphans, o)
		}
	}
	slices.SortFunc(orphans, func(a, b Orphan) int { return strings.Compare(a.key(), b.key()) })
	return orphans, unscanned
}

// VolumeGroup reads the group out of a volume named VolumeName(group-N).
func VolumeGroup(vol string) string {
	vm := volumeVM(vol)
	if i := strings.LastIndex(vm, "-"); i > 0 {
		return vm[:i]
	}
	return ""
}

// volumeVM is the VM a volume named VolumeName(vm) or SeedVolumeName(vm)
// belongs to.
func volumeVM(vol string) string {
	vm, _ := activities.VolumeVM(vol)
	return vm
}

// AgeOrphans carries the first-seen clock of every orphan from one scan to
// the next: an orphan keeps its clock while every scan sees it, one no
// longer seen is forgotten, and the orphans of an unscanned host keep their
// clocks untouched. It stamps each orphan's FirstSeen and returns the new
// clocks. Pure.
func AgeOrphans(prev map[string]time.Time, orphans []Orphan, unscannedHosts []string, now time.Time) map[string]time.Time {
	next := make(map[string]time.Time, len(orphans))
	// Copying map entries: the order cannot change the result.
	//workflowcheck:ignore
	for k, t := range prev {
		host, _, _ := strings.Cut(k, "/")
		if slices.Contains(unscannedHosts, host) {
			next[k] = t
		}
	}
	for i := range orphans {
		k := orphans[i].key()
		t, ok := prev[k]
		if !ok {
			t = now
		}
		next[k] = t
		orphans[i].FirstSeen = t
	}
	return next
}

// DueOrphans returns the orphans that have been orphans for at least grace,
// domains first (a volume is freed by deleting its domain). With keep, the
// orphans FindOrphans marked Kept are never due, except those of
// unconfigured groups when deleteUnconfigured.
func DueOrphans(orphans []Orphan, grace time.Duration, now time.Time, keep, deleteUnconfigured bool) []Orphan {
	var due []Orphan
	for _, kind := range []string{OrphanDomain, OrphanVolume} {
		for _, o := range orphans {
			if keep && o.Kept != "" && (o.Kept != keptUnconfigured || !deleteUnconfigured) {
				continue
			}
			if o.Kind == kind && !o.FirstSeen.IsZero() && now.Sub(o.FirstSeen) >= grace {
				due = append(due, o)
			}
		}
	}
	return due
}

// OrphanSpec configures the collector.
type OrphanSpec struct {
	Hosts []activities.HostRef `json:"hosts"`
	// Groups are the configured groups, whose members are not orphans.
	Groups []string `json:"groups"`
	// Removed are the groups removed from the configuration whose
	// workflows still run: their members are not orphans either.
	Removed []string `json:"removed,omitempty"`
	Delete  bool     `json:"delete"`
	// DeleteUnconfigured also deletes the VMs of groups not configured.
	DeleteUnconfigured bool          `json:"deleteUnconfigured,omitempty"`
	GracePeriod        time.Duration `json:"gracePeriod"`
	ScanInterval       time.Duration `json:"scanInterval"`
}

// OrphanInput starts (or continues) the collector.
type OrphanInput struct {
	Spec      OrphanSpec           `json:"spec"`
	FirstSeen map[string]time.Time `json:"firstSeen,omitempty"`
	Deleted   []Orphan             `json:"deleted,omitempty"`
}

// OrphanStatus is the answer to QueryOrphans.
type OrphanStatus struct {
	Spec       OrphanSpec `json:"spec"`
	Orphans    []Orphan   `json:"orphans"`
	Unscanned  []string   `json:"unscanned"`
	LastScanAt time.Time  `json:"lastScanAt"`
	LastError  string     `json:"lastError,omitempty"`
	// Deleted are the most recent deletions, newest last.
	Deleted []Orphan `json:"deleted"`
	// Refused names what the last spec asked beyond this worker's
	// configuration (the stricter value was kept).
	Refused []string `json:"refused,omitempty"`
	// Rounds counts the scans of this run.
	Rounds int `json:"rounds"`
}

// keptDeletions bounds OrphanStatus.Deleted.
const keptDeletions = 50

// OrphanCollector scans every host each ScanInterval and deletes the
// PremiScale domains and volumes that stayed orphans for GracePeriod:
//
//	policy: OrphanPolicy (local) -> ApplyOrphanPolicy(requested spec)
//	scan:   members -> ListOwned on every host -> members again -> FindOrphans
//	age:    AgeOrphans (unscanned hosts keep their clocks)
//	act:    DueOrphans -> undefine domain | delete volume if no domain uses it
//
// Its input and spec signals only ask: each round it reads the worker's own
// orphan settings and keeps the stricter of both (hosts, configured groups,
// whether to delete, grace period, scan interval), reporting in
// OrphanStatus.Refused what was asked beyond them. A fresh start that asks
// beyond them, or one under an ID other than OrphanWorkflowID, fails with
// ErrTypeRefused before touching anything.
//
// Members are read before and after the scan, so a VM created or removed
// meanwhile is not an orphan; a round whose members cannot all be read does
// nothing. Deletions go through the ownership-checked activities, so a
// domain without PremiScale's mark is never touched. It ends when a spec
// without Delete arrives, or when the worker's configuration does not
// delete orphans.
func OrphanCollector(ctx workflow.Context, in OrphanInput) error {
	st := OrphanStatus{Spec: in.Spec, Orphans: []Orphan{}, Unscanned: []string{}, Deleted: in.Deleted}
	firstSeen := in.FirstSeen
	if err := workflow.SetQueryHandler(ctx, QueryOrphans, func() (OrphanStatus, error) { return st, nil }); err != nil {
		return err
	}
	info := workflow.GetInfo(ctx)
	authority := workflow.GetVersion(ctx, changeOrphansWorkerPolicy, workflow.DefaultVersion, 1) >= 1
	if authority && info.WorkflowExecution.ID != OrphanWorkflowID {
		return temporal.NewNonRetryableApplicationError(fmt.Sprintf(
			"workflow ID %q: the orphan collector runs only as %s; refusing", info.WorkflowExecution.ID, OrphanWorkflowID), ErrTypeRefused, nil)
	}
	// requested is the spec last asked for; fresh is true until the input
	// of a run that no earlier run continued has been checked.
	requested, asked, fresh := in.Spec, true, info.ContinuedExecutionRunID == ""
	specs := workflow.GetSignalChannel(ctx, SignalOrphanSpec)
	drain := func() {
		var s OrphanSpec
		for specs.ReceiveAsync(&s) {
			requested, asked = s, true
			if !authority {
				st.Spec = s
			}
		}
	}
	logger := workflow.GetLogger(ctx)
	for round := 0; ; round++ {
		drain()
		if !requested.Delete {
			logger.Info("orphan deletion is off; collector ends")
			return nil
		}
		if authority {
			pol, err := orphanPolicy(ctx)
			if err != nil {
				st.LastError = "read this worker's orphan policy: " + rootCause(err)
				waitOrphanRound(ctx, specs, max(st.Spec.ScanInterval, minOrphanScanInterval))
				continue
			}
			eff, refused := ApplyOrphanPolicy(requested, pol)
			if len(refused) > 0 && fresh {
				return temporal.NewNonRetryableApplicationError(
					"orphan collector input refused: "+strings.Join(refused, "; "), ErrTypeRefused, nil)
			}
			if asked {
				st.Refused, asked = refused, false
				if len(refused) > 0 {
					logger.Warn("orphan spec asks beyond this worker's configuration; keeping the stricter", "refused", refused)
				}
			}
			fresh = false
			st.Spec = eff
			if !eff.Delete {
				logger.Info("this worker's configuration does not delete orphans; collector ends")
				return nil
			}
		}
		firstSeen = collectOrphans(ctx, &st, firstSeen)
		st.Rounds++
		if round+1 >= orphanRounds || workflow.GetInfo(ctx).GetContinueAsNewSuggested() {
			drain()
			next := st.Spec
			if authority {
				next = requested
			}
			return workflow.NewContinueAsNewError(ctx, OrphanWorkflowName, OrphanInput{Spec: next, FirstSeen: firstSeen, Deleted: st.Deleted})
		}
		waitOrphanRound(ctx, specs, st.Spec.ScanInterval)
	}
}

// waitOrphanRound waits for the next round: interval, or a spec signal.
func waitOrphanRound(ctx workflow.Context, specs workflow.ReceiveChannel, interval time.Duration) {
	timerCtx, cancel := workflow.WithCancel(ctx)
	sel := workflow.NewSelector(ctx)
	sel.AddFuture(workflow.NewTimer(timerCtx, interval), func(workflow.Future) {})
	sel.AddReceive(specs, func(workflow.ReceiveChannel, bool) {})
	sel.Select(ctx)
	cancel()
}

// orphanPolicy reads the worker's orphan settings (a local activity: the
// worker's own configuration, no I/O).
func orphanPolicy(ctx workflow.Context) (activities.OrphanPolicy, error) {
	var a *activities.Libvirt
	lctx := workflow.WithLocalActivityOptions(ctx, workflow.LocalActivityOptions{
		StartToCloseTimeout: quickActivityTimeout,
		RetryPolicy:         &temporal.RetryPolicy{InitialInterval: time.Second, MaximumAttempts: 3},
	})
	var pol activities.OrphanPolicy
	err := workflow.ExecuteLocalActivity(lctx, a.OrphanPolicy).Get(ctx, &pol)
	return pol, err
}

// collectOrphans runs one round and returns the new first-seen clocks.
func collectOrphans(ctx workflow.Context, st *OrphanStatus, firstSeen map[string]time.Time) map[string]time.Time {
	var (
		g *activities.Groups
		a *activities.Libvirt
	)
	actx := workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: quickActivityTimeout,
		RetryPolicy:         &temporal.RetryPolicy{InitialInterval: time.Second, MaximumAttempts: 3},
	})
	in := activities.GroupMembersInput{}
	for _, name := range append(append([]string{}, st.Spec.Groups...), st.Spec.Removed...) {
		in.Groups = append(in.Groups, activities.GroupQuery{Name: name, WorkflowID: GroupWorkflowID(name), QueryType: QueryStatus})
	}
	members := NewMemberSet(st.Spec.Groups)
	readMembers := func() error {
		var out activities.GroupMembersOutput
		if err := workflow.ExecuteActivity(actx, g.GroupMembers, in).Get(ctx, &out); err != nil {
			return err
		}
		// Filling sets: the order cannot change the result.
		//workflowcheck:ignore
		for group, ms := range out.Members {
			for _, m := range ms {
				members.Add(group, m)
			}
			members.Epochs[group] = out.Epochs[group]
		}
		return nil
	}
	if err := readMembers(); err != nil {
		st.LastError = "read members: " + rootCause(err)
		return firstSeen
	}
	scan := scanHosts(ctx, st.Spec.Hosts)
	if err := readMembers(); err != nil {
		st.LastError = "read members: " + rootCause(err)
		return firstSeen
	}
	now := workflow.Now(ctx)
	orphans, unscanned := FindOrphans(scan, members)
	var unscannedHosts []string
	for _, h := range scan.Hosts {
		if h.Error != "" {
			unscannedHosts = append(unscannedHosts, h.Host)
		}
	}
	firstSeen = AgeOrphans(firstSeen, orphans, unscannedHosts, now)
	st.Orphans, st.Unscanned, st.LastScanAt, st.LastError = orphans, unscanned, now, ""

	hosts := map[string]activities.HostRef{}
	for _, h := range st.Spec.Hosts {
		hosts[h.Name] = h
	}
	var errs []error
	keep := workflow.GetVersion(ctx, changeOrphansKeepUnconfigured, workflow.DefaultVersion, 1) >= 1
	for _, o := range DueOrphans(orphans, st.Spec.GracePeriod, now, keep, st.Spec.DeleteUnconfigured) {
		host := hosts[o.Host]
		var err error
		switch o.Kind {
		case OrphanDomain:
			err = workflow.ExecuteActivity(actx, a.UndefineDomain, activities.DomainRef{Host: host, Group: o.Group, VM: o.Name}).Get(ctx, nil)
		case OrphanVolume:
			err = workflow.ExecuteActivity(actx, a.DeleteVolume, activities.DeleteVolumeInput{Host: host, VM: volumeVM(o.Name), Volume: o.Name, IfUnused: true}).Get(ctx, nil)
		}
		if err != nil {
			errs = append(errs, errors.New(o.Kind+" "+o.Name+" on "+o.Host+": "+rootCause(err)))
			continue
		}
		workflow.GetLogger(ctx).Info("deleted orphan", "host", o.Host, "kind", o.Kind, "name", o.Name, "group", o.Group, "reason", o.Reason)
		workflow.GetMetricsHandler(ctx).WithTags(map[string]string{"kind": o.Kind, "host": o.Host}).Counter(MetricOrphansDeleted).Inc(1)
		o.DeletedAt = workflow.Now(ctx)
		st.Deleted = append(st.Deleted, o)
		delete(firstSeen, o.key())
		st.Orphans = slices.DeleteFunc(st.Orphans, func(x Orphan) bool { return x.key() == o.key() })
	}
	if len(st.Deleted) > keptDeletions {
		st.Deleted = st.Deleted[len(st.Deleted)-keptDeletions:]
	}
	for _, kind := range []string{OrphanDomain, OrphanVolume} {
		n := 0
		for _, o := range st.Orphans {
			if o.Kind == kind {
				n++
			}
		}
		workflow.GetMetricsHandler(ctx).WithTags(map[string]string{"kind": kind}).Gauge(MetricOrphans).Update(float64(n))
	}
	if err := errors.Join(errs...); err != nil {
		st.LastError = "delete: " + err.Error()
	}
	return firstSeen
}
