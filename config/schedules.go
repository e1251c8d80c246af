package config

import (
	"fmt"
	"strings"
	"time"

	"github.com/robfig/cron/v3"
)

// Schedule is scheduled capacity: each time Cron fires (in TimeZone), the
// group's min and max become the ones set here for Duration, then return
// to the configuration's; desired is set as the window opens (and kept
// within the bounds while it lasts). Overlapping windows: the one that fired
// last governs (of two that fired together, the one listed later), as
// workflows/policy.Window documents. Each schedule is a Temporal Schedule,
// premiscale/group/<group>/schedule/<name>, which can be paused, triggered
// and inspected with the temporal CLI and UI.
type Schedule struct {
	Name string `koanf:"name" json:"name"`
	// Cron is a five-field cron expression (minute hour day-of-month
	// month day-of-week) or @hourly, @daily, @weekly, @monthly, @yearly.
	Cron string `koanf:"cron" json:"cron"`
	// TimeZone is an IANA zone name (Europe/Berlin); empty means UTC.
	TimeZone string `koanf:"timeZone" json:"timeZone,omitempty"`
	// Duration is how long each window lasts.
	Duration time.Duration `koanf:"duration" json:"duration"`
	// Min, Max and Desired apply during the window; unset ones stay the
	// configuration's. At least one must be set.
	Min     *int `koanf:"min" json:"min,omitempty"`
	Max     *int `koanf:"max" json:"max,omitempty"`
	Desired *int `koanf:"desired" json:"desired,omitempty"`
}

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

// cronParser reads Schedule.Cron as Temporal reads a five-field expression.
var cronParser = cron.NewParser(cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow | cron.Descriptor)
