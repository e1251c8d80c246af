package mtls

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// The files a generated CA keeps in its directory. Keys are 0600.
const (
	CAFile         = "ca.crt"
	CAKeyFile      = "ca.key"
	ServerCertFile = "server.crt"
	ServerKeyFile  = "server.key"
	ClientCertFile = "client.crt"
	ClientKeyFile  = "client.key"
	UICertFile     = "ui.crt"
	UIKeyFile      = "ui.key"
)

// ControllerName is the common name of the controller's own client
// certificate in a generated CA's directory (role worker).
const ControllerName = "premiscale-controller"

// UIName is the common name of the Temporal Web UI's client certificate in
// a generated CA's directory (role reader).
const UIName = "premiscale-ui"

// Lifetimes of generated certificates; a server or client certificate is
// renewed at start when less than RenewBefore of it is left.
const (
	CALifetime   = 10 * 365 * 24 * time.Hour
	CertLifetime = 365 * 24 * time.Hour
	RenewBefore  = 30 * 24 * time.Hour
)

// Ensure keeps a private CA in dir (created 0700 if missing), a server
// certificate for names (DNS names or IP addresses; loopback and localhost
// are always in it), the controller's client certificate (role worker) and
// the Web UI's (role reader). Existing files are reused; the server
// certificate is replaced when its names differ or it nears expiry, a client
// certificate when it nears expiry or lacks its role. A CA that
// nears expiry is an error: replacing it would lock out every client
// certificate issued from it.
func Ensure(dir string, names []string, now time.Time) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		return err
	}
	ca, caKey, err := loadPair(filepath.Join(dir, CAFile), filepath.Join(dir, CAKeyFile))
	switch {
	case errors.Is(err, os.ErrNotExist):
		ca, caKey, err = newCA(dir, now)
		if err != nil {
			return err
		}
	case err != nil:
		return err
	case now.Add(RenewBefore).After(ca.NotAfter):
		return fmt.Errorf("the generated CA %s expires on %s: move %s away to generate a new one, and reissue client certificates", filepath.Join(dir, CAFile), ca.NotAfter.Format(time.DateOnly), dir)
	}
	dns, ips := splitNames(append([]string{"localhost", "127.0.0.1", "::1"}, names...))
	if cur, _, err := loadPair(filepath.Join(dir, ServerCertFile), filepath.Join(dir, ServerKeyFile)); err != nil || !fresh(cur, ca, now) || !sameNames(cur, dns, ips) {
		if err := issue(ca, caKey, dir, "server", "premiscale-temporal", "", dns, ips, x509.ExtKeyUsageServerAuth, now); err != nil {
			return err
		}
	}
	for _, c := range []struct {
		cert, key, cn string
		role          Role
	}{
		{ClientCertFile, ClientKeyFile, ControllerName, RoleWorker},
		{UICertFile, UIKeyFile, UIName, RoleReader},
	} {
		cur, _, err := loadPair(filepath.Join(dir, c.cert), filepath.Join(dir, c.key))
		if err == nil && fresh(cur, ca, now) && RoleOf(cur.Subject) == c.role {
			continue
		}
		if err := issue(ca, caKey, dir, strings.TrimSuffix(c.cert, ".crt"), c.cn, c.role, nil, nil, x509.ExtKeyUsageClientAuth, now); err != nil {
			return err
		}
	}
	return nil
}

// Issue signs a client certificate with common name name and role using
// the CA in dir, and writes <name>.crt, <name>.key (0600) and ca.crt into
// out: what a remote worker, the temporal CLI or a Temporal UI needs to
// connect.
func Issue(dir, name string, role Role, out string, now time.Time) error {
	if name == "" || filepath.Base(name) != name || name == "ca" {
		return fmt.Errorf("certificate name %q: must be a plain name (not ca, no '/')", name)
	}
	if abs(out) == abs(dir) {
		return fmt.Errorf("output directory %s is the CA's own directory: choose another", out)
	}
	if _, err := ParseRole(string(role)); err != nil {
		return err
	}
	ca, caKey, err := loadPair(filepath.Join(dir, CAFile), filepath.Join(dir, CAKeyFile))
	if err != nil {
		return fmt.Errorf("generated CA in %s (start the controller, or premiscale server, once to generate it): %w", dir, err)
	}
	if err := os.MkdirAll(out, 0o700); err != nil {
		return err
	}
	if err := issue(ca, caKey, out, name, name, role, nil, nil, x509.ExtKeyUsageClientAuth, now); err != nil {
		return err
	}
	return writeFile(filepath.Join(out, CAFile), pemBlock("CERTIFICATE", ca.Raw), 0o644)
}

func newCA(dir string, now time.Time) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: "PremiScale private CA", Organization: []string{"PremiScale"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(CALifetime),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, err
	}
	if err := writeKey(filepath.Join(dir, CAKeyFile), key); err != nil {
		return nil, nil, err
	}
	if err := writeFile(filepath.Join(dir, CAFile), pemBlock("CERTIFICATE", der), 0o644); err != nil {
		return nil, nil, err
	}
	ca, err := x509.ParseCertificate(der)
	return ca, key, err
}

// issue writes <base>.crt and <base>.key (0600) into dir: a certificate for
// cn with role (none if ""), signed by ca, for one use.
func issue(ca *x509.Certificate, caKey *ecdsa.PrivateKey, dir, base, cn string, role Role, dns []string, ips []net.IP, usage x509.ExtKeyUsage, now time.Time) error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	notAfter := now.Add(CertLifetime)
	if notAfter.After(ca.NotAfter) {
		notAfter = ca.NotAfter
	}
	subject := pkix.Name{CommonName: cn, Organization: []string{"PremiScale"}}
	if role != "" {
		subject.OrganizationalUnit = []string{RolePrefix + string(role)}
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      subject,
		DNSNames:     dns,
		IPAddresses:  ips,
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{usage},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return err
	}
	// The key first: a certificate is never on disk without its key.
	if err := writeKey(filepath.Join(dir, base+".key"), key); err != nil {
		return err
	}
	return writeFile(filepath.Join(dir, base+".crt"), pemBlock("CERTIFICATE", der), 0o644)
}

// loadPair reads a certificate and its ECDSA key; an error wraps
// os.ErrNotExist when either file is missing.
func loadPair(certFile, keyFile string) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	pair, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", certFile, err)
	}
	key, ok := pair.PrivateKey.(*ecdsa.PrivateKey)
	if !ok {
		return nil, nil, fmt.Errorf("%s: not an ECDSA key", keyFile)
	}
	cert, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", certFile, err)
	}
	return cert, key, nil
}

// fresh reports whether cert was signed by ca and has more than RenewBefore left.
func fresh(cert, ca *x509.Certificate, now time.Time) bool {
	return cert.CheckSignatureFrom(ca) == nil && now.Add(RenewBefore).Before(cert.NotAfter)
}

func sameNames(cert *x509.Certificate, dns []string, ips []net.IP) bool {
	if !slices.Equal(cert.DNSNames, dns) || len(cert.IPAddresses) != len(ips) {
		return false
	}
	for i := range ips {
		if !cert.IPAddresses[i].Equal(ips[i]) {
			return false
		}
	}
	return true
}

// splitNames sorts names into DNS names and IP addresses, without duplicates.
func splitNames(names []string) ([]string, []net.IP) {
	var dns []string
	var ips []net.IP
	for _, n := range names {
		if ip := net.ParseIP(n); ip != nil {
			if !slices.ContainsFunc(ips, ip.Equal) {
				ips = append(ips, ip)
			}
		} else if n != "" && !slices.Contains(dns, n) {
			dns = append(dns, n)
		}
	}
	return dns, ips
}

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		panic(err) // crypto/rand does not fail on Linux
	}
	return n
}

func writeKey(path string, key *ecdsa.PrivateKey) error {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return err
	}
	return writeFile(path, pemBlock("PRIVATE KEY", der), 0o600)
}

func pemBlock(typ string, der []byte) []byte {
	var b bytes.Buffer
	_ = pem.Encode(&b, &pem.Block{Type: typ, Bytes: der})
	return b.Bytes()
}

// writeFile replaces path atomically (a temporary file renamed into place),
// with mode perm, so a reader never sees half a file.
func writeFile(path string, data []byte, perm os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer func() { _ = os.Remove(tmp.Name()) }()
	if err := tmp.Chmod(perm); err != nil {
		_ = tmp.Close()
		return err
	}
	if _, err := tmp.Write(data); err != nil {
		_ = tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

func abs(p string) string {
	if a, err := filepath.Abs(p); err == nil {
		return a
	}
	return filepath.Clean(p)
}
