package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/premiscale/premiscale/config"
	"github.com/premiscale/premiscale/starter"
	"github.com/premiscale/premiscale/workflows"
)

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
