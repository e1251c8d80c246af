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
	// DSNFile holds the whole DSN instead (password and all, as the
	// Secrets of PostgreSQL operators carry it: a key "uri"), read at start.
	DSNFile string `koanf:"dsnFile" json:"dsnFile,omitempty"`
	// PasswordFile holds the password (not in the DSN then), read at start.
	PasswordFile string `koanf:"passwordFile" json:"passwordFile,omitempty"`
}

// Set reports whether the embedded server uses PostgreSQL.
func (p EmbeddedPostgres) Set() bool { return p.DSN != "" || p.DSNFile != "" }

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
	// CertFile and KeyFile are the client certificate the UI reaches the
	// frontend with, from embedded.tls.clientCAFile with the role reader
	// (organizational unit premiscale:reader); required with your own CA.
	// With the generated CA, the UI uses the reader certificate generated
	// beside it.
	CertFile string `koanf:"certFile" json:"certFile,omitempty"`
	KeyFile  string `koanf:"keyFile" json:"keyFile,omitempty"`
}

// On reports whether the UI is served.
func (u EmbeddedUI) On() bool { return u.Enabled == nil || *u.Enabled }

// EmbeddedTLS is the embedded frontend's mutual TLS: every client (the
// controller itself, remote workers, the temporal CLI, the Temporal UI)
// presents a certificate from the client CA, on loopback too, and the
// certificate's role (an organizational unit premiscale:worker,
// premiscale:operator or premiscale:reader) decides what it may do.
type EmbeddedTLS struct {
	// Enabled may only be true (the default): the frontend always
	// authenticates its clients. Kept so that older files still load.
	Enabled *bool `koanf:"enabled" json:"enabled,omitempty"`
	// CertFile, KeyFile and ClientCAFile are the frontend's certificate and
	// key and the CA that client certificates must chain to, re-read when
	// they change. Leave all three empty to use a private CA that the
	// controller generates in <stateDir>/tls (keys 0600), with a server
	// certificate for loopback, localhost, this machine's host name, Host and
	// ServerNames, a client certificate for the controller itself (role
	// worker) and one for the Web UI (role reader);
	// `premiscale tls issue NAME --role ROLE` issues more from it.
	CertFile     string `koanf:"certFile" json:"certFile,omitempty"`
	KeyFile      string `koanf:"keyFile" json:"keyFile,omitempty"`
	ClientCAFile string `koanf:"clientCAFile" json:"clientCAFile,omitempty"`
	// ServerNames are more DNS names or IP addresses for the generated
	// server certificate (the names remote clients dial).
	ServerNames []string `koanf:"serverNames" json:"serverNames,omitempty"`
	// AllowedClients are the client certificate names (common name, or a
	// DNS or URI SAN) that may connect. Required with ClientCAFile; with the
	// generated CA, empty means any certificate it issued, and the
	// controller's own and the UI's are always allowed.
	AllowedClients []string `koanf:"allowedClients" json:"allowedClients,omitempty"`
}

// Generated reports whether the embedded frontend serves TLS from the
// private CA generated in the state directory.
func (e EmbeddedTLS) Generated() bool {
	return e.CertFile == "" && e.KeyFile == "" && e.ClientCAFile == ""
}

// GeneratedTLSDir is where, under controller.stateDir, the generated CA and
// certificates of the embedded frontend live.
const GeneratedTLSDir = "tls"

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
	if a := c.Controller.Temporal.Address; a != "" {
		return a
	}
	return c.TemporalAddressOfEmbedded()
}

// TemporalAddressOfEmbedded is the address a client on this machine dials
// to reach the embedded server.
func (c *Config) TemporalAddressOfEmbedded() string {
	t := c.Controller.Temporal
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
	if c.UsesEmbedded() {
		return c.EmbeddedClientTLS()
	}
	return c.Controller.Temporal.TLS
}

// EmbeddedClientTLS is the TLS this process uses to reach the embedded
// frontend it runs (the controller, or `premiscale server` whatever its
// address says): the generated CA and the controller's certificate, or
// controller.temporal.tls with your own CA.
func (c *Config) EmbeddedClientTLS() TLS {
	t := c.Controller.Temporal
	if !t.Embedded.TLS.Generated() {
		return t.TLS
	}
	return c.generatedTLS(mtls.ClientCertFile, mtls.ClientKeyFile)
}

// UIClientTLS is the TLS the embedded Web UI reaches the frontend with: a
// certificate with the role reader.
func (c *Config) UIClientTLS() TLS {
	t := c.Controller.Temporal
	if !t.Embedded.TLS.Generated() {
		return TLS{Enabled: true, CAFile: t.TLS.CAFile, ServerName: t.TLS.ServerName, CertFile: t.Embedded.UI.CertFile, KeyFile: t.Embedded.UI.KeyFile}
	}
	return c.generatedTLS(mtls.UICertFile, mtls.UIKeyFile)
}

// generatedTLS is a client TLS with the generated CA and the certificate
// and key of that name in its directory.
func (c *Config) generatedTLS(cert, key string) TLS {
	dir := filepath.Join(c.Controller.StateDir, GeneratedTLSDir)
	return TLS{Enabled: true, CAFile: filepath.Join(dir, mtls.CAFile), CertFile: filepath.Join(dir, cert), KeyFile: filepath.Join(dir, key)}
}

// UsesEmbedded reports whether the controller runs the in-process Temporal server.
func (c *Config) UsesEmbedded() bool { return c.Controller.Temporal.Address == "" }
