package config

import (
	"net/url"
	"time"
)

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

// needsPrometheus reports whether any group evaluates checks.
func (c *Config) needsPrometheus() bool {
	for _, g := range c.Autoscale.Groups {
		if len(g.Scaling.Checks) > 0 && g.Scaling.Mode != ModeOff && g.Scaling.Mode != ModeClusterAutoscaler {
			return true
		}
	}
	return false
}

func (v *validator) prometheus(p string, pr Prometheus, required bool) {
	if pr.Address == "" {
		if required {
			v.add(p+".address", "must be set: a group has checks (e.g. http://127.0.0.1:9090)")
		}
	} else if u, err := url.Parse(pr.Address); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		v.add(p+".address", "must be an http:// or https:// URL, got %q", pr.Address)
	}
	if pr.QueryTimeout <= 0 {
		v.add(p+".queryTimeout", "must be > 0, got %s", pr.QueryTimeout)
	}
	if pr.BasicAuth.Password != "" && pr.BasicAuth.PasswordFile != "" {
		v.add(p+".basicAuth", "set password or passwordFile, not both")
	}
	if pr.BearerToken != "" && pr.BearerTokenFile != "" {
		v.add(p+".bearerToken", "set bearerToken or bearerTokenFile, not both")
	}
	if pr.BasicAuth.Username != "" && (pr.BearerToken != "" || pr.BearerTokenFile != "") {
		v.add(p+".basicAuth", "set basicAuth or a bearer token, not both")
	}
	if (pr.TLS.CertFile == "") != (pr.TLS.KeyFile == "") {
		v.add(p+".tls", "certFile and keyFile must be set together")
	}
}
