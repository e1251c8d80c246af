// Package config holds PremiScale's versioned configuration: its types, their
// defaults, loading from a YAML file, environment variables and flags (koanf),
// and validation that reports every problem at once with its path.
//
// A file per section holds its types, constants and checks: controller.go,
// temporal.go, prometheus.go, kubernetes.go, clusterautoscaler.go (the
// controller), hosts.go, orphans.go, groups.go, and a group's scaling.go,
// template.go, warmpool.go, refresh.go and schedules.go. This file has the
// root and the default values, defaults.go applies them, load.go reads
// the sources, validate.go runs the checks in order and holds their
// helpers. Workflows never carry these types: workflows/spec_types.go
// has the history format, made from them at the edge.
package config

import (
	"time"
)

// Version is the only configuration schema version this build reads.
const Version = "v1alpha1"

// MaxGroupSize is the largest max a group may have. A group's members live
// in its workflow's state, which Temporal carries in every continue-as-new
// input and status query; a thousand members keep that well below
// Temporal's payload limits.
const MaxGroupSize = 1000

// Default values, named once so that documentation, defaults and tests agree.
const (
	DefaultConfigPath = "/etc/premiscale/config.yaml"
	// LegacyConfigPath is the original controller's default, read when
	// DefaultConfigPath does not exist and it does.
	LegacyConfigPath              = "/opt/premiscale/config.yaml"
	DefaultLogFile                = "" // standard output, for containers and journald
	DefaultStateDir               = "/opt/premiscale/state"
	DefaultLogLevel               = "info"
	DefaultLogFormat              = "text"
	DefaultNamespace              = "default"
	DefaultTaskQueue              = "premiscale"
	DefaultEmbeddedHost           = "127.0.0.1"
	DefaultEmbeddedPort           = 7233
	DefaultUIPort                 = 8233
	DefaultMetricsListen          = "127.0.0.1:9464"
	DefaultGroupPollInterval      = 5 * time.Second
	DefaultResyncInterval         = 5 * time.Minute
	DefaultPool                   = "default"
	DefaultEvaluationInterval     = 15 * time.Second
	DefaultVCPUs                  = 1
	DefaultMemory                 = "512MiB"
	DefaultDomainType             = "kvm"
	DefaultArch                   = "x86_64"
	DefaultNetworkType            = NetworkNone
	DefaultShutdownTimeout        = 30 * time.Second
	DefaultQueryTimeout           = 10 * time.Second
	DefaultTolerance              = 0.1
	DefaultScaleOutCooldown       = 60 * time.Second
	DefaultScaleInCooldown        = 300 * time.Second
	DefaultScaleOutWindow         = 0 * time.Second
	DefaultScaleInWindow          = 300 * time.Second
	DefaultMode                   = ModeOn
	DefaultOnError                = OnErrorHold
	DefaultHostFailureGracePeriod = 2 * time.Minute
	// DefaultUnhealthyGracePeriod is groups[].unhealthyGracePeriod's default.
	DefaultUnhealthyGracePeriod = 2 * time.Minute
	// DefaultCleanupTimeout is groups[].cleanupTimeout's default.
	DefaultCleanupTimeout     = 10 * time.Minute
	DefaultOrphanAction       = OrphansReport
	DefaultOrphanGracePeriod  = 10 * time.Minute
	DefaultOrphanScanInterval = time.Minute
	DefaultJoin               = JoinNone
	DefaultNodeName           = "{{.VM}}"
	DefaultReadyTimeout       = 15 * time.Minute
	// DefaultWarmReadyTimeout bounds the wait for a warm VM's console line.
	DefaultWarmReadyTimeout = 5 * time.Minute
	DefaultDrainTimeout     = 10 * time.Minute
	DefaultDrainGracePeriod = -1 * time.Second
	DefaultDrainOnTimeout   = DrainAbort
	DefaultTokenTTL         = 30 * time.Minute
	DefaultScaleInSelection = SelectNewest
)

// Config is the whole configuration file.
type Config struct {
	Version    string     `koanf:"version" json:"version"`
	Controller Controller `koanf:"controller" json:"controller"`
	Autoscale  Autoscale  `koanf:"autoscale" json:"autoscale"`
	// Notices are what loading noticed and accepted but the user should
	// know (a variable without effect, a kubeconfig taken from the
	// environment); the controller logs them at start.
	Notices []string `koanf:"-" json:"-"`
}
