package workflows_test

import (
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"

	"go.temporal.io/sdk/interceptor"
	"go.temporal.io/sdk/workflow"
)

// TestEveryVersionBranchIsReplayedFromBothSides replays every recorded
// history with an interceptor that notes what each workflow.GetVersion
// call returned, and fails for any change ID of the code that no history
// takes on its old side (DefaultVersion: recorded before the change) or
// on its new side (1: recorded since). A branch no history takes is a
// branch the replay corpus does not check: record a history that goes
// through it (test/history_test.go, recordHistories) and keep the old
// files. The rule for retiring a change ID is in group_versions.go.
func TestEveryVersionBranchIsReplayedFromBothSides(t *testing.T) {
	ids := changeIDsOfTheCode(t)
	if len(ids) == 0 {
		t.Fatal("found no workflow.GetVersion call in the package")
	}
	files, err := filepath.Glob("testdata/*_history.json")
	if err != nil {
		t.Fatal(err)
	}
	w := &versionWatcher{seen: map[string]map[workflow.Version][]string{}}
	for _, f := range files {
		w.file = filepath.Base(f)
		if err := replay(t, loadHistory(t, f), w); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
	}
	for _, id := range ids {
		sides := w.seen[id]
		why, unrecorded := oldSideNotRecorded[id]
		switch {
		case len(sides[workflow.DefaultVersion]) == 0 && !unrecorded:
			t.Errorf("change %q: no recorded history takes its old side (recorded before the change)", id)
		case len(sides[workflow.DefaultVersion]) > 0 && unrecorded:
			t.Errorf("change %q: its old side is replayed now (%s): take it out of oldSideNotRecorded", id, sample(sides[workflow.DefaultVersion]))
		case unrecorded:
			t.Logf("%-40s old side not recorded: %s", id, why)
		}
		if len(sides[1]) == 0 {
			t.Errorf("change %q: no recorded history takes its new side: record one that goes through it", id)
		}
		t.Logf("%-40s old side %s; new side %s", id, sample(sides[workflow.DefaultVersion]), sample(sides[1]))
	}
	for id := range w.seen {
		if !slices.Contains(ids, id) {
			t.Errorf("replay asked for change %q, which no GetVersion call of the code names", id)
		}
	}
}

// oldSideNotRecorded are the change IDs whose old side no kept history
// takes, and why. No ID may be added: a new change ships with a history
// recorded before it (keep the old files when recording again). Each one
// leaves as soon as a history recorded by the code before its change is
// added to testdata (check out the commit before it and run the test that
// goes through it with RECORD_HISTORIES=1), or when the ID is retired.
var oldSideNotRecorded = map[string]string{
	"drain-abort-per-node":              "77d0ab5; the histories of that time were recorded again after it, none before it aborted a drain",
	"scale-in-rechecks-after-pod-count": "6c21719; no history from before it scaled in by leastPods",
}

// sample lists up to three of files, and how many more.
func sample(files []string) string {
	if len(files) == 0 {
		return "none"
	}
	if len(files) <= 3 {
		return strings.Join(files, ", ")
	}
	return strings.Join(files[:3], ", ") + " and " + strconv.Itoa(len(files)-3) + " more"
}

// changeIDsOfTheCode returns the change ID of every workflow.GetVersion
// call in the package's own (non-test) files, read from the source: the
// ID must be a string constant of the package, as group_versions.go keeps
// them.
func changeIDsOfTheCode(t *testing.T) []string {
	t.Helper()
	fset := token.NewFileSet()
	paths, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	consts := map[string]string{}
	var files []*ast.File
	for _, p := range paths {
		if strings.HasSuffix(p, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, p, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, f)
		for _, d := range f.Decls {
			gd, ok := d.(*ast.GenDecl)
			if !ok || gd.Tok != token.CONST {
				continue
			}
			for _, spec := range gd.Specs {
				vs := spec.(*ast.ValueSpec)
				for i, name := range vs.Names {
					if i < len(vs.Values) {
						if lit, ok := vs.Values[i].(*ast.BasicLit); ok && lit.Kind == token.STRING {
							consts[name.Name], _ = strconv.Unquote(lit.Value)
						}
					}
				}
			}
		}
	}
	set := map[string]bool{}
	for _, f := range files {
		ast.Inspect(f, func(n ast.Node) bool {
			call, ok := n.(*ast.CallExpr)
			if !ok {
				return true
			}
			sel, ok := call.Fun.(*ast.SelectorExpr)
			if !ok || sel.Sel.Name != "GetVersion" {
				return true
			}
			if x, ok := sel.X.(*ast.Ident); !ok || x.Name != "workflow" {
				return true
			}
			pos := fset.Position(call.Pos())
			if len(call.Args) < 2 {
				t.Fatalf("%s: GetVersion with %d arguments", pos, len(call.Args))
			}
			name, ok := call.Args[1].(*ast.Ident)
			if !ok || consts[name.Name] == "" {
				t.Fatalf("%s: GetVersion's change ID is not a string constant of the package", pos)
			}
			set[consts[name.Name]] = true
			return true
		})
	}
	ids := make([]string, 0, len(set))
	for id := range set {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	return ids
}

// versionWatcher is a worker interceptor that notes, for each change ID,
// the history files (file, set before each replay) in which GetVersion
// returned each version.
type versionWatcher struct {
	interceptor.WorkerInterceptorBase
	mu   sync.Mutex
	file string
	seen map[string]map[workflow.Version][]string
}

func (w *versionWatcher) InterceptWorkflow(ctx workflow.Context, next interceptor.WorkflowInboundInterceptor) interceptor.WorkflowInboundInterceptor {
	return &versionInbound{WorkflowInboundInterceptorBase: interceptor.WorkflowInboundInterceptorBase{Next: next}, w: w}
}

type versionInbound struct {
	interceptor.WorkflowInboundInterceptorBase
	w *versionWatcher
}

func (i *versionInbound) Init(outbound interceptor.WorkflowOutboundInterceptor) error {
	return i.Next.Init(&versionOutbound{WorkflowOutboundInterceptorBase: interceptor.WorkflowOutboundInterceptorBase{Next: outbound}, w: i.w})
}

type versionOutbound struct {
	interceptor.WorkflowOutboundInterceptorBase
	w *versionWatcher
}

func (o *versionOutbound) GetVersion(ctx workflow.Context, changeID string, minSupported, maxSupported workflow.Version) workflow.Version {
	v := o.Next.GetVersion(ctx, changeID, minSupported, maxSupported)
	o.w.mu.Lock()
	defer o.w.mu.Unlock()
	if o.w.seen[changeID] == nil {
		o.w.seen[changeID] = map[workflow.Version][]string{}
	}
	if files := o.w.seen[changeID][v]; len(files) == 0 || files[len(files)-1] != o.w.file {
		o.w.seen[changeID][v] = append(files, o.w.file)
	}
	return v
}
