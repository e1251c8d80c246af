package activities

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

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

// catalogWithMemory is testCatalog's group with the template's memory set.
func catalogWithMemory(memory string) *Catalog {
	cfg := &config.Config{Autoscale: config.Autoscale{
		Hosts:  []config.Host{{Name: "h1", URI: "qemu+tcp://10.0.0.1/system"}},
		Groups: []config.Group{{Name: "web", Hosts: []string{"h1"}, Min: 0, Max: 3, Template: config.Template{Memory: memory}}},
	}}
	cfg.ApplyDefaults()
	return NewCatalog(cfg)
}

func TestKeptRevisionsLetARollbackBuildTheTemplateRunBefore(t *testing.T) {
	dir := t.TempDir()
	start := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	var revs []string
	for i, mem := range []string{"256MiB", "512MiB", "768MiB", "1GiB", "2GiB", "3GiB", "4GiB"} {
		cat := catalogWithMemory(mem)
		if err := cat.KeepRevisions(dir, start.Add(time.Duration(i)*time.Hour)); err != nil {
			t.Fatal(err)
		}
		revs = append(revs, cat.Revision("web"))
	}
	// The worker restarts with 4GiB again: the file is read, not grown.
	cat := catalogWithMemory("4GiB")
	if err := cat.KeepRevisions(dir, start.Add(24*time.Hour)); err != nil {
		t.Fatal(err)
	}
	g, err := cat.Member("web", revs[5], "web-1")
	if err != nil {
		t.Fatalf("the previous revision: %v", err)
	}
	if g.Template.Memory != "3GiB" || g.Revision() != revs[5] {
		t.Errorf("previous revision resolved to memory %q (revision %s), want 3GiB (%s)", g.Template.Memory, g.Revision(), revs[5])
	}
	if g, err := cat.Member("web", revs[6], "web-1"); err != nil || g.Template.Memory != "4GiB" {
		t.Errorf("the current revision: %v, memory %q", err, g.Template.Memory)
	}
	// Five are kept, the configured one among them: the two oldest are gone.
	for i, rev := range revs {
		_, err := cat.Member("web", rev, "web-1")
		if kept(i) != (err == nil) {
			t.Errorf("revision %d (%s): err = %v, want kept %v", i, rev, err, kept(i))
		}
		if !kept(i) && !isType(err, ErrTypeConfigMismatch) {
			t.Errorf("revision %d: err = %v, want ConfigMismatch", i, err)
		}
	}
	fi, err := os.Stat(filepath.Join(dir, revisionsFile))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("revisions file: %v, mode %v, want 0600 (user-data may hold secrets)", err, fi.Mode().Perm())
	}
}

func kept(i int) bool { return i >= 2 }

func TestAnEditedKeptRevisionIsNotTrusted(t *testing.T) {
	dir := t.TempDir()
	old := catalogWithMemory("256MiB")
	if err := old.KeepRevisions(dir, time.Now()); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, revisionsFile)
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	// Someone changes the template under the old revision's hash.
	if err := os.WriteFile(path, []byte(strings.Replace(string(b), "256MiB", "64GiB", 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	cat := catalogWithMemory("512MiB")
	if err := cat.KeepRevisions(dir, time.Now()); err != nil {
		t.Fatal(err)
	}
	if _, err := cat.Member("web", old.Revision("web"), "web-1"); !isType(err, ErrTypeConfigMismatch) {
		t.Errorf("an edited revision: err = %v, want ConfigMismatch", err)
	}
	if err := os.WriteFile(path, []byte("{"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := cat.KeepRevisions(dir, time.Now()); err == nil || !strings.Contains(err.Error(), revisionsFile) {
		t.Errorf("a broken file: err = %v, want one naming it", err)
	}
}
