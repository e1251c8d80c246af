package worker

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/premiscale/premiscale/activities"
	"github.com/premiscale/premiscale/config"
	"github.com/premiscale/premiscale/workflows"
	"github.com/premiscale/premiscale/workflows/policy"
)

func testAuthority(t *testing.T) (*Authority, *config.Config) {
	t.Helper()
	four := 4
	cfg := &config.Config{Version: config.Version, Controller: config.Controller{Installation: "test"}, Autoscale: config.Autoscale{
		Hosts: []config.Host{{Name: "h1", URI: "test:///default", Pool: "default"}},
		Groups: []config.Group{{Name: "web", Hosts: []string{"h1"}, Min: 1, Max: 10,
			Template:  config.Template{DiskSize: "1GiB", Memory: "256MiB"},
			Schedules: []config.Schedule{{Name: "day", Cron: "0 8 * * *", Duration: time.Hour, Min: &four}}}},
	}}
	cfg.ApplyDefaults()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	return &Authority{Catalog: activities.NewCatalog(cfg)}, cfg
}

func TestAuthorityRefusesWhatTheConfigurationDoesNotSay(t *testing.T) {
	a, cfg := testAuthority(t)
	ctx := context.Background()
	spec := workflows.SpecFromConfig(cfg, cfg.Autoscale.Groups[0])
	if chk, err := a.CheckGroupSpec(ctx, spec); err != nil || len(chk.Refused) != 0 {
		t.Errorf("the configured spec: %v %v, want it taken", chk, err)
	}
	forged := spec
	forged.Max = 1000
	if chk, _ := a.CheckGroupSpec(ctx, forged); len(chk.Refused) != 1 || !strings.HasPrefix(chk.Refused[0], "max: 1000") {
		t.Errorf("max 1000: %q, want max refused", chk.Refused)
	}
	forged = spec
	forged.Name = "other"
	if chk, _ := a.CheckGroupSpec(ctx, forged); len(chk.Refused) != 1 || !strings.Contains(chk.Refused[0], `group "other" is not in`) {
		t.Errorf("unconfigured group: %q", chk.Refused)
	}

	if chk, _ := a.CheckRemove(ctx, workflows.RemoveCheckInput{Group: "web"}); !chk.Configured || chk.DeleteVMs {
		t.Errorf("remove of web: %+v, want configured, no deletion", chk)
	}
	if chk, _ := a.CheckRemove(ctx, workflows.RemoveCheckInput{Group: "gone"}); chk.Configured {
		t.Errorf("remove of gone: %+v, want not configured", chk)
	}

	now := time.Now()
	four, fifty := 4, 50
	for _, tc := range []struct {
		name string
		w    policy.Window
		want []string
	}{
		{"as configured", policy.Window{Schedule: "day", Start: now, Until: now.Add(time.Hour), Min: &four}, nil},
		{"forged bounds", policy.Window{Schedule: "day", Start: now, Until: now.Add(48 * time.Hour), Min: &fifty, Max: &fifty, Order: 3},
			[]string{"min 50, configured 4", "max 50, configured unset", "order 3, configured 0", "duration 48h0m0s, configured 1h0m0s"}},
		{"unknown schedule", policy.Window{Schedule: "night", Start: now, Until: now.Add(time.Hour)}, []string{`schedule "night" is not among`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			chk, err := a.CheckWindow(ctx, workflows.WindowCheckInput{Group: "web", Window: tc.w})
			if err != nil {
				t.Fatal(err)
			}
			if len(chk.Refused) != len(tc.want) {
				t.Fatalf("refused %q, want %q", chk.Refused, tc.want)
			}
			for i, w := range tc.want {
				if !strings.HasPrefix(chk.Refused[i], w) {
					t.Errorf("refused[%d] = %q, want %q", i, chk.Refused[i], w)
				}
			}
		})
	}
}
