package workflows

import (
	"encoding/json"
	"reflect"
	"testing"
	"time"

	"github.com/premiscale/premiscale/config"
)

// TestSpecSectionsCarryEveryConfigField fills every field of each
// configuration section a GroupSpec carries, converts it as SpecFromConfig
// does and compares the JSON: a field added to config but not to the
// history type (so the workflow would never see it), or written under
// another name, fails here.
func TestSpecSectionsCarryEveryConfigField(t *testing.T) {
	var (
		tmpl    config.Template
		scaling config.Scaling
		place   config.Placement
		warm    config.WarmPool
		refresh config.Refresh
		drain   config.Drain
		taint   config.Taint
	)
	for _, v := range []any{&tmpl, &scaling, &place, &warm, &refresh, &drain, &taint} {
		fill(reflect.ValueOf(v).Elem(), 1)
	}
	if len(scaling.Checks) == 0 || tmpl.ShutdownTimeout == nil || warm.Ready.ConsoleLine == "" {
		t.Fatal("fill left fields empty")
	}
	for _, c := range []struct {
		name      string
		cfg, spec any
	}{
		{"template", tmpl, templateFrom(tmpl)},
		{"scaling", scaling, scalingFrom(scaling)},
		{"placement", place, Placement(place)},
		{"warmPool", warm, warmPoolFrom(&warm)},
		{"refresh", refresh, RefreshSettings(refresh)},
		{"drain", drain, Drain(drain)},
		{"taints", []config.Taint{taint}, taintsFrom([]config.Taint{taint})},
	} {
		want, err := json.Marshal(c.cfg)
		if err != nil {
			t.Fatal(err)
		}
		got, err := json.Marshal(c.spec)
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != string(want) {
			t.Errorf("%s: the history type writes\n%s\nconfig writes\n%s", c.name, got, want)
		}
	}
}

// fill sets every exported field of v (recursively) to a non-zero value.
func fill(v reflect.Value, n int) {
	switch v.Kind() {
	case reflect.Pointer:
		v.Set(reflect.New(v.Type().Elem()))
		fill(v.Elem(), n)
	case reflect.Struct:
		for i := range v.NumField() {
			if v.Type().Field(i).IsExported() {
				fill(v.Field(i), n+i)
			}
		}
	case reflect.Slice:
		v.Set(reflect.MakeSlice(v.Type(), 1, 1))
		fill(v.Index(0), n)
	case reflect.Map:
		m := reflect.MakeMap(v.Type())
		k, e := reflect.New(v.Type().Key()).Elem(), reflect.New(v.Type().Elem()).Elem()
		fill(k, n)
		fill(e, n)
		m.SetMapIndex(k, e)
		v.Set(m)
	case reflect.String:
		v.SetString("s" + string(rune('a'+n%26)))
	case reflect.Bool:
		v.SetBool(true)
	case reflect.Int, reflect.Int64:
		if v.Type() == reflect.TypeFor[time.Duration]() {
			v.SetInt(int64(time.Duration(n) * time.Second))
		} else {
			v.SetInt(int64(n))
		}
	case reflect.Float64:
		v.SetFloat(float64(n) + 0.5)
	}
}
