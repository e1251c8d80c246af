package config

import (
	"fmt"

	"github.com/knadh/koanf/parsers/yaml"
	"github.com/knadh/koanf/providers/file"
	"github.com/knadh/koanf/v2"
)

// inlineSecretKeys are the config keys whose values are secrets, each with
// the key that names a file for it instead.
var inlineSecretKeys = []struct{ key, instead string }{
	{"controller.prometheus.bearerToken", "controller.prometheus.bearerTokenFile"},
	{"controller.prometheus.basicAuth.password", "controller.prometheus.basicAuth.passwordFile"},
	{"controller.temporal.apiKey", "controller.temporal.apiKeyFile"},
	{"controller.temporal.embedded.postgres.dsn", "controller.temporal.embedded.postgres.passwordFile, with the DSN's password left out"},
}

// fileSecrets lists the secret keys that the config file at path sets, as errors for controller.inlineSecrets: refuse.
// The secrets' values never appear in them.
func fileSecrets(path string) []error {
	k := koanf.New(".")
	if err := k.Load(file.Provider(path), yaml.Parser()); err != nil {
		return nil // the loader reports it
	}
	var errs []error
	for _, s := range inlineSecretKeys {
		if !k.Exists(s.key) {
			continue
		}
		switch s.key {
		case "controller.temporal.embedded.postgres.dsn":
			if d, err := ParsePostgresDSN(k.String(s.key)); err != nil || d.Password == "" {
				continue
			}
		default:
			if k.String(s.key) == "" {
				continue
			}
		}
		errs = append(errs, fmt.Errorf("%s: a secret written in the config file, which controller.inlineSecrets: refuse forbids (the Helm chart renders the file into a ConfigMap): put it in a Secret, mount it, and use %s", s.key, s.instead))
	}
	return errs
}
