package workflows

import (
	"slices"

	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/interceptor"
	"go.temporal.io/sdk/workflow"
)

// signalOrderChannel receives the name of each of a group's control
// signals as it is delivered, in history order (see SignalOrder).
const signalOrderChannel = "premiscale.signal-order"

// SignalOrder is a worker interceptor that lets GroupWorkflow apply its
// signals (spec, scale, pause, resume) in the order they arrived. The SDK
// hands each signal to its own channel, and a workflow that finds several
// waiting in one task cannot tell in which order they came ("resume then
// pause" would end resumed). The interceptor sees each signal as it is
// delivered, in history order, and also sends its name to one more
// channel, which the workflow reads first. It is deterministic workflow
// code: every worker and replayer running GroupWorkflow must have it
// (worker.New and worker.NewReplayer add it).
type SignalOrder struct {
	interceptor.WorkerInterceptorBase
}

var _ interceptor.WorkerInterceptor = (*SignalOrder)(nil)

// InterceptWorkflow implements interceptor.WorkerInterceptor.
func (SignalOrder) InterceptWorkflow(ctx workflow.Context, next interceptor.WorkflowInboundInterceptor) interceptor.WorkflowInboundInterceptor {
	if workflow.GetInfo(ctx).WorkflowType.Name != GroupWorkflowName {
		return next
	}
	return &signalOrderInbound{WorkflowInboundInterceptorBase: interceptor.WorkflowInboundInterceptorBase{Next: next}}
}

type signalOrderInbound struct {
	interceptor.WorkflowInboundInterceptorBase
}

// orderedSignals are the signals whose order counts.
var orderedSignals = []string{SignalSpec, SignalScale, SignalPause, SignalResume}

func (s *signalOrderInbound) HandleSignal(ctx workflow.Context, in *interceptor.HandleSignalInput) error {
	if err := s.Next.HandleSignal(ctx, in); err != nil {
		return err
	}
	if !slices.Contains(orderedSignals, in.SignalName) {
		return nil
	}
	// Delivered as one more signal, through the SDK's own handling.
	name, err := converter.GetDefaultDataConverter().ToPayloads(in.SignalName)
	if err != nil {
		return err
	}
	return s.Next.HandleSignal(ctx, &interceptor.HandleSignalInput{SignalName: signalOrderChannel, Arg: name})
}
