package main

import (
	"context"
	"time"

	"github.com/spf13/cobra"

	"github.com/premiscale/premiscale/starter"
)

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
