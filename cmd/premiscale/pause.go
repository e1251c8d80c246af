package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/premiscale/premiscale/starter"
)

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
