package mtls

import (
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func readCert(t *testing.T, path string) *x509.Certificate {
	t.Helper()
	pair, err := tls.LoadX509KeyPair(path, strings.TrimSuffix(path, ".crt")+".key")
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestEnsureGeneratesACAAndCertificatesThatVerify(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "tls")
	now := time.Now()
	if err := Ensure(dir, []string{"ctl.example", "10.1.2.3"}, now); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(dir)
	if err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("dir: %v %v, want mode 0700", fi, err)
	}
	for _, k := range []string{CAKeyFile, ServerKeyFile, ClientKeyFile, UIKeyFile} {
		if fi, err := os.Stat(filepath.Join(dir, k)); err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: %v %v, want mode 0600", k, fi, err)
		}
	}
	ca := readCert(t, filepath.Join(dir, CAFile))
	roots := x509.NewCertPool()
	roots.AddCert(ca)
	srv := readCert(t, filepath.Join(dir, ServerCertFile))
	for _, name := range []string{"localhost", "ctl.example", "127.0.0.1", "::1", "10.1.2.3"} {
		if _, err := srv.Verify(x509.VerifyOptions{DNSName: name, Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
			t.Errorf("server certificate for %s: %v", name, err)
		}
	}
	if _, err := srv.Verify(x509.VerifyOptions{DNSName: "other.example", Roots: roots}); err == nil {
		t.Error("server certificate verifies for a name it was not given")
	}
	cl := readCert(t, filepath.Join(dir, ClientCertFile))
	if cl.Subject.CommonName != ControllerName || RoleOf(cl.Subject) != RoleWorker {
		t.Errorf("client CN %q role %q, want %q, worker", cl.Subject.CommonName, RoleOf(cl.Subject), ControllerName)
	}
	ui := readCert(t, filepath.Join(dir, UICertFile))
	if ui.Subject.CommonName != UIName || RoleOf(ui.Subject) != RoleReader {
		t.Errorf("UI CN %q role %q, want %q, reader", ui.Subject.CommonName, RoleOf(ui.Subject), UIName)
	}
	if _, err := ui.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Errorf("UI certificate: %v", err)
	}
	if _, err := cl.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Errorf("client certificate: %v", err)
	}
	if _, err := cl.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err == nil {
		t.Error("the client certificate also serves as a server's")
	}
}

func TestEnsureKeepsWhatIsValidAndRenewsWhatIsNot(t *testing.T) {
	dir := t.TempDir()
	now := time.Now()
	if err := Ensure(dir, []string{"a.example"}, now); err != nil {
		t.Fatal(err)
	}
	read := func(f string) string {
		b, err := os.ReadFile(filepath.Join(dir, f))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	ca, srv, cl := read(CAFile), read(ServerCertFile), read(ClientCertFile)

	// Same names, a day later: nothing changes (clients keep trusting).
	if err := Ensure(dir, []string{"a.example"}, now.Add(24*time.Hour)); err != nil {
		t.Fatal(err)
	}
	if read(CAFile) != ca || read(ServerCertFile) != srv || read(ClientCertFile) != cl {
		t.Fatal("a second Ensure with the same names replaced certificates")
	}
	// Another name: a new server certificate from the same CA.
	if err := Ensure(dir, []string{"b.example"}, now.Add(24*time.Hour)); err != nil {
		t.Fatal(err)
	}
	if read(CAFile) != ca || read(ClientCertFile) != cl {
		t.Fatal("a new server name replaced the CA or the client certificate")
	}
	if read(ServerCertFile) == srv {
		t.Fatal("the server certificate was kept although its names changed")
	}
	if got := readCert(t, filepath.Join(dir, ServerCertFile)).DNSNames; strings.Join(got, ",") != "localhost,b.example" {
		t.Errorf("server names %v", got)
	}
	// Near the end of its life, the client certificate is renewed.
	later := now.Add(CertLifetime - RenewBefore + time.Hour)
	if err := Ensure(dir, []string{"b.example"}, later); err != nil {
		t.Fatal(err)
	}
	if read(ClientCertFile) == cl || read(CAFile) != ca {
		t.Fatal("the client certificate was not renewed near expiry, or the CA changed")
	}
	if na := readCert(t, filepath.Join(dir, ClientCertFile)).NotAfter; !na.After(later.Add(RenewBefore)) {
		t.Errorf("renewed client certificate ends %v", na)
	}
	// A CA near its end is an error, not a silent lock-out of every client.
	if err := Ensure(dir, nil, now.Add(CALifetime-RenewBefore+time.Hour)); err == nil || !strings.Contains(err.Error(), "expires") {
		t.Errorf("Ensure with an expiring CA: %v", err)
	}
}

func TestIssueWritesAClientCertificateFromTheCA(t *testing.T) {
	dir, out := t.TempDir(), t.TempDir()
	now := time.Now()
	if err := Issue(dir, "alice", RoleOperator, out, now); err == nil {
		t.Fatal("Issue without a CA succeeded")
	}
	if err := Ensure(dir, nil, now); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{"", "ca", "../x", "a/b"} {
		if err := Issue(dir, bad, RoleOperator, out, now); err == nil {
			t.Errorf("Issue(%q) succeeded", bad)
		}
	}
	if err := Issue(dir, "server", RoleOperator, dir, now); err == nil {
		t.Error("Issue into the CA's own directory succeeded (it would replace the server certificate)")
	}
	if err := Issue(dir, "alice", RoleOperator, out, now); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(filepath.Join(out, "alice.key")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("alice.key: %v %v", fi, err)
	}
	alice := readCert(t, filepath.Join(out, "alice.crt"))
	roots := x509.NewCertPool()
	roots.AddCert(readCert(t, filepath.Join(dir, CAFile)))
	if _, err := alice.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Fatal(err)
	}
	if got := RoleOf(alice.Subject); got != RoleOperator {
		t.Errorf("alice's role %q, want operator", got)
	}
	if err := Issue(dir, "bob", Role("admin"), out, now); err == nil || !strings.Contains(err.Error(), "role") {
		t.Errorf("Issue with role admin: %v", err)
	}
	if got := ClientIdentity(alice, []string{"bob", "alice"}); got != "alice" {
		t.Errorf("ClientIdentity = %q", got)
	}
	if got := ClientIdentity(alice, []string{"bob"}); got != "" {
		t.Errorf("ClientIdentity with alice not allowed = %q", got)
	}
}

func TestSplitNamesSortsIPsFromDNSNamesWithoutDuplicates(t *testing.T) {
	dns, ips := splitNames([]string{"localhost", "127.0.0.1", "::1", "localhost", "h", "127.0.0.1", "", "::ffff:127.0.0.1"})
	if strings.Join(dns, ",") != "localhost,h" {
		t.Errorf("dns %v", dns)
	}
	// ::ffff:127.0.0.1 is 127.0.0.1.
	if len(ips) != 2 || !ips[0].Equal(net.ParseIP("127.0.0.1")) || !ips[1].Equal(net.IPv6loopback) {
		t.Errorf("ips %v", ips)
	}
}

func TestRoleOfReadsOneRoleFromTheSubject(t *testing.T) {
	for _, tc := range []struct {
		name string
		ous  []string
		want Role
	}{
		{"none", nil, ""},
		{"worker", []string{"premiscale:worker"}, RoleWorker},
		{"operator beside another unit", []string{"ops", "premiscale:operator"}, RoleOperator},
		{"reader", []string{"premiscale:reader"}, RoleReader},
		{"unknown role", []string{"premiscale:admin"}, ""},
		{"two roles", []string{"premiscale:reader", "premiscale:worker"}, ""},
		{"the same role twice", []string{"premiscale:reader", "premiscale:reader"}, RoleReader},
		{"no prefix", []string{"worker"}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := RoleOf(pkix.Name{OrganizationalUnit: tc.ous}); got != tc.want {
				t.Errorf("RoleOf(%v) = %q, want %q", tc.ous, got, tc.want)
			}
		})
	}
}

func TestEnsureGivesAnOlderControllerCertificateItsRole(t *testing.T) {
	dir := t.TempDir()
	now := time.Now()
	if err := Ensure(dir, nil, now); err != nil {
		t.Fatal(err)
	}
	// A client certificate from before roles: same CA, no role.
	ca, caKey, err := loadPair(filepath.Join(dir, CAFile), filepath.Join(dir, CAKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	if err := issue(ca, caKey, dir, "client", ControllerName, "", nil, nil, x509.ExtKeyUsageClientAuth, now); err != nil {
		t.Fatal(err)
	}
	if err := Ensure(dir, nil, now); err != nil {
		t.Fatal(err)
	}
	if cl := readCert(t, filepath.Join(dir, ClientCertFile)); RoleOf(cl.Subject) != RoleWorker {
		t.Errorf("controller certificate role %q after Ensure, want worker", RoleOf(cl.Subject))
	}
}
