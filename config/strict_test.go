package config

import (
	"strings"
	"testing"
)

// group is a minimal valid group line with extra keys spliced in.
func withGroup(extra string) string {
	return `
version: v1alpha1
autoscale:
  hosts:
    - {name: h1, uri: "qemu+tcp://10.0.0.1/system"}
  groups:
    - {name: web, min: 1, max: 3, template: {diskSize: 1GiB}` + extra + `}
`
}

// withTemplate is withGroup with extra keys in the template.
func withTemplate(extra string) string {
	return strings.Replace(withGroup(""), "template: {diskSize: 1GiB}", "template: {diskSize: 1GiB"+extra+"}", 1)
}

// TestBrokenConfigCorpusIsRefusedWithThePath: each mistake a hand-written
// file makes is refused, naming the key, instead of being read as
// something else (1.9 as 1, true as 1, 600 as 600ns).
func TestBrokenConfigCorpusIsRefusedWithThePath(t *testing.T) {
	kube := `
controller:
  kubernetes: {kubeconfig: /dev/null, apiServerEndpoint: "10.0.0.10:6443", caCertHashes: ["sha256:` + strings.Repeat("ab", 32) + `"]}
`
	tests := []struct {
		name, body, want string
	}{
		{"bare duration", withGroup(", hostFailureGracePeriod: 120"), "autoscale.groups[0].hostFailureGracePeriod"},
		{"bare orphan grace", withGroup("") + "  orphans: {action: delete, gracePeriod: 600}\n", "autoscale.orphans.gracePeriod"},
		{"duration without unit text", withGroup(`, cleanupTimeout: "90"`), "autoscale.groups[0].cleanupTimeout"},
		{"float for an int", withGroup(", desired: 1.9"), "autoscale.groups[0].desired"},
		{"float min", strings.Replace(withGroup(""), "min: 1", "min: 1.9", 1), "autoscale.groups[0].min"},
		{"boolean for an int", strings.Replace(withGroup(""), "max: 3", "max: true", 1), "autoscale.groups[0].max"},
		{"number for a boolean", withGroup(", scaling: {dryRun: 1}"), "autoscale.groups[0].scaling.dryRun"},
		{"huge max", strings.Replace(withGroup(""), "max: 3", "max: 2000000000", 1), "autoscale.groups[0].max: must be <= 1000"},
		{"max past int32", strings.Replace(withGroup(""), "max: 3", "max: 4294967297", 1), "autoscale.groups[0].max"},
		{"zero disk", strings.Replace(withGroup(""), "diskSize: 1GiB", "diskSize: 0B", 1), "autoscale.groups[0].template.diskSize: must be at least 1MiB"},
		{"unknown XML element", withTemplate(`, extraDevicesXML: "<rng model='virtio'><backend model='random'>/dev/urandom</backend></rng><bogus/>"`),
			"autoscale.groups[0].template.extraDevicesXML: element <bogus>"},
		{"unknown XML attribute", withTemplate(`, extraDevicesXML: "<rng model='virtio' evil='1'><backend model='random'>/dev/urandom</backend></rng>"`),
			"autoscale.groups[0].template.extraDevicesXML: attribute evil of <rng>"},
		{"bad node name", kube + withGroup(`, kubernetes: {join: kubeadm, nodeName: "{{.VM}}_Node"}`)[len("\nversion: v1alpha1"):] + "version: v1alpha1\n",
			"autoscale.groups[0].kubernetes.nodeName: renders \"web-10000000_Node\""},
		{"newline in a name", strings.Replace(withGroup(""), "name: web", `name: "web\ninstance-id: x"`, 1), "autoscale.groups[0].name"},
		{"URI with a password", strings.Replace(withGroup(""), "qemu+tcp://10.0.0.1/system", "qemu+tcp://root:hunter2@10.0.0.1/system", 1),
			"autoscale.hosts[0].uri: must not hold a password"},
		{"known_hosts on the ssh transport", strings.Replace(withGroup(""), "qemu+tcp://10.0.0.1/system", "qemu+ssh://ps@10.0.0.1/system?keyfile=/k&known_hosts=/kh", 1),
			"autoscale.hosts[0].uri: ?known_hosts is not read by the ssh transport"},
		{"an option the transport ignores", strings.Replace(withGroup(""), "qemu+tcp://10.0.0.1/system", "qemu+tls://10.0.0.1/system?pkipath=/p&keyfile=/k", 1),
			"autoscale.hosts[0].uri: ?keyfile is not an option the tls transport reads"},
		{"no_verify on libssh", strings.Replace(withGroup(""), "qemu+tcp://10.0.0.1/system", "qemu+libssh://ps@10.0.0.1/system?no_verify=1", 1),
			"autoscale.hosts[0].uri: ?no_verify is refused by the libssh transport"},
		{"bad known_hosts_verify", strings.Replace(withGroup(""), "qemu+tcp://10.0.0.1/system", "qemu+libssh://ps@10.0.0.1/system?known_hosts_verify=yes", 1),
			"autoscale.hosts[0].uri: ?known_hosts_verify must be normal, auto or ignore"},
		{"embedded server without TLS", withGroup("") + "controller:\n  temporal: {embedded: {tls: {enabled: false}}}\n", "controller.temporal.embedded.tls.enabled: cannot be false"},
		{"UI without a reader certificate from your own CA", withGroup("") + "controller:\n  temporal: {embedded: {tls: {certFile: a, keyFile: b, clientCAFile: c, allowedClients: [x]}}, tls: {enabled: true, certFile: d, keyFile: e}}\n", "controller.temporal.embedded.ui.certFile: must name a client certificate with the role reader"},
		{"UI certificate half given", withGroup("") + "controller:\n  temporal: {embedded: {ui: {certFile: a}}}\n", "controller.temporal.embedded.ui: certFile and keyFile must be set together"},
		{"UI certificate with the generated CA", withGroup("") + "controller:\n  temporal: {embedded: {ui: {certFile: a, keyFile: b}}}\n", "controller.temporal.embedded.ui.certFile: only with your own CA"},
		{"embedded TLS files half given", withGroup("") + "controller:\n  temporal: {embedded: {host: 0.0.0.0, tls: {enabled: true, certFile: a}}}\n", "controller.temporal.embedded.tls: certFile, keyFile and clientCAFile must be set together"},
		{"embedded TLS from a CA without an allow-list", withGroup("") + "controller:\n  temporal: {embedded: {host: 0.0.0.0, tls: {enabled: true, certFile: a, keyFile: b, clientCAFile: c}}, tls: {enabled: true, certFile: d, keyFile: e}}\n", "controller.temporal.embedded.tls.allowedClients: must list"},
		{"embedded TLS from a CA, controller without a certificate", withGroup("") + "controller:\n  temporal: {embedded: {tls: {enabled: true, certFile: a, keyFile: b, clientCAFile: c, allowedClients: [x]}}}\n", "controller.temporal.tls: must be enabled with certFile"},
		{"generated embedded TLS with client TLS", withGroup("") + "controller:\n  temporal: {embedded: {tls: {enabled: true}}, tls: {enabled: true}}\n", "controller.temporal.tls.enabled: leave controller.temporal.tls unset"},
		{"bad generated server name", withGroup("") + "controller:\n  temporal: {embedded: {tls: {enabled: true, serverNames: [\"a b\"]}}}\n", "controller.temporal.embedded.tls.serverNames[0]"},
		{"Temporal UI on every address", withGroup("") + "controller:\n  temporal: {embedded: {ui: {host: 0.0.0.0}}}\n", "controller.temporal.embedded.ui.host: must be a loopback address"},
		{"Temporal UI on the frontend's port", withGroup("") + "controller:\n  temporal: {embedded: {port: 7300, ui: {port: 7300}}}\n", "controller.temporal.embedded.ui.port"},
		{"base volume named as PremiScale's", withTemplate(`, baseVolume: premiscale-base.qcow2`), "autoscale.groups[0].template.baseVolume: must not start with"},
		{"plaintext provider on every address", withGroup("") + "controller:\n  clusterAutoscaler: {listen: \"0.0.0.0:8086\", insecure: true}\n", "controller.clusterAutoscaler.insecure: only on a loopback listen address"},
		{"provider without an allow-list", withGroup("") + "controller:\n  clusterAutoscaler: {listen: \"0.0.0.0:8086\", certFile: a, keyFile: b, clientCAFile: c}\n", "controller.clusterAutoscaler.allowedClients: must list"},
		{"grace below its floor", withGroup(", unhealthyGracePeriod: 1ms"), "autoscale.groups[0].unhealthyGracePeriod: must be >= 5s"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := load(writeConfig(t, tt.body), noEnv, nil)
			if err == nil {
				t.Fatalf("accepted:\n%s", tt.body)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error lacks %q:\n%v", tt.want, err)
			}
			if strings.Contains(err.Error(), "hunter2") {
				t.Fatalf("error repeats the password:\n%v", err)
			}
		})
	}
}

// TestEmbeddedServerOnEveryAddressLoadsWithTLS: the embedded frontend
// serves mutual TLS without a setting (older files that say enabled: true
// still load), on any address; the controller's client uses the generated
// CA and certificate in the state dir, and the UI the reader certificate.
func TestEmbeddedServerOnEveryAddressLoadsWithTLS(t *testing.T) {
	cfg, err := load(writeConfig(t, withGroup("")+"controller:\n  stateDir: /var/lib/ps\n  temporal: {embedded: {host: 0.0.0.0, port: 7300, tls: {serverNames: [ctl.example, 10.0.0.4]}}}\n"), noEnv, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := cfg.TemporalAddress(); got != "127.0.0.1:7300" {
		t.Errorf("address %q, want loopback for an unspecified listen address", got)
	}
	ct := cfg.ClientTLS()
	if !ct.Enabled || ct.CAFile != "/var/lib/ps/tls/ca.crt" || ct.CertFile != "/var/lib/ps/tls/client.crt" || ct.KeyFile != "/var/lib/ps/tls/client.key" {
		t.Errorf("client TLS %+v", ct)
	}
	if ut := cfg.UIClientTLS(); ut.CertFile != "/var/lib/ps/tls/ui.crt" || ut.KeyFile != "/var/lib/ps/tls/ui.key" || ut.CAFile != "/var/lib/ps/tls/ca.crt" {
		t.Errorf("UI TLS %+v", ut)
	}
	if _, err := load(writeConfig(t, withGroup("")+"controller:\n  temporal: {embedded: {tls: {enabled: true}}}\n"), noEnv, nil); err != nil {
		t.Errorf("an older file with tls.enabled: true: %v", err)
	}
	cfg, err = load(writeConfig(t, withGroup("")+"controller:\n  temporal: {embedded: {tls: {certFile: s.crt, keyFile: s.key, clientCAFile: ca.crt, allowedClients: [ops]}, ui: {certFile: u.crt, keyFile: u.key}}, tls: {enabled: true, caFile: ca.crt, certFile: c.crt, keyFile: c.key}}\n"), noEnv, nil)
	if err != nil {
		t.Fatal(err)
	}
	if ct := cfg.ClientTLS(); ct.CertFile != "c.crt" {
		t.Errorf("with given files the client TLS is controller.temporal.tls, got %+v", ct)
	}
	if ut := cfg.UIClientTLS(); ut.CertFile != "u.crt" || ut.CAFile != "ca.crt" {
		t.Errorf("with given files the UI TLS is its certificate and controller.temporal.tls's CA, got %+v", ut)
	}
}

func TestWellFormedValuesStillLoad(t *testing.T) {
	cfg, err := load(writeConfig(t, strings.Replace(withTemplate(`, extraDevicesXML: "<rng model='virtio'><backend model='random'>/dev/urandom</backend></rng>"`),
		"max: 3", "max: 3, hostFailureGracePeriod: 2m, scaling: {scaleIn: {maxStep: 2}}", 1)), noEnv, nil)
	if err != nil {
		t.Fatal(err)
	}
	if g := cfg.Autoscale.Groups[0]; g.Scaling.ScaleIn.MaxStep != "2" || g.HostFailureGracePeriod.Minutes() != 2 {
		t.Errorf("maxStep %q, hostFailureGracePeriod %s", g.Scaling.ScaleIn.MaxStep, g.HostFailureGracePeriod)
	}
}

func TestEnvironmentValuesAreTypedStrictly(t *testing.T) {
	env := func(kv ...string) func() []string { return func() []string { return kv } }
	if _, err := load(writeConfig(t, withGroup("")), env("PREMISCALE_CONTROLLER_TEMPORAL_EMBEDDED_PORT=7244.5"), nil); err == nil ||
		!strings.Contains(err.Error(), "PREMISCALE_CONTROLLER_TEMPORAL_EMBEDDED_PORT (controller.temporal.embedded.port)") {
		t.Errorf("fractional port from the environment: err = %v", err)
	}
	if _, err := load(writeConfig(t, withGroup("")), env("PREMISCALE_CONTROLLER_PROMETHEUS_QUERY_TIMEOUT=10"), nil); err == nil ||
		!strings.Contains(err.Error(), "controller.prometheus.queryTimeout") {
		t.Errorf("bare duration from the environment: err = %v", err)
	}
	cfg, err := load(writeConfig(t, withGroup("")), env("PREMISCALE_CONTROLLER_TEMPORAL_EMBEDDED_PORT=7244", "PREMISCALE_CONTROLLER_PROMETHEUS_QUERY_TIMEOUT=3s"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Controller.Temporal.Embedded.Port != 7244 || cfg.Controller.Prometheus.QueryTimeout.Seconds() != 3 {
		t.Errorf("port %d, query timeout %s", cfg.Controller.Temporal.Embedded.Port, cfg.Controller.Prometheus.QueryTimeout)
	}
}

// FuzzLoad feeds arbitrary files to the loader and validator: they must
// never panic, and whatever they accept must validate again as is.
func FuzzLoad(f *testing.F) {
	f.Add(minimal)
	f.Add(withGroup(", hostFailureGracePeriod: 120"))
	f.Add(withTemplate(`, extraDevicesXML: "<rng model='virtio'/>"`))
	f.Add(withGroup(`, kubernetes: {join: userData, userData: "#cloud-config\n", nodeName: "{{.Group}}.{{.VM}}"}`))
	f.Fuzz(func(t *testing.T, body string) {
		cfg, err := load(writeConfig(t, body), noEnv, nil)
		if err != nil {
			return
		}
		if err := cfg.Validate(); err != nil {
			t.Fatalf("accepted, then invalid on a second look: %v", err)
		}
	})
}

func TestTemporalCLIVariablesApplyUnlessTheFileSetsThem(t *testing.T) {
	env := func() []string {
		return []string{"TEMPORAL_ADDRESS=temporal.example.com:7233", "TEMPORAL_NAMESPACE=prod", "TEMPORAL_API_KEY=key-marker"}
	}
	tlsOn := withGroup("") + "controller:\n  temporal: {tls: {enabled: true}}\n"
	cfg, err := load(writeConfig(t, tlsOn), env, nil)
	if err != nil {
		t.Fatal(err)
	}
	if tc := cfg.Controller.Temporal; tc.Address != "temporal.example.com:7233" || tc.Namespace != "prod" || tc.APIKey != "key-marker" {
		t.Errorf("from the environment: %+v", tc)
	}
	fileWins := withGroup("") + "controller:\n  temporal: {address: \"10.0.0.1:7233\", namespace: ops, tls: {enabled: true}}\n"
	if cfg, err = load(writeConfig(t, fileWins), env, nil); err != nil {
		t.Fatal(err)
	}
	if tc := cfg.Controller.Temporal; tc.Address != "10.0.0.1:7233" || tc.Namespace != "ops" {
		t.Errorf("the file's address and namespace lost to the environment: %+v", tc)
	}
	if _, err := load(writeConfig(t, withGroup("")), env, nil); err == nil || !strings.Contains(err.Error(), "controller.temporal.tls.enabled: must be true with an API key") {
		t.Errorf("API key without TLS: err = %v", err)
	}
}

func TestPostgresDSNFromAFile(t *testing.T) {
	cfg, err := load(writeConfig(t, withGroup("")+"controller:\n  temporal: {embedded: {postgres: {dsnFile: /run/secrets/pg/uri}}}\n"), noEnv, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !cfg.Controller.Temporal.Embedded.Postgres.Set() {
		t.Error("a dsnFile alone does not select PostgreSQL")
	}
	for _, tc := range []struct{ body, want string }{
		{"{dsn: \"postgres://u@h/d\", dsnFile: /f}", "controller.temporal.embedded.postgres.dsnFile: set dsn or dsnFile, not both"},
		{"{passwordFile: /p}", "controller.temporal.embedded.postgres.passwordFile: needs controller.temporal.embedded.postgres.dsn or dsnFile"},
	} {
		_, err := load(writeConfig(t, withGroup("")+"controller:\n  temporal: {embedded: {postgres: "+tc.body+"}}\n"), noEnv, nil)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", tc.body, err, tc.want)
		}
	}
}
