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
	var out, role string
	issue := &cobra.Command{
		Use:   "issue NAME",
		Short: "Issue a client certificate (common name NAME, a role) from the generated CA, for a remote worker or the temporal CLI",
		Long: `Issue a client certificate from the private CA that the controller (or
premiscale server) generates in <controller.stateDir>/tls when no certificate
files are given in controller.temporal.embedded.tls. Writes NAME.crt, NAME.key
(0600) and ca.crt into --out, and prints the environment that points the
temporal CLI at the embedded server with them. Run it as the controller's
user, on its machine; if controller.temporal.embedded.tls.allowedClients is
set, add NAME to it.

--role decides what the certificate may do on the embedded frontend:
  operator  read everything; signal and Update the group workflows (premiscale
            scale, pause, status; temporal workflow query, signal, update);
            pause, unpause and trigger their schedules. No starting,
            terminating, resetting or cancelling, and no acting as a worker.
  worker    everything: a remote premiscale worker, or a controller with
            --no-worker, on controller.temporal.address.
  reader    read only (describe, list, history, query).`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			r, err := mtls.ParseRole(role)
			if err != nil {
				return fmt.Errorf("--role: %w", err)
			}
			cfg, err := loadConfig(gf)
			if err != nil {
				return err
			}
			if e := cfg.Controller.Temporal.Embedded.TLS; !e.Generated() {
				return errors.New("controller.temporal.embedded.tls: the config gives the embedded server your own certificate files, not the generated CA: issue certificates from your CA, with the organizational unit premiscale:ROLE")
			}
			syscall.Umask(0o077)
			dir := filepath.Join(cfg.Controller.StateDir, config.GeneratedTLSDir)
			if err := mtls.Issue(dir, args[0], r, out, time.Now()); err != nil {
				return err
			}
			crt, key, ca := absPath(filepath.Join(out, args[0]+".crt")), absPath(filepath.Join(out, args[0]+".key")), absPath(filepath.Join(out, mtls.CAFile))
			fmt.Fprintf(cmd.OutOrStdout(), "wrote %s, %s and %s (role %s)\n", crt, key, ca, r)
			fmt.Fprintf(cmd.OutOrStdout(), "# for the temporal CLI on this machine (elsewhere, an address in its server certificate):\n"+
				"export TEMPORAL_ADDRESS=%s TEMPORAL_NAMESPACE=%s TEMPORAL_TLS_CLIENT_CERT_PATH=%s TEMPORAL_TLS_CLIENT_KEY_PATH=%s TEMPORAL_TLS_SERVER_CA_CERT_PATH=%s\n",
				cfg.TemporalAddressOfEmbedded(), cfg.Controller.Temporal.Namespace, crt, key, ca)
			return nil
		},
	}
	issue.Flags().StringVarP(&out, "out", "o", ".", "directory to write the certificate, key and CA into")
	issue.Flags().StringVar(&role, "role", string(mtls.RoleOperator), "what the certificate may do: operator, worker or reader")
	tlsCmd.AddCommand(issue)
	return tlsCmd
}

// absPath is p made absolute, for paths printed to be used elsewhere.
func absPath(p string) string {
	if a, err := filepath.Abs(p); err == nil {
		return a
	}
	return p
}
