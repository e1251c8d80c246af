package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/premiscale/premiscale/starter"
	"github.com/premiscale/premiscale/workflows"
)

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

// liveParallel is how many status Queries status --live has in flight.
const liveParallel = 8
