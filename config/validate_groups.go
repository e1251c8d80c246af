package config

import (
	"fmt"
	"maps"
	"math"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"text/template"
	"time"

	"github.com/robfig/cron/v3"
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
