package config

import (
	"errors"
	"fmt"
	"net"
	"os"
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
	EnvLogFile    = "PREMISCALE_LOG_FILE"
)

// Config keys that flags and the seed's environment variables set.
const (
	KeyLogLevel  = "controller.log.level"
	KeyLogFile   = "controller.log.file"
	KeyLogStdout = "controller.log.stdout"
)

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
	if err := k.Load(file.Provider(path), yaml.Parser()); err != nil {
		return nil, fmt.Errorf("config file %q: %w", path, err)
	}

	var errs []error
	keys := scalarKeys(reflect.TypeFor[Config](), "")
	envErrs := []error{}
	if err := k.Load(env.Provider(".", env.Opt{
		Prefix:      EnvPrefix,
		EnvironFunc: environ,
		TransformFunc: func(name, value string) (string, any) {
			if name == EnvConfigPath {
				return "", nil
			}
			if key, ok := envAliases[name]; ok {
				return key, value
			}
			key, ok := keys[normalizeKey(strings.TrimPrefix(name, EnvPrefix))]
			if !ok {
				envErrs = append(envErrs, fmt.Errorf("environment variable %s: no such config key", name))
				return "", nil
			}
			return key, value
		},
	}), nil); err != nil {
		return nil, fmt.Errorf("environment: %w", err)
	}
	errs = append(errs, envErrs...)
	for key, v := range overrides {
		if err := k.Set(key, v); err != nil {
			return nil, fmt.Errorf("flag for %s: %w", key, err)
		}
	}

	errs = append(errs, unknownKeys(k.Raw(), reflect.TypeFor[Config](), "")...)
	var cfg Config
	if err := k.UnmarshalWithConf("", &cfg, koanf.UnmarshalConf{DecoderConfig: &mapstructure.DecoderConfig{
		DecodeHook:       mapstructure.StringToTimeDurationHookFunc(),
		WeaklyTypedInput: true,
		TagName:          "koanf",
	}}); err != nil {
		// Type errors leave fields unset; validating them would only add noise.
		return nil, errors.Join(append(errs, decodeErrors(err)...)...)
	}
	cfg.ApplyDefaults()
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

// scalarKeys lists the dotted keys of t's non-list leaves by normalized form.
func scalarKeys(t reflect.Type, prefix string) map[string]string {
	out := map[string]string{}
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
		case ft.Kind() == reflect.Struct && ft != reflect.TypeFor[time.Duration]():
			for k, v := range scalarKeys(ft, key) {
				out[k] = v
			}
		case ft.Kind() == reflect.Slice || ft.Kind() == reflect.Map:
			// Lists (hosts, groups) and maps (headers) are set in the file only.
		default:
			out[normalizeKey(key)] = key
		}
	}
	return out
}

// unknownKeys walks raw against t and reports every key t does not have.
func unknownKeys(raw any, t reflect.Type, path string) []error {
	if t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	var errs []error
	switch t.Kind() {
	case reflect.Struct:
		if t == reflect.TypeFor[time.Duration]() {
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
