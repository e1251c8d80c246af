package externalgrpc

import (
	"context"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/premiscale/premiscale/config"
	"github.com/premiscale/premiscale/internal/externalgrpc/protos"
	"github.com/premiscale/premiscale/starter"
)

// oldAutoscalerRequest is NodeGroupGetOptions' request as the wire carries
// it from an autoscaler whose proto has NodeGroupAutoscalingOptions'
// fields 1-10 only (no maxNodeStartupDuration, no
// allowNonAtomicScaleUpToMax), encoded field by field.
func oldAutoscalerRequest(t *testing.T, id string) *protos.NodeGroupAutoscalingOptionsRequest {
	t.Helper()
	dur := func(d time.Duration) []byte {
		b, err := proto.Marshal(durationpb.New(d))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	var opts []byte
	opts = protowire.AppendTag(opts, 1, protowire.Fixed64Type)
	opts = protowire.AppendFixed64(opts, 0x3fe0000000000000) // 0.5
	opts = protowire.AppendTag(opts, 8, protowire.BytesType)
	opts = protowire.AppendBytes(opts, dur(10*time.Minute))
	opts = protowire.AppendTag(opts, 10, protowire.BytesType)
	opts = protowire.AppendBytes(opts, dur(15*time.Minute))
	var req []byte
	req = protowire.AppendTag(req, 1, protowire.BytesType)
	req = protowire.AppendString(req, id)
	req = protowire.AppendTag(req, 2, protowire.BytesType)
	req = protowire.AppendBytes(req, opts)
	var out protos.NodeGroupAutoscalingOptionsRequest
	if err := proto.Unmarshal(req, &out); err != nil {
		t.Fatal(err)
	}
	return &out
}

// TestGetOptionsIsSafeForAutoscalersWithAndWithoutField11: an autoscaler
// that knows maxNodeStartupDuration gets its defaults back with the
// group's readyTimeout as the provisioning bound; one that does not (it
// would read the missing field as a zero startup time and scale up again
// while nodes boot) is told Unimplemented and keeps its own options.
func TestGetOptionsIsSafeForAutoscalersWithAndWithoutField11(t *testing.T) {
	s := &Server{Starter: &starter.Starter{Config: &config.Config{Autoscale: config.Autoscale{Groups: []config.Group{{
		Name: "workers", Max: 3, Scaling: config.Scaling{Mode: config.ModeClusterAutoscaler},
		Kubernetes: config.GroupKubernetes{ReadyTimeout: 4 * time.Minute},
	}}}}}}
	current := &protos.NodeGroupAutoscalingOptionsRequest{Id: "workers", Defaults: &protos.NodeGroupAutoscalingOptions{
		ScaleDownUtilizationThreshold: 0.5, ScaleDownUnneededDuration: durationpb.New(10 * time.Minute),
		MaxNodeProvisionDuration: durationpb.New(15 * time.Minute), MaxNodeStartupDuration: durationpb.New(15 * time.Minute),
		AllowNonAtomicScaleUpToMax: true,
	}}
	for _, tc := range []struct {
		name    string
		req     *protos.NodeGroupAutoscalingOptionsRequest
		code    codes.Code
		startup time.Duration
	}{
		{"current proto", current, codes.OK, 15 * time.Minute},
		{"proto without fields 11 and 12", oldAutoscalerRequest(t, "workers"), codes.Unimplemented, 0},
		{"no defaults", &protos.NodeGroupAutoscalingOptionsRequest{Id: "workers"}, codes.Unimplemented, 0},
		{"unknown group", &protos.NodeGroupAutoscalingOptionsRequest{Id: "nope", Defaults: current.Defaults}, codes.NotFound, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, err := s.NodeGroupGetOptions(context.Background(), tc.req)
			if status.Code(err) != tc.code {
				t.Fatalf("code %v (%v), want %v", status.Code(err), err, tc.code)
			}
			if tc.code != codes.OK {
				return
			}
			o := resp.GetNodeGroupAutoscalingOptions()
			if o.GetMaxNodeStartupDuration().AsDuration() != tc.startup || o.GetMaxNodeProvisionDuration().AsDuration() != 4*time.Minute ||
				o.GetScaleDownUnneededDuration().AsDuration() != 10*time.Minute || o.GetScaleDownUtilizationThreshold() != 0.5 || !o.GetAllowNonAtomicScaleUpToMax() {
				t.Errorf("options %v: want the defaults with provisioning bounded by readyTimeout 4m", o)
			}
		})
	}
}
