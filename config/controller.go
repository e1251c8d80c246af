package config

import (
	"net"
	"regexp"
	"strconv"
	"time"
)

// Controller configures the PremiScale process itself.
type Controller struct {
	// Installation names this PremiScale installation in the mark of every
	// domain it creates; a domain marked by another installation is never
	// touched. Empty: generated once into StateDir with the embedded
	// server, "<namespace>.<taskQueue>" with a Temporal cluster.
	Installation string `koanf:"installation" json:"installation,omitempty"`
	// StateDir holds the embedded Temporal server's SQLite database.
	StateDir   string     `koanf:"stateDir" json:"stateDir"`
	Log        Log        `koanf:"log" json:"log"`
	Temporal   Temporal   `koanf:"temporal" json:"temporal"`
	Prometheus Prometheus `koanf:"prometheus" json:"prometheus"`
	Kubernetes Kubernetes `koanf:"kubernetes" json:"kubernetes"`
	// ClusterAutoscaler serves the cluster-autoscaler's externalgrpc
	// cloud provider for the groups in ModeClusterAutoscaler.
	ClusterAutoscaler ClusterAutoscaler `koanf:"clusterAutoscaler" json:"clusterAutoscaler"`
	// Metrics serves /metrics, /healthz and /readyz.
	Metrics Metrics `koanf:"metrics" json:"metrics"`
	// HostWatch: every worker watches the hosts for changes to the
	// groups' domains, so that groups need not poll them.
	HostWatch HostWatch `koanf:"hostWatch" json:"hostWatch"`
	// InlineSecrets says whether the config file itself may hold secrets
	// (InlineSecretsAllow, the default) or must name files for them
	// (InlineSecretsRefuse). The Helm chart sets refuse: it renders the
	// file into a ConfigMap, which whoever may read the namespace's
	// ConfigMaps reads. Secrets set by environment variables or read
	// from files are never refused.
	InlineSecrets string `koanf:"inlineSecrets" json:"inlineSecrets,omitempty"`
}

// Values of controller.inlineSecrets.
const (
	InlineSecretsAllow  = "allow"
	InlineSecretsRefuse = "refuse"
)

// HostWatch configures the host watchers (one connection per host in every
// worker, subscribed to libvirt's lifecycle events) and how long a group
// with nothing to evaluate sleeps between observations of its own.
type HostWatch struct {
	// Enabled: false runs no watchers, and every group observes its hosts
	// each evaluation interval.
	Enabled *bool `koanf:"enabled" json:"enabled,omitempty"`
	// ResyncInterval is how often a quiet group (no metric checks, every
	// member running, no host down, nothing in flight) observes its hosts
	// when no watcher told it of a change: the safety net for a missed
	// event.
	ResyncInterval time.Duration `koanf:"resyncInterval" json:"resyncInterval"`
}

// On reports whether host watchers run.
func (h HostWatch) On() bool { return h.Enabled == nil || *h.Enabled }

// Metrics configures the controller's (and each worker's) HTTP endpoint for
// Prometheus and probes.
type Metrics struct {
	// Listen is host:port; port 0 takes a free port (logged).
	Listen string `koanf:"listen" json:"listen"`
	// GroupPollInterval is how often the group gauges are read from the
	// groups' status Query (controller only).
	GroupPollInterval time.Duration `koanf:"groupPollInterval" json:"groupPollInterval"`
}

// Log configures logging.
type Log struct {
	Level  string `koanf:"level" json:"level"`
	File   string `koanf:"file" json:"file"`
	Stdout bool   `koanf:"stdout" json:"stdout"`
	Format string `koanf:"format" json:"format"`
}

// controller checks the controller's own settings: secrets, log, state.
func (v *validator) controller(ctl Controller) {
	if ctl.InlineSecrets != "" {
		v.oneOf("controller.inlineSecrets", ctl.InlineSecrets, []string{InlineSecretsAllow, InlineSecretsRefuse})
	}
	v.oneOf("controller.log.level", ctl.Log.Level, logLevels)
	v.oneOf("controller.log.format", ctl.Log.Format, logFormats)
	if ctl.StateDir == "" {
		v.add("controller.stateDir", "must not be empty")
	}
	if ctl.Installation != "" && !installationRE.MatchString(ctl.Installation) {
		v.add("controller.installation", "must be 1-63 lower-case letters, digits, '-' or '.', starting and ending with a letter or digit, got %q", ctl.Installation)
	}
}

// metrics checks controller.metrics.
func (v *validator) metrics(m Metrics) {
	if _, port, err := net.SplitHostPort(m.Listen); err != nil {
		v.add("controller.metrics.listen", "must be host:port: %v", err)
	} else if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		v.add("controller.metrics.listen", "port must be in [0, 65535], got %q", port)
	}
	if m.GroupPollInterval < time.Second {
		v.add("controller.metrics.groupPollInterval", "must be >= 1s, got %s", m.GroupPollInterval)
	}
}

// hostWatch checks controller.hostWatch.
func (v *validator) hostWatch(hw HostWatch) {
	if ri := hw.ResyncInterval; ri < 10*time.Second || ri > 24*time.Hour {
		v.add("controller.hostWatch.resyncInterval", "must be in [10s, 24h], got %s", ri)
	}
}

// installationRE is what an installation identity looks like.
var installationRE = regexp.MustCompile(`^[a-z0-9]([a-z0-9.-]{0,61}[a-z0-9])?$`)
