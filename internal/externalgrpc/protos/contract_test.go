package protos

import (
	"testing"

	"google.golang.org/protobuf/reflect/protoreflect"
)

// TestWireContract pins what the cluster-autoscaler's client depends on:
// the service's full name, its methods, and the numbers and kinds of the
// fields it reads and writes. A change here breaks the autoscaler.
func TestWireContract(t *testing.T) {
	svc := File_externalgrpc_proto.Services().ByName("CloudProvider")
	if svc == nil || svc.FullName() != "clusterautoscaler.cloudprovider.v1.externalgrpc.CloudProvider" {
		t.Fatalf("service = %v", svc)
	}
	for _, m := range []string{
		"NodeGroups", "NodeGroupForNode", "PricingNodePrice", "PricingPodPrice", "GPULabel", "GetAvailableGPUTypes",
		"Cleanup", "Refresh", "NodeGroupTargetSize", "NodeGroupIncreaseSize", "NodeGroupDeleteNodes",
		"NodeGroupDecreaseTargetSize", "NodeGroupNodes", "NodeGroupTemplateNodeInfo", "NodeGroupGetOptions",
	} {
		if svc.Methods().ByName(protoreflect.Name(m)) == nil {
			t.Errorf("method %s missing", m)
		}
	}
	fields := []struct {
		msg, field string
		num        protoreflect.FieldNumber
		kind       protoreflect.Kind
	}{
		{"NodeGroup", "id", 1, protoreflect.StringKind},
		{"NodeGroup", "minSize", 2, protoreflect.Int32Kind},
		{"NodeGroup", "maxSize", 3, protoreflect.Int32Kind},
		{"NodeGroup", "debug", 4, protoreflect.StringKind},
		{"ExternalGrpcNode", "providerID", 1, protoreflect.StringKind},
		{"ExternalGrpcNode", "name", 2, protoreflect.StringKind},
		{"ExternalGrpcNode", "labels", 3, protoreflect.MessageKind},
		{"ExternalGrpcNode", "annotations", 4, protoreflect.MessageKind},
		{"PricingNodePriceRequest", "startTimestamp", 4, protoreflect.MessageKind},
		{"PricingPodPriceRequest", "pod_bytes", 4, protoreflect.BytesKind},
		{"NodeGroupIncreaseSizeRequest", "delta", 1, protoreflect.Int32Kind},
		{"NodeGroupIncreaseSizeRequest", "id", 2, protoreflect.StringKind},
		{"NodeGroupDeleteNodesRequest", "nodes", 1, protoreflect.MessageKind},
		{"NodeGroupDeleteNodesRequest", "id", 2, protoreflect.StringKind},
		{"NodeGroupDecreaseTargetSizeRequest", "delta", 1, protoreflect.Int32Kind},
		{"Instance", "id", 1, protoreflect.StringKind},
		{"Instance", "status", 2, protoreflect.MessageKind},
		{"InstanceStatus", "instanceState", 1, protoreflect.EnumKind},
		{"InstanceStatus", "errorInfo", 2, protoreflect.MessageKind},
		{"InstanceErrorInfo", "instanceErrorClass", 3, protoreflect.Int32Kind},
		{"NodeGroupTemplateNodeInfoResponse", "nodeBytes", 2, protoreflect.BytesKind},
		{"NodeGroupTemplateNodeInfoResponse", "resourceSliceBytes", 3, protoreflect.BytesKind},
		{"NodeGroupAutoscalingOptions", "zeroOrMaxNodeScaling", 6, protoreflect.BoolKind},
		{"NodeGroupAutoscalingOptions", "MaxNodeProvisionDuration", 10, protoreflect.MessageKind},
		{"NodeGroupAutoscalingOptions", "allowNonAtomicScaleUpToMax", 12, protoreflect.BoolKind},
		{"NodeGroupAutoscalingOptionsRequest", "defaults", 2, protoreflect.MessageKind},
	}
	for _, f := range fields {
		md := File_externalgrpc_proto.Messages().ByName(protoreflect.Name(f.msg))
		if md == nil {
			t.Errorf("message %s missing", f.msg)
			continue
		}
		fd := md.Fields().ByNumber(f.num)
		if fd == nil || fd.Name() != protoreflect.Name(f.field) || fd.Kind() != f.kind {
			t.Errorf("%s field %d = %v, want %s of kind %v", f.msg, f.num, fd, f.field, f.kind)
		}
	}
	states := InstanceStatus_InstanceState(0).Descriptor().Values()
	for num, name := range []string{"unspecified", "instanceRunning", "instanceCreating", "instanceDeleting"} {
		if v := states.ByNumber(protoreflect.EnumNumber(num)); v == nil || string(v.Name()) != name {
			t.Errorf("instance state %d = %v, want %s", num, v, name)
		}
	}
}
