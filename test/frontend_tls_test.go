package test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.temporal.io/api/serviceerror"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	sdklog "go.temporal.io/sdk/log"

	"github.com/premiscale/premiscale/config"
	"github.com/premiscale/premiscale/internal/mtls"
	"github.com/premiscale/premiscale/workflows"
)

// TestEmbeddedFrontendAuthenticatesAndAuthorizesEveryClient: on its
// defaults (loopback, no TLS settings) the real binary serves mutual TLS
// from a CA it generates in the state dir; its own worker and CLI connect
// with the generated controller certificate, while a plaintext client, a
// client without a certificate and one with another CA's certificate are
// refused on loopback. Certificates issued by `premiscale tls issue` carry
// a role: an operator runs `premiscale scale` and `status` from its own
// config but cannot start a scan, start a group workflow or terminate one;
// a reader cannot signal. On 0.0.0.0 the same holds through the machine's
// other addresses; with allowedClients set, only those names (and the
// controller itself) get in.
func TestEmbeddedFrontendAuthenticatesAndAuthorizesEveryClient(t *testing.T) {
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
	c := &controller{t: t, config: cfgPath, log: logPath}
	c.start() // waits for `premiscale status` to answer: the CLI uses the generated client certificate
	t.Cleanup(func() { c.kill(syscall.SIGKILL) })

	// The worker reaches its frontend too: a scale is carried out.
	c.mustCLI("scale", "tlsweb", "2")
	if st := c.waitSettled("tlsweb", 2, time.Minute); st.Desired != 2 {
		t.Fatalf("status %+v", st)
	}
	dir := filepath.Join(filepath.Dir(cfgPath), "state", config.GeneratedTLSDir)
	for _, f := range []string{mtls.CAKeyFile, mtls.ServerKeyFile, mtls.ClientKeyFile, mtls.UIKeyFile} {
		fi, err := os.Stat(filepath.Join(dir, f))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %v, want 0600", f, fi.Mode().Perm())
		}
	}

	// Certificates for a remote operator and a reader.
	issued := t.TempDir()
	out, _, err := c.cli("tls", "issue", "alice", "-o", issued)
	if err != nil || !strings.Contains(out, "alice.crt") || !strings.Contains(out, "role operator") ||
		!strings.Contains(out, "TEMPORAL_TLS_CLIENT_CERT_PATH="+filepath.Join(issued, "alice.crt")) {
		t.Fatalf("tls issue: %q %v", out, err)
	}
	if fi, err := os.Stat(filepath.Join(issued, "alice.key")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("alice.key: %v %v, want mode 0600", fi, err)
	}
	c.mustCLI("tls", "issue", "carol", "--role", "reader", "-o", issued)
	if _, stderr, err := c.cli("tls", "issue", "dave", "--role", "admin", "-o", issued); err == nil || !strings.Contains(stderr, "--role") {
		t.Errorf("tls issue --role admin: %v %s", err, stderr)
	}
	roots := x509.NewCertPool()
	caPEM, err := os.ReadFile(filepath.Join(issued, mtls.CAFile))
	if err != nil || !roots.AppendCertsFromPEM(caPEM) {
		t.Fatalf("issued ca.crt: %v", err)
	}
	load := func(name string) tls.Certificate {
		pair, err := tls.LoadX509KeyPair(filepath.Join(issued, name+".crt"), filepath.Join(issued, name+".key"))
		if err != nil {
			t.Fatal(err)
		}
		return pair
	}
	alice, carol := load("alice"), load("carol")
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
		t.Error("a plaintext client was let in on loopback")
	}
	if err := describe(addr, &tls.Config{RootCAs: roots}); err == nil {
		t.Error("a client without a certificate was let in on loopback")
	}
	if err := describe(addr, &tls.Config{RootCAs: roots, Certificates: []tls.Certificate{stranger}}); err == nil {
		t.Error("a client with another CA's certificate was let in")
	}
	if err := describe(addr, &tls.Config{RootCAs: roots, Certificates: []tls.Certificate{alice}}); err != nil {
		t.Errorf("alice's issued certificate was refused: %v", err)
	}

	// The operator's own config: the address and her certificate.
	aliceCfg := filepath.Join(t.TempDir(), "alice.yaml")
	ab := strings.Replace(string(base), "  temporal:\n", fmt.Sprintf("  temporal:\n    address: %q\n    tls: {enabled: true, caFile: %s, certFile: %s, keyFile: %s}\n",
		addr, filepath.Join(issued, mtls.CAFile), filepath.Join(issued, "alice.crt"), filepath.Join(issued, "alice.key")), 1)
	if err := os.WriteFile(aliceCfg, []byte(ab), 0o600); err != nil {
		t.Fatal(err)
	}
	op := &controller{t: t, config: aliceCfg, log: filepath.Join(t.TempDir(), "alice.log")}
	if out, stderr, err := op.cli("scale", "tlsweb", "3"); err != nil {
		t.Fatalf("operator scale: %v\n%s%s", err, out, stderr)
	}
	if st := op.waitSettled("tlsweb", 3, time.Minute); st.Desired != 3 {
		t.Fatalf("status through the operator's certificate %+v", st)
	}
	_, stderr, err := op.cli("status", "--orphans")
	if err == nil || !strings.Contains(stderr, "refused:") || !strings.Contains(stderr, "alice (role operator)") {
		t.Errorf("operator's orphan scan (starts a workflow): %v\n%s", err, stderr)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ac := dialWith(t, addr, &tls.Config{RootCAs: roots, Certificates: []tls.Certificate{alice}})
	_, err = ac.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: workflows.GroupWorkflowID("forged"), TaskQueue: config.DefaultTaskQueue}, workflows.GroupWorkflowName)
	wantDenied(t, "operator starts a group workflow", err)
	wantDenied(t, "operator terminates a group workflow", ac.TerminateWorkflow(ctx, workflows.GroupWorkflowID("tlsweb"), "", "test"))
	rc := dialWith(t, addr, &tls.Config{RootCAs: roots, Certificates: []tls.Certificate{carol}})
	if _, err := rc.DescribeWorkflowExecution(ctx, workflows.GroupWorkflowID("tlsweb"), ""); err != nil {
		t.Errorf("reader describes: %v", err)
	}
	wantDenied(t, "reader signals", rc.SignalWorkflow(ctx, workflows.GroupWorkflowID("tlsweb"), "", workflows.SignalScale, workflows.DesiredRequest{Desired: 5}))
	if st := c.status("tlsweb"); st.Desired != 3 {
		t.Errorf("desired %d after the refused calls, want 3", st.Desired)
	}

	// On every address, the same certificates.
	c.kill(syscall.SIGTERM)
	setTLS("")
	c.start()
	// The CLI may get an answer a moment before the controller logs that
	// its server is up.
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		if b, _ := os.ReadFile(logPath); strings.Contains(string(b), "listen=0.0.0.0:") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the log does not state the real listen address 0.0.0.0")
		}
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
	bob := load("bob")
	if err := describe(addr, &tls.Config{RootCAs: roots, Certificates: []tls.Certificate{alice}}); err == nil {
		t.Error("alice was let in although allowedClients lists only bob")
	}
	if err := describe(addr, &tls.Config{RootCAs: roots, Certificates: []tls.Certificate{bob}}); err != nil {
		t.Errorf("bob was refused: %v", err)
	}
	c.mustCLI("scale", "tlsweb", "1")
	c.waitSettled("tlsweb", 1, time.Minute)
}

// dialWith connects to the frontend at addr over tc.
func dialWith(t *testing.T, addr string, tc *tls.Config) client.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cl, err := client.DialContext(ctx, client.Options{HostPort: addr, ConnectionOptions: client.ConnectionOptions{TLS: tc},
		Logger: sdklog.NewStructuredLogger(slog.New(slog.DiscardHandler))})
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	t.Cleanup(cl.Close)
	return cl
}

// wantDenied fails unless err is the frontend's permission denied.
func wantDenied(t *testing.T, what string, err error) {
	t.Helper()
	var pd *serviceerror.PermissionDenied
	if !errors.As(err, &pd) {
		t.Errorf("%s: %v, want permission denied", what, err)
		return
	}
	t.Logf("%s: refused: %s", what, pd.Reason)
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
