package main

import (
	"errors"
	"fmt"
	"path/filepath"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/premiscale/premiscale/config"
	"github.com/premiscale/premiscale/internal/mtls"
)

func newWorkerCmd(gf *globalFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "worker",
		Short: "Run a worker only, against the Temporal service the config names",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return run(cmd.Context(), gf, roleWorker)
		},
	}
}

func newServerCmd(gf *globalFlags) *cobra.Command {
	server := &cobra.Command{
		Use:   "server",
		Short: "Run the embedded Temporal server alone, for controllers and workers in other processes",
		Long: `Run only the embedded Temporal server (and its Web UI if enabled), persisted
under controller.stateDir and listening as controller.temporal.embedded says,
with /healthz and /readyz on controller.metrics.listen. Controllers
('premiscale --no-worker') and workers ('premiscale worker') on this or other
machines point controller.temporal.address at it; controller.temporal.address
itself is ignored here. For more than one machine's worth of groups, use a
Temporal cluster instead (see the README).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return run(cmd.Context(), gf, roleServer)
		},
	}
	server.AddCommand(newBackupCmd(gf), newRestoreCmd(gf))
	return server
}

func newTLSCmd(gf *globalFlags) *cobra.Command {
	tlsCmd := &cobra.Command{
		Use:   "tls",
		Short: "Certificates of the embedded Temporal server's generated CA",
		Args:  cobra.NoArgs,
	}
	var out string
	issue := &cobra.Command{
		Use:   "issue NAME",
		Short: "Issue a client certificate (common name NAME) from the generated CA, for a remote worker, the temporal CLI or the Temporal UI",
		Long: `Issue a client certificate from the private CA that the controller generates in
<controller.stateDir>/tls when controller.temporal.embedded.tls.enabled is true
and no certificate files are given. Writes NAME.crt, NAME.key (0600) and ca.crt
into --out. Run it as the controller's user, on its machine; if
controller.temporal.embedded.tls.allowedClients is set, add NAME to it.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := loadConfig(gf)
			if err != nil {
				return err
			}
			if e := cfg.Controller.Temporal.Embedded.TLS; !cfg.UsesEmbedded() || !e.Generated() {
				return errors.New("controller.temporal.embedded.tls: the config does not use the generated CA (embedded server, tls.enabled, no certFile)")
			}
			syscall.Umask(0o077)
			dir := filepath.Join(cfg.Controller.StateDir, config.GeneratedTLSDir)
			if err := mtls.Issue(dir, args[0], out, time.Now()); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "wrote %s, %s and %s\n",
				filepath.Join(out, args[0]+".crt"), filepath.Join(out, args[0]+".key"), filepath.Join(out, mtls.CAFile))
			return nil
		},
	}
	issue.Flags().StringVarP(&out, "out", "o", ".", "directory to write the certificate, key and CA into")
	tlsCmd.AddCommand(issue)
	return tlsCmd
}
