package workflows_test

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/premiscale/premiscale/activities"
	"github.com/premiscale/premiscale/workflows"
)

func TestApplyOrphanPolicyKeepsTheStricterOfEachField(t *testing.T) {
	h := func(names ...string) []activities.HostRef {
		var out []activities.HostRef
		for _, n := range names {
			out = append(out, activities.HostRef{Name: n})
		}
		return out
	}
	pol := activities.OrphanPolicy{Delete: true, GracePeriod: 10 * time.Minute, ScanInterval: time.Minute,
		Hosts: h("h1", "h2"), Groups: []string{"web", "db"}}
	for _, tc := range []struct {
		name    string
		req     workflows.OrphanSpec
		pol     activities.OrphanPolicy
		want    workflows.OrphanSpec
		refused []string // prefixes, in order
	}{
		{
			name: "the controller's own spec",
			req:  workflows.OrphanSpec{Hosts: h("h1", "h2"), Groups: []string{"web", "db"}, Removed: []string{"gone"}, Delete: true, GracePeriod: 10 * time.Minute, ScanInterval: time.Minute},
			pol:  pol,
			want: workflows.OrphanSpec{Hosts: h("h1", "h2"), Groups: []string{"web", "db"}, Removed: []string{"gone"}, Delete: true, GracePeriod: 10 * time.Minute, ScanInterval: time.Minute},
		},
		{
			name:    "everything forged",
			req:     workflows.OrphanSpec{Hosts: h("h1", "evil"), Delete: true, DeleteUnconfigured: true},
			pol:     pol,
			want:    workflows.OrphanSpec{Hosts: h("h1", "h2"), Groups: []string{"web", "db"}, Delete: true, GracePeriod: 10 * time.Minute, ScanInterval: time.Minute},
			refused: []string{"deleteUnconfigured:", "gracePeriod: 0s", "scanInterval: 0s", `hosts: "evil"`},
		},
		{
			name: "stricter than the worker is taken as asked",
			req:  workflows.OrphanSpec{Groups: []string{"web"}, Delete: true, GracePeriod: time.Hour, ScanInterval: 5 * time.Minute},
			pol:  activities.OrphanPolicy{Delete: true, DeleteUnconfigured: true, GracePeriod: 10 * time.Minute, ScanInterval: time.Minute, Hosts: h("h1"), Groups: []string{"web", "db"}},
			want: workflows.OrphanSpec{Hosts: h("h1"), Groups: []string{"web", "db"}, Delete: true, GracePeriod: time.Hour, ScanInterval: 5 * time.Minute},
		},
		{
			name: "groups the worker does not configure are only protected",
			req:  workflows.OrphanSpec{Groups: []string{"web", "victim"}, Removed: []string{"gone", "victim"}, Delete: true, GracePeriod: 10 * time.Minute, ScanInterval: time.Minute},
			pol:  pol,
			want: workflows.OrphanSpec{Hosts: h("h1", "h2"), Groups: []string{"web", "db"}, Removed: []string{"victim", "gone"}, Delete: true, GracePeriod: 10 * time.Minute, ScanInterval: time.Minute},
		},
		{
			name:    "a worker that only reports",
			req:     workflows.OrphanSpec{Delete: true, GracePeriod: 10 * time.Minute, ScanInterval: time.Minute},
			pol:     activities.OrphanPolicy{GracePeriod: 10 * time.Minute, ScanInterval: time.Minute},
			want:    workflows.OrphanSpec{Hosts: []activities.HostRef{}, Groups: []string{}, GracePeriod: 10 * time.Minute, ScanInterval: time.Minute},
			refused: []string{"delete:"},
		},
		{
			name: "a stop request is always taken",
			req:  workflows.OrphanSpec{},
			pol:  pol,
			want: workflows.OrphanSpec{Hosts: h("h1", "h2"), Groups: []string{"web", "db"}, GracePeriod: 10 * time.Minute, ScanInterval: time.Minute},
			// Asking for nothing asks for no more than the worker allows,
			// but the zero grace and interval are below it.
			refused: []string{"gracePeriod: 0s", "scanInterval: 0s"},
		},
		{
			name:    "a scan interval below a second is never taken",
			req:     workflows.OrphanSpec{Delete: true, GracePeriod: time.Minute},
			pol:     activities.OrphanPolicy{Delete: true, GracePeriod: time.Minute},
			want:    workflows.OrphanSpec{Hosts: []activities.HostRef{}, Groups: []string{}, Delete: true, GracePeriod: time.Minute, ScanInterval: time.Second},
			refused: []string{"scanInterval: 0s"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, refused := workflows.ApplyOrphanPolicy(tc.req, tc.pol)
			if !slices.Equal(got.Hosts, tc.want.Hosts) || !slices.Equal(got.Groups, tc.want.Groups) || !slices.Equal(got.Removed, tc.want.Removed) ||
				got.Delete != tc.want.Delete || got.DeleteUnconfigured != tc.want.DeleteUnconfigured ||
				got.GracePeriod != tc.want.GracePeriod || got.ScanInterval != tc.want.ScanInterval {
				t.Errorf("got  %+v\nwant %+v", got, tc.want)
			}
			if len(refused) != len(tc.refused) {
				t.Fatalf("refused %q, want %d entries starting %q", refused, len(tc.refused), tc.refused)
			}
			for i, p := range tc.refused {
				if !strings.HasPrefix(refused[i], p) {
					t.Errorf("refused[%d] = %q, want it to start %q", i, refused[i], p)
				}
			}
		})
	}
}
