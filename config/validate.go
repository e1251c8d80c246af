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

	"github.com/robfig/cron/v3"
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
	transports   = []string{"", "unix", "tcp", "tls", "ssh", "libssh", "libssh2"}
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
	if pg := t.Embedded.Postgres; pg.DSN != "" {
		d, err := ParsePostgresDSN(pg.DSN)
		switch {
		case err != nil:
			v.add("controller.temporal.embedded.postgres.dsn", "%v", err)
		case d.Password != "" && pg.PasswordFile != "":
			v.add("controller.temporal.embedded.postgres.passwordFile", "set a password in the dsn or passwordFile, not both")
		}
	} else if pg.PasswordFile != "" {
		v.add("controller.temporal.embedded.postgres.passwordFile", "needs controller.temporal.embedded.postgres.dsn")
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

func (v *validator) kubernetes(p string, k GroupKubernetes, kc Kubernetes) {
	v.oneOf(p+".join", k.Join, []string{JoinNone, JoinKubeadm, JoinUserData})
	if k.Join != JoinNone && !kc.Enabled() {
		v.add(p+".join", "%s needs controller.kubernetes (kubeconfig or inCluster)", k.Join)
	}
	if k.Join == JoinKubeadm {
		if kc.APIServerEndpoint == "" {
			v.add("controller.kubernetes.apiServerEndpoint", "must be set for kubeadm join (group %s)", strings.TrimSuffix(p, ".kubernetes"))
		}
		if len(kc.CACertHashes) == 0 {
			v.add("controller.kubernetes.caCertHashes", "must list the cluster CA's hash for kubeadm join (group %s)", strings.TrimSuffix(p, ".kubernetes"))
		}
	}
	if k.Join == JoinUserData && k.UserData == "" {
		v.add(p+".userData", "must be set (or userDataFile) for join userData")
	}
	if _, err := template.New("nodeName").Option("missingkey=error").Parse(k.NodeName); err != nil {
		v.add(p+".nodeName", "%v", err)
	}
	if k.UserData != "" {
		if _, err := template.New("userData").Option("missingkey=error").Parse(k.UserData); err != nil {
			v.add(p+".userData", "%v", err)
		}
	}
	for _, key := range slices.Sorted(maps.Keys(k.Labels)) {
		if len(key) > 253 || !labelKeyRE.MatchString(key) {
			v.add(p+".labels", "invalid label key %q", key)
		}
		if !labelValueRE.MatchString(k.Labels[key]) {
			v.add(p+".labels."+key, "invalid label value %q", k.Labels[key])
		}
	}
	for i, t := range k.Taints {
		tp := fmt.Sprintf("%s.taints[%d]", p, i)
		if !labelKeyRE.MatchString(t.Key) {
			v.add(tp+".key", "invalid taint key %q", t.Key)
		}
		if !labelValueRE.MatchString(t.Value) {
			v.add(tp+".value", "invalid taint value %q", t.Value)
		}
		v.oneOf(tp+".effect", t.Effect, []string{"NoSchedule", "PreferNoSchedule", "NoExecute"})
	}
	if k.ReadyTimeout < time.Minute {
		v.add(p+".readyTimeout", "must be >= 1m, got %s", k.ReadyTimeout)
	}
	if k.Drain.Timeout < time.Second {
		v.add(p+".drain.timeout", "must be >= 1s, got %s", k.Drain.Timeout)
	}
	if g := k.Drain.GracePeriod; g != nil && *g < 0 && *g != -time.Second {
		v.add(p+".drain.gracePeriod", "must be >= 0s, or -1s for each pod's own, got %s", *g)
	}
	v.oneOf(p+".drain.onTimeout", k.Drain.OnTimeout, []string{DrainAbort, DrainForce})
}

func (v *validator) template(p string, t Template) {
	if t.VCPUs < 1 {
		v.add(p+".vcpus", "must be >= 1, got %d", t.VCPUs)
	}
	if mem, err := ParseSize(t.Memory); err != nil {
		v.add(p+".memory", "%v", err)
	} else if mem < MinMemory {
		v.add(p+".memory", "must be at least 32MiB, got %q", t.Memory)
	}
	if t.DiskSize != "" {
		if n, err := ParseSize(t.DiskSize); err != nil {
			v.add(p+".diskSize", "%v", err)
		} else if n < 1<<20 {
			v.add(p+".diskSize", "must be at least 1MiB, got %q", t.DiskSize)
		}
	}
	if t.BaseVolume == "" && t.DiskSize == "" {
		v.add(p+".diskSize", "must be set when template.baseVolume is empty")
	}
	if strings.ContainsAny(t.BaseVolume, "/\x00") {
		v.add(p+".baseVolume", "must be a volume name in the host's pool, not a path: %q", t.BaseVolume)
	}
	if strings.HasPrefix(t.BaseVolume, "premiscale-") {
		v.add(p+".baseVolume", "must not start with \"premiscale-\": that prefix names the volumes PremiScale creates and deletes; rename %q", t.BaseVolume)
	}
	v.oneOf(p+".domainType", t.DomainType, domainTypes)
	if t.Arch == "" {
		v.add(p+".arch", "must not be empty")
	}
	if t.Kernel == "" && (t.Initrd != "" || t.Cmdline != "") {
		v.add(p+".kernel", "must be set when initrd or cmdline is")
	}
	v.oneOf(p+".network.type", t.Network.Type, networkTypes)
	switch t.Network.Type {
	case NetworkNetwork, NetworkBridge:
		if t.Network.Source == "" {
			v.add(p+".network.source", "must name the %s for network type %q", t.Network.Type, t.Network.Type)
		}
	case NetworkNone, NetworkUser:
		if t.Network.Source != "" {
			v.add(p+".network.source", "must be empty for network type %q", t.Network.Type)
		}
	}
	if t.ExtraDevicesXML != "" {
		if err := checkDevicesXML(t.ExtraDevicesXML); err != nil {
			v.add(p+".extraDevicesXML", "%v", err)
		}
	}
	if t.ShutdownGrace() < 0 {
		v.add(p+".shutdownTimeout", "must be >= 0, got %s", t.ShutdownGrace())
	}
}

// needsPrometheus reports whether any group evaluates checks.
func (c *Config) needsPrometheus() bool {
	for _, g := range c.Autoscale.Groups {
		if len(g.Scaling.Checks) > 0 && g.Scaling.Mode != ModeOff && g.Scaling.Mode != ModeClusterAutoscaler {
			return true
		}
	}
	return false
}

var (
	modes      = []string{ModeOn, ModeScaleOutOnly, ModeOff, ModeClusterAutoscaler}
	strategies = []string{StrategyTargetValue, StrategyThreshold, StrategyPassThrough}
	onErrors   = []string{OnErrorHold, OnErrorIgnore}
	checkRE    = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$`)
)

func (v *validator) prometheus(p string, pr Prometheus, required bool) {
	if pr.Address == "" {
		if required {
			v.add(p+".address", "must be set: a group has checks (e.g. http://127.0.0.1:9090)")
		}
	} else if u, err := url.Parse(pr.Address); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		v.add(p+".address", "must be an http:// or https:// URL, got %q", pr.Address)
	}
	if pr.QueryTimeout <= 0 {
		v.add(p+".queryTimeout", "must be > 0, got %s", pr.QueryTimeout)
	}
	if pr.BasicAuth.Password != "" && pr.BasicAuth.PasswordFile != "" {
		v.add(p+".basicAuth", "set password or passwordFile, not both")
	}
	if pr.BearerToken != "" && pr.BearerTokenFile != "" {
		v.add(p+".bearerToken", "set bearerToken or bearerTokenFile, not both")
	}
	if pr.BasicAuth.Username != "" && (pr.BearerToken != "" || pr.BearerTokenFile != "") {
		v.add(p+".basicAuth", "set basicAuth or a bearer token, not both")
	}
	if (pr.TLS.CertFile == "") != (pr.TLS.KeyFile == "") {
		v.add(p+".tls", "certFile and keyFile must be set together")
	}
}

func (v *validator) scaling(p string, sc Scaling) {
	v.oneOf(p+".mode", string(sc.Mode), modes)
	names := map[string]bool{}
	for i, c := range sc.Checks {
		cp := fmt.Sprintf("%s.checks[%d]", p, i)
		if !checkRE.MatchString(c.Name) {
			v.add(cp+".name", "must be 1-63 letters, digits, '_', '.' or '-', got %q", c.Name)
		}
		if names[c.Name] {
			v.add(cp+".name", "duplicate check name %q", c.Name)
		}
		names[c.Name] = true
		if strings.TrimSpace(c.Query) == "" {
			v.add(cp+".query", "must be a PromQL query")
		}
		v.oneOf(cp+".onError", c.OnError, onErrors)
		v.check(cp, c)
	}
	for _, d := range []struct {
		name string
		dir  Direction
	}{{"scaleOut", sc.ScaleOut}, {"scaleIn", sc.ScaleIn}} {
		dp := p + "." + d.name
		if d.dir.Cooldown != nil && *d.dir.Cooldown < 0 {
			v.add(dp+".cooldown", "must be >= 0, got %s", *d.dir.Cooldown)
		}
		if d.dir.StabilizationWindow != nil && *d.dir.StabilizationWindow < 0 {
			v.add(dp+".stabilizationWindow", "must be >= 0, got %s", *d.dir.StabilizationWindow)
		}
		if _, _, err := ParseMaxStep(d.dir.MaxStep); err != nil {
			v.add(dp+".maxStep", "%v", err)
		}
	}
	if sc.ScaleOut.Selection != "" {
		v.add(p+".scaleOut.selection", "is not a scale-out setting (see scaleIn.selection)")
	}
	v.oneOf(p+".scaleIn.selection", sc.ScaleIn.Selection, []string{SelectNewest, SelectOldest, SelectLeastPods})
}

// check validates one check's strategy and the parameters beside it.
func (v *validator) check(cp string, c Check) {
	set := map[string]bool{
		"target": c.Target != nil, "tolerance": c.Tolerance != nil,
		"upperBound": c.UpperBound != nil, "lowerBound": c.LowerBound != nil,
		"delta": c.Delta != nil, "percentage": c.Percentage != nil, "value": c.Value != nil,
	}
	allowed := map[string][]string{
		StrategyTargetValue: {"target", "tolerance"},
		StrategyThreshold:   {"upperBound", "lowerBound", "delta", "percentage", "value"},
		StrategyPassThrough: {},
	}
	params, ok := allowed[c.Strategy]
	if !ok {
		v.add(cp+".strategy", "must be one of %s, got %q", strings.Join(strategies, ", "), c.Strategy)
		return
	}
	for _, k := range []string{"target", "tolerance", "upperBound", "lowerBound", "delta", "percentage", "value"} {
		if set[k] && !slices.Contains(params, k) {
			v.add(cp+"."+k, "is not a parameter of strategy %s", c.Strategy)
		}
	}
	switch c.Strategy {
	case StrategyTargetValue:
		switch {
		case c.Target == nil:
			v.add(cp+".target", "must be set for strategy targetValue")
		case !(*c.Target > 0) || math.IsInf(*c.Target, 0):
			v.add(cp+".target", "must be a positive number, got %v", *c.Target)
		}
		if c.Tolerance != nil && (*c.Tolerance < 0 || *c.Tolerance >= 1 || math.IsNaN(*c.Tolerance)) {
			v.add(cp+".tolerance", "must be in [0, 1), got %v", *c.Tolerance)
		}
	case StrategyThreshold:
		if c.UpperBound == nil && c.LowerBound == nil {
			v.add(cp, "threshold needs upperBound, lowerBound or both")
		}
		if c.UpperBound != nil && c.LowerBound != nil && !(*c.LowerBound < *c.UpperBound) {
			v.add(cp+".lowerBound", "must be < upperBound (%v), got %v", *c.UpperBound, *c.LowerBound)
		}
		n := 0
		for _, k := range []string{"delta", "percentage", "value"} {
			if set[k] {
				n++
			}
		}
		if n != 1 {
			v.add(cp, "threshold needs exactly one of delta, percentage or value, got %d", n)
		}
		if c.Delta != nil && *c.Delta == 0 {
			v.add(cp+".delta", "must not be 0")
		}
		if c.Percentage != nil && (*c.Percentage == 0 || *c.Percentage <= -100 || math.IsNaN(*c.Percentage) || math.IsInf(*c.Percentage, 0)) {
			v.add(cp+".percentage", "must be non-zero and > -100, got %v", *c.Percentage)
		}
		if c.Value != nil && *c.Value < 0 {
			v.add(cp+".value", "must be >= 0, got %d", *c.Value)
		}
	}
}

// ParseMaxStep parses a maxStep: "" (no cap), a count ("2") or a
// percentage ("50%").
func ParseMaxStep(s string) (count int, percent float64, err error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return 0, 0, nil
	}
	if p, ok := strings.CutSuffix(s, "%"); ok {
		f, err := strconv.ParseFloat(strings.TrimSpace(p), 64)
		if err != nil || !(f > 0) || math.IsInf(f, 0) {
			return 0, 0, fmt.Errorf("must be a count or a positive percentage like 50%%, got %q", s)
		}
		return 0, f, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 {
		return 0, 0, fmt.Errorf("must be a count >= 1 or a percentage like 50%%, got %q", s)
	}
	return n, 0, nil
}

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
		v.add(path, "must not hold a password (it would be kept in plain text in the configuration and shown wherever the URI is): use SSH keys (qemu+ssh://), TLS client certificates (qemu+tls://), or libvirt's auth.conf (?authfile=/path/auth.conf)")
		return
	}
	driver, transport, _ := strings.Cut(u.Scheme, "+")
	if driver == "" {
		v.add(path, "not a libvirt URI (want e.g. qemu:///system or qemu+tcp://host/system)")
		return
	}
	for _, t := range transports {
		if transport == t {
			return
		}
	}
	v.add(path, "unsupported transport %q (want one of unix, tcp, tls, ssh, libssh)", transport)
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
	switch {
	case ip == nil:
		v.add("controller.temporal.embedded.host", "must be an IP address, got %q", e.Host)
	case !ip.IsLoopback() && !e.TLS.Enabled:
		v.add("controller.temporal.embedded.host", "must be a loopback address (127.0.0.1 or ::1) unless controller.temporal.embedded.tls.enabled is true, got %q: without TLS the embedded Temporal server authenticates nobody, and whoever reaches it can scale, pause and read every group", e.Host)
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
	const p = "controller.temporal.embedded.tls"
	if !e.TLS.Enabled {
		if t.TLS.Enabled {
			v.add("controller.temporal.tls.enabled", "the embedded server serves TLS only with controller.temporal.embedded.tls.enabled; enable that, or set controller.temporal.address, or disable TLS")
		}
		if e.TLS.CertFile != "" || e.TLS.KeyFile != "" || e.TLS.ClientCAFile != "" || len(e.TLS.ServerNames) > 0 || len(e.TLS.AllowedClients) > 0 {
			v.add(p+".enabled", "must be true when other %s settings are given", p)
		}
		return
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
		return
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

// cronParser reads Schedule.Cron as Temporal reads a five-field expression.
var cronParser = cron.NewParser(cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow | cron.Descriptor)

func (v *validator) schedules(p string, g Group) {
	names := map[string]bool{}
	for j, s := range g.Schedules {
		sp := fmt.Sprintf("%s.schedules[%d]", p, j)
		v.name(sp+".name", s.Name)
		if names[s.Name] {
			v.add(sp+".name", "duplicate schedule name %q", s.Name)
		}
		names[s.Name] = true
		switch {
		case s.Cron == "":
			v.add(sp+".cron", "must not be empty")
		case strings.Contains(s.Cron, "TZ="):
			v.add(sp+".cron", "must not carry a time zone; set timeZone")
		case strings.HasPrefix(s.Cron, "@every"):
			v.add(sp+".cron", "@every is not a calendar; use a five-field expression")
		default:
			if _, err := cronParser.Parse(s.Cron); err != nil {
				v.add(sp+".cron", "%q is not a five-field cron expression or @hourly/@daily/@weekly/@monthly/@yearly: %v", s.Cron, err)
			}
		}
		if s.TimeZone != "" {
			if _, err := time.LoadLocation(s.TimeZone); err != nil || s.TimeZone == "Local" {
				v.add(sp+".timeZone", "unknown time zone %q (an IANA name such as Europe/Berlin)", s.TimeZone)
			}
		}
		if s.Duration < time.Minute {
			v.add(sp+".duration", "must be >= 1m, got %s", s.Duration)
		}
		if s.Min == nil && s.Max == nil && s.Desired == nil {
			v.add(sp, "must set at least one of min, max, desired")
			continue
		}
		lo, hi := g.Min, g.Max
		if s.Min != nil {
			lo = *s.Min
			if lo < 0 {
				v.add(sp+".min", "must be >= 0, got %d", lo)
			}
		}
		if s.Max != nil {
			hi = *s.Max
			if hi > MaxGroupSize {
				v.add(sp+".max", "must be <= %d, got %d", MaxGroupSize, hi)
			}
		}
		if hi < lo {
			v.add(sp, "min %d and max %d during the window (the group's where the schedule sets none): max must be >= min", lo, hi)
		}
		if s.Desired != nil && (*s.Desired < lo || *s.Desired > hi) {
			v.add(sp+".desired", "must be within [min, max] = [%d, %d] during the window, got %d", lo, hi, *s.Desired)
		}
	}
}

func (v *validator) refresh(p string, r Refresh) {
	switch r.Mode {
	case "", RefreshManual, RefreshAuto:
	default:
		v.add(p+".mode", "must be %s or %s, got %q", RefreshManual, RefreshAuto, r.Mode)
	}
	if r.MinHealthy != "" {
		if _, err := ParsePercent(r.MinHealthy); err != nil {
			v.add(p+".minHealthy", "%s", err)
		}
	}
	if r.Batch < 0 || r.Batch > MaxGroupSize {
		v.add(p+".batch", "must be from 0 to %d, got %d", MaxGroupSize, r.Batch)
	}
	if err := CheckCheckpoints(r.Checkpoints); err != nil {
		v.add(p+".checkpoints", "%s", err)
	}
	if r.CheckpointDelay != nil {
		if err := CheckCheckpointDelay(*r.CheckpointDelay, r.Checkpoints); err != nil {
			v.add(p+".checkpointDelay", "%s", err)
		}
	}
}

// MaxConsoleLine bounds warmPool.ready.consoleLine.
const MaxConsoleLine = 256

func (v *validator) warmPool(p string, g Group) {
	w := g.WarmPool
	if w == nil {
		return
	}
	nonNegative := func(path string, n *int) {
		switch {
		case n == nil:
		case *n < 0:
			v.add(path, "must be >= 0, got %d", *n)
		case *n > MaxGroupSize:
			v.add(path, "must be <= %d, got %d", MaxGroupSize, *n)
		}
	}
	nonNegative(p+".size", w.Size)
	nonNegative(p+".minSize", w.MinSize)
	nonNegative(p+".maxPreparedSize", w.MaxPreparedSize)
	switch {
	case w.Size != nil && (w.MinSize != nil || w.MaxPreparedSize != nil):
		v.add(p+".size", "set either size or minSize/maxPreparedSize, not both")
	case w.Size == nil && w.MinSize == nil && w.MaxPreparedSize == nil:
		v.add(p, "must set size, or minSize and/or maxPreparedSize")
	case w.MinSize != nil && w.MaxPreparedSize != nil && *w.MaxPreparedSize < *w.MinSize:
		v.add(p+".maxPreparedSize", "must be >= minSize (%d), got %d", *w.MinSize, *w.MaxPreparedSize)
	}
	v.oneOf(p+".state", w.State, []string{WarmHibernated, WarmPaused, WarmStopped})
	v.atLeast(p+".ready.timeout", w.Ready.Timeout, 10*time.Second)
	if len(w.Ready.ConsoleLine) > MaxConsoleLine {
		v.add(p+".ready.consoleLine", "must be at most %d bytes, got %d", MaxConsoleLine, len(w.Ready.ConsoleLine))
	}
	if strings.ContainsAny(w.Ready.ConsoleLine, "\r\n") {
		v.add(p+".ready.consoleLine", "must be text within one line")
	}
}
