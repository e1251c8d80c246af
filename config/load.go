package config

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/go-viper/mapstructure/v2"
	"github.com/knadh/koanf/parsers/yaml"
	"github.com/knadh/koanf/providers/env/v2"
	"github.com/knadh/koanf/providers/file"
	"github.com/knadh/koanf/v2"
)

// EnvPrefix starts every environment variable that overrides a config key.
// PREMISCALE_CONTROLLER_TEMPORAL_TASK_QUEUE sets controller.temporal.taskQueue:
// underscores and case are ignored when matching a variable to a key.
const EnvPrefix = "PREMISCALE_"

// Environment variables kept from the seed's command line.
const (
	EnvConfigPath = "PREMISCALE_CONFIG_PATH"
	EnvLogLevel   = "PREMISCALE_LOG_LEVEL"
	// EnvLogFile logs to a file, as --log-file does.
	EnvLogFile = "PREMISCALE_LOG_FILE"
	// EnvToken is set by deployments of the original PremiScale controller
	// (its platform token). It has no effect here and is accepted with a
	// notice, so that those deployments start.
	EnvToken = "PREMISCALE_TOKEN"
)

// Config keys that flags and the seed's environment variables set.
const (
	KeyLogLevel  = "controller.log.level"
	KeyLogFile   = "controller.log.file"
	KeyLogStdout = "controller.log.stdout"
)

// temporalEnv maps the variables the temporal CLI reads to the keys they
// set when neither the file nor a PREMISCALE_ variable sets them.
var temporalEnv = map[string]string{
	"TEMPORAL_ADDRESS":   "controller.temporal.address",
	"TEMPORAL_NAMESPACE": "controller.temporal.namespace",
	"TEMPORAL_API_KEY":   "controller.temporal.apiKey",
}

// envAliases maps the seed's short variables to their keys.
var envAliases = map[string]string{
	EnvLogLevel: KeyLogLevel,
	EnvLogFile:  KeyLogFile,
}

// Load reads the YAML file at path, then environment variables, then the
// overrides (flag values keyed by config key), applies defaults and validates.
// Every problem is returned at once, joined, each naming its path.
func Load(path string, overrides map[string]any) (*Config, error) {
	return load(path, os.Environ, overrides)
}

func load(path string, environ func() []string, overrides map[string]any) (*Config, error) {
	k := koanf.New(".")
	if _, err := os.Stat(path); err != nil {
		return nil, fmt.Errorf("config file %q: %w", path, err)
	}
	// The temporal CLI's variables come first: the file wins over them.
	for _, kv := range environ() {
		name, value, _ := strings.Cut(kv, "=")
		if key, ok := temporalEnv[name]; ok && value != "" {
			if err := k.Set(key, value); err != nil {
				return nil, fmt.Errorf("environment variable %s: %w", name, err)
			}
		}
	}
	if err := k.Load(file.Provider(path), yaml.Parser()); err != nil {
		return nil, fmt.Errorf("config file %q: %w", path, err)
	}

	var errs []error
	var notices []string
	keys := scalarKeys(reflect.TypeFor[Config](), "", nil)
	envErrs := []error{}
	logFileFromEnv, logStdoutFromEnv := false, false
	if err := k.Load(env.Provider(".", env.Opt{
		Prefix:      EnvPrefix,
		EnvironFunc: environ,
		TransformFunc: func(name, value string) (string, any) {
			if name == EnvConfigPath {
				return "", nil
			}
			if name == EnvToken {
				notices = append(notices, EnvToken+" is set but has no effect (PremiScale has no platform token); unset it")
				return "", nil
			}
			if name == EnvLogFile && value != "" {
				logFileFromEnv = true
			}
			if key, ok := envAliases[name]; ok {
				return key, value
			}
			f, ok := keys[normalizeKey(strings.TrimPrefix(name, EnvPrefix))]
			if !ok {
				if !isServiceLink(name, value) {
					envErrs = append(envErrs, fmt.Errorf("environment variable %s: no such config key", name))
				}
				return "", nil
			}
			v, err := envValue(value, f.typ)
			if err != nil {
				// A key ending in _PORT and a Service named as its prefix
				// meet: the kubelet's variable is not a setting.
				if !isServiceLink(name, value) {
					envErrs = append(envErrs, fmt.Errorf("environment variable %s (%s): %v", name, f.key, err))
				}
				return "", nil
			}
			if f.key == KeyLogStdout {
				logStdoutFromEnv = true
			}
			return f.key, v
		},
	}), nil); err != nil {
		return nil, fmt.Errorf("environment: %w", err)
	}
	errs = append(errs, envErrs...)
	if logFileFromEnv && !logStdoutFromEnv {
		// As --log-file: the file, even where the config file says stdout.
		if err := k.Set(KeyLogStdout, false); err != nil {
			return nil, fmt.Errorf("environment variable %s: %w", EnvLogFile, err)
		}
	}
	for key, v := range overrides {
		if err := k.Set(key, v); err != nil {
			return nil, fmt.Errorf("flag for %s: %w", key, err)
		}
	}

	errs = append(errs, unknownKeys(k.Raw(), reflect.TypeFor[Config](), "")...)
	var cfg Config
	if err := k.UnmarshalWithConf("", &cfg, koanf.UnmarshalConf{DecoderConfig: &mapstructure.DecoderConfig{
		DecodeHook: strictHook,
		// No weak typing: "1.9" is not an int, true not a number, 1 not a
		// boolean, and a bare number not a duration.
		WeaklyTypedInput: false,
		TagName:          "koanf",
	}}); err != nil {
		// Type errors leave fields unset; validating them would only add noise.
		return nil, errors.Join(append(errs, decodeErrors(err)...)...)
	}
	cfg.ApplyDefaults()
	if cfg.Controller.InlineSecrets == InlineSecretsRefuse {
		errs = append(errs, fileSecrets(path)...)
	}
	cfg.Notices = append(notices, cfg.defaultKubeconfig(environ)...)
	errs = append(errs, cfg.readUserDataFiles()...)
	if err := cfg.Validate(); err != nil {
		errs = append(errs, err)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return &cfg, nil
}

// decodeErrors turns mapstructure's combined error into one error per line.
func decodeErrors(err error) []error {
	var out []error
	for _, line := range strings.Split(err.Error(), "\n") {
		line = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(line), "*"))
		if line == "" || strings.HasPrefix(line, "decoding failed") || strings.HasSuffix(line, "error(s) decoding:") {
			continue
		}
		out = append(out, errors.New(line))
	}
	if len(out) == 0 {
		out = append(out, err)
	}
	return out
}

// normalizeKey makes env names and config keys comparable: lower case, no
// separators.
func normalizeKey(s string) string {
	return strings.NewReplacer("_", "", ".", "", "-", "").Replace(strings.ToLower(s))
}

// scalarField is one settable leaf of the configuration.
type scalarField struct {
	key string
	typ reflect.Type
}

// scalarKeys lists the dotted keys of t's non-list leaves, with their
// types, by normalized form.
func scalarKeys(t reflect.Type, prefix string, out map[string]scalarField) map[string]scalarField {
	if out == nil {
		out = map[string]scalarField{}
	}
	for i := range t.NumField() {
		f := t.Field(i)
		tag := f.Tag.Get("koanf")
		if tag == "" {
			continue
		}
		key := tag
		if prefix != "" {
			key = prefix + "." + tag
		}
		ft := f.Type
		if ft.Kind() == reflect.Pointer {
			ft = ft.Elem()
		}
		switch {
		case ft.Kind() == reflect.Struct && ft != durationType:
			scalarKeys(ft, key, out)
		case ft.Kind() == reflect.Slice || ft.Kind() == reflect.Map:
			// Lists (hosts, groups) and maps (headers) are set in the file only.
		default:
			out[normalizeKey(key)] = scalarField{key: key, typ: ft}
		}
	}
	return out
}

var (
	durationType    = reflect.TypeFor[time.Duration]()
	scalingModeType = reflect.TypeFor[ScalingMode]()
)

// envValue parses an environment variable's text as the type of its key,
// as strictly as the file's values are decoded.
func envValue(s string, t reflect.Type) (any, error) {
	switch {
	case t == durationType:
		return s, nil // strictHook parses it, unit required
	case t.Kind() == reflect.String:
		return s, nil
	case t.Kind() == reflect.Bool:
		b, err := strconv.ParseBool(s)
		if err != nil {
			return nil, fmt.Errorf("%q is not true or false", s)
		}
		return b, nil
	case t.Kind() >= reflect.Int && t.Kind() <= reflect.Int64:
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("%q is not a whole number", s)
		}
		return n, nil
	case t.Kind() == reflect.Float32 || t.Kind() == reflect.Float64:
		f, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return nil, fmt.Errorf("%q is not a number", s)
		}
		return f, nil
	}
	return s, nil
}

// strictHook decodes durations from strings with a unit only ("30s",
// "5m"; a bare 600 would be 600ns) and refuses fractions for whole
// numbers (min: 1.9 would be 1); a whole number is accepted as text.
func strictHook(from, to reflect.Type, data any) (any, error) {
	switch {
	case to == durationType:
		switch v := data.(type) {
		case string:
			d, err := time.ParseDuration(strings.TrimSpace(v))
			if err != nil {
				return nil, fmt.Errorf("%q is not a duration (e.g. 30s, 5m, 1h)", v)
			}
			return d, nil
		case time.Duration:
			return v, nil
		}
		return nil, fmt.Errorf("%v needs a unit, e.g. \"%vs\" (a bare number is ambiguous)", data, data)
	case to.Kind() >= reflect.Int && to.Kind() <= reflect.Uint64 && (from.Kind() == reflect.Float32 || from.Kind() == reflect.Float64):
		return nil, fmt.Errorf("%v is not a whole number", data)
	case to == scalingModeType && from.Kind() == reflect.Bool:
		// mode: on, unquoted, after a YAML 1.1 tool (Helm, PyYAML, yq).
		if data.(bool) {
			return ModeOn, nil
		}
		return ModeOff, nil
	case to.Kind() == reflect.String && from.Kind() >= reflect.Int && from.Kind() <= reflect.Uint64:
		// A count where text is expected (scaleIn.maxStep: 2) reads as text.
		return fmt.Sprint(data), nil
	}
	return data, nil
}

// unknownKeys walks raw against t and reports every key t does not have.
func unknownKeys(raw any, t reflect.Type, path string) []error {
	if t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	var errs []error
	switch t.Kind() {
	case reflect.Struct:
		if t == durationType {
			return nil
		}
		m, ok := raw.(map[string]any)
		if !ok {
			return nil // a type error; the decoder reports it
		}
		fields := map[string]reflect.Type{}
		for i := range t.NumField() {
			if tag := t.Field(i).Tag.Get("koanf"); tag != "" {
				fields[tag] = t.Field(i).Type
			}
		}
		names := make([]string, 0, len(m))
		for k := range m {
			names = append(names, k)
		}
		sort.Strings(names)
		for _, k := range names {
			p := k
			if path != "" {
				p = path + "." + k
			}
			ft, ok := fields[k]
			if !ok {
				errs = append(errs, fmt.Errorf("%s: unknown key", p))
				continue
			}
			errs = append(errs, unknownKeys(m[k], ft, p)...)
		}
	case reflect.Slice:
		items, ok := raw.([]any)
		if !ok {
			return nil
		}
		for i, item := range items {
			errs = append(errs, unknownKeys(item, t.Elem(), path+"["+strconv.Itoa(i)+"]")...)
		}
	}
	return errs
}

func joinHostPort(host string, port int) string {
	return net.JoinHostPort(host, strconv.Itoa(port))
}

// readUserDataFiles loads each group's kubernetes.userDataFile into
// kubernetes.userData, so that the template travels with the group's spec.
func (c *Config) readUserDataFiles() []error {
	var errs []error
	for i := range c.Autoscale.Groups {
		k := &c.Autoscale.Groups[i].Kubernetes
		if k.UserDataFile == "" {
			continue
		}
		p := fmt.Sprintf("autoscale.groups[%d].kubernetes.userDataFile", i)
		if k.UserData != "" {
			errs = append(errs, fmt.Errorf("%s: set userData or userDataFile, not both", p))
			continue
		}
		b, err := os.ReadFile(k.UserDataFile)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", p, err))
			continue
		}
		k.UserData = string(b)
	}
	return errs
}

// defaultKubeconfig finds the cluster as kubectl and client-go do when the
// file names none and a group needs one (a join, leastPods, or the
// cluster-autoscaler): $KUBECONFIG, then the pod's service account (inside
// a pod), then ~/.kube/config. It returns a notice of what it chose.
func (c *Config) defaultKubeconfig(environ func() []string) []string {
	k := &c.Controller.Kubernetes
	if k.Enabled() || !c.needsKubernetes() {
		return nil
	}
	env := map[string]string{}
	for _, kv := range environ() {
		name, value, _ := strings.Cut(kv, "=")
		env[name] = value
	}
	switch {
	case env["KUBECONFIG"] != "":
		k.Kubeconfig = env["KUBECONFIG"]
		return []string{"controller.kubernetes: using $KUBECONFIG (" + k.Kubeconfig + ")"}
	case env["KUBERNETES_SERVICE_HOST"] != "":
		k.InCluster = true
		return []string{"controller.kubernetes: running in a pod, using its service account (inCluster)"}
	case env["HOME"] != "":
		p := filepath.Join(env["HOME"], ".kube", "config")
		if _, err := os.Stat(p); err == nil {
			k.Kubeconfig = p
			return []string{"controller.kubernetes: using " + p}
		}
	}
	return nil
}

// needsKubernetes reports whether any group's VMs are nodes or the
// cluster-autoscaler sizes a group.
func (c *Config) needsKubernetes() bool {
	for _, g := range c.Autoscale.Groups {
		if (g.Kubernetes.Join != "" && g.Kubernetes.Join != JoinNone) || g.Scaling.Mode == ModeClusterAutoscaler {
			return true
		}
	}
	return false
}
