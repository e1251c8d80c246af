package workflows_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	commonpb "go.temporal.io/api/common/v1"
	historypb "go.temporal.io/api/history/v1"

	"github.com/premiscale/premiscale/activities"
	"github.com/premiscale/premiscale/workflows"
	"github.com/premiscale/premiscale/workflows/policy"
)

// The history format: what a workflow decodes from its history when it
// starts, continues as new or receives a signal or an Update. Every type
// here must read every recorded history's payload with no field left
// over, so a renamed or removed field fails TestRecordedPayloadsDecode
// instead of a running group. A signal or Update the table does not name
// fails it too: add its payload here with the handler.
var (
	// workflowInputs: a workflow type's function, whose arguments after
	// the context are its input (start, child start, continue-as-new).
	workflowInputs = map[string]any{
		workflows.GroupWorkflowName:   workflows.GroupWorkflow,
		workflows.ProvisionVMName:     workflows.ProvisionVM,
		workflows.DecommissionVMName:  workflows.DecommissionVM,
		workflows.ActivateVMName:      workflows.ActivateVM,
		workflows.ParkVMName:          workflows.ParkVM,
		workflows.OrphanWorkflowName:  workflows.OrphanCollector,
		workflows.ScanWorkflowName:    workflows.ScanOwned,
		workflows.ScheduledWindowName: workflows.ScheduledWindow,
	}
	// signalPayloads: by workflow type, each signal's payload (nil: none).
	signalPayloads = map[string]map[string]any{
		workflows.GroupWorkflowName: {
			workflows.SignalSpec:       workflows.GroupSpec{},
			workflows.SignalScale:      workflows.DesiredRequest{},
			workflows.SignalPause:      nil,
			workflows.SignalResume:     nil,
			workflows.SignalRemove:     workflows.RemoveRequest{},
			workflows.SignalHostChange: activities.HostChange{},
		},
		workflows.OrphanWorkflowName: {
			workflows.SignalOrphanSpec: workflows.OrphanSpec{},
		},
	}
	// retiredFields: by type, the JSON fields older code wrote and today's
	// reads no more, with why; they are dropped before the strict decode.
	// A field is added here only on purpose, when the code stops reading
	// it, never to make a failing history pass.
	retiredFields = map[reflect.Type]map[string]string{
		reflect.TypeFor[activities.HostRef](): {
			"uri":  "trust, part 1: the worker dials the host of its own configuration by name, never a URI from history",
			"pool": "trust, part 1: the worker takes the pool of its own configuration, never one from history",
		},
		reflect.TypeFor[workflows.ProvisionInput](): {
			"template": "trust, part 1: the worker makes the VM from the template of the revision it holds",
		},
		reflect.TypeFor[workflows.KubernetesSpec](): {
			"userData": "trust, part 1: the worker renders user data from its own join settings",
		},
	}
	// updateArgs: the group workflow's Updates and their arguments.
	updateArgs = map[string][]any{
		workflows.UpdateSetDesired:         {workflows.DesiredRequest{}},
		workflows.UpdatePause:              nil,
		workflows.UpdateResume:             nil,
		workflows.UpdateIncreaseSize:       {workflows.DeltaRequest{}},
		workflows.UpdateDecreaseTargetSize: {workflows.DeltaRequest{}},
		workflows.UpdateDeleteNodes:        {workflows.DeleteNodesRequest{}},
		workflows.UpdateProtect:            {workflows.ProtectRequest{}},
		workflows.UpdateRefresh:            {workflows.RefreshRequest{}},
		workflows.UpdateRefreshRollback:    {workflows.RefreshRequest{}},
		workflows.UpdateRefreshContinue:    nil,
		workflows.UpdateRefreshCancel:      nil,
		workflows.UpdateScheduleWindow:     {policy.Window{}},
	}
)

// TestRecordedPayloadsDecode decodes every workflow input, continue-as-new
// input, child workflow input, signal payload and Update argument of the
// recorded histories into today's types, refusing any field the type does
// not have.
func TestRecordedPayloadsDecode(t *testing.T) {
	files, err := filepath.Glob("testdata/*_history.json")
	if err != nil {
		t.Fatal(err)
	}
	counts := map[string]int{}
	for _, f := range files {
		h := loadHistory(t, f)
		typ := h.Events[0].GetWorkflowExecutionStartedEventAttributes().GetWorkflowType().GetName()
		for _, e := range h.Events {
			where := fmt.Sprintf("%s event %d", filepath.Base(f), e.GetEventId())
			if err := decodeEvent(typ, e, counts); err != nil {
				t.Errorf("%s: %v", where, err)
			}
		}
	}
	for _, kind := range []string{"start", "continue-as-new", "child", "signal", "update"} {
		if counts[kind] == 0 {
			t.Errorf("no %s payload in the recorded histories: the test checks nothing of them", kind)
		}
	}
	t.Logf("decoded %v", counts)
}

// TestPayloadDecodingRefusesAnUnknownField proves the check above can
// fail: a spec signal carrying a field GroupSpec does not have.
func TestPayloadDecodingRefusesAnUnknownField(t *testing.T) {
	p := &commonpb.Payloads{Payloads: []*commonpb.Payload{{
		Metadata: map[string][]byte{"encoding": []byte("json/plain")},
		Data:     []byte(`{"name":"web","minimum":1}`),
	}}}
	if err := decodeArgs(p, []reflect.Type{reflect.TypeFor[workflows.GroupSpec]()}); err == nil {
		t.Fatal("a spec with a field GroupSpec does not have decoded")
	}
}

// decodeEvent decodes the payloads of e, an event of a history of a
// workflow of type typ, and counts them by kind.
func decodeEvent(typ string, e *historypb.HistoryEvent, counts map[string]int) error {
	inputsOf := func(typ string) ([]reflect.Type, error) {
		fn, ok := workflowInputs[typ]
		if !ok {
			return nil, fmt.Errorf("workflow type %q is not in workflowInputs", typ)
		}
		ft := reflect.TypeOf(fn)
		var in []reflect.Type
		for i := 1; i < ft.NumIn(); i++ {
			in = append(in, ft.In(i))
		}
		return in, nil
	}
	var (
		kind  string
		p     *commonpb.Payloads
		types []reflect.Type
		err   error
	)
	switch {
	case e.GetWorkflowExecutionStartedEventAttributes() != nil:
		kind, p = "start", e.GetWorkflowExecutionStartedEventAttributes().GetInput()
		types, err = inputsOf(typ)
	case e.GetWorkflowExecutionContinuedAsNewEventAttributes() != nil:
		a := e.GetWorkflowExecutionContinuedAsNewEventAttributes()
		kind, p = "continue-as-new", a.GetInput()
		types, err = inputsOf(a.GetWorkflowType().GetName())
	case e.GetStartChildWorkflowExecutionInitiatedEventAttributes() != nil:
		a := e.GetStartChildWorkflowExecutionInitiatedEventAttributes()
		kind, p = "child", a.GetInput()
		types, err = inputsOf(a.GetWorkflowType().GetName())
	case e.GetWorkflowExecutionSignaledEventAttributes() != nil:
		a := e.GetWorkflowExecutionSignaledEventAttributes()
		kind, p = "signal", a.GetInput()
		payload, ok := signalPayloads[typ][a.GetSignalName()]
		if !ok {
			return fmt.Errorf("signal %q of %s is not in signalPayloads", a.GetSignalName(), typ)
		}
		if payload == nil {
			return nil // the handler reads no payload (ReceiveAsync(nil))
		}
		types = []reflect.Type{reflect.TypeOf(payload)}
	case e.GetWorkflowExecutionUpdateAcceptedEventAttributes() != nil:
		in := e.GetWorkflowExecutionUpdateAcceptedEventAttributes().GetAcceptedRequest().GetInput()
		kind, p = "update", in.GetArgs()
		args, ok := updateArgs[in.GetName()]
		if !ok || typ != workflows.GroupWorkflowName {
			return fmt.Errorf("update %q of %s is not in updateArgs", in.GetName(), typ)
		}
		for _, a := range args {
			types = append(types, reflect.TypeOf(a))
		}
	default:
		return nil
	}
	if err != nil {
		return err
	}
	counts[kind]++
	if err := decodeArgs(p, types); err != nil {
		return fmt.Errorf("%s payload: %w", kind, err)
	}
	return nil
}

// decodeArgs decodes each payload of p into its type of types, refusing
// unknown fields, and refuses payloads past the types.
func decodeArgs(p *commonpb.Payloads, types []reflect.Type) error {
	ps := p.GetPayloads()
	if len(ps) > len(types) {
		return fmt.Errorf("%d payloads, the code reads %d", len(ps), len(types))
	}
	for i, pl := range ps {
		if enc := string(pl.GetMetadata()["encoding"]); enc != "json/plain" {
			if enc == "binary/null" {
				continue
			}
			return fmt.Errorf("payload %d: encoding %q", i, enc)
		}
		var generic any
		if err := json.Unmarshal(pl.GetData(), &generic); err != nil {
			return fmt.Errorf("payload %d: %w", i, err)
		}
		dropRetired(generic, types[i])
		data, err := json.Marshal(generic)
		if err != nil {
			return err
		}
		dec := json.NewDecoder(bytes.NewReader(data))
		dec.DisallowUnknownFields()
		if err := dec.Decode(reflect.New(types[i]).Interface()); err != nil {
			return fmt.Errorf("payload %d as %s: %w", i, types[i], err)
		}
	}
	return nil
}

// dropRetired deletes from v, a JSON value decoded generically, the
// retiredFields of t and of every type within it.
func dropRetired(v any, t reflect.Type) {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.Slice, reflect.Array:
		if items, ok := v.([]any); ok {
			for _, item := range items {
				dropRetired(item, t.Elem())
			}
		}
	case reflect.Map:
		if m, ok := v.(map[string]any); ok {
			for _, item := range m {
				dropRetired(item, t.Elem())
			}
		}
	case reflect.Struct:
		obj, ok := v.(map[string]any)
		if !ok {
			return
		}
		for name := range retiredFields[t] {
			delete(obj, name)
		}
		for i := range t.NumField() {
			f := t.Field(i)
			name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
			if f.Anonymous && name == "" {
				dropRetired(obj, f.Type)
				continue
			}
			if name == "" {
				name = f.Name
			}
			if child, ok := obj[name]; ok {
				dropRetired(child, f.Type)
			}
		}
	}
}
