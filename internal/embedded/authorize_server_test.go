package embedded

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"log/slog"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.temporal.io/api/serviceerror"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	sdklog "go.temporal.io/sdk/log"
	"go.temporal.io/sdk/worker"

	"github.com/premiscale/premiscale/internal/mtls"
)

// TestTheFrontendAuthorizesEachCallerByItsCertificate: a real server with
// mutual TLS and Access. The controller's certificate runs a worker and
// starts a workflow; an operator's may Update it but not start, terminate
// or signal another workflow; the UI's may read it but not Update or
// terminate it; a certificate of the same CA without a role gets nothing,
// and a client without a certificate does not get in.
func TestTheFrontendAuthorizesEachCallerByItsCertificate(t *testing.T) {
	dir := t.TempDir()
	if err := mtls.Ensure(dir, nil, time.Now()); err != nil {
		t.Fatal(err)
	}
	out := t.TempDir()
	if err := mtls.Issue(dir, "alice", mtls.RoleOperator, out, time.Now()); err != nil {
		t.Fatal(err)
	}
	noRole := writeCertWithoutRole(t, dir, out, "mallory")
	serverTLS, err := mtls.Server{CertFile: filepath.Join(dir, mtls.ServerCertFile), KeyFile: filepath.Join(dir, mtls.ServerKeyFile),
		ClientCAFile: filepath.Join(dir, mtls.CAFile), Field: "test"}.Config()
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	if pemCA, err := os.ReadFile(filepath.Join(dir, mtls.CAFile)); err != nil || !roots.AppendCertsFromPEM(pemCA) {
		t.Fatal("ca.crt", err)
	}
	clientTLS := func(cert, key string) *tls.Config {
		pair, err := tls.LoadX509KeyPair(cert, key)
		if err != nil {
			t.Fatal(err)
		}
		return &tls.Config{RootCAs: roots, Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12}
	}
	controller := clientTLS(filepath.Join(dir, mtls.ClientCertFile), filepath.Join(dir, mtls.ClientKeyFile))

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	s, err := Start(ctx, Options{
		DBPath: filepath.Join(t.TempDir(), "t.db"), Port: freeTestPort(t),
		Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError})),
		TLS:    &TLS{Server: serverTLS, Client: controller},
		Access: &Access{OperableWorkflow: func(id string) bool { return strings.HasPrefix(id, "greet/") }},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Stop() })
	dial := func(tc *tls.Config) client.Client {
		c, err := client.DialContext(ctx, client.Options{HostPort: s.Address(), ConnectionOptions: client.ConnectionOptions{TLS: tc},
			Logger: sdklog.NewStructuredLogger(slog.New(slog.DiscardHandler))})
		if err != nil {
			t.Fatalf("dial: %v", err)
		}
		t.Cleanup(c.Close)
		return c
	}
	ctl := dial(controller)
	w := worker.New(ctl, taskQueue, worker.Options{})
	w.RegisterWorkflow(greetWorkflow)
	w.RegisterActivity(greet)
	if err := w.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.Stop)
	if _, err := ctl.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: "greet/1", TaskQueue: taskQueue}, greetWorkflow); err != nil {
		t.Fatalf("the controller's certificate cannot start a workflow: %v", err)
	}

	denied := func(who string, err error, want string) {
		t.Helper()
		var pd *serviceerror.PermissionDenied
		if !errors.As(err, &pd) {
			t.Fatalf("%s: %v, want permission denied", who, err)
		}
		if !strings.Contains(pd.Reason, want) {
			t.Errorf("%s: reason %q does not say %q", who, pd.Reason, want)
		}
	}
	alice := dial(clientTLS(filepath.Join(out, "alice.crt"), filepath.Join(out, "alice.key")))
	_, err = alice.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: "greet/2", TaskQueue: taskQueue}, greetWorkflow)
	denied("operator starts", err, "role operator")
	denied("operator terminates", alice.TerminateWorkflow(ctx, "greet/1", "", "test"), "TerminateWorkflowExecution")
	denied("operator signals another workflow", alice.SignalWorkflow(ctx, "other", "", "x", nil), "SignalWorkflowExecution")
	_, err = alice.WorkflowService().PollActivityTaskQueue(ctx, &workflowservice.PollActivityTaskQueueRequest{Namespace: DefaultNamespace})
	denied("operator polls", err, "PollActivityTaskQueue")

	ui := dial(clientTLS(filepath.Join(dir, mtls.UICertFile), filepath.Join(dir, mtls.UIKeyFile)))
	if _, err := ui.DescribeWorkflowExecution(ctx, "greet/1", ""); err != nil {
		t.Fatalf("the UI's certificate cannot describe: %v", err)
	}
	if _, err := ui.ListWorkflow(ctx, &workflowservice.ListWorkflowExecutionsRequest{Namespace: DefaultNamespace}); err != nil {
		t.Fatalf("the UI's certificate cannot list: %v", err)
	}
	_, err = ui.UpdateWorkflow(ctx, client.UpdateWorkflowOptions{WorkflowID: "greet/1", UpdateName: updateName, Args: []any{"ui"}, WaitForStage: client.WorkflowUpdateStageCompleted})
	denied("reader updates", err, "role reader")
	denied("reader terminates", ui.TerminateWorkflow(ctx, "greet/1", "", "test"), "role reader")

	m := dial(noRole)
	_, err = m.DescribeWorkflowExecution(ctx, "greet/1", "")
	denied("a certificate without a role describes", err, "no PremiScale role")

	// Without a certificate, nothing gets past the handshake.
	short, cancelShort := context.WithTimeout(ctx, 5*time.Second)
	defer cancelShort()
	if c, err := client.DialContext(short, client.Options{HostPort: s.Address(), ConnectionOptions: client.ConnectionOptions{TLS: &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}},
		Logger: sdklog.NewStructuredLogger(slog.New(slog.DiscardHandler))}); err == nil {
		c.Close()
		t.Error("a client without a certificate got in")
	}

	// The operator's Update is what completes the workflow.
	h, err := alice.UpdateWorkflow(ctx, client.UpdateWorkflowOptions{WorkflowID: "greet/1", UpdateName: updateName, Args: []any{"alice"}, WaitForStage: client.WorkflowUpdateStageCompleted})
	if err != nil {
		t.Fatalf("operator updates: %v", err)
	}
	var ack string
	if err := h.Get(ctx, &ack); err != nil || ack != "accepted alice" {
		t.Fatalf("update result %q %v", ack, err)
	}
	var got string
	if err := alice.GetWorkflow(ctx, "greet/1", "").Get(ctx, &got); err != nil || got != "hello alice" {
		t.Fatalf("result %q %v, want hello alice", got, err)
	}
}

// writeCertWithoutRole signs, with the CA in dir, a client certificate for
// cn that names no role (as issued before roles existed).
func writeCertWithoutRole(t *testing.T, dir, out, cn string) *tls.Config {
	t.Helper()
	ca, err := tls.LoadX509KeyPair(filepath.Join(dir, mtls.CAFile), filepath.Join(dir, mtls.CAKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	caCert, err := x509.ParseCertificate(ca.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	pair, err := tls.LoadX509KeyPair(filepath.Join(dir, mtls.ClientCertFile), filepath.Join(dir, mtls.ClientKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: cn, Organization: []string{"PremiScale"}},
		NotBefore:    time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, leaf.PublicKey, ca.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM, err := os.ReadFile(filepath.Join(dir, mtls.ClientKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(caCert)
	return &tls.Config{RootCAs: roots, Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
}
