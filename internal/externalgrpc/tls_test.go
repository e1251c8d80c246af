package externalgrpc

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/premiscale/premiscale/config"
	"github.com/premiscale/premiscale/internal/externalgrpc/protos"
	"github.com/premiscale/premiscale/starter"
)

// testCA issues certificates for the tests, written as PEM files in dir.
type testCA struct {
	t    *testing.T
	dir  string
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	file string
}

func newTestCA(t *testing.T) *testCA {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	ca := &testCA{t: t, dir: t.TempDir(), cert: cert, key: key}
	ca.file = ca.write("ca.pem", "CERTIFICATE", der)
	return ca
}

func (c *testCA) write(name, typ string, der []byte) string {
	p := filepath.Join(c.dir, name)
	// Written beside and renamed, as cert-manager's projected files are.
	if err := os.WriteFile(p+".tmp", pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		c.t.Fatal(err)
	}
	if err := os.Rename(p+".tmp", p); err != nil {
		c.t.Fatal(err)
	}
	return p
}

// issue writes a certificate for cn (server or client) with serial as
// <file>.pem and <file>-key.pem.
func (c *testCA) issue(file, cn string, serial int64, server bool) (certFile, keyFile string) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	if server {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		tmpl.IPAddresses = []net.IP{net.ParseIP("127.0.0.1")}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, c.cert, &key.PublicKey, c.key)
	if err != nil {
		c.t.Fatal(err)
	}
	kder, _ := x509.MarshalECPrivateKey(key)
	return c.write(file+".pem", "CERTIFICATE", der), c.write(file+"-key.pem", "EC PRIVATE KEY", kder)
}

// call dials the provider with a client certificate and calls NodeGroups;
// it returns the serial number of the server certificate it was shown.
func call(t *testing.T, addr string, ca *testCA, certFile, keyFile string) (*big.Int, error) {
	t.Helper()
	pool := x509.NewCertPool()
	pool.AddCert(ca.cert)
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	var serial *big.Int
	tc := &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12,
		VerifyConnection: func(cs tls.ConnectionState) error { serial = cs.PeerCertificates[0].SerialNumber; return nil }}
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(tc)))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err = protos.NewCloudProviderClient(conn).NodeGroups(ctx, &protos.NodeGroupsRequest{})
	return serial, err
}

func freeAddr(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// TestProviderAcceptsOnlyAllowedClientsAndServesRotatedCertificates runs
// the provider over real loopback gRPC with mutual TLS: a certificate from
// the right CA whose name is not allowed is refused; once the server
// certificate files are replaced, new connections get the new certificate
// without a restart.
func TestProviderAcceptsOnlyAllowedClientsAndServesRotatedCertificates(t *testing.T) {
	ca := newTestCA(t)
	serverCert, serverKey := ca.issue("server", "premiscale", 10, true)
	goodCert, goodKey := ca.issue("autoscaler", "cluster-autoscaler", 11, false)
	badCert, badKey := ca.issue("intruder", "intruder", 12, false)
	addr := freeAddr(t)
	cfg := config.ClusterAutoscaler{Listen: addr, CertFile: serverCert, KeyFile: serverKey, ClientCAFile: ca.file, AllowedClients: []string{"cluster-autoscaler"}}
	lw := &syncWriter{b: &strings.Builder{}}
	log := slog.New(slog.NewTextHandler(lw, &slog.HandlerOptions{Level: slog.LevelDebug}))
	ctx, stop := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() {
		served <- Serve(ctx, cfg, &Server{Starter: &starter.Starter{Config: &config.Config{}}, Log: log})
	}()
	defer func() { stop(); <-served }()

	var serial *big.Int
	var err error
	for deadline := time.Now().Add(10 * time.Second); ; {
		if serial, err = call(t, addr, ca, goodCert, goodKey); err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err != nil || serial.Int64() != 10 {
		t.Fatalf("allowed client: serial %v, err %v; want served with certificate 10", serial, err)
	}
	if _, err := call(t, addr, ca, badCert, badKey); err == nil {
		t.Error("a certificate of the right CA whose name is not allowed was served")
	}
	if !strings.Contains(lw.String(), "peer=cluster-autoscaler@127.0.0.1") {
		t.Errorf("the call's peer is not logged:\n%s", lw.String())
	}

	// cert-manager rotates the server certificate in place.
	time.Sleep(10 * time.Millisecond) // a new modification time
	ca.issue("server", "premiscale", 20, true)
	if serial, err = call(t, addr, ca, goodCert, goodKey); err != nil || serial.Int64() != 20 {
		t.Errorf("after rotation: serial %v, err %v; want the new certificate 20 without a restart", serial, err)
	}
}

// syncWriter is a strings.Builder safe for the server's goroutines.
type syncWriter struct {
	mu sync.Mutex
	b  *strings.Builder
}

func (w *syncWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

func (w *syncWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.String()
}
