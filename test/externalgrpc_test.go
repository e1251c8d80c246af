package test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/premiscale/premiscale/config"
	"github.com/premiscale/premiscale/internal/externalgrpc"
	pb "github.com/premiscale/premiscale/internal/externalgrpc/protos"
	"github.com/premiscale/premiscale/test/k8s"
	"github.com/premiscale/premiscale/workflows"
)

// testPKI writes a CA, a server certificate for 127.0.0.1 and a client
// certificate, both signed by the CA, as PEM files in dir.
type testPKI struct {
	caFile, serverCert, serverKey, clientCert, clientKey string
}

func newTestPKI(t *testing.T, dir, name string) testPKI {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name + " CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, _ := x509.ParseCertificate(caDER)
	write := func(file string, typ string, der []byte) string {
		p := filepath.Join(dir, name+"-"+file)
		if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	leaf := func(cn string, serial int64, usage x509.ExtKeyUsage, ips []net.IP) (certFile, keyFile string) {
		key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: cn},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
			KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage}, IPAddresses: ips,
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		kder, _ := x509.MarshalECPrivateKey(key)
		return write(cn+".pem", "CERTIFICATE", der), write(cn+"-key.pem", "EC PRIVATE KEY", kder)
	}
	p := testPKI{caFile: write("ca.pem", "CERTIFICATE", caDER)}
	p.serverCert, p.serverKey = leaf("server", 2, x509.ExtKeyUsageServerAuth, []net.IP{net.ParseIP("127.0.0.1")})
	p.clientCert, p.clientKey = leaf("cluster-autoscaler", 3, x509.ExtKeyUsageClientAuth, nil)
	return p
}

// dialProvider connects as the cluster-autoscaler's client would: TLS to
// the server, verified against caFile, presenting the client certificate.
func dialProvider(t *testing.T, addr, caFile, certFile, keyFile string) pb.CloudProviderClient {
	t.Helper()
	return pb.NewCloudProviderClient(dialConn(t, addr, caFile, certFile, keyFile))
}

// dialConn is a gRPC connection to the provider over TLS with caFile as
// the roots and, if set, a client certificate.
func dialConn(t *testing.T, addr, caFile, certFile, keyFile string) *grpc.ClientConn {
	t.Helper()
	pemCA, err := os.ReadFile(caFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pemCA)
	tc := &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	if certFile != "" {
		cert, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			t.Fatal(err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(tc)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}

func wantCode(t *testing.T, what string, err error, code codes.Code, msg string) {
	t.Helper()
	if status.Code(err) != code || !strings.Contains(status.Convert(err).Message(), msg) {
		t.Errorf("%s: %v, want %s containing %q", what, err, code, msg)
	}
}

// TestClusterAutoscalerProviderOverMTLS calls every RPC of the externalgrpc
// provider over a real loopback gRPC connection with mutual TLS, against
// the in-process controller on the real QEMU libvirtd (the test driver
// cannot upload the seed volumes) and the real Kubernetes control plane,
// PremiScale running with the Helm chart's rights. Nodes are registered as
// their kubelets would (kwok then plays the kubelet): an instance stays
// creating while its Node is not Ready, and only members map to the group.
func TestClusterAutoscalerProviderOverMTLS(t *testing.T) {
	lv := requireLibvirt(t, qemuURI)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	purgeGroup(t, lv, guestPool, "casg")
	t.Cleanup(func() { purgeGroup(t, lv, guestPool, "casg") })
	dir := t.TempDir()
	pki := newTestPKI(t, dir, "good")
	rogue := newTestPKI(t, dir, "rogue")
	kc := realKube(t)
	id := chartIdentity(t, ctx, kc, "ps-casg")
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	zero := time.Duration(0)
	caGroup := func(name string, max int, vcpus int) config.Group {
		return config.Group{
			Name: name, Hosts: []string{"local"}, Max: max,
			Scaling:  config.Scaling{EvaluationInterval: time.Second, Mode: config.ModeClusterAutoscaler},
			Template: config.Template{DiskSize: "16MiB", VCPUs: vcpus, Memory: "64MiB", DomainType: "qemu", ShutdownTimeout: &zero},
			Kubernetes: config.GroupKubernetes{
				Join: config.JoinUserData, UserData: "#cloud-config\nhostname: {{.NodeName}}\n",
				Labels:       map[string]string{"pool": name},
				Taints:       []config.Taint{{Key: "dedicated", Value: name, Effect: "NoSchedule"}},
				ReadyTimeout: 3 * time.Minute, Drain: config.Drain{Timeout: 30 * time.Second},
			},
		}
	}
	ca := config.ClusterAutoscaler{Listen: addr, CertFile: pki.serverCert, KeyFile: pki.serverKey, ClientCAFile: pki.caFile, AllowedClients: []string{"cluster-autoscaler"}}
	cfg := &config.Config{
		Version: config.Version,
		Controller: config.Controller{
			Kubernetes:        config.Kubernetes{Kubeconfig: id.Kubeconfig},
			ClusterAutoscaler: ca,
		},
		Autoscale: config.Autoscale{
			Hosts: []config.Host{{Name: "local", URI: qemuURI, Pool: guestPool, CPUOvercommit: 4}},
			// caother's VMs need more vCPUs than the host has: no host fits.
			Groups: []config.Group{caGroup("casg", 3, 1), caGroup("caother", 2, 512)},
		},
	}
	s, hc := startInProcessConfig(t, ctx, cfg, id.Client)
	t.Cleanup(func() { recordHistories(t, hc, "autoscaler") })
	sctx, stop := context.WithCancel(ctx)
	reg := prometheus.NewRegistry()
	served := make(chan error, 1)
	go func() {
		served <- externalgrpc.Serve(sctx, ca, &externalgrpc.Server{Starter: s, Metrics: reg, Log: slog.New(slog.NewTextHandler(testLogWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))})
	}()
	t.Cleanup(func() {
		stop()
		<-served
	})
	c := dialProvider(t, addr, pki.caFile, pki.clientCert, pki.clientKey)
	for {
		if _, err := c.Refresh(ctx, &pb.RefreshRequest{}); err == nil {
			break
		} else if ctx.Err() != nil {
			t.Fatalf("provider never answered: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}

	// Without a client certificate, or with one from another CA: refused.
	for name, cl := range map[string]pb.CloudProviderClient{
		"no client certificate":    dialProvider(t, addr, pki.caFile, "", ""),
		"another CA's client cert": dialProvider(t, addr, pki.caFile, rogue.clientCert, rogue.clientKey),
	} {
		if _, err := cl.NodeGroups(ctx, &pb.NodeGroupsRequest{}); err == nil {
			t.Errorf("%s: NodeGroups succeeded", name)
		}
	}

	// Reads.
	// gRPC health, behind the same mutual TLS; calls counted by method.
	health := healthpb.NewHealthClient(dialConn(t, addr, pki.caFile, pki.clientCert, pki.clientKey))
	for _, svc := range []string{"", "clusterautoscaler.cloudprovider.v1.externalgrpc.CloudProvider"} {
		if r, err := health.Check(ctx, &healthpb.HealthCheckRequest{Service: svc}); err != nil || r.GetStatus() != healthpb.HealthCheckResponse_SERVING {
			t.Errorf("health of %q: %v %v, want SERVING", svc, r, err)
		}
	}
	if n := counterValue(t, reg, "premiscale_externalgrpc_calls_total", "Refresh", "OK"); n < 1 {
		t.Errorf("premiscale_externalgrpc_calls_total{method=Refresh,code=OK} = %v, want >= 1", n)
	}
	groups, err := c.NodeGroups(ctx, &pb.NodeGroupsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, g := range groups.GetNodeGroups() {
		ids = append(ids, fmt.Sprintf("%s[%d,%d]", g.GetId(), g.GetMinSize(), g.GetMaxSize()))
	}
	if want := []string{"casg[0,3]", "caother[0,2]"}; !slices.Equal(ids, want) {
		t.Errorf("NodeGroups = %v, want %v", ids, want)
	}
	forNode := func(providerID string) string {
		r, err := c.NodeGroupForNode(ctx, &pb.NodeGroupForNodeRequest{Node: &pb.ExternalGrpcNode{ProviderID: providerID, Name: "n"}})
		if err != nil {
			t.Fatal(err)
		}
		return r.GetNodeGroup().GetId()
	}
	if g := forNode("premiscale://casg/0000"); g != "" {
		t.Errorf("NodeGroupForNode(premiscale://casg/0000), a VM the group does not have = %q, want the empty group", g)
	}
	if g := forNode("aws:///eu-west-1a/i-0abc"); g != "" {
		t.Errorf("NodeGroupForNode(aws) = %q, want the empty group", g)
	}
	_, err = c.PricingNodePrice(ctx, &pb.PricingNodePriceRequest{})
	wantCode(t, "PricingNodePrice", err, codes.Unimplemented, "")
	_, err = c.PricingPodPrice(ctx, &pb.PricingPodPriceRequest{})
	wantCode(t, "PricingPodPrice", err, codes.Unimplemented, "")
	if r, err := c.GPULabel(ctx, &pb.GPULabelRequest{}); err != nil || r.GetLabel() != externalgrpc.GPULabel {
		t.Errorf("GPULabel = %v %v", r, err)
	}
	if r, err := c.GetAvailableGPUTypes(ctx, &pb.GetAvailableGPUTypesRequest{}); err != nil || len(r.GetGpuTypes()) != 0 {
		t.Errorf("GetAvailableGPUTypes = %v %v", r, err)
	}
	if _, err := c.Cleanup(ctx, &pb.CleanupRequest{}); err != nil {
		t.Errorf("Cleanup: %v", err)
	}
	_, err = c.NodeGroupTargetSize(ctx, &pb.NodeGroupTargetSizeRequest{Id: "nope"})
	wantCode(t, "NodeGroupTargetSize(nope)", err, codes.NotFound, `node group "nope" not found`)

	tmpl, err := c.NodeGroupTemplateNodeInfo(ctx, &pb.NodeGroupTemplateNodeInfoRequest{Id: "casg"})
	if err != nil {
		t.Fatal(err)
	}
	var node corev1.Node
	if err := node.Unmarshal(tmpl.GetNodeBytes()); err != nil {
		t.Fatalf("template node bytes: %v", err)
	}
	if cpu, mem := node.Status.Capacity[corev1.ResourceCPU], node.Status.Allocatable[corev1.ResourceMemory]; cpu.Value() != 1 || mem.Value() != 64<<20 ||
		node.Labels["pool"] != "casg" || len(node.Spec.Taints) != 1 || node.Spec.Taints[0].Key != "dedicated" {
		t.Errorf("template node = cpu %v, memory %v, labels %v, taints %v", cpu.String(), mem.String(), node.Labels, node.Spec.Taints)
	}
	defaults := &pb.NodeGroupAutoscalingOptions{
		ScaleDownUtilizationThreshold: 0.5, ScaleDownUnneededDuration: durationpb.New(10 * time.Minute),
		ScaleDownUnreadyDuration: durationpb.New(20 * time.Minute), MaxNodeProvisionDuration: durationpb.New(15 * time.Minute),
		MaxNodeStartupDuration: durationpb.New(15 * time.Minute),
	}
	opts, err := c.NodeGroupGetOptions(ctx, &pb.NodeGroupAutoscalingOptionsRequest{Id: "casg", Defaults: defaults})
	if err != nil {
		t.Fatal(err)
	}
	o := opts.GetNodeGroupAutoscalingOptions()
	if o.GetMaxNodeProvisionDuration().AsDuration() != 3*time.Minute || o.GetScaleDownUnneededDuration().AsDuration() != 10*time.Minute ||
		o.GetScaleDownUnreadyDuration().AsDuration() != 20*time.Minute || o.GetMaxNodeStartupDuration().AsDuration() != 15*time.Minute ||
		o.GetScaleDownUtilizationThreshold() != 0.5 {
		t.Errorf("NodeGroupGetOptions = %v: want the defaults, with MaxNodeProvisionDuration = readyTimeout 3m", o)
	}
	_, err = c.NodeGroupGetOptions(ctx, &pb.NodeGroupAutoscalingOptionsRequest{Id: "casg"})
	wantCode(t, "NodeGroupGetOptions without defaults", err, codes.Unimplemented, "")
	// An autoscaler whose proto lacks fields 11 and 12 sends defaults
	// without them and would read any answer's missing field 11 as a zero
	// max node startup time: it must keep its own options.
	old := &pb.NodeGroupAutoscalingOptions{
		ScaleDownUtilizationThreshold: 0.5, ScaleDownUnneededDuration: durationpb.New(10 * time.Minute),
		ScaleDownUnreadyDuration: durationpb.New(20 * time.Minute), MaxNodeProvisionDuration: durationpb.New(15 * time.Minute),
	}
	_, err = c.NodeGroupGetOptions(ctx, &pb.NodeGroupAutoscalingOptionsRequest{Id: "casg", Defaults: old})
	wantCode(t, "NodeGroupGetOptions from an autoscaler without field 11", err, codes.Unimplemented, "maxNodeStartupDuration")

	// Scale-up by 2: two more domains, reported creating until their nodes
	// are Ready, then running. Each mutating call answers within 5 s.
	timed := func(what string, call func() error) error {
		t.Helper()
		start := time.Now()
		err := call()
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("%s took %s, past the autoscaler's 5 s deadline", what, d)
		}
		return err
	}
	if err := timed("increase", func() error {
		_, err := c.NodeGroupIncreaseSize(ctx, &pb.NodeGroupIncreaseSizeRequest{Id: "casg", Delta: 2})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if r, err := c.NodeGroupTargetSize(ctx, &pb.NodeGroupTargetSizeRequest{Id: "casg"}); err != nil || r.GetTargetSize() != 2 {
		t.Fatalf("target size after +2 = %v %v", r, err)
	}
	err = timed("increase past max", func() error {
		_, err := c.NodeGroupIncreaseSize(ctx, &pb.NodeGroupIncreaseSizeRequest{Id: "casg", Delta: 2})
		return err
	})
	wantCode(t, "increase past max", err, codes.FailedPrecondition, "above max (3)")
	var ids2 []string
	for len(ids2) < 2 {
		nodes, err := c.NodeGroupNodes(ctx, &pb.NodeGroupNodesRequest{Id: "casg"})
		if err != nil {
			t.Fatal(err)
		}
		ids2 = ids2[:0]
		for _, in := range nodes.GetInstances() {
			if strings.HasPrefix(in.GetId(), "premiscale://casg/") && !strings.Contains(in.GetId(), "/requested-") {
				if in.GetStatus().GetInstanceState() != pb.InstanceStatus_instanceCreating {
					t.Fatalf("instance %s is %v before its node exists, want creating", in.GetId(), in.GetStatus().GetInstanceState())
				}
				ids2 = append(ids2, in.GetId())
			}
		}
		if ctx.Err() != nil {
			t.Fatal("members never appeared")
		}
		time.Sleep(100 * time.Millisecond)
	}
	// The kubelets register their Nodes, not Ready yet: still creating,
	// but already the group's.
	for i, pid := range ids2 {
		registerNode(t, ctx, kc, fmt.Sprintf("casg-node-%d", i), pid, false)
	}
	// A few passes of the group's loop (observations read the Nodes).
	groupHolds(t, func() (workflows.GroupStatus, error) { return s.Status(ctx, "casg") }, 3*time.Second, 2, func(workflows.GroupStatus) string { return "" })
	nodes, err := c.NodeGroupNodes(ctx, &pb.NodeGroupNodesRequest{Id: "casg"})
	if err != nil {
		t.Fatal(err)
	}
	for _, in := range nodes.GetInstances() {
		if in.GetStatus().GetInstanceState() != pb.InstanceStatus_instanceCreating {
			t.Errorf("instance %s is %v while its Node is registered but not Ready, want creating", in.GetId(), in.GetStatus().GetInstanceState())
		}
	}
	if g := forNode(ids2[0]); g != "casg" {
		t.Errorf("NodeGroupForNode(%s), a member joining = %q", ids2[0], g)
	}
	// Then their kubelets report Ready.
	for i := range ids2 {
		reportReady(t, ctx, kc, fmt.Sprintf("casg-node-%d", i))
	}
	wctx, wcancel := context.WithTimeout(ctx, time.Minute)
	defer wcancel()
	if _, err := s.WaitSettled(wctx, "casg", 100*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if v := viewGroupIn(t, lv, guestPool, "casg"); len(v.running) != 2 || len(v.volumes) != 4 { // disks and seeds
		t.Fatalf("libvirt after +2: running %v, volumes %v", v.running, v.volumes)
	}
	nodes, err = c.NodeGroupNodes(ctx, &pb.NodeGroupNodesRequest{Id: "casg"})
	if err != nil {
		t.Fatal(err)
	}
	for _, in := range nodes.GetInstances() {
		if in.GetStatus().GetInstanceState() != pb.InstanceStatus_instanceRunning {
			t.Errorf("instance %s is %v once Ready, want running", in.GetId(), in.GetStatus().GetInstanceState())
		}
	}
	if len(nodes.GetInstances()) != 2 {
		t.Errorf("NodeGroupNodes lists %d instances, want 2", len(nodes.GetInstances()))
	}
	if g := forNode(ids2[0]); g != "casg" {
		t.Errorf("NodeGroupForNode(%s) = %q", ids2[0], g)
	}

	// Decreasing the target below registered nodes is refused; a node of
	// another group is refused; the named node alone is deleted.
	err = timed("decrease", func() error {
		_, err := c.NodeGroupDecreaseTargetSize(ctx, &pb.NodeGroupDecreaseTargetSizeRequest{Id: "casg", Delta: -1})
		return err
	})
	wantCode(t, "decrease below registered", err, codes.FailedPrecondition, "would delete registered nodes")
	_, err = c.NodeGroupDeleteNodes(ctx, &pb.NodeGroupDeleteNodesRequest{Id: "caother", Nodes: []*pb.ExternalGrpcNode{{ProviderID: ids2[0], Name: "casg-node-0"}}})
	wantCode(t, "delete a node of another group", err, codes.InvalidArgument, "is not a member of group caother")
	_, err = c.NodeGroupDeleteNodes(ctx, &pb.NodeGroupDeleteNodesRequest{Id: "nope", Nodes: []*pb.ExternalGrpcNode{{ProviderID: ids2[0]}}})
	wantCode(t, "delete in an unknown group", err, codes.NotFound, "not found")
	st, _ := s.Status(ctx, "casg")
	victim := ""
	for _, m := range st.Members {
		if m.ProviderID == ids2[1] {
			victim = m.Name
		}
	}
	if err := timed("delete", func() error {
		_, err := c.NodeGroupDeleteNodes(ctx, &pb.NodeGroupDeleteNodesRequest{Id: "casg", Nodes: []*pb.ExternalGrpcNode{{ProviderID: ids2[1], Name: "casg-node-1"}}})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if r, _ := c.NodeGroupTargetSize(ctx, &pb.NodeGroupTargetSizeRequest{Id: "casg"}); r.GetTargetSize() != 1 {
		t.Errorf("target size after deleting one = %d, want 1", r.GetTargetSize())
	}
	wctx2, wcancel2 := context.WithTimeout(ctx, time.Minute)
	defer wcancel2()
	if _, err := s.WaitSettled(wctx2, "casg", 100*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	v := viewGroupIn(t, lv, guestPool, "casg")
	if len(v.running) != 1 || contains(v.defined, victim) || len(v.volumes) != 2 {
		t.Fatalf("after deleting %s: running %v, defined %v, volumes %v", victim, v.running, v.defined, v.volumes)
	}
	if _, err := kc.Admin.CoreV1().Nodes().Get(ctx, "casg-node-1", metav1.GetOptions{}); err == nil {
		t.Error("the deleted member's Node object is still there")
	}
	if _, err := kc.Admin.CoreV1().Nodes().Get(ctx, "casg-node-0", metav1.GetOptions{}); err != nil {
		t.Errorf("the kept member's Node object: %v", err)
	}
	// A Node whose VM the group no longer has (registered again by hand,
	// or left by a failed cleanup) is not the group's.
	registerNode(t, ctx, kc, "casg-stale", ids2[1], true)
	time.Sleep(membershipRefresh)
	if g := forNode(ids2[1]); g != "" {
		t.Errorf("NodeGroupForNode(%s), the deleted member's stale Node = %q, want the empty group", ids2[1], g)
	}
	if err := kc.Admin.CoreV1().Nodes().Delete(ctx, "casg-stale", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}

	// A request no host can take shows as creating, out of resources.
	if _, err := c.NodeGroupIncreaseSize(ctx, &pb.NodeGroupIncreaseSizeRequest{Id: "caother", Delta: 1}); err != nil {
		t.Fatal(err)
	}
	for {
		nodes, err := c.NodeGroupNodes(ctx, &pb.NodeGroupNodesRequest{Id: "caother"})
		if err != nil {
			t.Fatal(err)
		}
		if in := nodes.GetInstances(); len(in) == 1 && in[0].GetStatus().GetErrorInfo() != nil {
			ei := in[0].GetStatus().GetErrorInfo()
			if in[0].GetStatus().GetInstanceState() != pb.InstanceStatus_instanceCreating || ei.GetInstanceErrorClass() != 1 ||
				ei.GetErrorCode() != externalgrpc.ErrorCodeNoCapacity || !strings.Contains(ei.GetErrorMessage(), "insufficient capacity") {
				t.Errorf("unplaceable request reported as %v", in[0])
			}
			break
		}
		if ctx.Err() != nil {
			t.Fatal("unplaceable request never reported out of resources")
		}
		time.Sleep(100 * time.Millisecond)
	}
	if _, err := c.NodeGroupDecreaseTargetSize(ctx, &pb.NodeGroupDecreaseTargetSizeRequest{Id: "caother", Delta: -1}); err != nil {
		t.Errorf("withdrawing the unplaceable request: %v", err)
	}

	// An unfulfilled request can be withdrawn: +1 then -1 before its node
	// registers.
	if _, err := c.NodeGroupIncreaseSize(ctx, &pb.NodeGroupIncreaseSizeRequest{Id: "casg", Delta: 1}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.NodeGroupDecreaseTargetSize(ctx, &pb.NodeGroupDecreaseTargetSizeRequest{Id: "casg", Delta: -1}); err != nil {
		t.Errorf("withdrawing an unfulfilled request: %v", err)
	}
	if r, _ := c.NodeGroupTargetSize(ctx, &pb.NodeGroupTargetSizeRequest{Id: "casg"}); r.GetTargetSize() != 1 {
		t.Errorf("target size after +1 -1 = %d, want 1", r.GetTargetSize())
	}
	// Its VM, already being created, registers and is then removed.
	st, _ = s.Status(ctx, "casg")
	for _, m := range st.Members {
		if m.State == workflows.MemberProvisioning {
			registerNode(t, ctx, kc, m.Name, m.ProviderID, true)
		}
	}
	wctx3, wcancel3 := context.WithTimeout(ctx, time.Minute)
	defer wcancel3()
	if _, err := s.WaitSettled(wctx3, "casg", 100*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if v := viewGroupIn(t, lv, guestPool, "casg"); len(v.running) != 1 || len(v.volumes) != 2 {
		t.Errorf("after +1 -1: running %v, volumes %v, want 1", v.running, v.volumes)
	}
	if _, err := s.Scale(ctx, "casg", 0); err != nil {
		t.Fatal(err)
	}
	if _, err := s.WaitSettled(wctx3, "casg", 100*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if v := viewGroupIn(t, lv, guestPool, "casg"); len(v.defined) != 0 || len(v.volumes) != 0 {
		t.Errorf("after scale to 0: defined %v, volumes %v", v.defined, v.volumes)
	}
	all, err := kc.Admin.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range all.Items {
		if strings.HasPrefix(n.Spec.ProviderID, "premiscale://casg/") {
			t.Errorf("node %s (%s) left after scale to 0", n.Name, n.Spec.ProviderID)
		}
	}
	checkExactRights(t, kc, id, false)
}

// membershipRefresh is longer than the provider's cache of a group's
// members for NodeGroupForNode.
const membershipRefresh = 1500 * time.Millisecond

// registerNode registers a Node as a kubelet does on its first start: name
// and provider ID, no conditions yet. With ready, it is annotated for kwok,
// which then plays its kubelet (Ready, lease). The Node is deleted when
// the test ends, if still there.
func registerNode(t *testing.T, ctx context.Context, kc *k8s.Cluster, name, providerID string, ready bool) {
	t.Helper()
	n := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{corev1.LabelHostname: name}},
		Spec:       corev1.NodeSpec{ProviderID: providerID},
	}
	if ready {
		n.Annotations = map[string]string{k8s.FakeNodeAnnotation: "fake"}
	}
	if _, err := kc.Admin.CoreV1().Nodes().Create(ctx, n, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = kc.Admin.CoreV1().Nodes().Delete(context.Background(), name, metav1.DeleteOptions{}) })
}

// reportReady does what the kubelet of a Node registered not Ready does
// once its runtime and network are up: a status update with the Ready
// condition True. (kwok adopts only Nodes annotated when created: its
// lease is taken on the Node's first sighting.)
func reportReady(t *testing.T, ctx context.Context, kc *k8s.Cluster, name string) {
	t.Helper()
	n, err := kc.Admin.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	now := metav1.Now()
	n.Status.Conditions = []corev1.NodeCondition{{
		Type: corev1.NodeReady, Status: corev1.ConditionTrue, Reason: "KubeletReady", Message: "kubelet is posting ready status",
		LastHeartbeatTime: now, LastTransitionTime: now,
	}}
	if _, err := kc.Admin.CoreV1().Nodes().UpdateStatus(ctx, n, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// counterValue reads one series of a counter vector in reg by its label
// values (method, code); 0 if it has not been counted.
func counterValue(t *testing.T, reg *prometheus.Registry, name, method, code string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["method"] == method && labels["code"] == code {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}
