package workflows

import (
	"reflect"
	"testing"
	"time"
)

// TestSummarySameComparesEveryFieldButChangedAt: a summary is republished
// when any field it shows changes, and only then. Each field of
// GroupSummary is changed in turn (found by reflection, so a field added
// later and forgotten in same fails here).
func TestSummarySameComparesEveryFieldButChangedAt(t *testing.T) {
	base := GroupSummary{Group: "web", Min: 1, Max: 5, Desired: 3, Running: 2, Provisioning: 1, UnreachableHosts: []string{"h1"}}
	if !base.same(base) {
		t.Fatal("a summary differs from itself")
	}
	later := base
	later.ChangedAt = time.Now()
	if !base.same(later) {
		t.Error("summaries that differ only in ChangedAt differ")
	}
	typ := reflect.TypeOf(base)
	for i := range typ.NumField() {
		f := typ.Field(i)
		if f.Name == "ChangedAt" {
			continue
		}
		changed := base
		v := reflect.ValueOf(&changed).Elem().Field(i)
		switch v.Kind() {
		case reflect.String:
			v.SetString(v.String() + "x")
		case reflect.Int:
			v.SetInt(v.Int() + 1)
		case reflect.Bool:
			v.SetBool(!v.Bool())
		case reflect.Slice:
			v.Set(reflect.ValueOf([]string{"h1", "h2"}))
		default:
			t.Fatalf("field %s of kind %s: extend this test", f.Name, v.Kind())
		}
		if base.same(changed) {
			t.Errorf("a change of %s does not count", f.Name)
		}
	}
}
