package workflows

import (
	"reflect"
	"testing"
	"time"

	"github.com/premiscale/premiscale/activities"
)

func dom(group, name string) activities.DomainInfo {
	return activities.DomainInfo{Name: name, Owner: activities.Owner{Group: group, VM: name, Volume: activities.VolumeName(name), Installation: "i1"}}
}

func TestFindOrphans(t *testing.T) {
	members := NewMemberSet([]string{"web", "db"})
	members.Add("web", activities.MemberRef{Name: "web-1", Volume: activities.VolumeName("web-1")})
	members.Add("web", activities.MemberRef{Name: "web-2"}) // disk not created yet
	tests := []struct {
		name      string
		scan      HostScan
		want      []string // kind name: reason
		unscanned []string
	}{
		{
			name: "members and their volumes are not orphans",
			scan: HostScan{Host: "h1", Domains: []activities.DomainInfo{dom("web", "web-1")},
				Volumes: []string{activities.VolumeName("web-1"), activities.VolumeName("web-2")}},
		},
		{
			name: "a domain of a configured group that is no member",
			scan: HostScan{Host: "h1", Domains: []activities.DomainInfo{dom("web", "web-7")}},
			want: []string{"domain web-7: not a member of group web"},
		},
		{
			name: "a domain of a group that is not configured, with its volume",
			scan: HostScan{Host: "h1", Domains: []activities.DomainInfo{dom("old", "old-3")},
				Volumes:     []string{activities.VolumeName("old-3")},
				VolumeUsers: map[string][]string{activities.VolumeName("old-3"): {"old-3"}}},
			want: []string{"domain old-3: group old is not configured", "volume premiscale-old-3.qcow2: no member uses it"},
		},
		{
			name: "a volume used by an unmarked domain is not an orphan",
			scan: HostScan{Host: "h1", Volumes: []string{activities.VolumeName("x-1")},
				VolumeUsers: map[string][]string{activities.VolumeName("x-1"): {"someones-vm"}}},
		},
		{
			name: "a volume a member's domain uses under another name is not an orphan",
			scan: HostScan{Host: "h1", Volumes: []string{activities.VolumeName("web-9")},
				VolumeUsers: map[string][]string{activities.VolumeName("web-9"): {"web-1"}}},
		},
		{
			name: "another installation's domain is reported, and its volume is not an orphan",
			scan: HostScan{Host: "h1", Domains: []activities.DomainInfo{{Name: "web-9", Foreign: true,
				Owner: activities.Owner{Group: "web", VM: "web-9", Installation: "other"}}},
				Volumes:     []string{activities.VolumeName("web-9")},
				VolumeUsers: map[string][]string{activities.VolumeName("web-9"): {"web-9"}}},
			want: []string{"domain web-9: marked by installation other"},
		},
		{
			name:      "an unscanned host contributes nothing",
			scan:      HostScan{Host: "h2", Error: "connection refused", Domains: []activities.DomainInfo{dom("old", "old-1")}},
			unscanned: []string{"h2: connection refused"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, unscanned := FindOrphans(ScanOutput{Hosts: []HostScan{tt.scan}}, members)
			var lines []string
			for _, o := range got {
				if o.Host != tt.scan.Host {
					t.Errorf("orphan %s on host %s, want %s", o.Name, o.Host, tt.scan.Host)
				}
				lines = append(lines, o.Kind+" "+o.Name+": "+o.Reason)
			}
			if !reflect.DeepEqual(lines, tt.want) {
				t.Errorf("orphans = %q, want %q", lines, tt.want)
			}
			if len(unscanned) != len(tt.unscanned) || (len(unscanned) > 0 && unscanned[0] != tt.unscanned[0]) {
				t.Errorf("unscanned = %q, want %q", unscanned, tt.unscanned)
			}
		})
	}
}

func TestAgeOrphansKeepsClocksOnlyWhileSeenOrUnscanned(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	now := t0.Add(time.Minute)
	a := Orphan{Host: "h1", Kind: OrphanDomain, Name: "a"}
	b := Orphan{Host: "h1", Kind: OrphanVolume, Name: "b"}
	c := Orphan{Host: "h2", Kind: OrphanDomain, Name: "c"}
	prev := map[string]time.Time{a.key(): t0, b.key(): t0, c.key(): t0}
	tests := []struct {
		name      string
		orphans   []Orphan
		unscanned []string
		want      map[string]time.Time
	}{
		{"seen again keeps its clock", []Orphan{a}, nil, map[string]time.Time{a.key(): t0}},
		{"not seen is forgotten", nil, nil, map[string]time.Time{}},
		{"new starts now", []Orphan{{Host: "h1", Kind: OrphanDomain, Name: "n"}}, nil,
			map[string]time.Time{"h1/domain/n": now}},
		{"unscanned host keeps clocks", []Orphan{a}, []string{"h2"}, map[string]time.Time{a.key(): t0, c.key(): t0}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			orphans := append([]Orphan{}, tt.orphans...)
			got := AgeOrphans(prev, orphans, tt.unscanned, now)
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("clocks = %v, want %v", got, tt.want)
			}
			for _, o := range orphans {
				if o.FirstSeen != got[o.key()] {
					t.Errorf("%s FirstSeen = %v, want %v", o.Name, o.FirstSeen, got[o.key()])
				}
			}
		})
	}
}

func TestDueOrphansWaitsForGraceAndPutsDomainsFirst(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	orphans := []Orphan{
		{Kind: OrphanVolume, Name: "v-old", FirstSeen: t0},
		{Kind: OrphanDomain, Name: "d-new", FirstSeen: t0.Add(9 * time.Minute)},
		{Kind: OrphanDomain, Name: "d-old", FirstSeen: t0},
		{Kind: OrphanDomain, Name: "d-unaged"},
	}
	var names []string
	for _, o := range DueOrphans(orphans, 10*time.Minute, t0.Add(10*time.Minute), true, false) {
		names = append(names, o.Name)
	}
	if want := []string{"d-old", "v-old"}; !reflect.DeepEqual(names, want) {
		t.Errorf("due = %v, want %v", names, want)
	}
}

func TestOrphansOfUnconfiguredGroupsAndLegacyMarksAreKept(t *testing.T) {
	members := NewMemberSet([]string{"web"})
	legacy := dom("web", "web-8")
	legacy.Owner.Installation = ""
	scan := HostScan{Host: "h1", Domains: []activities.DomainInfo{dom("web", "web-7"), dom("old", "old-3"), legacy},
		Volumes: []string{activities.VolumeName("old-4"), activities.VolumeName("web-9")}}
	orphans, _ := FindOrphans(ScanOutput{Hosts: []HostScan{scan}}, members)
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for i := range orphans {
		orphans[i].FirstSeen = t0
	}
	due := func(keep, deleteUnconfigured bool) []string {
		var names []string
		for _, o := range DueOrphans(orphans, time.Minute, t0.Add(time.Hour), keep, deleteUnconfigured) {
			names = append(names, o.Name)
		}
		return names
	}
	tests := []struct {
		name                     string
		keep, deleteUnconfigured bool
		want                     []string
	}{
		{"kept by default", true, false, []string{"web-7", activities.VolumeName("web-9")}},
		{"unconfigured groups when asked", true, true, []string{"old-3", "web-7", activities.VolumeName("old-4"), activities.VolumeName("web-9")}},
		{"histories from before: everything", false, false, []string{"old-3", "web-7", "web-8", activities.VolumeName("old-4"), activities.VolumeName("web-9")}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := due(tt.keep, tt.deleteUnconfigured); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("due = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestOrphansFromAnEarlierHistoryOfTheGroupAreKept(t *testing.T) {
	members := NewMemberSet([]string{"web"})
	members.Epochs["web"] = "run-now"
	dom := func(name, epoch string) activities.DomainInfo {
		return activities.DomainInfo{Name: name, Owner: activities.Owner{Group: "web", VM: name, Installation: "i1", Epoch: epoch}}
	}
	scan := HostScan{Host: "h1", Domains: []activities.DomainInfo{dom("web-1", "run-before"), dom("web-7", "run-now"), dom("web-8", "")}}
	orphans, _ := FindOrphans(ScanOutput{Hosts: []HostScan{scan}}, members)
	kept := map[string]string{}
	for _, o := range orphans {
		kept[o.Name] = o.Kept
	}
	want := map[string]string{"web-1": keptEarlierHistory, "web-7": "", "web-8": ""}
	if !reflect.DeepEqual(kept, want) {
		t.Errorf("kept = %q, want %q", kept, want)
	}
}
