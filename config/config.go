// Package config holds PremiScale's versioned configuration: its types, their
// defaults, loading from a YAML file, environment variables and flags (koanf),
// and validation that reports every problem at once with its path.
package config

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/premiscale/premiscale/internal/mtls"
)

// Version is the only configuration schema version this build reads.
const Version = "v1alpha1"

// MaxGroupSize is the largest max a group may have. A group's members live
// in its workflow's state, which Temporal carries in every continue-as-new
// input and status query; a thousand members keep that well below
// Temporal's payload limits.
const MaxGroupSize = 1000

// Default values, named once so that documentation, defaults and tests agree.
const (
	DefaultConfigPath = "/etc/premiscale/config.yaml"
	// LegacyConfigPath is the original controller's default, read when
	// DefaultConfigPath does not exist and it does.
	LegacyConfigPath              = "/opt/premiscale/config.yaml"
	DefaultLogFile                = "" // standard output, for containers and journald
	DefaultStateDir               = "/opt/premiscale/state"
	DefaultLogLevel               = "info"
	DefaultLogFormat              = "text"
	DefaultNamespace              = "default"
	DefaultTaskQueue              = "premiscale"
	DefaultEmbeddedHost           = "127.0.0.1"
	DefaultEmbeddedPort           = 7233
	DefaultUIPort                 = 8233
	DefaultMetricsListen          = "127.0.0.1:9464"
	DefaultGroupPollInterval      = 5 * time.Second
	DefaultResyncInterval         = 5 * time.Minute
	DefaultPool                   = "default"
	DefaultEvaluationInterval     = 15 * time.Second
	DefaultVCPUs                  = 1
	DefaultMemory                 = "512MiB"
	DefaultDomainType             = "kvm"
	DefaultArch                   = "x86_64"
	DefaultNetworkType            = NetworkNone
	DefaultShutdownTimeout        = 30 * time.Second
	DefaultQueryTimeout           = 10 * time.Second
	DefaultTolerance              = 0.1
	DefaultScaleOutCooldown       = 60 * time.Second
	DefaultScaleInCooldown        = 300 * time.Second
	DefaultScaleOutWindow         = 0 * time.Second
	DefaultScaleInWindow          = 300 * time.Second
	DefaultMode                   = ModeOn
	DefaultOnError                = OnErrorHold
	DefaultHostFailureGracePeriod = 2 * time.Minute
	// DefaultUnhealthyGracePeriod is groups[].unhealthyGracePeriod's default.
	DefaultUnhealthyGracePeriod = 2 * time.Minute
	// DefaultCleanupTimeout is groups[].cleanupTimeout's default.
	DefaultCleanupTimeout     = 10 * time.Minute
	DefaultOrphanAction       = OrphansReport
	DefaultOrphanGracePeriod  = 10 * time.Minute
	DefaultOrphanScanInterval = time.Minute
	DefaultJoin               = JoinNone
	DefaultNodeName           = "{{.VM}}"
	DefaultReadyTimeout       = 15 * time.Minute
	// DefaultWarmReadyTimeout bounds the wait for a warm VM's console line.
	DefaultWarmReadyTimeout = 5 * time.Minute
	DefaultDrainTimeout     = 10 * time.Minute
	DefaultDrainGracePeriod = -1 * time.Second
	DefaultDrainOnTimeout   = DrainAbort
	DefaultTokenTTL         = 30 * time.Minute
	DefaultScaleInSelection = SelectNewest
)

// How a group's VMs join Kubernetes.
const (
	// JoinNone: the VMs are not Kubernetes nodes.
	JoinNone = "none"
	// JoinKubeadm: PremiScale creates a bootstrap token per VM and a
	// NoCloud seed whose user-data runs kubeadm join.
	JoinKubeadm = "kubeadm"
	// JoinUserData: the seed carries the group's own user-data template.
	JoinUserData = "userData"
)

// What a drain that outlives drain.timeout does.
const (
	// DrainAbort uncordons the node and keeps the VM.
	DrainAbort = "abort"
	// DrainForce goes on to shut the VM down.
	DrainForce = "force"
)

// Which members a scale-in removes first.
const (
	SelectNewest    = "newest"
	SelectOldest    = "oldest"
	SelectLeastPods = "leastPods"
)

// What the controller does with orphans: PremiScale-marked domains and
// volumes that belong to no member of any configured group.
const (
	// OrphansReport only lists them (premiscale status --orphans).
	OrphansReport = "report"
	// OrphansDelete also removes those that stayed orphans for the grace period.
	OrphansDelete = "delete"
)

// Scaling modes of a group.
const (
	// ModeOn scales out and in by the group's checks.
	ModeOn = "on"
	// ModeScaleOutOnly never scales in by metrics.
	ModeScaleOutOnly = "scaleOutOnly"
	// ModeOff ignores the checks: the group changes size only by hand.
	ModeOff = "off"
	// ModeClusterAutoscaler: the Kubernetes cluster-autoscaler sizes the
	// group through the externalgrpc provider (and people by hand); checks
	// are not allowed.
	ModeClusterAutoscaler = "clusterAutoscaler"
)

// Strategies a check may use.
const (
	StrategyTargetValue = "targetValue"
	StrategyThreshold   = "threshold"
	StrategyPassThrough = "passThrough"
)

// What a group does when a check fails.
const (
	// OnErrorHold forbids any scale-in while the check fails.
	OnErrorHold = "hold"
	// OnErrorIgnore leaves the failing check out of the decision.
	OnErrorIgnore = "ignore"
)

// Network types a template may use.
const (
	NetworkNone    = "none"
	NetworkUser    = "user"
	NetworkNetwork = "network"
	NetworkBridge  = "bridge"
)

// Config is the whole configuration file.
type Config struct {
	Version    string     `koanf:"version" json:"version"`
	Controller Controller `koanf:"controller" json:"controller"`
	Autoscale  Autoscale  `koanf:"autoscale" json:"autoscale"`
	// Notices are what loading noticed and accepted but the user should
	// know (a variable without effect, a kubeconfig taken from the
	// environment); the controller logs them at start.
	Notices []string `koanf:"-" json:"-"`
}

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

// ClusterAutoscaler is the externalgrpc provider's server.
type ClusterAutoscaler struct {
	// Listen is host:port; empty means no server.
	Listen string `koanf:"listen" json:"listen,omitempty"`
	// TLS: the server's certificate and key, and the CA that client
	// certificates must chain to. Required unless Insecure.
	CertFile     string `koanf:"certFile" json:"certFile,omitempty"`
	KeyFile      string `koanf:"keyFile" json:"keyFile,omitempty"`
	ClientCAFile string `koanf:"clientCAFile" json:"clientCAFile,omitempty"`
	// AllowedClients are the client certificate names (common name, or a
	// DNS or URI SAN) that may call; a certificate from ClientCAFile with
	// another name is refused. Required with TLS.
	AllowedClients []string `koanf:"allowedClients" json:"allowedClients,omitempty"`
	// Insecure serves plaintext gRPC without client authentication; only
	// on a loopback listen address.
	Insecure bool `koanf:"insecure" json:"insecure,omitempty"`
}

// Kubernetes says how the controller reaches the cluster its groups' VMs
// join, and what joining VMs are told about it.
type Kubernetes struct {
	// Kubeconfig is a kubeconfig file; with InCluster false and no
	// Kubeconfig, Kubernetes is not used.
	Kubeconfig string `koanf:"kubeconfig" json:"kubeconfig,omitempty"`
	// Context selects a context of Kubeconfig; empty means its current one.
	Context string `koanf:"context" json:"context,omitempty"`
	// InCluster uses the pod's service account.
	InCluster bool `koanf:"inCluster" json:"inCluster,omitempty"`
	// APIServerEndpoint is host:port that kubeadm join dials.
	APIServerEndpoint string `koanf:"apiServerEndpoint" json:"apiServerEndpoint,omitempty"`
	// CACertHashes pin the cluster CA for kubeadm join ("sha256:<hex>").
	CACertHashes []string `koanf:"caCertHashes" json:"caCertHashes,omitempty"`
	// TokenTTL is the lifetime of each VM's bootstrap token.
	TokenTTL time.Duration `koanf:"tokenTTL" json:"tokenTTL"`
}

// Enabled reports whether a cluster is configured.
func (k Kubernetes) Enabled() bool { return k.InCluster || k.Kubeconfig != "" }

// Prometheus says where the groups' checks are queried. Its credentials stay
// in the worker: they never enter workflow history.
type Prometheus struct {
	// Address is the server's base URL, e.g. http://127.0.0.1:9090.
	Address         string            `koanf:"address" json:"address"`
	BasicAuth       BasicAuth         `koanf:"basicAuth" json:"-"`
	BearerToken     string            `koanf:"bearerToken" json:"-"`
	BearerTokenFile string            `koanf:"bearerTokenFile" json:"bearerTokenFile,omitempty"`
	Headers         map[string]string `koanf:"headers" json:"-"`
	TLS             PrometheusTLS     `koanf:"tls" json:"tls"`
	// QueryTimeout bounds one query.
	QueryTimeout time.Duration `koanf:"queryTimeout" json:"queryTimeout"`
}

// BasicAuth is HTTP basic authentication.
type BasicAuth struct {
	Username     string `koanf:"username" json:"username,omitempty"`
	Password     string `koanf:"password" json:"-"`
	PasswordFile string `koanf:"passwordFile" json:"passwordFile,omitempty"`
}

// PrometheusTLS configures TLS to Prometheus.
type PrometheusTLS struct {
	CAFile             string `koanf:"caFile" json:"caFile,omitempty"`
	CertFile           string `koanf:"certFile" json:"certFile,omitempty"`
	KeyFile            string `koanf:"keyFile" json:"keyFile,omitempty"`
	ServerName         string `koanf:"serverName" json:"serverName,omitempty"`
	InsecureSkipVerify bool   `koanf:"insecureSkipVerify" json:"insecureSkipVerify,omitempty"`
}

// Log configures logging.
type Log struct {
	Level  string `koanf:"level" json:"level"`
	File   string `koanf:"file" json:"file"`
	Stdout bool   `koanf:"stdout" json:"stdout"`
	Format string `koanf:"format" json:"format"`
}

// Temporal says which Temporal service PremiScale uses.
type Temporal struct {
	// Address of a Temporal frontend (host:port). Empty means: start the
	// embedded server and use it.
	Address   string   `koanf:"address" json:"address"`
	Namespace string   `koanf:"namespace" json:"namespace"`
	TaskQueue string   `koanf:"taskQueue" json:"taskQueue"`
	TLS       TLS      `koanf:"tls" json:"tls"`
	Embedded  Embedded `koanf:"embedded" json:"embedded"`
	// APIKey (or the file APIKeyFile names, read at each dial) is sent as a
	// bearer token to a Temporal cluster that takes API keys (Temporal
	// Cloud); needs TLS. It stays in the process: never logged or shown.
	APIKey     string `koanf:"apiKey" json:"-"`
	APIKeyFile string `koanf:"apiKeyFile" json:"apiKeyFile,omitempty"`
}

// TLS configures the client's TLS connection to a Temporal cluster.
type TLS struct {
	Enabled            bool   `koanf:"enabled" json:"enabled"`
	CAFile             string `koanf:"caFile" json:"caFile"`
	CertFile           string `koanf:"certFile" json:"certFile"`
	KeyFile            string `koanf:"keyFile" json:"keyFile"`
	ServerName         string `koanf:"serverName" json:"serverName"`
	InsecureSkipVerify bool   `koanf:"insecureSkipVerify" json:"insecureSkipVerify"`
}

// Embedded configures the in-process Temporal server used when no address is set.
type Embedded struct {
	// Host is the frontend's listen address: a loopback address, or any
	// address (0.0.0.0 for all) when TLS is enabled.
	Host string      `koanf:"host" json:"host"`
	Port int         `koanf:"port" json:"port"`
	TLS  EmbeddedTLS `koanf:"tls" json:"tls"`
	UI   EmbeddedUI  `koanf:"ui" json:"ui"`
	// Postgres, when its DSN is set, persists the embedded server to
	// PostgreSQL instead of the SQLite file in stateDir.
	Postgres EmbeddedPostgres `koanf:"postgres" json:"postgres"`
}

// EmbeddedPostgres is the PostgreSQL database of the embedded server.
type EmbeddedPostgres struct {
	// DSN is postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE[?PARAMS]
	// (PARAMS such as sslmode=verify-full&sslrootcert=/path); the server
	// also uses DATABASE_visibility. Both are created if missing (the role
	// needs CREATEDB, or create them beforehand) and their schemas set up
	// or upgraded at each start.
	DSN string `koanf:"dsn" json:"-"`
	// PasswordFile holds the password (not in the DSN then), read at start.
	PasswordFile string `koanf:"passwordFile" json:"passwordFile,omitempty"`
}

// PostgresDSN is a parsed EmbeddedPostgres.DSN.
type PostgresDSN struct {
	Addr, User, Password, Database string
	// Params are the DSN's query parameters (libpq connection settings).
	Params map[string]string
}

// ParsePostgresDSN parses a postgres:// URL; errors never repeat the
// password.
func ParsePostgresDSN(dsn string) (PostgresDSN, error) {
	u, err := url.Parse(dsn)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // url.Error repeats the URL, password and all
		}
		return PostgresDSN{}, fmt.Errorf("does not parse: %v", err)
	}
	if u.Scheme != "postgres" && u.Scheme != "postgresql" {
		return PostgresDSN{}, fmt.Errorf("scheme must be postgres://, got %q", u.Scheme)
	}
	if u.Hostname() == "" {
		return PostgresDSN{}, errors.New("has no host")
	}
	if u.User == nil || u.User.Username() == "" {
		return PostgresDSN{}, errors.New("has no user (postgres://USER@HOST/DATABASE)")
	}
	db := strings.TrimPrefix(u.Path, "/")
	if db == "" || strings.Contains(db, "/") {
		return PostgresDSN{}, errors.New("must name one database (postgres://USER@HOST/DATABASE)")
	}
	out := PostgresDSN{Addr: u.Host, User: u.User.Username(), Database: db, Params: map[string]string{}}
	if u.Port() == "" {
		out.Addr = net.JoinHostPort(u.Hostname(), "5432")
	}
	out.Password, _ = u.User.Password()
	for k, v := range u.Query() {
		out.Params[k] = v[len(v)-1]
	}
	return out, nil
}

// EmbeddedUI serves the Temporal Web UI next to the embedded server, as
// `temporal server start-dev` does: on loopback only, since it has no
// login of its own (reach it from elsewhere through an SSH tunnel or
// kubectl port-forward).
type EmbeddedUI struct {
	// Enabled defaults to true.
	Enabled *bool `koanf:"enabled" json:"enabled"`
	// Host is a loopback address.
	Host string `koanf:"host" json:"host"`
	// Port is the UI's HTTP port (the dev server's 8233 by default).
	Port int `koanf:"port" json:"port"`
}

// On reports whether the UI is served.
func (u EmbeddedUI) On() bool { return u.Enabled == nil || *u.Enabled }

// EmbeddedTLS serves the embedded frontend over mutual TLS: every client
// (the controller itself, remote workers, the temporal CLI, the Temporal UI)
// must present a certificate from the client CA.
type EmbeddedTLS struct {
	Enabled bool `koanf:"enabled" json:"enabled"`
	// CertFile, KeyFile and ClientCAFile are the frontend's certificate and
	// key and the CA that client certificates must chain to, re-read when
	// they change. Leave all three empty to use a private CA that the
	// controller generates in <stateDir>/tls (keys 0600), with a server
	// certificate for loopback, localhost, this machine's host name, Host and
	// ServerNames, and a client certificate for the controller itself;
	// `premiscale tls issue NAME` issues more client certificates from it.
	CertFile     string `koanf:"certFile" json:"certFile,omitempty"`
	KeyFile      string `koanf:"keyFile" json:"keyFile,omitempty"`
	ClientCAFile string `koanf:"clientCAFile" json:"clientCAFile,omitempty"`
	// ServerNames are more DNS names or IP addresses for the generated
	// server certificate (the names remote clients dial).
	ServerNames []string `koanf:"serverNames" json:"serverNames,omitempty"`
	// AllowedClients are the client certificate names (common name, or a
	// DNS or URI SAN) that may connect. Required with ClientCAFile; with the
	// generated CA, empty means any certificate it issued, and the
	// controller's own is always allowed.
	AllowedClients []string `koanf:"allowedClients" json:"allowedClients,omitempty"`
}

// Generated reports whether the embedded frontend serves TLS from the
// private CA generated in the state directory.
func (e EmbeddedTLS) Generated() bool {
	return e.Enabled && e.CertFile == "" && e.KeyFile == "" && e.ClientCAFile == ""
}

// GeneratedTLSDir is where, under controller.stateDir, the generated CA and
// certificates of the embedded frontend live.
const GeneratedTLSDir = "tls"

// Autoscale lists the hypervisors and the groups of VMs kept on them.
type Autoscale struct {
	Hosts   []Host  `koanf:"hosts" json:"hosts"`
	Groups  []Group `koanf:"groups" json:"groups"`
	Orphans Orphans `koanf:"orphans" json:"orphans"`
}

// Orphans says what happens to PremiScale-marked domains and volumes that no
// member of any configured group owns.
type Orphans struct {
	// Action is OrphansReport (default) or OrphansDelete.
	Action string `koanf:"action" json:"action"`
	// GracePeriod is how long a resource must stay an orphan, seen by every
	// scan, before it is deleted.
	GracePeriod time.Duration `koanf:"gracePeriod" json:"gracePeriod"`
	// ScanInterval is how often the hosts are scanned when Action is delete.
	ScanInterval time.Duration `koanf:"scanInterval" json:"scanInterval"`
	// DeleteUnconfiguredGroups lets Action delete also remove the VMs of
	// groups that are no longer configured (by default they are reported
	// and kept: a group removed by mistake, or renamed, keeps its VMs).
	DeleteUnconfiguredGroups bool `koanf:"deleteUnconfiguredGroups" json:"deleteUnconfiguredGroups,omitempty"`
}

// Host is one libvirt hypervisor.
type Host struct {
	Name string `koanf:"name" json:"name"`
	// URI is a libvirt connection URI, e.g. qemu+tcp://10.0.0.5/system.
	URI string `koanf:"uri" json:"uri"`
	// Pool is the libvirt storage pool that holds base and VM volumes.
	Pool string `koanf:"pool" json:"pool"`
	// Reserved is kept for the host itself and never given to VMs.
	Reserved Reserved `koanf:"reserved" json:"reserved"`
	// CPUOvercommit is how many vCPUs each schedulable CPU may carry; 1
	// (the default) means none.
	CPUOvercommit float64 `koanf:"cpuOvercommit" json:"cpuOvercommit"`
	// MemoryOvercommit is how much VM memory each byte of schedulable host
	// memory may carry; 1 (the default) means none.
	MemoryOvercommit float64 `koanf:"memoryOvercommit" json:"memoryOvercommit"`
	// MaxConcurrentCalls bounds the libvirt calls each worker makes to the
	// host at once (restores, boots, clones, listings); 0: the default, 8.
	MaxConcurrentCalls int `koanf:"maxConcurrentCalls" json:"maxConcurrentCalls,omitempty"`
}

// MaxConcurrentCalls bounds autoscale.hosts[].maxConcurrentCalls.
const MaxConcurrentCalls = 64

// Reserved is host capacity kept out of placement.
type Reserved struct {
	Memory string `koanf:"memory" json:"memory,omitempty"`
	CPUs   int    `koanf:"cpus" json:"cpus,omitempty"`
}

// Group is an autoscaling group: VMs from one template held between Min and Max.
type Group struct {
	Name  string   `koanf:"name" json:"name"`
	Hosts []string `koanf:"hosts" json:"hosts"`
	Min   int      `koanf:"min" json:"min"`
	Max   int      `koanf:"max" json:"max"`
	// Desired is the size when the group is first created, or when this value
	// changes in the file; nil means Min.
	Desired   *int      `koanf:"desired" json:"desired,omitempty"`
	Scaling   Scaling   `koanf:"scaling" json:"scaling"`
	Placement Placement `koanf:"placement" json:"placement"`
	// HostFailureGracePeriod is how long a host may stay unreachable before
	// its members are replaced on other hosts.
	HostFailureGracePeriod time.Duration `koanf:"hostFailureGracePeriod" json:"hostFailureGracePeriod"`
	// UnhealthyGracePeriod is how long a member's domain may stay defined
	// but not running (paused, shut off, crashed, suspended) while the
	// group tries to bring it back, before it is replaced.
	UnhealthyGracePeriod time.Duration `koanf:"unhealthyGracePeriod" json:"unhealthyGracePeriod"`
	// CleanupTimeout bounds the retries of each step that removes a VM
	// before its member is reported failed (and retried each evaluation).
	CleanupTimeout time.Duration `koanf:"cleanupTimeout" json:"cleanupTimeout"`
	Template       Template      `koanf:"template" json:"template"`
	// Kubernetes makes the group's VMs nodes of the controller's cluster.
	Kubernetes GroupKubernetes `koanf:"kubernetes" json:"kubernetes"`
	// Schedules change the group's min, max or desired for windows of
	// time, each one a Temporal Schedule (see Schedule).
	Schedules []Schedule `koanf:"schedules" json:"schedules,omitempty"`
	// WarmPool keeps VMs booted and parked beside the group (see WarmPool).
	WarmPool *WarmPool `koanf:"warmPool" json:"warmPool,omitempty"`
	// Refresh says how a rolling refresh replaces VMs made from an older
	// template revision, and whether a template change starts one.
	Refresh Refresh `koanf:"refresh" json:"refresh"`
}

// Refresh modes.
const (
	// RefreshManual: a template change applies to new VMs only, until
	// premiscale refresh replaces the others.
	RefreshManual = "manual"
	// RefreshAuto: a template change starts a refresh.
	RefreshAuto = "auto"
)

// DefaultRefreshMinHealthy is AWS instance refresh's default.
const DefaultRefreshMinHealthy = 90

// Refresh is a group's rolling refresh settings, as AWS instance refresh
// preferences: members made from an older template revision are replaced
// in batches, each batch only once the previous one's replacements run,
// while MinHealthy percent of desired (rounded up) keep running.
type Refresh struct {
	// Mode is RefreshManual (default) or RefreshAuto.
	Mode string `koanf:"mode" json:"mode"`
	// MinHealthy is a percentage, "90%" or "90"; default 90%.
	MinHealthy string `koanf:"minHealthy" json:"minHealthy,omitempty"`
	// Batch caps the VMs replaced at once; 0: as many as MinHealthy allows.
	Batch int `koanf:"batch" json:"batch,omitempty"`
	// Checkpoints are percentages of the members to replace, ascending, at
	// which a refresh waits CheckpointDelay before it goes on, as AWS
	// instance refresh's checkpoints do. A refresh whose last checkpoint
	// is under 100 ends there (a canary).
	Checkpoints []int `koanf:"checkpoints" json:"checkpoints,omitempty"`
	// CheckpointDelay is the wait at each checkpoint; default 1h (AWS's).
	// Only with Checkpoints.
	CheckpointDelay *time.Duration `koanf:"checkpointDelay" json:"checkpointDelay,omitempty"`
}

// DefaultCheckpointDelay is AWS instance refresh's default.
const DefaultCheckpointDelay = time.Hour

// MaxCheckpointDelay is the longest wait at a checkpoint (AWS allows two
// days).
const MaxCheckpointDelay = 48 * time.Hour

// CheckCheckpoints explains what is wrong with refresh checkpoints, if
// anything: percentages from 1 to 100, ascending, each once.
func CheckCheckpoints(ps []int) error {
	for i, p := range ps {
		if p < 1 || p > 100 {
			return fmt.Errorf("must be percentages from 1 to 100, got %d", p)
		}
		if i > 0 && p <= ps[i-1] {
			return fmt.Errorf("must be ascending, each once, got %d after %d", p, ps[i-1])
		}
	}
	return nil
}

// CheckCheckpointDelay explains what is wrong with a checkpoint delay
// given with the checkpoints ps, if anything.
func CheckCheckpointDelay(d time.Duration, ps []int) error {
	switch {
	case len(ps) == 0:
		return fmt.Errorf("needs checkpoints to wait at")
	case d < 0 || d > MaxCheckpointDelay:
		return fmt.Errorf("must be from 0s to %s, got %s", MaxCheckpointDelay, d)
	}
	return nil
}

// Delay is the wait at each checkpoint.
func (r Refresh) Delay() time.Duration {
	if r.CheckpointDelay == nil {
		return DefaultCheckpointDelay
	}
	return *r.CheckpointDelay
}

// ParsePercent reads a percentage of 0 to 100, written "66%" or "66".
func ParsePercent(s string) (int, error) {
	n, err := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(s), "%"))
	if err != nil || n < 0 || n > 100 {
		return 0, fmt.Errorf("must be a percentage from 0%% to 100%%, got %q", s)
	}
	return n, nil
}

// MinHealthyPercent is MinHealthy as a number (validated).
func (r Refresh) MinHealthyPercent() int {
	if r.MinHealthy == "" {
		return DefaultRefreshMinHealthy
	}
	n, _ := ParsePercent(r.MinHealthy)
	return n
}

// Warm pool states: how a warm VM waits.
const (
	// WarmHibernated: managed save (memory written to disk, domain shut
	// off); back, already booted, in about two seconds. Holds disk.
	WarmHibernated = "hibernated"
	// WarmPaused: suspended in memory; back in well under a second. Holds
	// the VM's memory on its host.
	WarmPaused = "paused"
	// WarmStopped: shut down; entering the group is a boot (without the
	// clone, define and first-boot work). Holds only its disk.
	WarmStopped = "stopped"
)

// WarmPool is a group's pool of prepared VMs, as AWS warm pools: each is
// created, booted until its guest is up (Ready), then parked in State and
// kept outside the group's count. A scale-out takes warm VMs first, which
// is a restore or resume instead of a clone and boot, and the pool is
// refilled afterwards. Its size is Size, or with MinSize/MaxPreparedSize
// max(MinSize, MaxPreparedSize - desired): the VMs in the group and in
// the pool together stay at MaxPreparedSize (default: the group's max)
// while at least MinSize stay warm.
type WarmPool struct {
	Size            *int `koanf:"size" json:"size,omitempty"`
	MinSize         *int `koanf:"minSize" json:"minSize,omitempty"`
	MaxPreparedSize *int `koanf:"maxPreparedSize" json:"maxPreparedSize,omitempty"`
	// State is WarmHibernated (default), WarmPaused or WarmStopped.
	State string `koanf:"state" json:"state"`
	// ReuseOnScaleIn returns scaled-in VMs to the pool (while it has room)
	// instead of deleting them.
	ReuseOnScaleIn bool `koanf:"reuseOnScaleIn" json:"reuseOnScaleIn,omitempty"`
	// Ready says when a new warm VM's guest is up and may be parked.
	Ready WarmReady `koanf:"ready" json:"ready"`
}

// WarmReady is the readiness signal of a warm VM's guest. A VM that joins
// Kubernetes is ready once its node is Ready (it is cordoned while warm);
// any VM with ConsoleLine set, once a line of its serial console contains
// it; otherwise, once its domain runs.
type WarmReady struct {
	ConsoleLine string        `koanf:"consoleLine" json:"consoleLine,omitempty"`
	Timeout     time.Duration `koanf:"timeout" json:"timeout"`
}

// Target is how many VMs the pool holds when the group's desired size is
// desired and its max is max.
func (w *WarmPool) Target(desired, max int) int {
	if w == nil {
		return 0
	}
	if w.Size != nil {
		return *w.Size
	}
	lo, prepared := 0, max
	if w.MinSize != nil {
		lo = *w.MinSize
	}
	if w.MaxPreparedSize != nil {
		prepared = *w.MaxPreparedSize
	}
	return maxInt(lo, prepared-desired)
}

func maxInt(a, b int) int {
	if a > b {
		return a
	}
	return b
}

// Schedule is scheduled capacity: each time Cron fires (in TimeZone), the
// group's min and max become the ones set here for Duration, then return
// to the configuration's; desired is set as the window opens (and kept
// within the bounds while it lasts). Overlapping windows: the one that fired
// last governs (of two that fired together, the one listed later), as
// workflows/policy.Window documents. Each schedule is a Temporal Schedule,
// premiscale/group/<group>/schedule/<name>, which can be paused, triggered
// and inspected with the temporal CLI and UI.
type Schedule struct {
	Name string `koanf:"name" json:"name"`
	// Cron is a five-field cron expression (minute hour day-of-month
	// month day-of-week) or @hourly, @daily, @weekly, @monthly, @yearly.
	Cron string `koanf:"cron" json:"cron"`
	// TimeZone is an IANA zone name (Europe/Berlin); empty means UTC.
	TimeZone string `koanf:"timeZone" json:"timeZone,omitempty"`
	// Duration is how long each window lasts.
	Duration time.Duration `koanf:"duration" json:"duration"`
	// Min, Max and Desired apply during the window; unset ones stay the
	// configuration's. At least one must be set.
	Min     *int `koanf:"min" json:"min,omitempty"`
	Max     *int `koanf:"max" json:"max,omitempty"`
	Desired *int `koanf:"desired" json:"desired,omitempty"`
}

// GroupKubernetes is how a group's VMs join the cluster and leave it.
type GroupKubernetes struct {
	// Join is JoinNone (default), JoinKubeadm or JoinUserData.
	Join string `koanf:"join" json:"join"`
	// NodeName is a Go template of the node name; fields .VM and .Group.
	NodeName string `koanf:"nodeName" json:"nodeName"`
	// Labels and Taints are registered by the kubelet with the node.
	Labels map[string]string `koanf:"labels" json:"labels,omitempty"`
	Taints []Taint           `koanf:"taints" json:"taints,omitempty"`
	// UserData is the cloud-init user-data template for JoinUserData (or
	// UserDataFile, read when the config loads); fields .VM, .Group,
	// .NodeName, .ProviderID.
	UserData     string `koanf:"userData" json:"userData,omitempty"`
	UserDataFile string `koanf:"userDataFile" json:"userDataFile,omitempty"`
	// ReadyTimeout bounds the wait for the node to be Ready; past it the VM
	// counts as failed and is replaced.
	ReadyTimeout time.Duration `koanf:"readyTimeout" json:"readyTimeout"`
	Drain        Drain         `koanf:"drain" json:"drain"`
}

// Taint is one node taint.
type Taint struct {
	Key    string `koanf:"key" json:"key"`
	Value  string `koanf:"value" json:"value,omitempty"`
	Effect string `koanf:"effect" json:"effect"`
}

// Drain is how a joined VM's node is emptied before the VM is destroyed.
type Drain struct {
	// Timeout bounds the drain; past it OnTimeout applies.
	Timeout time.Duration `koanf:"timeout" json:"timeout"`
	// GracePeriod is each pod's termination grace period; -1s means each
	// pod's own.
	GracePeriod        *time.Duration `koanf:"gracePeriod" json:"gracePeriod,omitempty"`
	IgnoreDaemonSets   *bool          `koanf:"ignoreDaemonSets" json:"ignoreDaemonSets,omitempty"`
	DeleteEmptyDirData bool           `koanf:"deleteEmptyDirData" json:"deleteEmptyDirData,omitempty"`
	// Force also deletes pods no controller manages.
	Force bool `koanf:"force" json:"force,omitempty"`
	// OnTimeout is DrainAbort (default) or DrainForce.
	OnTimeout string `koanf:"onTimeout" json:"onTimeout"`
}

// Placement strategies a group may use.
const (
	PlacementSpread  = "spread"
	PlacementVacancy = "vacancy"
	PlacementBinpack = "binpack"
	PlacementRandom  = "random"
)

// Placement chooses the host of each new VM.
type Placement struct {
	// Strategy is spread (default), vacancy, binpack or random.
	Strategy string `koanf:"strategy" json:"strategy"`
	// MaxPerHost caps the group's VMs on one host; 0 means no cap.
	MaxPerHost int `koanf:"maxPerHost" json:"maxPerHost,omitempty"`
}

// ScalingMode is a group's scaling mode (Mode* constants). In a file, the
// YAML 1.1 booleans that tools such as Helm, PyYAML and yq make of an
// unquoted on and off read as ModeOn and ModeOff.
type ScalingMode string

// Scaling configures how a group is evaluated and resized by its checks.
type Scaling struct {
	EvaluationInterval time.Duration `koanf:"evaluationInterval" json:"evaluationInterval"`
	// Mode is ModeOn, ModeScaleOutOnly, ModeOff or ModeClusterAutoscaler.
	Mode ScalingMode `koanf:"mode" json:"mode"`
	// DryRun computes and shows decisions without changing the group.
	DryRun   bool      `koanf:"dryRun" json:"dryRun,omitempty"`
	Checks   []Check   `koanf:"checks" json:"checks,omitempty"`
	ScaleOut Direction `koanf:"scaleOut" json:"scaleOut"`
	ScaleIn  Direction `koanf:"scaleIn" json:"scaleIn"`
}

// Check is one Prometheus query and the strategy that turns its value into a
// recommended group size. The strategy's parameters sit beside it.
type Check struct {
	Name     string `koanf:"name" json:"name"`
	Query    string `koanf:"query" json:"query"`
	Strategy string `koanf:"strategy" json:"strategy"`
	// targetValue: the per-VM value to hold, and the relative band around
	// it in which nothing changes.
	Target    *float64 `koanf:"target" json:"target,omitempty"`
	Tolerance *float64 `koanf:"tolerance" json:"tolerance,omitempty"`
	// threshold: the check acts while lowerBound <= value < upperBound
	// (a missing bound is open), by exactly one of Delta, Percentage or Value.
	UpperBound *float64 `koanf:"upperBound" json:"upperBound,omitempty"`
	LowerBound *float64 `koanf:"lowerBound" json:"lowerBound,omitempty"`
	Delta      *int     `koanf:"delta" json:"delta,omitempty"`
	Percentage *float64 `koanf:"percentage" json:"percentage,omitempty"`
	Value      *int     `koanf:"value" json:"value,omitempty"`
	// OnError is OnErrorHold or OnErrorIgnore.
	OnError string `koanf:"onError" json:"onError"`
}

// Direction limits scaling in one direction.
type Direction struct {
	// Cooldown is the quiet time after any resize (by metrics or by hand)
	// before the checks may resize the group in this direction.
	Cooldown *time.Duration `koanf:"cooldown" json:"cooldown,omitempty"`
	// StabilizationWindow: scale-in goes only to the highest (scale-out only
	// to the lowest) recommendation seen within the window, as in the
	// Kubernetes HPA.
	StabilizationWindow *time.Duration `koanf:"stabilizationWindow" json:"stabilizationWindow,omitempty"`
	// MaxStep caps one resize: a count ("2") or a percentage of the current
	// size ("50%"). Empty means no cap.
	MaxStep string `koanf:"maxStep" json:"maxStep,omitempty"`
	// Selection (scaleIn only) picks the members a scale-in removes:
	// SelectNewest (default), SelectOldest or SelectLeastPods.
	Selection string `koanf:"selection" json:"selection,omitempty"`
}

// CooldownOr returns the cooldown, or def when unset.
func (d Direction) CooldownOr(def time.Duration) time.Duration {
	if d.Cooldown == nil {
		return def
	}
	return *d.Cooldown
}

// WindowOr returns the stabilization window, or def when unset.
func (d Direction) WindowOr(def time.Duration) time.Duration {
	if d.StabilizationWindow == nil {
		return def
	}
	return *d.StabilizationWindow
}

// Template describes the VMs of a group.
type Template struct {
	// BaseVolume names a volume in the host's pool that each VM's disk
	// overlays (qcow2 backing store). Empty means a blank disk of DiskSize.
	BaseVolume string `koanf:"baseVolume" json:"baseVolume,omitempty"`
	// DiskSize is the VM disk's virtual size ("10GiB"); empty means the base
	// volume's size.
	DiskSize   string  `koanf:"diskSize" json:"diskSize,omitempty"`
	VCPUs      int     `koanf:"vcpus" json:"vcpus"`
	Memory     string  `koanf:"memory" json:"memory"`
	DomainType string  `koanf:"domainType" json:"domainType"`
	Arch       string  `koanf:"arch" json:"arch"`
	Machine    string  `koanf:"machine" json:"machine,omitempty"`
	Kernel     string  `koanf:"kernel" json:"kernel,omitempty"`
	Initrd     string  `koanf:"initrd" json:"initrd,omitempty"`
	Cmdline    string  `koanf:"cmdline" json:"cmdline,omitempty"`
	Network    Network `koanf:"network" json:"network"`
	// ConsoleLog, when true, logs the serial console to
	// /var/log/libvirt/qemu/<vm>-console.log on the host.
	ConsoleLog bool `koanf:"consoleLog" json:"consoleLog,omitempty"`
	// ExtraDevicesXML is libvirt domain XML for extra <devices> children.
	ExtraDevicesXML string `koanf:"extraDevicesXML" json:"extraDevicesXML,omitempty"`
	// ShutdownTimeout bounds a graceful ACPI shutdown before the VM is
	// destroyed; 0s destroys at once. Unset means DefaultShutdownTimeout.
	ShutdownTimeout *time.Duration `koanf:"shutdownTimeout" json:"shutdownTimeout,omitempty"`
}

// ShutdownGrace is the effective ShutdownTimeout.
func (t Template) ShutdownGrace() time.Duration {
	if t.ShutdownTimeout == nil {
		return DefaultShutdownTimeout
	}
	return *t.ShutdownTimeout
}

// Network is a VM's single network interface.
type Network struct {
	Type   string `koanf:"type" json:"type"`
	Source string `koanf:"source" json:"source,omitempty"`
	Model  string `koanf:"model" json:"model,omitempty"`
}

// ApplyDefaults fills every unset field with its default.
func (c *Config) ApplyDefaults() {
	ctl := &c.Controller
	setStr(&ctl.StateDir, DefaultStateDir)
	setStr(&ctl.Log.Level, DefaultLogLevel)
	setStr(&ctl.Log.Format, DefaultLogFormat)
	setStr(&ctl.Metrics.Listen, DefaultMetricsListen)
	if ctl.Metrics.GroupPollInterval == 0 {
		ctl.Metrics.GroupPollInterval = DefaultGroupPollInterval
	}
	if ctl.HostWatch.ResyncInterval == 0 {
		ctl.HostWatch.ResyncInterval = DefaultResyncInterval
	}
	setStr(&ctl.Temporal.Namespace, DefaultNamespace)
	setStr(&ctl.Temporal.TaskQueue, DefaultTaskQueue)
	setStr(&ctl.Temporal.Embedded.Host, DefaultEmbeddedHost)
	setStr(&ctl.Temporal.Embedded.UI.Host, DefaultEmbeddedHost)
	if ctl.Temporal.Embedded.UI.Port == 0 {
		ctl.Temporal.Embedded.UI.Port = DefaultUIPort
	}
	if ctl.Temporal.Embedded.Port == 0 {
		ctl.Temporal.Embedded.Port = DefaultEmbeddedPort
	}
	if ctl.Prometheus.QueryTimeout == 0 {
		ctl.Prometheus.QueryTimeout = DefaultQueryTimeout
	}
	kc := &ctl.Kubernetes
	if kc.TokenTTL == 0 {
		kc.TokenTTL = DefaultTokenTTL
	}
	o := &c.Autoscale.Orphans
	setStr(&o.Action, DefaultOrphanAction)
	if o.GracePeriod == 0 {
		o.GracePeriod = DefaultOrphanGracePeriod
	}
	if o.ScanInterval == 0 {
		o.ScanInterval = DefaultOrphanScanInterval
	}
	for i := range c.Autoscale.Hosts {
		h := &c.Autoscale.Hosts[i]
		setStr(&h.Pool, DefaultPool)
		if h.CPUOvercommit == 0 {
			h.CPUOvercommit = 1
		}
		if h.MemoryOvercommit == 0 {
			h.MemoryOvercommit = 1
		}
	}
	for i := range c.Autoscale.Groups {
		g := &c.Autoscale.Groups[i]
		if len(g.Hosts) == 0 {
			for _, h := range c.Autoscale.Hosts {
				g.Hosts = append(g.Hosts, h.Name)
			}
		}
		if g.Desired == nil {
			d := g.Min
			g.Desired = &d
		}
		setStr(&g.Placement.Strategy, PlacementSpread)
		setStr(&g.Refresh.Mode, RefreshManual)
		if w := g.WarmPool; w != nil {
			setStr(&w.State, WarmHibernated)
			if w.Ready.Timeout == 0 {
				w.Ready.Timeout = DefaultWarmReadyTimeout
			}
		}
		if g.HostFailureGracePeriod == 0 {
			g.HostFailureGracePeriod = DefaultHostFailureGracePeriod
		}
		if g.UnhealthyGracePeriod == 0 {
			g.UnhealthyGracePeriod = DefaultUnhealthyGracePeriod
		}
		if g.CleanupTimeout == 0 {
			g.CleanupTimeout = DefaultCleanupTimeout
		}
		sc := &g.Scaling
		if sc.EvaluationInterval == 0 {
			sc.EvaluationInterval = DefaultEvaluationInterval
		}
		if sc.Mode == "" {
			sc.Mode = DefaultMode
		}
		setDur(&sc.ScaleOut.Cooldown, DefaultScaleOutCooldown)
		setDur(&sc.ScaleIn.Cooldown, DefaultScaleInCooldown)
		setDur(&sc.ScaleOut.StabilizationWindow, DefaultScaleOutWindow)
		setDur(&sc.ScaleIn.StabilizationWindow, DefaultScaleInWindow)
		setStr(&sc.ScaleIn.Selection, DefaultScaleInSelection)
		k := &g.Kubernetes
		setStr(&k.Join, DefaultJoin)
		setStr(&k.NodeName, DefaultNodeName)
		if k.ReadyTimeout == 0 {
			k.ReadyTimeout = DefaultReadyTimeout
		}
		if k.Drain.Timeout == 0 {
			k.Drain.Timeout = DefaultDrainTimeout
		}
		setDur(&k.Drain.GracePeriod, DefaultDrainGracePeriod)
		if k.Drain.IgnoreDaemonSets == nil {
			yes := true
			k.Drain.IgnoreDaemonSets = &yes
		}
		setStr(&k.Drain.OnTimeout, DefaultDrainOnTimeout)
		for j := range sc.Checks {
			c := &sc.Checks[j]
			setStr(&c.OnError, DefaultOnError)
			if c.Strategy == StrategyTargetValue && c.Tolerance == nil {
				tol := DefaultTolerance
				c.Tolerance = &tol
			}
		}
		t := &g.Template
		if t.VCPUs == 0 {
			t.VCPUs = DefaultVCPUs
		}
		setStr(&t.Memory, DefaultMemory)
		setStr(&t.DomainType, DefaultDomainType)
		setStr(&t.Arch, DefaultArch)
		setStr(&t.Network.Type, DefaultNetworkType)
		if t.Network.Type != NetworkNone {
			setStr(&t.Network.Model, "virtio")
		}
		if t.ShutdownTimeout == nil {
			d := DefaultShutdownTimeout
			t.ShutdownTimeout = &d
		}
	}
}

// Host returns the host named name.
func (c *Config) Host(name string) (Host, bool) {
	for _, h := range c.Autoscale.Hosts {
		if h.Name == name {
			return h, true
		}
	}
	return Host{}, false
}

// Group returns the group named name.
func (c *Config) Group(name string) (Group, bool) {
	for _, g := range c.Autoscale.Groups {
		if g.Name == name {
			return g, true
		}
	}
	return Group{}, false
}

// GroupNames lists the configured groups in file order.
func (c *Config) GroupNames() []string {
	names := make([]string, 0, len(c.Autoscale.Groups))
	for _, g := range c.Autoscale.Groups {
		names = append(names, g.Name)
	}
	return names
}

// TemporalAddress is the frontend address clients dial: the configured one, or
// the embedded server's.
func (c *Config) TemporalAddress() string {
	t := c.Controller.Temporal
	if t.Address != "" {
		return t.Address
	}
	host := t.Embedded.Host
	if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
		// Listening on every address: dial this machine's loopback.
		host = "127.0.0.1"
		if ip.To4() == nil {
			host = "::1"
		}
	}
	return joinHostPort(host, t.Embedded.Port)
}

// ClientTLS is the TLS the controller's (and the CLI's) Temporal client
// uses: controller.temporal.tls, or, for an embedded frontend serving the
// generated CA, that CA and the controller's client certificate from the
// state directory.
func (c *Config) ClientTLS() TLS {
	t := c.Controller.Temporal
	if c.UsesEmbedded() && t.Embedded.TLS.Generated() {
		dir := filepath.Join(c.Controller.StateDir, GeneratedTLSDir)
		return TLS{
			Enabled:  true,
			CAFile:   filepath.Join(dir, mtls.CAFile),
			CertFile: filepath.Join(dir, mtls.ClientCertFile),
			KeyFile:  filepath.Join(dir, mtls.ClientKeyFile),
		}
	}
	return t.TLS
}

// UsesEmbedded reports whether the controller runs the in-process Temporal server.
func (c *Config) UsesEmbedded() bool { return c.Controller.Temporal.Address == "" }

func setDur(p **time.Duration, def time.Duration) {
	if *p == nil {
		d := def
		*p = &d
	}
}

func setStr(p *string, def string) {
	if *p == "" {
		*p = def
	}
}
