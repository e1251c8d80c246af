package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

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
