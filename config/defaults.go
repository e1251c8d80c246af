package config

import "time"

// ApplyDefaults fills every unset field with its default.
func (c *Config) ApplyDefaults() {
	ctl := &c.Controller
	setStr(&ctl.StateDir, DefaultStateDir)
	setStr(&ctl.Log.Level, DefaultLogLevel)
	setStr(&ctl.Log.Format, DefaultLogFormat)
	setStr(&ctl.Metrics.Listen, DefaultMetricsListen)
	if ctl.Metrics.GroupPollInterval == 0 {
		ctl.Metrics.GroupPollInterval = DefaultGroupPollInterval
	}
	if ctl.HostWatch.ResyncInterval == 0 {
		ctl.HostWatch.ResyncInterval = DefaultResyncInterval
	}
	setStr(&ctl.Temporal.Namespace, DefaultNamespace)
	setStr(&ctl.Temporal.TaskQueue, DefaultTaskQueue)
	setStr(&ctl.Temporal.Embedded.Host, DefaultEmbeddedHost)
	setStr(&ctl.Temporal.Embedded.UI.Host, DefaultEmbeddedHost)
	if ctl.Temporal.Embedded.UI.Port == 0 {
		ctl.Temporal.Embedded.UI.Port = DefaultUIPort
	}
	if ctl.Temporal.Embedded.Port == 0 {
		ctl.Temporal.Embedded.Port = DefaultEmbeddedPort
	}
	if ctl.Prometheus.QueryTimeout == 0 {
		ctl.Prometheus.QueryTimeout = DefaultQueryTimeout
	}
	kc := &ctl.Kubernetes
	if kc.TokenTTL == 0 {
		kc.TokenTTL = DefaultTokenTTL
	}
	o := &c.Autoscale.Orphans
	setStr(&o.Action, DefaultOrphanAction)
	if o.GracePeriod == 0 {
		o.GracePeriod = DefaultOrphanGracePeriod
	}
	if o.ScanInterval == 0 {
		o.ScanInterval = DefaultOrphanScanInterval
	}
	for i := range c.Autoscale.Hosts {
		h := &c.Autoscale.Hosts[i]
		setStr(&h.Pool, DefaultPool)
		if h.CPUOvercommit == 0 {
			h.CPUOvercommit = 1
		}
		if h.MemoryOvercommit == 0 {
			h.MemoryOvercommit = 1
		}
	}
	for i := range c.Autoscale.Groups {
		g := &c.Autoscale.Groups[i]
		if len(g.Hosts) == 0 {
			for _, h := range c.Autoscale.Hosts {
				g.Hosts = append(g.Hosts, h.Name)
			}
		}
		if g.Desired == nil {
			d := g.Min
			g.Desired = &d
		}
		setStr(&g.Placement.Strategy, PlacementSpread)
		setStr(&g.Refresh.Mode, RefreshManual)
		if w := g.WarmPool; w != nil {
			setStr(&w.State, WarmHibernated)
			if w.Ready.Timeout == 0 {
				w.Ready.Timeout = DefaultWarmReadyTimeout
			}
		}
		if g.HostFailureGracePeriod == 0 {
			g.HostFailureGracePeriod = DefaultHostFailureGracePeriod
		}
		if g.UnhealthyGracePeriod == 0 {
			g.UnhealthyGracePeriod = DefaultUnhealthyGracePeriod
		}
		if g.CleanupTimeout == 0 {
			g.CleanupTimeout = DefaultCleanupTimeout
		}
		sc := &g.Scaling
		if sc.EvaluationInterval == 0 {
			sc.EvaluationInterval = DefaultEvaluationInterval
		}
		if sc.Mode == "" {
			sc.Mode = DefaultMode
		}
		setDur(&sc.ScaleOut.Cooldown, DefaultScaleOutCooldown)
		setDur(&sc.ScaleIn.Cooldown, DefaultScaleInCooldown)
		setDur(&sc.ScaleOut.StabilizationWindow, DefaultScaleOutWindow)
		setDur(&sc.ScaleIn.StabilizationWindow, DefaultScaleInWindow)
		setStr(&sc.ScaleIn.Selection, DefaultScaleInSelection)
		k := &g.Kubernetes
		setStr(&k.Join, DefaultJoin)
		setStr(&k.NodeName, DefaultNodeName)
		if k.ReadyTimeout == 0 {
			k.ReadyTimeout = DefaultReadyTimeout
		}
		if k.Drain.Timeout == 0 {
			k.Drain.Timeout = DefaultDrainTimeout
		}
		setDur(&k.Drain.GracePeriod, DefaultDrainGracePeriod)
		if k.Drain.IgnoreDaemonSets == nil {
			yes := true
			k.Drain.IgnoreDaemonSets = &yes
		}
		setStr(&k.Drain.OnTimeout, DefaultDrainOnTimeout)
		for j := range sc.Checks {
			c := &sc.Checks[j]
			setStr(&c.OnError, DefaultOnError)
			if c.Strategy == StrategyTargetValue && c.Tolerance == nil {
				tol := DefaultTolerance
				c.Tolerance = &tol
			}
		}
		t := &g.Template
		if t.VCPUs == 0 {
			t.VCPUs = DefaultVCPUs
		}
		setStr(&t.Memory, DefaultMemory)
		setStr(&t.DomainType, DefaultDomainType)
		setStr(&t.Arch, DefaultArch)
		setStr(&t.Network.Type, DefaultNetworkType)
		if t.Network.Type != NetworkNone {
			setStr(&t.Network.Model, "virtio")
		}
		if t.ShutdownTimeout == nil {
			d := DefaultShutdownTimeout
			t.ShutdownTimeout = &d
		}
	}
}

func setDur(p **time.Duration, def time.Duration) {
	if *p == nil {
		d := def
		*p = &d
	}
}

func setStr(p *string, def string) {
	if *p == "" {
		*p = def
	}
}
