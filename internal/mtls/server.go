// Package mtls serves mutual TLS the way PremiScale's listeners need it:
// certificates re-read from their files when they change, client
// certificates checked against an allow-list of names, and a private CA
// generated into the state directory for those who bring none.
package mtls

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strings"
	"sync"
)

// Server names a listener's certificate files and who may connect.
type Server struct {
	// CertFile and KeyFile are the server's certificate and key.
	CertFile, KeyFile string
	// ClientCAFile is the CA that client certificates must chain to.
	ClientCAFile string
	// AllowedClients are the names (common name, or a DNS or URI SAN) a
	// client certificate must carry one of; empty allows any certificate
	// from ClientCAFile.
	AllowedClients []string
	// Field is the configuration path of these settings, for messages
	// (e.g. "controller.clusterAutoscaler").
	Field string
	// Log receives reloads and reload failures.
	Log *slog.Logger
}

// Config loads the files once (an error names the field) and returns a
// server configuration that requires and verifies a client certificate.
// Every handshake takes the files' current contents: a changed file is
// re-read (cert-manager rotates them in place); one that does not load,
// caught half-written, keeps the previous contents.
func (s Server) Config() (*tls.Config, error) {
	r := &files{s: s}
	base, err := r.load()
	if err != nil {
		return nil, err
	}
	r.cfg = base
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		ClientAuth: tls.RequireAndVerifyClientCert,
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			return r.current(), nil
		},
	}, nil
}

// files holds the configuration as last read from the files.
type files struct {
	s Server

	mu     sync.Mutex
	cfg    *tls.Config
	stamps string
}

// stamp identifies the files' current versions (size and modification time).
func (r *files) stamp() string {
	var b strings.Builder
	for _, f := range []string{r.s.CertFile, r.s.KeyFile, r.s.ClientCAFile} {
		if fi, err := os.Stat(f); err == nil {
			fmt.Fprintf(&b, "%s:%d:%d;", f, fi.Size(), fi.ModTime().UnixNano())
		}
	}
	return b.String()
}

// current returns the configuration, re-read if a file changed since.
func (r *files) current() *tls.Config {
	r.mu.Lock()
	defer r.mu.Unlock()
	st := r.stamp()
	if st == r.stamps {
		return r.cfg
	}
	cfg, err := r.load()
	if err != nil {
		r.log().Warn(r.s.Field+": TLS files changed but do not load; serving the previous ones", "error", err)
		return r.cfg
	}
	r.log().Info(r.s.Field + ": TLS files reloaded")
	r.cfg = cfg
	return cfg
}

func (r *files) log() *slog.Logger {
	if r.s.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return r.s.Log
}

func (r *files) load() (*tls.Config, error) {
	st := r.stamp()
	s := r.s
	cert, err := tls.LoadX509KeyPair(s.CertFile, s.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("%s.certFile/keyFile: %w", s.Field, err)
	}
	pem, err := os.ReadFile(s.ClientCAFile)
	if err != nil {
		return nil, fmt.Errorf("%s.clientCAFile: %w", s.Field, err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%s.clientCAFile %s: no PEM certificate", s.Field, s.ClientCAFile)
	}
	r.stamps = st
	allowed := slices.Clone(s.AllowedClients)
	field := s.Field
	return &tls.Config{
		Certificates: []tls.Certificate{cert},
		ClientCAs:    pool,
		ClientAuth:   tls.RequireAndVerifyClientCert,
		MinVersion:   tls.VersionTLS12,
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return errors.New("no client certificate")
			}
			if len(allowed) > 0 && ClientIdentity(cs.PeerCertificates[0], allowed) == "" {
				return fmt.Errorf("client certificate %q is not in %s.allowedClients", cs.PeerCertificates[0].Subject.CommonName, field)
			}
			return nil
		},
	}, nil
}

// ClientIdentity returns the name by which cert is allowed: its common
// name, or one of its DNS or URI SANs, that allowed lists; "" if none.
func ClientIdentity(cert *x509.Certificate, allowed []string) string {
	names := []string{cert.Subject.CommonName}
	names = append(names, cert.DNSNames...)
	for _, u := range cert.URIs {
		names = append(names, u.String())
	}
	for _, n := range names {
		if n != "" && slices.Contains(allowed, n) {
			return n
		}
	}
	return ""
}
