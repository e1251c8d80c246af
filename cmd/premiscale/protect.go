package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/premiscale/premiscale/starter"
)

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
