package workflows

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"
)

// changeGroupSpecFromWorker: a group has every spec it is handed (a fresh
// start's input, each spec signal) checked by the worker against its own
// configuration (CheckGroupSpecName, a local activity) and refuses one
// that differs, instead of believing whoever reached the frontend.
const changeGroupSpecFromWorker = "group-spec-from-worker"

// CheckGroupSpecName is the registered name of the worker's local activity
// that compares a spec with what the worker's own configuration makes of
// the group (SpecFromConfig): input GroupSpec, output SpecCheck. The
// worker package registers it (worker.Authority).
const CheckGroupSpecName = "CheckGroupSpec"

// SpecCheck is CheckGroupSpecName's answer: every field in which the spec
// differs from the worker's, with both values; none when they match.
type SpecCheck struct {
	Refused []string `json:"refused,omitempty"`
}

// maxDiffValue bounds each value quoted in a DiffSpecs line.
const maxDiffValue = 120

// DiffSpecs lists the fields (by JSON name, sorted) in which got differs
// from want, each as "field: <got>, this worker's configuration has
// <want>". Pure.
func DiffSpecs(got, want GroupSpec) []string {
	fields := func(s GroupSpec) map[string]json.RawMessage {
		b, _ := json.Marshal(s) // plain data: cannot fail
		m := map[string]json.RawMessage{}
		_ = json.Unmarshal(b, &m)
		return m
	}
	g, w := fields(got), fields(want)
	var keys []string
	// Collecting keys to sort: the order cannot change the result.
	//workflowcheck:ignore
	for k := range g {
		keys = append(keys, k)
	}
	//workflowcheck:ignore
	for k := range w {
		if _, ok := g[k]; !ok {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	var out []string
	for _, k := range keys {
		if !bytes.Equal(g[k], w[k]) {
			out = append(out, fmt.Sprintf("%s: %s, this worker's configuration has %s", k, clip(g[k]), clip(w[k])))
		}
	}
	return out
}

func clip(v json.RawMessage) string {
	if len(v) == 0 {
		return "nothing"
	}
	if len(v) > maxDiffValue {
		return string(v[:maxDiffValue]) + "..."
	}
	return string(v)
}

// checkSpec asks the worker whether spec is what its configuration makes
// of the group. The local activity retries until a worker answers: a
// worker without a configuration (never the case for PremiScale's own)
// fails it for good.
func checkSpec(ctx workflow.Context, spec GroupSpec) ([]string, error) {
	lctx := workflow.WithLocalActivityOptions(ctx, workflow.LocalActivityOptions{
		StartToCloseTimeout: quickActivityTimeout,
		RetryPolicy:         &temporal.RetryPolicy{InitialInterval: time.Second, MaximumInterval: time.Minute},
	})
	var out SpecCheck
	if err := workflow.ExecuteLocalActivity(lctx, CheckGroupSpecName, spec).Get(ctx, &out); err != nil {
		return nil, err
	}
	return out.Refused, nil
}

// refusedSpec is the message of a spec the worker refused.
func refusedSpec(refused []string) string {
	return "spec refused by this worker's configuration: " + strings.Join(refused, "; ")
}
