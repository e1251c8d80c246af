package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/premiscale/premiscale/activities"
	"github.com/premiscale/premiscale/internal/telemetry"
)

func TestStatusShowsTheControllersHostProblems(t *testing.T) {
	reports := []activities.HostReport{
		{Host: "kvm1", Findings: []activities.Finding{{Check: "connect", Severity: activities.SeverityOK, Message: "libvirt 9.0.0"}}},
		{Host: "kvm2", Findings: []activities.Finding{
			{Check: "base volume", Group: "web", Severity: activities.SeverityError, Message: `base volume "node.qcow2" is not in pool "default"`},
			{Check: "clock", Severity: activities.SeverityWarn, Message: "the host's clock is 3s ahead of this machine's"},
		}},
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != telemetry.HostChecksPath {
			http.NotFound(w, r)
			return
		}
		_ = json.NewEncoder(w).Encode(reports)
	}))
	defer srv.Close()
	got, err := fetchHostChecks(context.Background(), strings.TrimPrefix(srv.URL, "http://"))
	if err != nil || len(got) != 2 {
		t.Fatalf("fetchHostChecks: %v %v", got, err)
	}
	var b bytes.Buffer
	printHostProblems(&b, got)
	out := b.String()
	for _, want := range []string{"kvm2", "error", "base volume (web)", `"node.qcow2"`, "warn", "clock", "premiscale hosts check HOST"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "kvm1") {
		t.Errorf("a host without problems is listed:\n%s", out)
	}
	b.Reset()
	printHostProblems(&b, got[:1])
	if !strings.Contains(b.String(), "1 checked by the controller, no problems") {
		t.Errorf("no problems: %q", b.String())
	}
	for _, listen := range []string{"127.0.0.1:0", "nonsense"} {
		if _, err := fetchHostChecks(context.Background(), listen); err == nil {
			t.Errorf("fetchHostChecks(%q) succeeded", listen)
		}
	}
}
