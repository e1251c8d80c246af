package test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	sdklog "go.temporal.io/sdk/log"

	"github.com/premiscale/premiscale/config"
	"github.com/premiscale/premiscale/internal/mtls"
)

// TestEmbeddedFrontendServesMutualTLSOnEveryAddress: with
// embedded.tls.enabled and no certificate files, the real binary listens on
// 0.0.0.0 with a CA it generates in the state dir; its own worker and CLI
// connect with the generated client certificate, and a certificate issued
// by `premiscale tls issue` gets in, while a plaintext client, a client
// without a certificate and one with a certificate from another CA are
// refused. With allowedClients set, only those names (and the controller
// itself) get in.
func TestEmbeddedFrontendServesMutualTLSOnEveryAddress(t *testing.T) {
	requireLibvirt(t, testDriverURI)
	port := freePort(t)
	cfgPath, logPath := writeE2EConfig(t, "tlsweb", port)
	base, err := os.ReadFile(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	plain := fmt.Sprintf("embedded: {port: %d}", port)
	if !strings.Contains(string(base), plain) {
		t.Fatalf("config has no %q:\n%s", plain, base)
	}
	setTLS := func(extra string) {
		with := fmt.Sprintf("embedded: {host: 0.0.0.0, port: %d, tls: {enabled: true%s}}", port, extra)
		if err := os.WriteFile(cfgPath, []byte(strings.Replace(string(base), plain, with, 1)), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	setTLS("")
	c := &controller{t: t, config: cfgPath, log: logPath}
	c.start() // waits for `premiscale status` to answer: the CLI uses the generated client certificate
	t.Cleanup(func() { c.kill(syscall.SIGKILL) })

	// The worker reaches its frontend too: a scale is carried out.
	c.mustCLI("scale", "tlsweb", "2")
	if st := c.waitSettled("tlsweb", 2, time.Minute); st.Desired != 2 {
		t.Fatalf("status %+v", st)
	}
	dir := filepath.Join(filepath.Dir(cfgPath), "state", config.GeneratedTLSDir)
	for _, f := range []string{mtls.CAKeyFile, mtls.ServerKeyFile, mtls.ClientKeyFile} {
		fi, err := os.Stat(filepath.Join(dir, f))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %v, want 0600", f, fi.Mode().Perm())
		}
	}
	if b, _ := os.ReadFile(logPath); !strings.Contains(string(b), "listen=0.0.0.0:") {
		t.Errorf("the log does not state the real listen address 0.0.0.0")
	}

	// `premiscale tls issue` for a remote user.
	issued := t.TempDir()
	if out, _, err := c.cli("tls", "issue", "alice", "-o", issued); err != nil || !strings.Contains(out, "alice.crt") {
		t.Fatalf("tls issue: %q %v", out, err)
	}
	if fi, err := os.Stat(filepath.Join(issued, "alice.key")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("alice.key: %v %v, want mode 0600", fi, err)
	}
	roots := x509.NewCertPool()
	caPEM, err := os.ReadFile(filepath.Join(issued, mtls.CAFile))
	if err != nil || !roots.AppendCertsFromPEM(caPEM) {
		t.Fatalf("issued ca.crt: %v", err)
	}
	alice, err := tls.LoadX509KeyPair(filepath.Join(issued, "alice.crt"), filepath.Join(issued, "alice.key"))
	if err != nil {
		t.Fatal(err)
	}
	// A certificate from another CA, trusting ours for the server.
	otherDir := t.TempDir()
	if err := mtls.Ensure(otherDir, nil, time.Now()); err != nil {
		t.Fatal(err)
	}
	stranger, err := tls.LoadX509KeyPair(filepath.Join(otherDir, mtls.ClientCertFile), filepath.Join(otherDir, mtls.ClientKeyFile))
	if err != nil {
		t.Fatal(err)
	}

	addr := fmt.Sprintf("127.0.0.1:%d", port)
	if err := describe(addr, nil); err == nil {
		t.Error("a plaintext client was let in")
	}
	if err := describe(addr, &tls.Config{RootCAs: roots}); err == nil {
		t.Error("a client without a certificate was let in")
	}
	if err := describe(addr, &tls.Config{RootCAs: roots, Certificates: []tls.Certificate{stranger}}); err == nil {
		t.Error("a client with another CA's certificate was let in")
	}
	if err := describe(addr, &tls.Config{RootCAs: roots, Certificates: []tls.Certificate{alice}}); err != nil {
		t.Errorf("alice's issued certificate was refused: %v", err)
	}
	// Other clients reach it on this machine's other addresses, by its
	// host name, which the generated server certificate carries.
	if host, err := os.Hostname(); err == nil {
		if ips, err := net.LookupIP(host); err == nil && len(ips) > 0 && !ips[0].IsLoopback() {
			if err := describe(net.JoinHostPort(ips[0].String(), fmt.Sprint(port)), &tls.Config{RootCAs: roots, ServerName: host, Certificates: []tls.Certificate{alice}}); err != nil {
				t.Errorf("through %s (%s): %v", ips[0], host, err)
			}
		} else {
			t.Logf("host name %s has no non-loopback address here (%v %v); only loopback checked", host, ips, err)
		}
	}

	// An allow-list: alice is out, bob in, the controller itself still in.
	c.kill(syscall.SIGTERM)
	setTLS(", allowedClients: [bob]")
	c.start()
	if _, _, err := c.cli("tls", "issue", "bob", "-o", issued); err != nil {
		t.Fatal(err)
	}
	bob, err := tls.LoadX509KeyPair(filepath.Join(issued, "bob.crt"), filepath.Join(issued, "bob.key"))
	if err != nil {
		t.Fatal(err)
	}
	if err := describe(addr, &tls.Config{RootCAs: roots, Certificates: []tls.Certificate{alice}}); err == nil {
		t.Error("alice was let in although allowedClients lists only bob")
	}
	if err := describe(addr, &tls.Config{RootCAs: roots, Certificates: []tls.Certificate{bob}}); err != nil {
		t.Errorf("bob was refused: %v", err)
	}
	c.mustCLI("scale", "tlsweb", "1")
	c.waitSettled("tlsweb", 1, time.Minute)
}

// describe asks the frontend at addr for the default namespace, over tc
// (nil: plaintext).
func describe(addr string, tc *tls.Config) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	cl, err := client.DialContext(ctx, client.Options{
		HostPort: addr, ConnectionOptions: client.ConnectionOptions{TLS: tc},
		Logger: sdklog.NewStructuredLogger(slog.New(slog.DiscardHandler)),
	})
	if err != nil {
		return err
	}
	defer cl.Close()
	_, err = cl.WorkflowService().DescribeNamespace(ctx, &workflowservice.DescribeNamespaceRequest{Namespace: "default"})
	return err
}
