package worker

import (
	"context"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/premiscale/premiscale/activities"
)

// HostCheckTimeout bounds one host's check, as `premiscale hosts check`
// does by default.
const HostCheckTimeout = 30 * time.Second

// CheckHosts runs the preflight of `premiscale hosts check` on every
// configured host at start and then every interval until ctx ends, from
// this worker (whose connections and credentials the groups use), and
// hands each report to report. It logs each host's problems (warnings and
// errors, one line each, naming host, group and check) when they first
// appear or change, and once when they clear, so a missing base volume,
// an inactive pool or a skewed clock is in the log before the first
// scale-out fails on it.
func CheckHosts(ctx context.Context, lv *activities.Libvirt, hosts []string, interval time.Duration, report func(activities.HostReport), logger *slog.Logger) {
	last := map[string]string{}
	for {
		var wg sync.WaitGroup
		reports := make([]activities.HostReport, len(hosts))
		for i, h := range hosts {
			wg.Go(func() {
				hctx, cancel := context.WithTimeout(ctx, HostCheckTimeout)
				defer cancel()
				r, err := lv.CheckHost(hctx, activities.CheckHostInput{Host: activities.HostRef{Name: h}})
				if err != nil {
					r = activities.HostReport{Host: h, CheckedAt: time.Now().UTC(),
						Findings: []activities.Finding{{Check: "connect", Severity: activities.SeverityError, Message: err.Error()}}}
				}
				reports[i] = r
			})
		}
		wg.Wait()
		if ctx.Err() != nil {
			return
		}
		for _, r := range reports {
			report(r)
			problems := problemLines(r)
			key := strings.Join(problems, "\n")
			switch prev, seen := last[r.Host]; {
			case key == prev && seen:
			case key == "" && seen:
				logger.Info("host check: no problems left", "host", r.Host)
			default:
				for _, f := range r.Findings {
					if f.Severity == activities.SeverityOK {
						continue
					}
					lvl := slog.LevelWarn
					if f.Severity == activities.SeverityError {
						lvl = slog.LevelError
					}
					logger.Log(ctx, lvl, "host check: "+f.Message, "host", r.Host, "group", f.Group, "check", f.Check)
				}
			}
			last[r.Host] = key
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(interval):
		}
	}
}

// problemLines are a report's warnings and errors, sorted, for telling a
// change apart.
func problemLines(r activities.HostReport) []string {
	var out []string
	for _, f := range r.Findings {
		if f.Severity != activities.SeverityOK {
			out = append(out, f.Severity+" "+f.Check+" "+f.Group)
		}
	}
	slices.Sort(out)
	return out
}
