// Package externalgrpc serves the Kubernetes cluster-autoscaler's
// externalgrpc cloud provider: the groups in clusterAutoscaler mode are its
// node groups. Reads are status Queries of the group workflows; every
// mutating call is an Update whose validator enforces min, max and
// membership, and which records intent and returns (it never waits for a
// VM to boot), well within the autoscaler's 5 s deadline.
package externalgrpc

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/premiscale/premiscale/config"
	"github.com/premiscale/premiscale/internal/externalgrpc/protos"
	"github.com/premiscale/premiscale/internal/mtls"
	"github.com/premiscale/premiscale/starter"
	"github.com/premiscale/premiscale/workflows"
)

// ProviderIDPrefix starts the provider ID of every PremiScale node.
const ProviderIDPrefix = "premiscale://"

// GPULabel is the node label the provider reports for GPU nodes; PremiScale
// templates have no GPUs, so no node carries it.
const GPULabel = "premiscale.com/gpu"

// callTimeout bounds each call's work, under the autoscaler's 5 s deadline.
const callTimeout = 4 * time.Second

// Error codes PremiScale reports in NodeGroupNodes.
const (
	// ErrorCodeNoCapacity marks requested nodes no host can take.
	ErrorCodeNoCapacity = "InsufficientCapacity"
	// outOfResourcesErrorClass and otherErrorClass are the autoscaler's
	// cloudprovider.InstanceErrorClass values.
	outOfResourcesErrorClass = 1
	otherErrorClass          = 99
)

// Server implements the CloudProvider service over a Starter.
type Server struct {
	protos.UnimplementedCloudProviderServer
	Starter *starter.Starter
	Log     *slog.Logger
	// Metrics, if set, receives premiscale_externalgrpc_calls_total.
	Metrics prometheus.Registerer

	mu         sync.Mutex
	membership map[string]membership // by group, for NodeGroupForNode
}

var _ protos.CloudProviderServer = (*Server)(nil)

// groups are the configured groups in clusterAutoscaler mode.
func (s *Server) groups() []config.Group {
	var out []config.Group
	for _, g := range s.Starter.Config.Autoscale.Groups {
		if g.Scaling.Mode == config.ModeClusterAutoscaler {
			out = append(out, g)
		}
	}
	return out
}

// group finds a node group by id, or answers NotFound.
func (s *Server) group(id string) (config.Group, error) {
	for _, g := range s.groups() {
		if g.Name == id {
			return g, nil
		}
	}
	return config.Group{}, status.Errorf(codes.NotFound, "node group %q not found (PremiScale groups in clusterAutoscaler mode are node groups)", id)
}

// bounds are a group's min and max in force: a schedule window's while
// one governs, the configured ones otherwise.
type bounds struct {
	min, max int
	schedule string // the governing schedule, if any
}

// configured are the bounds of g's configuration.
func configured(g config.Group) bounds { return bounds{min: g.Min, max: g.Max} }

func nodeGroup(g config.Group, b bounds) *protos.NodeGroup {
	why := ""
	if b.schedule != "" {
		why = fmt.Sprintf(" (schedule %s; configured %d..%d)", b.schedule, g.Min, g.Max)
	}
	return &protos.NodeGroup{
		Id: g.Name, MinSize: int32(b.min), MaxSize: int32(b.max),
		Debug: fmt.Sprintf("premiscale group %s: min %d, max %d%s, hosts %s", g.Name, b.min, b.max, why, strings.Join(g.Hosts, ",")),
	}
}

// grpcError maps the starter's errors to gRPC codes.
func grpcError(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, starter.ErrUnknownGroup):
		return status.Error(codes.NotFound, err.Error())
	case errors.Is(err, starter.ErrOutOfRange):
		return status.Error(codes.FailedPrecondition, err.Error())
	case errors.Is(err, starter.ErrRefused):
		return status.Error(codes.InvalidArgument, err.Error())
	case errors.Is(err, starter.ErrUnreachable), errors.Is(err, context.DeadlineExceeded):
		return status.Error(codes.Unavailable, err.Error())
	}
	return status.Error(codes.Internal, err.Error())
}

func (s *Server) status(ctx context.Context, id string) (workflows.GroupStatus, error) {
	if _, err := s.group(id); err != nil {
		return workflows.GroupStatus{}, err
	}
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	st, err := s.Starter.Status(ctx, id)
	return st, grpcError(err)
}

func (s *Server) update(ctx context.Context, id, update string, arg any) error {
	if _, err := s.group(id); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	res, err := s.Starter.Update(ctx, id, update, arg)
	if err != nil {
		s.Log.Warn("cluster-autoscaler call refused", "group", id, "update", update, "error", err)
		return grpcError(err)
	}
	s.Log.Info("cluster-autoscaler call", "group", id, "update", update, "desired_before", res.Previous, "desired", res.Desired)
	return nil
}

// NodeGroups lists the groups in clusterAutoscaler mode with the bounds in
// force, so that the autoscaler plans within an open schedule window
// instead of asking for sizes the group refuses. The bounds come from the
// summaries the groups publish (one visibility listing, no workflow woken);
// when they cannot be read, the configured bounds are reported (the
// group's Updates still refuse what a window forbids).
func (s *Server) NodeGroups(ctx context.Context, _ *protos.NodeGroupsRequest) (*protos.NodeGroupsResponse, error) {
	groups := s.groups()
	inForce := map[string]bounds{}
	if len(groups) > 0 {
		ctx, cancel := context.WithTimeout(ctx, callTimeout)
		defer cancel()
		sums, err := s.Starter.Summaries(ctx)
		if err != nil {
			s.Log.Warn("node groups: reporting configured bounds, the groups' summaries cannot be read", "error", err)
		}
		for _, sum := range sums {
			if sum.Max > 0 {
				inForce[sum.Group] = bounds{min: sum.Min, max: sum.Max, schedule: sum.Schedule}
			}
		}
	}
	out := &protos.NodeGroupsResponse{}
	for _, g := range groups {
		b, ok := inForce[g.Name]
		if !ok {
			b = configured(g)
		}
		out.NodeGroups = append(out.NodeGroups, nodeGroup(g, b))
	}
	return out, nil
}

// NodeGroupForNode answers a node's group only for a member of a group in
// clusterAutoscaler mode, matched by provider ID
// (premiscale://<group>/<uuid>). A node of another provider, of a group in
// another mode, or one left behind by a VM the group no longer has (a
// stale registration, a VM deleted by hand) gets the empty node group: the
// autoscaler then leaves it alone instead of counting it in the group or
// asking the group to delete it.
func (s *Server) NodeGroupForNode(ctx context.Context, req *protos.NodeGroupForNodeRequest) (*protos.NodeGroupForNodeResponse, error) {
	none := &protos.NodeGroupForNodeResponse{NodeGroup: &protos.NodeGroup{}}
	id := req.GetNode().GetProviderID()
	rest, ok := strings.CutPrefix(id, ProviderIDPrefix)
	if !ok {
		return none, nil
	}
	name, _, _ := strings.Cut(rest, "/")
	g, err := s.group(name)
	if err != nil {
		return none, nil
	}
	m, err := s.members(ctx, g.Name)
	if err != nil {
		return nil, err
	}
	if !m.ids[id] {
		return none, nil
	}
	return &protos.NodeGroupForNodeResponse{NodeGroup: nodeGroup(g, m.bounds)}, nil
}

// membershipTTL is how long NodeGroupForNode reuses a group's member list:
// the autoscaler asks once per node per loop, and one status Query per
// group per loop is enough.
const membershipTTL = time.Second

type membership struct {
	at     time.Time
	ids    map[string]bool // provider IDs
	bounds bounds          // in force when read
}

// members are the provider IDs of the group's members (provisioning,
// running or decommissioning) and its bounds in force, read by a status
// Query at most once per membershipTTL.
func (s *Server) members(ctx context.Context, group string) (membership, error) {
	s.mu.Lock()
	m, ok := s.membership[group]
	s.mu.Unlock()
	if ok && time.Since(m.at) < membershipTTL {
		return m, nil
	}
	st, err := s.status(ctx, group)
	if err != nil {
		return membership{}, err
	}
	m = membership{at: time.Now(), ids: map[string]bool{}, bounds: bounds{min: st.Min, max: st.Max}}
	if st.Schedule != nil {
		m.bounds.schedule = st.Schedule.Schedule
	}
	for _, mem := range st.Members {
		if mem.ProviderID != "" {
			m.ids[mem.ProviderID] = true
		}
	}
	s.mu.Lock()
	if s.membership == nil {
		s.membership = map[string]membership{}
	}
	s.membership[group] = m
	s.mu.Unlock()
	return m, nil
}

// GPULabel names the (unused) GPU label.
func (s *Server) GPULabel(context.Context, *protos.GPULabelRequest) (*protos.GPULabelResponse, error) {
	return &protos.GPULabelResponse{Label: GPULabel}, nil
}

// GetAvailableGPUTypes reports none.
func (s *Server) GetAvailableGPUTypes(context.Context, *protos.GetAvailableGPUTypesRequest) (*protos.GetAvailableGPUTypesResponse, error) {
	return &protos.GetAvailableGPUTypesResponse{GpuTypes: map[string]*anypb.Any{}}, nil
}

// Cleanup has nothing to release: the provider holds no per-call state.
func (s *Server) Cleanup(context.Context, *protos.CleanupRequest) (*protos.CleanupResponse, error) {
	return &protos.CleanupResponse{}, nil
}

// Refresh has nothing to refresh: every read queries the workflows.
func (s *Server) Refresh(context.Context, *protos.RefreshRequest) (*protos.RefreshResponse, error) {
	return &protos.RefreshResponse{}, nil
}

// NodeGroupTargetSize is the group's desired size.
func (s *Server) NodeGroupTargetSize(ctx context.Context, req *protos.NodeGroupTargetSizeRequest) (*protos.NodeGroupTargetSizeResponse, error) {
	st, err := s.status(ctx, req.GetId())
	if err != nil {
		return nil, err
	}
	return &protos.NodeGroupTargetSizeResponse{TargetSize: int32(st.Desired)}, nil
}

// NodeGroupIncreaseSize raises desired by delta (an Update; refused past max).
func (s *Server) NodeGroupIncreaseSize(ctx context.Context, req *protos.NodeGroupIncreaseSizeRequest) (*protos.NodeGroupIncreaseSizeResponse, error) {
	if req.GetDelta() <= 0 {
		return nil, status.Errorf(codes.InvalidArgument, "delta must be positive, got %d", req.GetDelta())
	}
	err := s.update(ctx, req.GetId(), workflows.UpdateIncreaseSize, workflows.DeltaRequest{Delta: int(req.GetDelta())})
	if err != nil {
		return nil, err
	}
	return &protos.NodeGroupIncreaseSizeResponse{}, nil
}

// NodeGroupDeleteNodes removes exactly the named nodes and lowers desired by
// as many; a node of another group, or unknown, refuses the whole call.
func (s *Server) NodeGroupDeleteNodes(ctx context.Context, req *protos.NodeGroupDeleteNodesRequest) (*protos.NodeGroupDeleteNodesResponse, error) {
	var ids []string
	for _, n := range req.GetNodes() {
		if n.GetProviderID() == "" {
			return nil, status.Errorf(codes.InvalidArgument, "node %q has no provider ID", n.GetName())
		}
		ids = append(ids, n.GetProviderID())
	}
	if len(ids) == 0 {
		return nil, status.Error(codes.InvalidArgument, "no nodes named")
	}
	if err := s.update(ctx, req.GetId(), workflows.UpdateDeleteNodes, workflows.DeleteNodesRequest{ProviderIDs: ids}); err != nil {
		return nil, err
	}
	return &protos.NodeGroupDeleteNodesResponse{}, nil
}

// NodeGroupDecreaseTargetSize withdraws requests not yet fulfilled; it
// never deletes a registered node.
func (s *Server) NodeGroupDecreaseTargetSize(ctx context.Context, req *protos.NodeGroupDecreaseTargetSizeRequest) (*protos.NodeGroupDecreaseTargetSizeResponse, error) {
	if req.GetDelta() >= 0 {
		return nil, status.Errorf(codes.InvalidArgument, "delta must be negative, got %d", req.GetDelta())
	}
	if err := s.update(ctx, req.GetId(), workflows.UpdateDecreaseTargetSize, workflows.DeltaRequest{Delta: int(req.GetDelta())}); err != nil {
		return nil, err
	}
	return &protos.NodeGroupDecreaseTargetSizeResponse{}, nil
}

// NodeGroupNodes lists the members by provider ID: provisioning ones as
// creating, decommissioning or condemned ones as deleting, the rest as
// running. Requested VMs that no host can take appear as creating
// placeholders with an out-of-resources error, so the autoscaler backs off
// the group and tries another.
func (s *Server) NodeGroupNodes(ctx context.Context, req *protos.NodeGroupNodesRequest) (*protos.NodeGroupNodesResponse, error) {
	st, err := s.status(ctx, req.GetId())
	if err != nil {
		return nil, err
	}
	out := &protos.NodeGroupNodesResponse{}
	counted := 0
	for _, m := range st.Members {
		state := protos.InstanceStatus_instanceRunning
		switch {
		case m.State == workflows.MemberProvisioning:
			state = protos.InstanceStatus_instanceCreating
		case m.Condemned || m.State == workflows.MemberDecommissioning:
			state = protos.InstanceStatus_instanceDeleting
		}
		if state != protos.InstanceStatus_instanceDeleting {
			counted++
		}
		inst := &protos.Instance{Id: m.ProviderID, Status: &protos.InstanceStatus{InstanceState: state}}
		if m.Error != "" && m.State == workflows.MemberFailed {
			inst.Status.ErrorInfo = &protos.InstanceErrorInfo{ErrorCode: "Failed", ErrorMessage: m.Error, InstanceErrorClass: otherErrorClass}
		}
		out.Instances = append(out.Instances, inst)
	}
	for i := counted; i < st.Desired; i++ {
		inst := &protos.Instance{
			Id:     fmt.Sprintf("%s%s/requested-%d", ProviderIDPrefix, st.Group, i+1),
			Status: &protos.InstanceStatus{InstanceState: protos.InstanceStatus_instanceCreating},
		}
		if st.NoCapacity != "" {
			inst.Status.ErrorInfo = &protos.InstanceErrorInfo{ErrorCode: ErrorCodeNoCapacity, ErrorMessage: st.NoCapacity, InstanceErrorClass: outOfResourcesErrorClass}
		}
		out.Instances = append(out.Instances, inst)
	}
	return out, nil
}

// TemplateNode is what a new node of the group looks like: the template's
// CPUs and memory, the group's labels and taints.
func TemplateNode(g config.Group) (*corev1.Node, error) {
	mem, err := config.ParseSize(g.Template.Memory)
	if err != nil {
		return nil, err
	}
	res := corev1.ResourceList{
		corev1.ResourceCPU:    *resource.NewQuantity(int64(g.Template.VCPUs), resource.DecimalSI),
		corev1.ResourceMemory: *resource.NewQuantity(int64(mem), resource.BinarySI),
		corev1.ResourcePods:   *resource.NewQuantity(110, resource.DecimalSI),
	}
	name := g.Name + "-template"
	labels := map[string]string{
		corev1.LabelHostname:   name,
		corev1.LabelOSStable:   "linux",
		corev1.LabelArchStable: archLabel(g.Template.Arch),
	}
	for k, v := range g.Kubernetes.Labels {
		labels[k] = v
	}
	node := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels},
		Spec:       corev1.NodeSpec{ProviderID: ProviderIDPrefix + g.Name + "/template"},
		Status: corev1.NodeStatus{
			Capacity: res, Allocatable: res.DeepCopy(),
			Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue}},
		},
	}
	for _, t := range g.Kubernetes.Taints {
		node.Spec.Taints = append(node.Spec.Taints, corev1.Taint{Key: t.Key, Value: t.Value, Effect: corev1.TaintEffect(t.Effect)})
	}
	return node, nil
}

func archLabel(arch string) string {
	switch arch {
	case "x86_64", "":
		return "amd64"
	case "aarch64":
		return "arm64"
	}
	return arch
}

// NodeGroupTemplateNodeInfo returns TemplateNode, proto-marshalled.
func (s *Server) NodeGroupTemplateNodeInfo(_ context.Context, req *protos.NodeGroupTemplateNodeInfoRequest) (*protos.NodeGroupTemplateNodeInfoResponse, error) {
	g, err := s.group(req.GetId())
	if err != nil {
		return nil, err
	}
	node, err := TemplateNode(g)
	if err != nil {
		return nil, status.Errorf(codes.Internal, "template node of %s: %v", g.Name, err)
	}
	b, err := node.Marshal()
	if err != nil {
		return nil, status.Errorf(codes.Internal, "marshal template node: %v", err)
	}
	return &protos.NodeGroupTemplateNodeInfoResponse{NodeBytes: b}, nil
}

// NodeGroupGetOptions returns the autoscaler's own defaults, except the
// provisioning bound, which is the group's readyTimeout.
//
// It answers Unimplemented (the autoscaler then keeps all its own
// options) when the request carries no defaults, and when the defaults
// lack maxNodeStartupDuration (field 11): an autoscaler whose proto
// predates fields 11 and 12 builds its options from the answer's fields
// alone, so any answer would set its max node startup time to zero, every
// node still booting would count as unready, and it would scale up again
// while the first nodes boot. An autoscaler that knows field 11 always
// sends it (a duration, zero or not), so its absence identifies the old
// proto.
func (s *Server) NodeGroupGetOptions(_ context.Context, req *protos.NodeGroupAutoscalingOptionsRequest) (*protos.NodeGroupAutoscalingOptionsResponse, error) {
	g, err := s.group(req.GetId())
	if err != nil {
		return nil, err
	}
	d := req.GetDefaults()
	if d == nil {
		return nil, status.Error(codes.Unimplemented, "no defaults given; use the autoscaler's own")
	}
	if d.GetMaxNodeStartupDuration() == nil {
		return nil, status.Error(codes.Unimplemented, "the defaults carry no maxNodeStartupDuration (an autoscaler without fields 11 and 12); use the autoscaler's own options")
	}
	opts := &protos.NodeGroupAutoscalingOptions{
		ScaleDownUtilizationThreshold:    d.GetScaleDownUtilizationThreshold(),
		ScaleDownGpuUtilizationThreshold: d.GetScaleDownGpuUtilizationThreshold(),
		ZeroOrMaxNodeScaling:             d.GetZeroOrMaxNodeScaling(),
		IgnoreDaemonSetsUtilization:      d.GetIgnoreDaemonSetsUtilization(),
		ScaleDownUnneededDuration:        d.GetScaleDownUnneededDuration(),
		ScaleDownUnreadyDuration:         d.GetScaleDownUnreadyDuration(),
		MaxNodeProvisionDuration:         d.GetMaxNodeProvisionDuration(),
		MaxNodeStartupDuration:           d.GetMaxNodeStartupDuration(),
		AllowNonAtomicScaleUpToMax:       d.GetAllowNonAtomicScaleUpToMax(),
	}
	if g.Kubernetes.ReadyTimeout > 0 {
		opts.MaxNodeProvisionDuration = durationpb.New(g.Kubernetes.ReadyTimeout)
	}
	return &protos.NodeGroupAutoscalingOptionsResponse{NodeGroupAutoscalingOptions: opts}, nil
}

// ServerCredentials is mutual TLS for the provider: the server certificate
// and the client CA are re-read whenever their files change (cert-manager
// rotates them in place), and a client must present a certificate from the
// CA whose common name or a DNS or URI SAN is in ca.AllowedClients
// (validation requires the list).
func ServerCredentials(ca config.ClusterAutoscaler, log *slog.Logger) (credentials.TransportCredentials, error) {
	tc, err := mtls.Server{
		CertFile: ca.CertFile, KeyFile: ca.KeyFile, ClientCAFile: ca.ClientCAFile,
		AllowedClients: ca.AllowedClients, Field: "controller.clusterAutoscaler", Log: log,
	}.Config()
	if err != nil {
		return nil, err
	}
	return credentials.NewTLS(tc), nil
}

// logCalls logs every call with its peer: the calls that change groups at
// info, the rest at debug.
func logCalls(log *slog.Logger, calls *prometheus.CounterVec) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		who := "unknown"
		if p, ok := peer.FromContext(ctx); ok {
			who = p.Addr.String()
			if ti, ok := p.AuthInfo.(credentials.TLSInfo); ok && len(ti.State.PeerCertificates) > 0 {
				who = ti.State.PeerCertificates[0].Subject.CommonName + "@" + who
			}
		}
		resp, err := handler(ctx, req)
		level := slog.LevelDebug
		method := info.FullMethod[strings.LastIndex(info.FullMethod, "/")+1:]
		if strings.Contains(method, "IncreaseSize") || strings.Contains(method, "DeleteNodes") || strings.Contains(method, "DecreaseTargetSize") {
			level = slog.LevelInfo
		}
		log.Log(ctx, level, "cluster-autoscaler call", "method", method, "peer", who, "error", err)
		if calls != nil {
			calls.WithLabelValues(method, status.Code(err).String()).Inc()
		}
		return resp, err
	}
}

// Serve listens on ca.Listen (mutual TLS unless ca.Insecure) and serves
// the provider until ctx ends.
//
// It also serves grpc.health.v1 (SERVING for "" and the provider's service
// name while it runs), behind the same TLS.
func Serve(ctx context.Context, ca config.ClusterAutoscaler, srv *Server) error {
	var calls *prometheus.CounterVec
	if srv.Metrics != nil {
		calls = prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "premiscale_externalgrpc_calls_total",
			Help: "Calls to the cluster-autoscaler externalgrpc provider, by method and gRPC status code.",
		}, []string{"method", "code"})
		if err := srv.Metrics.Register(calls); err != nil {
			return fmt.Errorf("cluster-autoscaler provider metrics: %w", err)
		}
	}
	opts := []grpc.ServerOption{grpc.UnaryInterceptor(logCalls(srv.Log, calls))}
	if ca.Insecure {
		srv.Log.Warn("cluster-autoscaler provider serves plaintext gRPC without client authentication (insecure: true); keep it on loopback", "listen", ca.Listen)
	} else {
		creds, err := ServerCredentials(ca, srv.Log)
		if err != nil {
			return err
		}
		opts = append(opts, grpc.Creds(creds))
	}
	lis, err := net.Listen("tcp", ca.Listen)
	if err != nil {
		return fmt.Errorf("controller.clusterAutoscaler.listen: %w", err)
	}
	g := grpc.NewServer(opts...)
	protos.RegisterCloudProviderServer(g, srv)
	hs := health.NewServer()
	hs.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	hs.SetServingStatus(protos.CloudProvider_ServiceDesc.ServiceName, healthpb.HealthCheckResponse_SERVING)
	healthpb.RegisterHealthServer(g, hs)
	go func() {
		<-ctx.Done()
		hs.Shutdown()
		g.GracefulStop()
	}()
	srv.Log.Info("cluster-autoscaler externalgrpc provider listening", "address", lis.Addr().String(), "mtls", !ca.Insecure)
	return g.Serve(lis)
}
