// Command premiscale runs the PremiScale controller and talks to it.
//
// premiscale -c CONFIG starts the controller: the embedded Temporal server
// (unless the config names a Temporal address), a worker, and one workflow
// per configured group. The subcommands scale, status, pause and resume act
// on those workflows through Temporal; worker runs a worker alone.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"

	"github.com/spf13/cobra"
	"go.temporal.io/api/serviceerror"

	"github.com/premiscale/premiscale/config"
	"github.com/premiscale/premiscale/starter"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

var logLevels = []string{"info", "error", "warn", "debug"}

type globalFlags struct {
	configPath string
	logLevel   string
	logFile    string
	logStdout  bool
}

// role is what a process runs: the controller (group workflows, provider,
// and unless noWorker a worker), a worker alone, or the embedded Temporal
// server alone.
type role struct {
	controller bool
	worker     bool
	server     bool
}

var (
	roleController = role{controller: true, worker: true}
	roleWorker     = role{worker: true}
	roleServer     = role{server: true}
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := newRootCmd().ExecuteContext(ctx)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "premiscale:", err)
		// The frontend's refusal says why only in its reason.
		if pd := (*serviceerror.PermissionDenied)(nil); errors.As(err, &pd) && pd.Reason != "" {
			fmt.Fprintln(os.Stderr, "premiscale: refused:", pd.Reason)
		}
		os.Exit(1)
	}
}

func newRootCmd() *cobra.Command {
	var gf globalFlags
	var validate, noWorker bool
	root := &cobra.Command{
		Use:   "premiscale",
		Short: "Autoscaling of libvirt/KVM virtual machines, driven by Temporal",
		Long: `PremiScale holds groups of libvirt VMs between a minimum and a maximum size.

Run the controller with 'premiscale -c CONFIG'. With no Temporal address in
the config it starts an embedded Temporal server persisted under
controller.stateDir. The subcommands talk to a running controller.

Environment:
  PREMISCALE_CONFIG_PATH  config file (default ` + config.DefaultConfigPath + `; where it
                          does not exist, ` + config.LegacyConfigPath + ` if that does)
  PREMISCALE_LOG_LEVEL    log level: info, error, warn, debug (default info)
  PREMISCALE_LOG_FILE     log to this file, as --log-file (default: standard output)
  PREMISCALE_TOKEN        accepted for old deployments; has no effect
  PREMISCALE_<KEY>        any scalar config key, e.g. PREMISCALE_CONTROLLER_TEMPORAL_ADDRESS`,
		Version:       version,
		SilenceUsage:  true,
		SilenceErrors: true,
		Args:          cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if validate {
				return runValidate(cmd.OutOrStdout(), &gf)
			}
			r := roleController
			r.worker = !noWorker
			return run(cmd.Context(), &gf, r)
		},
	}
	root.SetVersionTemplate("premiscale {{.Version}}\n")
	defaultConfig := config.DefaultConfigPath
	if p := os.Getenv(config.EnvConfigPath); p != "" {
		defaultConfig = p
	}
	pf := root.PersistentFlags()
	pf.StringVarP(&gf.configPath, "config", "c", defaultConfig, "config file (env "+config.EnvConfigPath+")")
	pf.StringVar(&gf.logLevel, "log-level", "", "log level {info,error,warn,debug} (env "+config.EnvLogLevel+", default info)")
	pf.StringVar(&gf.logFile, "log-file", "", "log to FILE instead of standard output (env "+config.EnvLogFile+")")
	pf.BoolVar(&gf.logStdout, "log-stdout", false, "log to standard output instead of a file")
	root.MarkFlagsMutuallyExclusive("log-file", "log-stdout")
	root.Flags().BoolVar(&validate, "validate", false, "check the config file, print every error, and exit (1 on errors)")
	root.Flags().BoolVar(&noWorker, "no-worker", false, "ensure the groups and serve the provider, but run no worker: the workers are 'premiscale worker' processes")

	root.AddCommand(newScaleCmd(&gf), newRefreshCmd(&gf), newStatusCmd(&gf), newPauseCmd(&gf, true), newPauseCmd(&gf, false),
		newProtectCmd(&gf, true), newProtectCmd(&gf, false), newWorkerCmd(&gf), newServerCmd(&gf), newTLSCmd(&gf), newHostsCmd(&gf))
	return root
}

// run loads the config, sets up logging and runs the role until ctx ends.
func run(ctx context.Context, gf *globalFlags, r role) error {
	cfg, err := loadConfig(gf)
	if err != nil {
		return err
	}
	// Everything the controller writes (the embedded server's database and
	// its WAL, the log, generated keys) is for its own user only: history
	// holds the groups' state and the log what was done to which host.
	syscall.Umask(0o077)
	logger, closeLog, err := newLogger(cfg.Controller.Log)
	if err != nil {
		return err
	}
	defer closeLog()
	for _, n := range cfg.Notices {
		logger.Warn(n)
	}
	if r.server {
		return runServer(ctx, cfg, logger)
	}
	return runController(ctx, cfg, logger, r)
}

// loadConfig loads the config file with flag overrides.
func loadConfig(gf *globalFlags) (*config.Config, error) {
	overrides := map[string]any{}
	if gf.logLevel != "" {
		if !slices.Contains(logLevels, gf.logLevel) {
			return nil, fmt.Errorf("--log-level: must be one of %s, got %q", strings.Join(logLevels, ", "), gf.logLevel)
		}
		overrides[config.KeyLogLevel] = gf.logLevel
	}
	if gf.logFile != "" {
		overrides[config.KeyLogFile] = gf.logFile
		overrides[config.KeyLogStdout] = false
	}
	if gf.logStdout {
		overrides[config.KeyLogStdout] = true
	}
	legacy := ""
	if gf.configPath == config.DefaultConfigPath && !exists(config.DefaultConfigPath) && exists(config.LegacyConfigPath) {
		gf.configPath, legacy = config.LegacyConfigPath, config.LegacyConfigPath
	}
	cfg, err := config.Load(gf.configPath, overrides)
	if err != nil {
		return nil, fmt.Errorf("invalid config %s:\n%w", gf.configPath, indent(err))
	}
	if legacy != "" {
		cfg.Notices = append(cfg.Notices, fmt.Sprintf("read %s, the original controller's default path: move it to %s, the default of the image, the chart and the systemd unit", legacy, config.DefaultConfigPath))
	}
	return cfg, nil
}

func runValidate(out io.Writer, gf *globalFlags) error {
	cfg, err := loadConfig(gf)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "%s: valid (%d hosts, %d groups)\n", gf.configPath, len(cfg.Autoscale.Hosts), len(cfg.Autoscale.Groups))
	return nil
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// indent puts each line of a joined error on its own indented line.
func indent(err error) error {
	lines := strings.Split(err.Error(), "\n")
	for i, l := range lines {
		lines[i] = "  " + l
	}
	return errors.New(strings.Join(lines, "\n"))
}

// newLogger builds the controller's structured logger.
func newLogger(c config.Log) (*slog.Logger, func(), error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(c.Level)); err != nil {
		return nil, nil, fmt.Errorf("controller.log.level: %w", err)
	}
	var w io.Writer = os.Stdout
	closeFn := func() {}
	if !c.Stdout && c.File != "" {
		if err := os.MkdirAll(filepath.Dir(c.File), 0o700); err != nil {
			return nil, nil, fmt.Errorf("log file %s: %w", c.File, err)
		}
		f, err := os.OpenFile(c.File, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
		if err != nil {
			return nil, nil, fmt.Errorf("log file %s: %w", c.File, err)
		}
		// A log file from an older version may be world-readable.
		if err := f.Chmod(0o600); err != nil {
			_ = f.Close()
			return nil, nil, fmt.Errorf("log file %s: %w", c.File, err)
		}
		w = f
		closeFn = func() { _ = f.Close() }
	}
	opts := &slog.HandlerOptions{Level: level}
	var h slog.Handler = slog.NewTextHandler(w, opts)
	if c.Format == "json" {
		h = slog.NewJSONHandler(w, opts)
	}
	return slog.New(h), closeFn, nil
}

// cliLogger is the quiet logger of the client subcommands.
func cliLogger() *slog.Logger {
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))
}

// withStarter loads the config, dials the controller's Temporal and runs fn.
func withStarter(ctx context.Context, gf *globalFlags, fn func(*starter.Starter) error) error {
	cfg, err := loadConfig(gf)
	if err != nil {
		return err
	}
	c, err := starter.Dial(ctx, cfg, cliLogger())
	if err != nil {
		return err
	}
	defer c.Close()
	return fn(&starter.Starter{Client: c, Config: cfg})
}
