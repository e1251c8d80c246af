package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/premiscale/premiscale/config"
	"github.com/premiscale/premiscale/starter"
	"github.com/premiscale/premiscale/workflows"
)

func newScaleCmd(gf *globalFlags) *cobra.Command {
	var wait bool
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:               "scale GROUP N",
		Short:             "Set a group's desired size (refused outside [min, max])",
		Args:              cobra.ExactArgs(2),
		ValidArgsFunction: completeGroups(gf, false),
		RunE: func(cmd *cobra.Command, args []string) error {
			n, err := strconv.Atoi(args[1])
			if err != nil {
				return fmt.Errorf("argument N must be a whole number, got %q", args[1])
			}
			return withStarter(cmd.Context(), gf, func(s *starter.Starter) error {
				res, err := s.Scale(cmd.Context(), args[0], n)
				if err != nil {
					return err
				}
				out := cmd.OutOrStdout()
				fmt.Fprintf(out, "group %s: desired %d -> %d\n", args[0], res.Previous, res.Desired)
				if !wait {
					return nil
				}
				ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
				defer cancel()
				p := newProgress(out)
				st, err := s.WaitSettledWatching(ctx, args[0], 500*time.Millisecond, func(st workflows.GroupStatus) {
					p.show(progressLine(st, s.Steps(ctx, st)))
				})
				p.done()
				if err != nil {
					return err
				}
				fmt.Fprintf(out, "group %s: %d running\n", args[0], st.Running)
				return nil
			})
		},
	}
	cmd.Flags().BoolVar(&wait, "wait", false, "wait until the group holds exactly N running VMs")
	cmd.Flags().DurationVar(&timeout, "timeout", 10*time.Minute, "how long --wait waits")
	return cmd
}

func newStatusCmd(gf *globalFlags) *cobra.Command {
	var output string
	var orphans, live bool
	cmd := &cobra.Command{
		Use:   "status [GROUP] [--orphans] [--live]",
		Short: "Show groups, their members and recent events",
		Long: `Without GROUP, show every group's sizes and member counts from the summaries
that group workflows publish in their memo, read with one listing of Temporal's
visibility store (fast with thousands of groups; a summary can lag the group by
up to a second). --live asks each group's workflow instead (JSON then holds
members, events and checks). With GROUP, show that group's full status.

The table of all groups ends with the problems the controller's own host
checks found (at its start and hourly: pool, base volumes, networks,
domain type, capacity, clock), read from its metrics listener
(controller.metrics.listen, /hostchecks) when it is on this machine.`,
		Args:              cobra.MaximumNArgs(1),
		ValidArgsFunction: completeGroups(gf, false),
		RunE: func(cmd *cobra.Command, args []string) error {
			if output != "table" && output != "json" {
				return fmt.Errorf("-o/--output: must be table or json, got %q", output)
			}
			if orphans {
				return withStarter(cmd.Context(), gf, func(s *starter.Starter) error {
					rep, err := s.Orphans(cmd.Context())
					if err != nil {
						return err
					}
					return printOrphans(cmd.OutOrStdout(), rep, output)
				})
			}
			return withStarter(cmd.Context(), gf, func(s *starter.Starter) error {
				out := cmd.OutOrStdout()
				enc := json.NewEncoder(out)
				enc.SetIndent("", "  ")
				if len(args) == 1 {
					st, err := s.Status(cmd.Context(), args[0])
					if err != nil {
						return err
					}
					if output == "json" {
						return enc.Encode(st)
					}
					printStatus(out, []workflows.GroupStatus{st}, true)
					if g, ok := s.Config.Group(args[0]); ok && len(g.Schedules) > 0 {
						scheds, err := s.Schedules(cmd.Context(), args[0])
						if err != nil {
							return err
						}
						printSchedules(out, scheds)
					}
					return nil
				}
				var all []workflows.GroupStatus
				if live {
					removed, err := s.RemovedGroups(cmd.Context())
					if err != nil {
						return err
					}
					all, err = s.Statuses(cmd.Context(), append(s.Config.GroupNames(), removed...), liveParallel)
					if err != nil {
						return err
					}
					if output == "json" {
						return enc.Encode(all)
					}
				} else {
					sums, err := s.Summaries(cmd.Context())
					if err != nil {
						return err
					}
					if output == "json" {
						return enc.Encode(sums)
					}
					for _, sum := range sums {
						all = append(all, sum.Status())
					}
				}
				printStatus(out, all, false)
				if reports, err := fetchHostChecks(cmd.Context(), s.Config.Controller.Metrics.Listen); err == nil {
					printHostProblems(out, reports)
				}
				return nil
			})
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "table", "output format: table or json")
	cmd.Flags().BoolVar(&orphans, "orphans", false, "scan every host for PremiScale domains and volumes that no group's member owns")
	cmd.Flags().BoolVar(&live, "live", false, "without GROUP: query every group's workflow for its full status instead of reading the summaries in Temporal's visibility store")
	return cmd
}

// printSchedules lists a group's schedules as Temporal holds them.
func printSchedules(out io.Writer, scheds []starter.ScheduleState) {
	fmt.Fprintln(out, "\nschedules (Temporal Schedules):")
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "  SCHEDULE\tNEXT\tLAST FIRED FOR\tSTATE")
	at := func(t time.Time) string {
		if t.IsZero() {
			return "-"
		}
		return t.Local().Format(time.RFC3339)
	}
	for _, sc := range scheds {
		state := "active"
		switch {
		case sc.Error != "":
			state = "unknown: " + sc.Error
		case sc.Paused && sc.Note != "":
			state = "paused: " + sc.Note
		case sc.Paused:
			state = "paused"
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\n", sc.Name, at(sc.Next), at(sc.Last), state)
	}
	_ = tw.Flush()
}

// liveParallel is how many status Queries status --live has in flight.
const liveParallel = 8

func printOrphans(out io.Writer, rep starter.OrphanReport, output string) error {
	if output == "json" {
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		return enc.Encode(rep)
	}
	if len(rep.Orphans) == 0 {
		fmt.Fprintln(out, "no orphans")
	} else {
		tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "HOST\tKIND\tNAME\tGROUP\tREASON\tKEPT")
		for _, o := range rep.Orphans {
			kept := "-"
			if o.Kept != "" {
				kept = o.Kept
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", o.Host, o.Kind, o.Name, o.Group, o.Reason, kept)
		}
		_ = tw.Flush()
	}
	for _, u := range rep.Unscanned {
		fmt.Fprintf(out, "not scanned: %s\n", u)
	}
	return nil
}

// warmColumn is the WARM column of status: warm of target, and those
// being prepared; "-" for a group without a warm pool.
func warmColumn(st workflows.GroupStatus) string {
	if st.WarmState == "" && st.Warm == 0 && st.Warming == 0 && st.WarmTarget == 0 {
		return "-"
	}
	s := fmt.Sprintf("%d/%d", st.Warm, st.WarmTarget)
	if st.Warming > 0 {
		s += fmt.Sprintf(" (+%d)", st.Warming)
	}
	return s
}

func printStatus(out io.Writer, all []workflows.GroupStatus, detail bool) {
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "GROUP\tDESIRED\tRUNNING\tPROVISIONING\tDECOMMISSIONING\tFAILED\tLOST\tMIN\tMAX\tPAUSED\tSCHEDULE\tWARM")
	for _, st := range all {
		name := st.Group
		switch {
		case st.Removed && st.RemoveDeletesVMs:
			name += " (removed: deleting its VMs)"
		case st.Removed:
			name += " (removed: VMs kept, unmanaged)"
		}
		sched := "-"
		if st.Schedule != nil {
			sched = st.Schedule.Schedule
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%v\t%s\t%s\n", name, st.Desired, st.Running,
			st.Provisioning, st.Decommissioning, st.Failed, st.Lost, st.Min, st.Max, st.Paused, sched, warmColumn(st))
	}
	_ = tw.Flush()
	if !detail {
		return
	}
	st := all[0]
	fmt.Fprintln(out)
	tw = tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "MEMBER\tHOST\tSTATE\tCREATED\tFLAGS\tERROR")
	for _, m := range st.Members {
		var flags []string
		if m.Protected {
			flags = append(flags, "protected")
		}
		if m.Condemned {
			flags = append(flags, "condemned")
		}
		if st.Revision != "" && m.Revision != st.Revision && m.State == workflows.MemberRunning {
			flags = append(flags, "outdated")
		}
		if len(flags) == 0 {
			flags = []string{"-"}
		}
		state := string(m.State)
		if m.WarmState != "" && (m.State == workflows.MemberWarm || m.State == workflows.MemberWarming) {
			state += " (" + m.WarmState
			if !m.WarmSince.IsZero() && m.State == workflows.MemberWarm {
				state += ", " + time.Since(m.WarmSince).Round(time.Second).String()
			}
			state += ")"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", m.Name, m.Host, state, m.CreatedAt.Format(time.RFC3339), strings.Join(flags, ","), m.Error)
	}
	_ = tw.Flush()
	if st.Revision != "" {
		fmt.Fprintf(out, "\ntemplate revision %s", shortRevision(st.Revision))
		if st.ConfigRevision != st.Revision {
			fmt.Fprintf(out, " (rolled back; the configuration's is %s)", shortRevision(st.ConfigRevision))
		}
		if st.Outdated > 0 {
			fmt.Fprintf(out, ", %d running VMs of older revisions", st.Outdated)
		}
		fmt.Fprintln(out)
	}
	if st.Refresh != nil {
		fmt.Fprintf(out, "%s\n", refreshLine(st))
	}
	if st.WarmState != "" {
		fmt.Fprintf(out, "\nwarm pool: %d of %d %s", st.Warm, st.WarmTarget, st.WarmState)
		if st.Warming > 0 {
			fmt.Fprintf(out, ", %d warming", st.Warming)
		}
		fmt.Fprintln(out)
	}
	if w := st.Schedule; w != nil {
		fmt.Fprintf(out, "\nschedule %s governs until %s: min %d, max %d (configured %d, %d)\n", w.Schedule,
			w.Until.Local().Format(time.RFC3339), st.Min, st.Max, st.ConfigMin, st.ConfigMax)
	}
	if len(st.Windows) > 1 {
		var open []string
		for _, w := range st.Windows {
			open = append(open, fmt.Sprintf("%s (%s - %s)", w.Schedule, w.Start.Local().Format("15:04"), w.Until.Local().Format("15:04")))
		}
		fmt.Fprintf(out, "open schedule windows: %s\n", strings.Join(open, ", "))
	}
	if len(st.UnreachableHosts) > 0 {
		fmt.Fprintf(out, "\nunreachable hosts: %s\n", strings.Join(st.UnreachableHosts, ", "))
	}
	if len(st.Strays) > 0 {
		fmt.Fprintf(out, "\nPremiScale domains of this group that are not members (left alone): %s\n", strings.Join(st.Strays, ", "))
	}
	if len(st.Checks) > 0 {
		fmt.Fprintf(out, "\nchecks (mode %s%s):\n", st.Mode, map[bool]string{true: ", dry run", false: ""}[st.DryRun])
		tw = tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "  CHECK\tVALUE\tRECOMMENDATION\tERROR")
		for _, c := range st.Checks {
			if c.Error != "" {
				fmt.Fprintf(tw, "  %s\t-\t-\t%s (onError %s)\n", c.Name, c.Error, c.OnError)
				continue
			}
			fmt.Fprintf(tw, "  %s\t%g\t%d\t\n", c.Name, c.Value, c.Recommendation)
		}
		_ = tw.Flush()
	}
	if st.Decision != nil {
		fmt.Fprintf(out, "\ndecision (%s): %s\n", st.Decision.At.Format(time.TimeOnly), st.Decision.Reason)
	}
	if len(st.Decisions) > 0 {
		fmt.Fprintln(out, "\nrecent decisions:")
		for _, d := range st.Decisions {
			fmt.Fprintf(out, "  %s  %-9s %d -> %d  %s\n", d.At.Format(time.RFC3339), d.Action, d.From, d.To, d.Reason)
		}
	}
	if st.LastError != "" {
		fmt.Fprintf(out, "\nlast error (%s): %s\n", st.LastErrorAt.Format(time.RFC3339), st.LastError)
	}
	if len(st.Events) > 0 {
		fmt.Fprintln(out, "\nrecent events:")
		for _, e := range st.Events {
			fmt.Fprintf(out, "  %s  %s\n", e.At.Format(time.RFC3339), e.Message)
		}
	}
}

func newPauseCmd(gf *globalFlags, pause bool) *cobra.Command {
	use, short := "pause GROUP", "Stop scaling a group (its VMs stay) until resume"
	if !pause {
		use, short = "resume GROUP", "Resume scaling a paused group"
	}
	return &cobra.Command{
		Use:               use,
		Short:             short,
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: completeGroups(gf, false),
		RunE: func(cmd *cobra.Command, args []string) error {
			return withStarter(cmd.Context(), gf, func(s *starter.Starter) error {
				var err error
				if pause {
					err = s.Pause(cmd.Context(), args[0])
				} else {
					err = s.Resume(cmd.Context(), args[0])
				}
				if err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "group %s: %s\n", args[0], map[bool]string{true: "paused", false: "resumed"}[pause])
				return nil
			})
		},
	}
}

func newProtectCmd(gf *globalFlags, protect bool) *cobra.Command {
	use, short := "protect GROUP VM", "Protect a member from scale-in (by metrics, by hand or by the cluster-autoscaler)"
	if !protect {
		use, short = "unprotect GROUP VM", "Let scale-in choose a protected member again"
	}
	return &cobra.Command{
		Use:               use,
		Short:             short,
		Args:              cobra.ExactArgs(2),
		ValidArgsFunction: completeGroups(gf, true),
		RunE: func(cmd *cobra.Command, args []string) error {
			return withStarter(cmd.Context(), gf, func(s *starter.Starter) error {
				if err := s.Protect(cmd.Context(), args[0], args[1], protect); err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "group %s: %s %s\n", args[0], args[1], map[bool]string{true: "protected from scale-in", false: "no longer protected"}[protect])
				return nil
			})
		},
	}
}

// progressLine says where a group is on its way to desired: counts, and
// the step of each VM in flight.
func progressLine(st workflows.GroupStatus, steps map[string]string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "group %s: %d/%d running, %d provisioning, %d decommissioning", st.Group, st.Running, st.Desired, st.Provisioning, st.Decommissioning)
	if st.Failed > 0 {
		fmt.Fprintf(&b, ", %d failed", st.Failed)
	}
	var inFlight []string
	for _, m := range st.Members {
		if step, ok := steps[m.Name]; ok {
			inFlight = append(inFlight, m.Name+": "+step)
		}
	}
	if len(inFlight) > 0 {
		b.WriteString(" (" + strings.Join(inFlight, ", ") + ")")
	}
	return b.String()
}

// progress shows a changing line: rewritten in place on a terminal, one
// plain line per change otherwise (logs, pipes).
type progress struct {
	out  io.Writer
	tty  bool
	last string
}

func newProgress(out io.Writer) *progress {
	p := &progress{out: out}
	if f, ok := out.(*os.File); ok {
		if fi, err := f.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
			p.tty = true
		}
	}
	return p
}

func (p *progress) show(line string) {
	if line == p.last {
		return
	}
	p.last = line
	if p.tty {
		fmt.Fprintf(p.out, "\r\033[K%s", line)
		return
	}
	fmt.Fprintln(p.out, line)
}

// done ends an in-place line.
func (p *progress) done() {
	if p.tty && p.last != "" {
		fmt.Fprintln(p.out)
	}
}

// completeGroups completes a group name from the config file, and with
// vms, then one of that group's members from its status.
func completeGroups(gf *globalFlags, vms bool) func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
	return func(cmd *cobra.Command, args []string, _ string) ([]string, cobra.ShellCompDirective) {
		switch {
		case len(args) == 0:
			cfg, err := loadConfig(gf)
			if err != nil {
				return nil, cobra.ShellCompDirectiveNoFileComp | cobra.ShellCompDirectiveError
			}
			return cfg.GroupNames(), cobra.ShellCompDirectiveNoFileComp
		case len(args) == 1 && vms:
			var names []string
			ctx, cancel := context.WithTimeout(cmd.Context(), 3*time.Second)
			defer cancel()
			err := withStarter(ctx, gf, func(s *starter.Starter) error {
				st, err := s.Status(ctx, args[0])
				for _, m := range st.Members {
					names = append(names, m.Name)
				}
				return err
			})
			if err != nil {
				return nil, cobra.ShellCompDirectiveNoFileComp | cobra.ShellCompDirectiveError
			}
			return names, cobra.ShellCompDirectiveNoFileComp
		}
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
}

func newRefreshCmd(gf *globalFlags) *cobra.Command {
	var wait, cancel, rollback, all, cont bool
	var minHealthy, checkpoints, checkpointDelay string
	var batch int
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "refresh GROUP [--min-healthy 90%] [--batch N] [--checkpoints 20,50,100 [--checkpoint-delay 1h]] [--all] [--wait] | --continue | --cancel | --rollback",
		Short: "Replace a group's VMs made from an older template, a batch at a time",
		Long: `Replace the running VMs of GROUP that were made from an older template
revision, as AWS instance refresh does: a batch is decommissioned (joined nodes
are drained first) and replaced from the current template, the next batch starts
only once the replacements run (joined: Ready), and the running VMs never go
below --min-healthy percent of desired (with no room above it, one replacement
is launched first). With --checkpoints the refresh waits --checkpoint-delay
(default 1h) each time that percentage of the VMs to replace is replaced and
running, as AWS's checkpoints do; --continue ends such a wait now; a last
checkpoint under 100 ends the refresh there (a canary). --cancel stops a
running refresh after its current batch; --rollback returns the group to the
template it had before the last change and replaces the VMs made since.`,
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: completeGroups(gf, false),
		RunE: func(cmd *cobra.Command, args []string) error {
			settings := rollback || all || wait || cmd.Flags().Changed("min-healthy") || cmd.Flags().Changed("batch") ||
				cmd.Flags().Changed("checkpoints") || cmd.Flags().Changed("checkpoint-delay")
			switch {
			case cancel && cont:
				return errors.New("--cancel and --continue: one or the other")
			case cancel && settings:
				return errors.New("--cancel takes no other flag")
			case cont && settings:
				return errors.New("--continue takes no other flag")
			}
			req := workflows.RefreshRequest{All: all}
			if cmd.Flags().Changed("checkpoints") {
				ps, none, err := parseCheckpoints(checkpoints)
				if err != nil {
					return fmt.Errorf("--checkpoints %w", err)
				}
				req.Checkpoints, req.NoCheckpoints = ps, none
			}
			if cmd.Flags().Changed("checkpoint-delay") {
				d, err := time.ParseDuration(checkpointDelay)
				if err != nil {
					return fmt.Errorf("--checkpoint-delay must be a duration such as 30m, got %q", checkpointDelay)
				}
				if d < 0 || d > config.MaxCheckpointDelay {
					return fmt.Errorf("--checkpoint-delay must be from 0s to %s, got %s", config.MaxCheckpointDelay, d)
				}
				req.CheckpointDelay = checkpointDelay
			}
			if cmd.Flags().Changed("min-healthy") {
				if _, err := config.ParsePercent(minHealthy); err != nil {
					return fmt.Errorf("--min-healthy %w", err)
				}
				req.MinHealthy = minHealthy
			}
			if cmd.Flags().Changed("batch") {
				if batch < 0 || batch > config.MaxGroupSize {
					return fmt.Errorf("--batch must be from 0 to %d, got %d", config.MaxGroupSize, batch)
				}
				req.Batch = &batch
			}
			return withStarter(cmd.Context(), gf, func(s *starter.Starter) error {
				out := cmd.OutOrStdout()
				if cont {
					r, err := s.ContinueRefresh(cmd.Context(), args[0])
					if err != nil {
						return err
					}
					fmt.Fprintf(out, "group %s: refresh %d goes on (%d of %d VMs replaced)\n", args[0], r.ID, r.Replaced, r.Total)
					return nil
				}
				if cancel {
					r, err := s.CancelRefresh(cmd.Context(), args[0])
					if err != nil {
						return err
					}
					fmt.Fprintf(out, "group %s: refresh %d cancelled after replacing %d of %d VMs\n", args[0], r.ID, r.Replaced, r.Total)
					return nil
				}
				r, err := s.Refresh(cmd.Context(), args[0], req, rollback)
				if err != nil {
					return err
				}
				what := "refresh"
				if rollback {
					what = "rollback"
				}
				fmt.Fprintf(out, "group %s: %s %d started: %d VMs to replace with template revision %s, at least %d%% of desired running\n",
					args[0], what, r.ID, r.Total, shortRevision(r.Target), r.MinHealthyPercent)
				if !wait {
					return nil
				}
				ctx, stop := context.WithTimeout(cmd.Context(), timeout)
				defer stop()
				p := newProgress(out)
				st, err := s.WaitRefresh(ctx, args[0], r.ID, 500*time.Millisecond, func(st workflows.GroupStatus) {
					p.show(refreshLine(st) + "; " + progressLine(st, s.Steps(ctx, st)))
				})
				p.done()
				if err != nil {
					return err
				}
				fmt.Fprintf(out, "group %s: %s\n", args[0], refreshLine(st))
				return nil
			})
		},
	}
	cmd.Flags().StringVar(&minHealthy, "min-healthy", "", "percentage of desired kept running (default: the group's refresh.minHealthy, 90%)")
	cmd.Flags().IntVar(&batch, "batch", 0, "at most this many replaced at once; 0: as many as --min-healthy allows (default: the group's refresh.batch)")
	cmd.Flags().BoolVar(&all, "all", false, "replace every VM, also those of the current template (a base image rebuilt under its old name)")
	cmd.Flags().BoolVar(&wait, "wait", false, "wait until the refresh is done and the group settled")
	cmd.Flags().StringVar(&checkpoints, "checkpoints", "", `percentages of the VMs to replace at which to wait, ascending ("20,50,100"), or "none" (default: the group's refresh.checkpoints)`)
	cmd.Flags().StringVar(&checkpointDelay, "checkpoint-delay", "", "how long to wait at each checkpoint (default: the group's refresh.checkpointDelay, 1h)")
	cmd.Flags().BoolVar(&cont, "continue", false, "end the running refresh's wait at a checkpoint now")
	cmd.Flags().BoolVar(&cancel, "cancel", false, "stop the running refresh (replacements under way finish)")
	cmd.Flags().BoolVar(&rollback, "rollback", false, "return to the previous template revision and replace the VMs made since")
	cmd.Flags().DurationVar(&timeout, "timeout", 30*time.Minute, "how long --wait waits")
	return cmd
}

// refreshLine describes a group's refresh for status and progress.
func refreshLine(st workflows.GroupStatus) string {
	r := st.Refresh
	if r == nil {
		return "no refresh"
	}
	what := "refresh"
	if r.Rollback {
		what = "rollback"
	}
	s := fmt.Sprintf("%s %d %s: %d of %d replaced, revision %s, min healthy %d%%", what, r.ID, r.Status, r.Replaced, r.Total, shortRevision(r.Target), r.MinHealthyPercent)
	if r.Batch > 0 {
		s += fmt.Sprintf(", batch %d", r.Batch)
	}
	if len(r.Checkpoints) > 0 {
		ps := make([]string, len(r.Checkpoints))
		for i, p := range r.Checkpoints {
			ps[i] = fmt.Sprintf("%d%%", p)
		}
		s += fmt.Sprintf(", checkpoints %s (%s each)", strings.Join(ps, " "), r.CheckpointDelay)
	}
	if !r.WaitingUntil.IsZero() && r.Status == workflows.RefreshRunning {
		s += fmt.Sprintf(", waiting at a checkpoint until %s (refresh --continue goes on now)", r.WaitingUntil.Local().Format(time.RFC3339))
	}
	if r.Stopped {
		s += ", stopped at its last checkpoint"
	}
	if r.Surging {
		s += ", launching one extra VM first"
	}
	if r.Protected > 0 {
		s += fmt.Sprintf(", %d protected left alone", r.Protected)
	}
	return s
}

func shortRevision(rev string) string { return rev[:min(len(rev), 8)] }

// parseCheckpoints reads --checkpoints: "none", or percentages separated by
// commas ("20,50,100", "20%, 50%"), ascending, each once.
func parseCheckpoints(s string) (ps []int, none bool, err error) {
	if strings.TrimSpace(s) == "none" {
		return nil, true, nil
	}
	for _, f := range strings.Split(s, ",") {
		p, err := config.ParsePercent(f)
		if err != nil {
			return nil, false, err
		}
		ps = append(ps, p)
	}
	if err := config.CheckCheckpoints(ps); err != nil {
		return nil, false, err
	}
	return ps, false, nil
}
