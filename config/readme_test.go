package config

import (
	"os"
	"reflect"
	"regexp"
	"strings"
	"testing"
)

// TestREADMEConfigKeysExist checks every configuration key the README
// and the production guide name in backquotes: a whole path (`controller.hostWatch.enabled`,
// `autoscale.hosts[].maxConcurrentCalls`) must exist from the file's root,
// and a path from a group's or a host's own keys (`scaling.scaleIn.selection`,
// `refresh.minHealthy`) must exist under a group or a host. A renamed key
// fails here instead of in an operator's file. Other dotted names (chart
// values, file names, Go identifiers) start with none of those keys and are
// left alone.
func TestREADMEConfigKeysExist(t *testing.T) {
	var b []byte
	for _, doc := range []string{"../README.md", "../docs/production.md"} {
		d, err := os.ReadFile(doc)
		if err != nil {
			t.Fatal(err)
		}
		b = append(b, d...)
	}
	root := reflect.TypeFor[Config]()
	group := reflect.TypeFor[Group]()
	host := reflect.TypeFor[Host]()
	re := regexp.MustCompile("`([a-zA-Z]+(?:\\[\\])?(?:\\.[a-zA-Z]+(?:\\[\\])?)+)`")
	checked := 0
	for _, m := range re.FindAllStringSubmatch(string(b), -1) {
		path := strings.Split(strings.ReplaceAll(m[1], "[]", ""), ".")
		switch path[len(path)-1] {
		case "go", "json", "yaml", "md", "sh", "crt", "key", "conf":
			continue // a file name (controller.go)
		}
		var under []reflect.Type
		switch {
		case path[0] == "controller" || path[0] == "autoscale":
			under = []reflect.Type{root}
		case keyOf(group, path[0]) || keyOf(host, path[0]):
			under = []reflect.Type{group, host}
		default:
			continue
		}
		checked++
		found := false
		for _, t := range under {
			if resolveKey(t, path) {
				found = true
			}
		}
		if !found {
			t.Errorf("README names `%s`, which is not a configuration key", m[1])
		}
	}
	if checked < 30 {
		t.Errorf("checked %d keys; the README names more: the pattern lost some", checked)
	}
	t.Logf("%d configuration keys checked", checked)
}

// TestREADMEKeyCheckRefusesAMissingKey proves resolveKey can fail.
func TestREADMEKeyCheckRefusesAMissingKey(t *testing.T) {
	if resolveKey(reflect.TypeFor[Config](), []string{"controller", "hostWatch", "enable"}) {
		t.Fatal("controller.hostWatch.enable resolved")
	}
	if !resolveKey(reflect.TypeFor[Config](), []string{"controller", "hostWatch", "enabled"}) {
		t.Fatal("controller.hostWatch.enabled did not resolve")
	}
}

// keyOf reports whether struct type t has the koanf key name.
func keyOf(t reflect.Type, name string) bool {
	_, ok := fieldByKey(t, name)
	return ok
}

// fieldByKey finds the field of struct type t whose koanf key is name,
// through embedded structs.
func fieldByKey(t reflect.Type, name string) (reflect.StructField, bool) {
	for i := range t.NumField() {
		f := t.Field(i)
		key, _, _ := strings.Cut(f.Tag.Get("koanf"), ",")
		if f.Anonymous && key == "" {
			if sf, ok := fieldByKey(deref(f.Type), name); ok {
				return sf, true
			}
			continue
		}
		if key == name && key != "-" {
			return f, true
		}
	}
	return reflect.StructField{}, false
}

// resolveKey reports whether path names a key under t (list items and map
// values taken as their element).
func resolveKey(t reflect.Type, path []string) bool {
	for _, name := range path {
		t = deref(t)
		if t.Kind() != reflect.Struct {
			return false
		}
		f, ok := fieldByKey(t, name)
		if !ok {
			return false
		}
		t = f.Type
	}
	return true
}

// deref strips pointers, slices and maps down to the element type.
func deref(t reflect.Type) reflect.Type {
	for {
		switch t.Kind() {
		case reflect.Pointer, reflect.Slice, reflect.Array, reflect.Map:
			t = t.Elem()
		default:
			return t
		}
	}
}
