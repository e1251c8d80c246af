package activities

import (
	"errors"
	"testing"

	"go.temporal.io/sdk/temporal"

	"github.com/premiscale/premiscale/config"
)

// testCatalog has hosts h1 and h2, and group web on h1 only, joining by join.
func testCatalog(join string) *Catalog {
	cfg := &config.Config{Autoscale: config.Autoscale{
		Hosts: []config.Host{{Name: "h1", URI: "qemu+tcp://10.0.0.1/system"}, {Name: "h2", URI: "qemu+tcp://10.0.0.2/system"}},
		Groups: []config.Group{{Name: "web", Hosts: []string{"h1"}, Min: 0, Max: 3,
			Kubernetes: config.GroupKubernetes{Join: join}}},
	}}
	cfg.ApplyDefaults()
	return NewCatalog(cfg)
}

func isType(err error, errType string) bool {
	var ae *temporal.ApplicationError
	return errors.As(err, &ae) && ae.Type() == errType && ae.NonRetryable()
}

func TestCatalogResolvesHostsByNameOnly(t *testing.T) {
	cat := testCatalog(config.JoinNone)
	h, err := cat.Host(HostRef{Name: "h1", URI: "qemu+tcp://attacker/system", Pool: "root"})
	if err != nil {
		t.Fatal(err)
	}
	if h.URI != "qemu+tcp://10.0.0.1/system" || h.Pool != config.DefaultPool {
		t.Errorf("resolved h1 = %+v, want the configured URI and pool", h)
	}
	if _, err := cat.Host(HostRef{Name: "evil", URI: "qemu+tcp://attacker/system"}); !isType(err, ErrTypeUnknownHost) {
		t.Errorf("unknown host: err = %v, want non-retryable %s", err, ErrTypeUnknownHost)
	}
	var none *Catalog
	if _, err := none.Host(HostRef{Name: "h1"}); !isType(err, ErrTypeUnknownHost) {
		t.Errorf("no catalog: err = %v, want non-retryable %s", err, ErrTypeUnknownHost)
	}
}

func TestCatalogRefusesWhatTheGroupDoesNotHave(t *testing.T) {
	cat := testCatalog(config.JoinNone)
	rev := cat.groups["web"].Revision()
	tests := []struct {
		name, group, rev, vm, host, want string
	}{
		{"the group's own", "web", rev, "web-12", "h1", ""},
		{"unknown group", "db", rev, "db-1", "h1", ErrTypeUnknownGroup},
		{"another group's name", "web", rev, "db-1", "h1", ErrTypeUnknownGroup},
		{"name without number", "web", rev, "web-", "h1", ErrTypeUnknownGroup},
		{"name with leading zero", "web", rev, "web-01", "h1", ErrTypeUnknownGroup},
		{"name with a path", "web", rev, "web-1/../x", "h1", ErrTypeUnknownGroup},
		{"configured host not the group's", "web", rev, "web-1", "h2", ErrTypeUnknownHost},
		{"unknown host", "web", rev, "web-1", "evil", ErrTypeUnknownHost},
		{"stale revision", "web", "0123456789abcdef", "web-1", "h1", ErrTypeConfigMismatch},
		{"no revision", "web", "", "web-1", "h1", ErrTypeConfigMismatch},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g, err := cat.Group(tt.group, tt.rev, tt.vm, tt.host)
			if tt.want == "" {
				if err != nil || g.Name != "web" {
					t.Fatalf("Group = %v, %v; want web", g.Name, err)
				}
				return
			}
			if !isType(err, tt.want) {
				t.Fatalf("err = %v, want non-retryable %s", err, tt.want)
			}
		})
	}
}

func TestRevisionChangesWithTheTemplateNotTheSize(t *testing.T) {
	g := testCatalog(config.JoinNone).groups["web"]
	resized := g
	resized.Max = 9
	if g.Revision() != resized.Revision() {
		t.Error("a change of max changed the revision")
	}
	bigger := g
	bigger.Template.Memory = "4GiB"
	if g.Revision() == bigger.Revision() {
		t.Error("a change of the template's memory kept the revision")
	}
	ud := g
	ud.Kubernetes.UserData = "#cloud-config\n"
	if g.Revision() == ud.Revision() {
		t.Error("a change of user-data kept the revision")
	}
}
