package config

import (
	"net"
)

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

// clusterAutoscaler checks controller.clusterAutoscaler.
func (v *validator) clusterAutoscaler(ca ClusterAutoscaler) {
	if ca.Listen != "" {
		if _, _, err := net.SplitHostPort(ca.Listen); err != nil {
			v.add("controller.clusterAutoscaler.listen", "must be host:port: %v", err)
		}
		if !ca.Insecure && (ca.CertFile == "" || ca.KeyFile == "" || ca.ClientCAFile == "") {
			v.add("controller.clusterAutoscaler", "certFile, keyFile and clientCAFile are required (mutual TLS), unless insecure: true")
		}
		if ca.Insecure && (ca.CertFile != "" || ca.KeyFile != "" || ca.ClientCAFile != "") {
			v.add("controller.clusterAutoscaler.insecure", "true but TLS files are set; choose one")
		}
		if host, _, err := net.SplitHostPort(ca.Listen); err == nil && ca.Insecure {
			if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
				v.add("controller.clusterAutoscaler.insecure", "only on a loopback listen address (127.0.0.1, ::1), got %q: anyone who reaches it could resize the groups", ca.Listen)
			}
		}
		if !ca.Insecure && len(ca.AllowedClients) == 0 {
			v.add("controller.clusterAutoscaler.allowedClients", "must list the client certificate names (common name or SAN) that may call, e.g. [cluster-autoscaler]: any certificate of the client CA would otherwise resize the groups")
		}
	}
}
