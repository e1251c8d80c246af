package config

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"path/filepath"
	"strings"

	"github.com/premiscale/premiscale/internal/mtls"
)

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

// temporal checks how PremiScale reaches Temporal, or runs it embedded.
func (v *validator) temporal(t Temporal) {
	if t.Namespace == "" {
		v.add("controller.temporal.namespace", "must not be empty")
	}
	if t.TaskQueue == "" {
		v.add("controller.temporal.taskQueue", "must not be empty")
	}
	if t.APIKey != "" && t.APIKeyFile != "" {
		v.add("controller.temporal.apiKey", "set apiKey or apiKeyFile, not both")
	}
	if (t.APIKey != "" || t.APIKeyFile != "") && !t.TLS.Enabled {
		v.add("controller.temporal.tls.enabled", "must be true with an API key: the key would cross the network in plain text")
	}
	if (t.TLS.CertFile == "") != (t.TLS.KeyFile == "") {
		v.add("controller.temporal.tls", "certFile and keyFile must be set together")
	}
	if pg := t.Embedded.Postgres; pg.DSN != "" && pg.DSNFile != "" {
		v.add("controller.temporal.embedded.postgres.dsnFile", "set dsn or dsnFile, not both")
	} else if pg.DSN != "" {
		d, err := ParsePostgresDSN(pg.DSN)
		switch {
		case err != nil:
			v.add("controller.temporal.embedded.postgres.dsn", "%v", err)
		case d.Password != "" && pg.PasswordFile != "":
			v.add("controller.temporal.embedded.postgres.passwordFile", "set a password in the dsn or passwordFile, not both")
		}
	} else if pg.PasswordFile != "" && pg.DSNFile == "" {
		v.add("controller.temporal.embedded.postgres.passwordFile", "needs controller.temporal.embedded.postgres.dsn or dsnFile")
	}
	if t.Address == "" {
		v.embedded(t)
	}

}

// embedded checks the embedded frontend's listen address and TLS, and the
// controller's own client TLS to it.
func (v *validator) embedded(t Temporal) {
	e := t.Embedded
	ip := net.ParseIP(e.Host)
	if ip == nil {
		v.add("controller.temporal.embedded.host", "must be an IP address, got %q", e.Host)
	}
	if e.Port < 1 || e.Port > 65535 {
		v.add("controller.temporal.embedded.port", "must be in [1, 65535], got %d", e.Port)
	}
	if e.UI.On() {
		if ip := net.ParseIP(e.UI.Host); ip == nil || !ip.IsLoopback() {
			v.add("controller.temporal.embedded.ui.host", "must be a loopback address (127.0.0.1 or ::1), got %q: the Temporal UI has no login, and whoever reaches it can signal, reset and terminate every workflow; reach it through an SSH tunnel or kubectl port-forward", e.UI.Host)
		}
		if e.UI.Port < 1 || e.UI.Port > 65535 || e.UI.Port == e.Port {
			v.add("controller.temporal.embedded.ui.port", "must be in [1, 65535] and not the frontend's port, got %d", e.UI.Port)
		}
	}
	if (e.UI.CertFile == "") != (e.UI.KeyFile == "") {
		v.add("controller.temporal.embedded.ui", "certFile and keyFile must be set together")
	}
	const p = "controller.temporal.embedded.tls"
	if e.TLS.Enabled != nil && !*e.TLS.Enabled {
		v.add(p+".enabled", "cannot be false: the embedded frontend always requires client certificates, on loopback too (its generated CA and certificates need no setup); remove the setting")
	}
	for i, n := range e.TLS.ServerNames {
		if net.ParseIP(n) == nil && (!dns1123RE.MatchString(n) || len(n) > 253) {
			v.add(fmt.Sprintf("%s.serverNames[%d]", p, i), "must be a DNS name or an IP address, got %q", n)
		}
	}
	if e.TLS.Generated() {
		if t.TLS.Enabled {
			v.add("controller.temporal.tls.enabled", "leave controller.temporal.tls unset with the generated CA of controller.temporal.embedded.tls: the controller uses the client certificate generated beside it")
		}
		if e.UI.CertFile != "" {
			v.add("controller.temporal.embedded.ui.certFile", "only with your own CA (controller.temporal.embedded.tls.clientCAFile): with the generated CA the UI uses the reader certificate generated beside it")
		}
		return
	}
	if e.UI.On() && e.UI.CertFile == "" {
		v.add("controller.temporal.embedded.ui.certFile", "must name a client certificate with the role reader (organizational unit premiscale:reader) from %s.clientCAFile, and keyFile its key: the UI may only read; or set controller.temporal.embedded.ui.enabled: false", p)
	}
	if e.TLS.CertFile == "" || e.TLS.KeyFile == "" || e.TLS.ClientCAFile == "" {
		v.add(p, "certFile, keyFile and clientCAFile must be set together (or all left empty to generate a CA in controller.stateDir)")
	}
	if len(e.TLS.ServerNames) > 0 {
		v.add(p+".serverNames", "only for the generated server certificate; leave it empty with certFile")
	}
	if len(e.TLS.AllowedClients) == 0 {
		v.add(p+".allowedClients", "must list the client certificate names (CN or SAN) that may connect: clientCAFile may sign certificates for anyone")
	}
	if !t.TLS.Enabled || t.TLS.CertFile == "" {
		v.add("controller.temporal.tls", "must be enabled with certFile and keyFile (a client certificate from %s.clientCAFile, on its allowedClients): the controller connects to its own frontend with it", p)
	}
}
