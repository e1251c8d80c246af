package config

import (
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"net"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"text/template"
	"time"
	// Time zones for schedules[].timeZone, also where the system has none
	// (a distroless image).
	_ "time/tzdata"

	"libvirt.org/go/libvirtxml"
)

// nameRE is what host and group names must look like: they become parts of
// domain names, volume names and workflow IDs.
var nameRE = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,38}[a-z0-9])?$`)

var (
	logLevels    = []string{"debug", "info", "warn", "error"}
	logFormats   = []string{"text", "json"}
	domainTypes  = []string{"kvm", "qemu"}
	networkTypes = []string{NetworkNone, NetworkUser, NetworkNetwork, NetworkBridge}
)

// MinEvaluationInterval is the shortest evaluation interval accepted.
const MinEvaluationInterval = time.Second

// Lower bounds of grace periods and timeouts: below them a blip (one slow
// listing, one reboot) would replace members or abandon cleanups.
const (
	MinHostFailureGracePeriod = 5 * time.Second
	MinUnhealthyGracePeriod   = 5 * time.Second
	MinCleanupTimeout         = 5 * time.Second
	MinOrphanGracePeriod      = time.Minute
)

// MinMemory is the smallest VM memory accepted.
const MinMemory = 32 << 20

// Validate checks a configuration after defaults and returns every problem,
// joined, each prefixed by its path.
func (c *Config) Validate() error {
	var v validator
	if c.Version != Version {
		v.add("version", "must be %q, got %q", Version, c.Version)
	}
	ctl := c.Controller
	if ctl.InlineSecrets != "" {
		v.oneOf("controller.inlineSecrets", ctl.InlineSecrets, []string{InlineSecretsAllow, InlineSecretsRefuse})
	}
	v.oneOf("controller.log.level", ctl.Log.Level, logLevels)
	v.oneOf("controller.log.format", ctl.Log.Format, logFormats)
	if ctl.StateDir == "" {
		v.add("controller.stateDir", "must not be empty")
	}
	if ctl.Installation != "" && !installationRE.MatchString(ctl.Installation) {
		v.add("controller.installation", "must be 1-63 lower-case letters, digits, '-' or '.', starting and ending with a letter or digit, got %q", ctl.Installation)
	}
	t := ctl.Temporal
	if t.Namespace == "" {
		v.add("controller.temporal.namespace", "must not be empty")
	}
	if t.TaskQueue == "" {
		v.add("controller.temporal.taskQueue", "must not be empty")
	}
	if t.APIKey != "" && t.APIKeyFile != "" {
		v.add("controller.temporal.apiKey", "set apiKey or apiKeyFile, not both")
	}
	if (t.APIKey != "" || t.APIKeyFile != "") && !t.TLS.Enabled {
		v.add("controller.temporal.tls.enabled", "must be true with an API key: the key would cross the network in plain text")
	}
	if (t.TLS.CertFile == "") != (t.TLS.KeyFile == "") {
		v.add("controller.temporal.tls", "certFile and keyFile must be set together")
	}
	if pg := t.Embedded.Postgres; pg.DSN != "" && pg.DSNFile != "" {
		v.add("controller.temporal.embedded.postgres.dsnFile", "set dsn or dsnFile, not both")
	} else if pg.DSN != "" {
		d, err := ParsePostgresDSN(pg.DSN)
		switch {
		case err != nil:
			v.add("controller.temporal.embedded.postgres.dsn", "%v", err)
		case d.Password != "" && pg.PasswordFile != "":
			v.add("controller.temporal.embedded.postgres.passwordFile", "set a password in the dsn or passwordFile, not both")
		}
	} else if pg.PasswordFile != "" && pg.DSNFile == "" {
		v.add("controller.temporal.embedded.postgres.passwordFile", "needs controller.temporal.embedded.postgres.dsn or dsnFile")
	}
	if t.Address == "" {
		v.embedded(t)
	}

	v.prometheus("controller.prometheus", ctl.Prometheus, c.needsPrometheus())

	hosts := map[string]bool{}
	if len(c.Autoscale.Hosts) == 0 && len(c.Autoscale.Groups) > 0 {
		v.add("autoscale.hosts", "must list at least one host")
	}
	for i, h := range c.Autoscale.Hosts {
		p := fmt.Sprintf("autoscale.hosts[%d]", i)
		v.name(p+".name", h.Name)
		if hosts[h.Name] {
			v.add(p+".name", "duplicate host name %q", h.Name)
		}
		hosts[h.Name] = true
		v.uri(p+".uri", h.URI)
		if h.Pool == "" {
			v.add(p+".pool", "must not be empty")
		}
		if h.Reserved.Memory != "" {
			if _, err := ParseSize(h.Reserved.Memory); err != nil {
				v.add(p+".reserved.memory", "%v", err)
			}
		}
		if h.Reserved.CPUs < 0 {
			v.add(p+".reserved.cpus", "must be >= 0, got %d", h.Reserved.CPUs)
		}
		if h.CPUOvercommit < 1 || math.IsInf(h.CPUOvercommit, 0) || math.IsNaN(h.CPUOvercommit) {
			v.add(p+".cpuOvercommit", "must be >= 1, got %v", h.CPUOvercommit)
		}
		if h.MemoryOvercommit < 1 || math.IsInf(h.MemoryOvercommit, 0) || math.IsNaN(h.MemoryOvercommit) {
			v.add(p+".memoryOvercommit", "must be >= 1, got %v", h.MemoryOvercommit)
		}
		if h.MaxConcurrentCalls < 0 || h.MaxConcurrentCalls > MaxConcurrentCalls {
			v.add(p+".maxConcurrentCalls", "must be from 1 to %d (0: the default, 8), got %d", MaxConcurrentCalls, h.MaxConcurrentCalls)
		}
	}

	o := c.Autoscale.Orphans
	v.oneOf("autoscale.orphans.action", o.Action, []string{OrphansReport, OrphansDelete})
	v.atLeast("autoscale.orphans.gracePeriod", o.GracePeriod, MinOrphanGracePeriod)
	if o.ScanInterval < time.Second {
		v.add("autoscale.orphans.scanInterval", "must be >= 1s, got %s", o.ScanInterval)
	}

	groups := map[string]bool{}
	for i, g := range c.Autoscale.Groups {
		p := fmt.Sprintf("autoscale.groups[%d]", i)
		v.name(p+".name", g.Name)
		if groups[g.Name] {
			v.add(p+".name", "duplicate group name %q", g.Name)
		}
		groups[g.Name] = true
		if len(g.Hosts) == 0 {
			v.add(p+".hosts", "must name at least one host")
		}
		seen := map[string]bool{}
		for j, h := range g.Hosts {
			if !hosts[h] {
				v.add(fmt.Sprintf("%s.hosts[%d]", p, j), "unknown host %q", h)
			}
			if seen[h] {
				v.add(fmt.Sprintf("%s.hosts[%d]", p, j), "host %q listed twice", h)
			}
			seen[h] = true
		}
		if g.Min < 0 {
			v.add(p+".min", "must be >= 0, got %d", g.Min)
		}
		if g.Max < g.Min {
			v.add(p+".max", "must be >= min (%d), got %d", g.Min, g.Max)
		}
		if g.Max < 1 {
			v.add(p+".max", "must be >= 1, got %d", g.Max)
		}
		if g.Max > MaxGroupSize {
			v.add(p+".max", "must be <= %d (the largest group PremiScale runs), got %d", MaxGroupSize, g.Max)
		}
		if g.Desired != nil && (*g.Desired < g.Min || *g.Desired > g.Max) {
			v.add(p+".desired", "must be within [min, max] = [%d, %d], got %d", g.Min, g.Max, *g.Desired)
		}
		if g.Scaling.EvaluationInterval < MinEvaluationInterval {
			v.add(p+".scaling.evaluationInterval", "must be >= %s, got %s", MinEvaluationInterval, g.Scaling.EvaluationInterval)
		}
		v.scaling(p+".scaling", g.Scaling)
		v.oneOf(p+".placement.strategy", g.Placement.Strategy, []string{PlacementSpread, PlacementVacancy, PlacementBinpack, PlacementRandom})
		v.atLeast(p+".hostFailureGracePeriod", g.HostFailureGracePeriod, MinHostFailureGracePeriod)
		v.atLeast(p+".unhealthyGracePeriod", g.UnhealthyGracePeriod, MinUnhealthyGracePeriod)
		v.atLeast(p+".cleanupTimeout", g.CleanupTimeout, MinCleanupTimeout)
		if g.Placement.MaxPerHost < 0 {
			v.add(p+".placement.maxPerHost", "must be >= 0, got %d", g.Placement.MaxPerHost)
		}
		v.template(p+".template", g.Template)
		v.kubernetes(p+".kubernetes", g.Kubernetes, c.Controller.Kubernetes)
		v.schedules(p, g)
		v.warmPool(p+".warmPool", g)
		v.refresh(p+".refresh", g.Refresh)
		if g.Kubernetes.Join != JoinNone && g.Kubernetes.Join != "" && nameRE.MatchString(g.Name) {
			// The longest name the group's VMs can have.
			vm := fmt.Sprintf("%s-%d", g.Name, 10*MaxGroupSize*MaxGroupSize)
			if name, err := RenderNodeName(g.Kubernetes.NodeName, g.Name, vm); err != nil {
				v.add(p+".kubernetes.nodeName", "%v", err)
			} else if !dns1123RE.MatchString(name) || len(name) > 253 {
				v.add(p+".kubernetes.nodeName", "renders %q for VM %s, which is not a valid node name (DNS-1123: lower-case letters, digits, '-' and '.', at most 253)", name, vm)
			}
		}
		if g.Scaling.Mode == ModeClusterAutoscaler {
			if ca := c.Controller.ClusterAutoscaler; ca.Listen == "" {
				v.add(p+".scaling.mode", "clusterAutoscaler needs controller.clusterAutoscaler.listen")
			}
			if len(g.Scaling.Checks) > 0 {
				v.add(p+".scaling.checks", "must be empty in clusterAutoscaler mode: the cluster-autoscaler sizes the group")
			}
			if g.Kubernetes.Join == JoinNone {
				v.add(p+".kubernetes.join", "must not be none in clusterAutoscaler mode: the cluster-autoscaler needs the VMs as nodes")
			}
		}
		if g.Scaling.ScaleIn.Selection == SelectLeastPods && g.Kubernetes.Join == JoinNone {
			v.add(p+".scaling.scaleIn.selection", "leastPods needs the group's VMs to be nodes (kubernetes.join)")
		}
	}
	if ca := c.Controller.ClusterAutoscaler; ca.Listen != "" {
		if _, _, err := net.SplitHostPort(ca.Listen); err != nil {
			v.add("controller.clusterAutoscaler.listen", "must be host:port: %v", err)
		}
		if !ca.Insecure && (ca.CertFile == "" || ca.KeyFile == "" || ca.ClientCAFile == "") {
			v.add("controller.clusterAutoscaler", "certFile, keyFile and clientCAFile are required (mutual TLS), unless insecure: true")
		}
		if ca.Insecure && (ca.CertFile != "" || ca.KeyFile != "" || ca.ClientCAFile != "") {
			v.add("controller.clusterAutoscaler.insecure", "true but TLS files are set; choose one")
		}
		if host, _, err := net.SplitHostPort(ca.Listen); err == nil && ca.Insecure {
			if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
				v.add("controller.clusterAutoscaler.insecure", "only on a loopback listen address (127.0.0.1, ::1), got %q: anyone who reaches it could resize the groups", ca.Listen)
			}
		}
		if !ca.Insecure && len(ca.AllowedClients) == 0 {
			v.add("controller.clusterAutoscaler.allowedClients", "must list the client certificate names (common name or SAN) that may call, e.g. [cluster-autoscaler]: any certificate of the client CA would otherwise resize the groups")
		}
	}
	if _, port, err := net.SplitHostPort(c.Controller.Metrics.Listen); err != nil {
		v.add("controller.metrics.listen", "must be host:port: %v", err)
	} else if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		v.add("controller.metrics.listen", "port must be in [0, 65535], got %q", port)
	}
	if c.Controller.Metrics.GroupPollInterval < time.Second {
		v.add("controller.metrics.groupPollInterval", "must be >= 1s, got %s", c.Controller.Metrics.GroupPollInterval)
	}
	if ri := c.Controller.HostWatch.ResyncInterval; ri < 10*time.Second || ri > 24*time.Hour {
		v.add("controller.hostWatch.resyncInterval", "must be in [10s, 24h], got %s", ri)
	}
	kc := c.Controller.Kubernetes
	if kc.InCluster && kc.Kubeconfig != "" {
		v.add("controller.kubernetes", "set inCluster or kubeconfig, not both")
	}
	if kc.TokenTTL < time.Minute {
		v.add("controller.kubernetes.tokenTTL", "must be >= 1m, got %s", kc.TokenTTL)
	}
	for i, h := range kc.CACertHashes {
		if !caHashRE.MatchString(h) {
			v.add(fmt.Sprintf("controller.kubernetes.caCertHashes[%d]", i), "must be sha256:<64 hex digits>, got %q", h)
		}
	}
	return v.err()
}

var (
	caHashRE = regexp.MustCompile(`^sha256:[0-9a-f]{64}$`)
	// labelKeyRE is a Kubernetes qualified name with an optional DNS prefix.
	labelKeyRE   = regexp.MustCompile(`^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$`)
	labelValueRE = regexp.MustCompile(`^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$`)
)

type validator struct{ errs []error }

func (v *validator) add(path, format string, args ...any) {
	v.errs = append(v.errs, fmt.Errorf("%s: %s", path, fmt.Sprintf(format, args...)))
}

func (v *validator) err() error { return errors.Join(v.errs...) }

func (v *validator) oneOf(path, got string, allowed []string) {
	for _, a := range allowed {
		if got == a {
			return
		}
	}
	v.add(path, "must be one of %s, got %q", strings.Join(allowed, ", "), got)
}

func (v *validator) atLeast(path string, got, least time.Duration) {
	if got < least {
		v.add(path, "must be >= %s, got %s", least, got)
	}
}

// installationRE is what an installation identity looks like.
var installationRE = regexp.MustCompile(`^[a-z0-9]([a-z0-9.-]{0,61}[a-z0-9])?$`)

// dns1123RE is a DNS-1123 subdomain, what a Kubernetes node name must be.
var dns1123RE = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`)

// RenderNodeName renders a node name template (.VM, .Group); empty means
// the VM's name.
func RenderNodeName(pattern, group, vm string) (string, error) {
	if pattern == "" {
		return vm, nil
	}
	t, err := template.New("nodeName").Option("missingkey=error").Parse(pattern)
	if err != nil {
		return "", err
	}
	var b strings.Builder
	if err := t.Execute(&b, map[string]string{"VM": vm, "Group": group}); err != nil {
		return "", err
	}
	return b.String(), nil
}

// checkDevicesXML parses extra <devices> children as libvirt's Go types do
// when the domain is defined, and refuses XML they would not carry over
// whole: an element or attribute they do not know would be dropped
// silently, and the VM would lack a device its user asked for.
func checkDevicesXML(doc string) error {
	var devs libvirtxml.DomainDeviceList
	if err := xml.Unmarshal([]byte("<devices>"+doc+"</devices>"), &devs); err != nil {
		return fmt.Errorf("not valid libvirt <devices> XML: %v", err)
	}
	out, err := xml.Marshal(devs)
	if err != nil {
		return fmt.Errorf("cannot be written back as libvirt XML: %v", err)
	}
	want, err := xmlShape("<devices>" + doc + "</devices>")
	if err != nil {
		return fmt.Errorf("not valid XML: %v", err)
	}
	got, err := xmlShape(string(out))
	if err != nil {
		return fmt.Errorf("cannot be written back as libvirt XML: %v", err)
	}
	for _, k := range slices.Sorted(maps.Keys(want)) {
		if got[k] < want[k] {
			return fmt.Errorf("%s is not known to libvirt's domain schema as PremiScale reads it, and would be dropped", k)
		}
	}
	return nil
}

// xmlShape counts each element path and attribute (path@name) of doc.
func xmlShape(doc string) (map[string]int, error) {
	d := xml.NewDecoder(strings.NewReader(doc))
	shape := map[string]int{}
	var path []string
	for {
		tok, err := d.Token()
		if errors.Is(err, io.EOF) {
			return shape, nil
		}
		if err != nil {
			return nil, err
		}
		switch e := tok.(type) {
		case xml.StartElement:
			path = append(path, e.Name.Local)
			p := strings.Join(path[1:], "/") // without the <devices> around
			if p == "" {
				continue
			}
			shape["element <"+p+">"]++
			for _, a := range e.Attr {
				shape["attribute "+a.Name.Local+" of <"+p+">"]++
			}
		case xml.EndElement:
			path = path[:len(path)-1]
		}
	}
}

func (v *validator) name(path, got string) {
	if !nameRE.MatchString(got) {
		v.add(path, "must be 1-40 lower-case letters, digits or '-', starting and ending with a letter or digit, got %q", got)
	}
}

func (v *validator) uri(path, got string) {
	if got == "" {
		v.add(path, "must not be empty")
		return
	}
	u, err := url.Parse(got)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // without the URI, which may hold credentials
		}
		v.add(path, "not a libvirt URI: %v", err)
		return
	}
	if _, ok := u.User.Password(); ok {
		v.add(path, "must not hold a password (it would be kept in plain text in the configuration and shown wherever the URI is): use SSH keys (qemu+libssh://…?keyfile=…&known_hosts=…) or TLS client certificates (qemu+tls://…?pkipath=…)")
		return
	}
	driver, transport, _ := strings.Cut(u.Scheme, "+")
	if driver == "" {
		v.add(path, "not a libvirt URI (want e.g. qemu:///system or qemu+tcp://host/system)")
		return
	}
	read, ok := uriOptions[transport]
	if !ok {
		v.add(path, "unsupported transport %q (want one of unix, tcp, tls, ssh, libssh)", transport)
		return
	}
	// go-libvirt, PremiScale's libvirt client, reads fewer options than
	// libvirt's C client, and refuses or ignores the others: say so here,
	// not at the first dial. Values are never repeated (they may be paths
	// an operator does not want in logs, never secrets, but the rule holds).
	for _, opt := range slices.Sorted(maps.Keys(u.Query())) {
		if opt == "name" || slices.Contains(read, opt) {
			continue
		}
		switch {
		case transport == "ssh" && slices.Contains(uriOptions["libssh"], opt):
			v.add(path, "?%s is not read by the ssh transport (it uses ~/.ssh of the user PremiScale runs as): use %s+libssh://… for known_hosts, known_hosts_verify and sshauth", opt, driver)
		case transport == "libssh" && opt == "no_verify":
			v.add(path, "?no_verify is refused by the libssh transport: pin the host's keys with known_hosts (ssh-keyscan HOST)")
		default:
			v.add(path, "?%s is not an option the %s transport reads (it reads %s)", opt, orUnix(transport), strings.Join(read, ", "))
		}
	}
	if m := u.Query().Get("known_hosts_verify"); m != "" && !slices.Contains([]string{"normal", "auto", "ignore"}, m) {
		v.add(path, "?known_hosts_verify must be normal, auto or ignore, got %q", m)
	}
	if m := strings.ToLower(u.Query().Get("mode")); m != "" && m != "legacy" && m != "auto" {
		v.add(path, "?mode must be legacy or auto (direct is not supported), got %q", m)
	}
}

// uriOptions is, per transport, the query options go-libvirt reads
// (socket/dialers and connect_uri.go; ?name= is read by every transport).
var uriOptions = map[string][]string{
	"":        {"socket", "mode"},
	"unix":    {"socket", "mode"},
	"tcp":     {},
	"tls":     {"pkipath", "no_verify"},
	"ssh":     {"keyfile", "socket", "mode", "no_verify"},
	"libssh":  {"keyfile", "socket", "mode", "known_hosts", "known_hosts_verify", "sshauth"},
	"libssh2": {"keyfile", "socket", "mode", "known_hosts", "known_hosts_verify", "sshauth"},
}

func orUnix(transport string) string {
	if transport == "" {
		return "unix"
	}
	return transport
}

// ParseSize parses a size such as "512MiB", "2GiB", "1G" or "4096KiB" into
// bytes. A unit is required: a bare number is ambiguous.
func ParseSize(s string) (uint64, error) {
	s = strings.TrimSpace(s)
	i := 0
	for i < len(s) && (s[i] >= '0' && s[i] <= '9') {
		i++
	}
	if i == 0 {
		return 0, fmt.Errorf("size %q must start with a number, e.g. 512MiB", s)
	}
	n, err := strconv.ParseUint(s[:i], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("size %q: %w", s, err)
	}
	units := map[string]uint64{
		"B": 1, "KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30, "TiB": 1 << 40,
		"K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40,
		"KB": 1e3, "MB": 1e6, "GB": 1e9, "TB": 1e12,
	}
	unit := strings.TrimSpace(s[i:])
	mult, ok := units[unit]
	if !ok {
		return 0, fmt.Errorf("size %q needs a unit (B, KiB, MiB, GiB, TiB, KB, MB, GB, TB)", s)
	}
	if n > (1<<64-1)/mult {
		return 0, fmt.Errorf("size %q is too large", s)
	}
	return n * mult, nil
}

// embedded checks the embedded frontend's listen address and TLS, and the
// controller's own client TLS to it.
func (v *validator) embedded(t Temporal) {
	e := t.Embedded
	ip := net.ParseIP(e.Host)
	if ip == nil {
		v.add("controller.temporal.embedded.host", "must be an IP address, got %q", e.Host)
	}
	if e.Port < 1 || e.Port > 65535 {
		v.add("controller.temporal.embedded.port", "must be in [1, 65535], got %d", e.Port)
	}
	if e.UI.On() {
		if ip := net.ParseIP(e.UI.Host); ip == nil || !ip.IsLoopback() {
			v.add("controller.temporal.embedded.ui.host", "must be a loopback address (127.0.0.1 or ::1), got %q: the Temporal UI has no login, and whoever reaches it can signal, reset and terminate every workflow; reach it through an SSH tunnel or kubectl port-forward", e.UI.Host)
		}
		if e.UI.Port < 1 || e.UI.Port > 65535 || e.UI.Port == e.Port {
			v.add("controller.temporal.embedded.ui.port", "must be in [1, 65535] and not the frontend's port, got %d", e.UI.Port)
		}
	}
	if (e.UI.CertFile == "") != (e.UI.KeyFile == "") {
		v.add("controller.temporal.embedded.ui", "certFile and keyFile must be set together")
	}
	const p = "controller.temporal.embedded.tls"
	if e.TLS.Enabled != nil && !*e.TLS.Enabled {
		v.add(p+".enabled", "cannot be false: the embedded frontend always requires client certificates, on loopback too (its generated CA and certificates need no setup); remove the setting")
	}
	for i, n := range e.TLS.ServerNames {
		if net.ParseIP(n) == nil && (!dns1123RE.MatchString(n) || len(n) > 253) {
			v.add(fmt.Sprintf("%s.serverNames[%d]", p, i), "must be a DNS name or an IP address, got %q", n)
		}
	}
	if e.TLS.Generated() {
		if t.TLS.Enabled {
			v.add("controller.temporal.tls.enabled", "leave controller.temporal.tls unset with the generated CA of controller.temporal.embedded.tls: the controller uses the client certificate generated beside it")
		}
		if e.UI.CertFile != "" {
			v.add("controller.temporal.embedded.ui.certFile", "only with your own CA (controller.temporal.embedded.tls.clientCAFile): with the generated CA the UI uses the reader certificate generated beside it")
		}
		return
	}
	if e.UI.On() && e.UI.CertFile == "" {
		v.add("controller.temporal.embedded.ui.certFile", "must name a client certificate with the role reader (organizational unit premiscale:reader) from %s.clientCAFile, and keyFile its key: the UI may only read; or set controller.temporal.embedded.ui.enabled: false", p)
	}
	if e.TLS.CertFile == "" || e.TLS.KeyFile == "" || e.TLS.ClientCAFile == "" {
		v.add(p, "certFile, keyFile and clientCAFile must be set together (or all left empty to generate a CA in controller.stateDir)")
	}
	if len(e.TLS.ServerNames) > 0 {
		v.add(p+".serverNames", "only for the generated server certificate; leave it empty with certFile")
	}
	if len(e.TLS.AllowedClients) == 0 {
		v.add(p+".allowedClients", "must list the client certificate names (CN or SAN) that may connect: clientCAFile may sign certificates for anyone")
	}
	if !t.TLS.Enabled || t.TLS.CertFile == "" {
		v.add("controller.temporal.tls", "must be enabled with certFile and keyFile (a client certificate from %s.clientCAFile, on its allowedClients): the controller connects to its own frontend with it", p)
	}
}
