package test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	"google.golang.org/protobuf/encoding/protojson"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	bootstrapapi "k8s.io/cluster-bootstrap/token/api"

	"github.com/premiscale/premiscale/activities"
	"github.com/premiscale/premiscale/config"
	"github.com/premiscale/premiscale/internal/mtls"
	"github.com/premiscale/premiscale/workflows"
)

// lockedBuffer collects log lines from every goroutine.
type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// allHistories renders every workflow history on the server as JSON.
func allHistories(t *testing.T, ctx context.Context, c client.Client) string {
	t.Helper()
	var out strings.Builder
	var token []byte
	for {
		resp, err := c.ListWorkflow(ctx, &workflowservice.ListWorkflowExecutionsRequest{PageSize: 1000, NextPageToken: token})
		if err != nil {
			t.Fatal(err)
		}
		for _, info := range resp.GetExecutions() {
			it := c.GetWorkflowHistory(ctx, info.GetExecution().GetWorkflowId(), info.GetExecution().GetRunId(), false, 0)
			for it.HasNext() {
				ev, err := it.Next()
				if err != nil {
					t.Fatal(err)
				}
				b, _ := protojson.Marshal(ev)
				out.Write(b)
				out.WriteByte('\n')
			}
		}
		if token = resp.GetNextPageToken(); len(token) == 0 {
			return out.String()
		}
	}
}

// TestNoSecretReachesHistoryLogsOrStatus runs groups that use every kind
// of secret PremiScale handles: a libvirt URI with a marker in its user
// part, Prometheus basic-auth credentials, a user-data file, kubeadm join
// tokens. It scales them out (nodes join) and in (nodes drained), then
// reads every workflow history on the server, the whole debug log and
// every status and orphan report: no marker, and no join token, appears
// in any of them.
func TestNoSecretReachesHistoryLogsOrStatus(t *testing.T) {
	requireLibvirt(t, qemuURI)
	hosts := requireHosts(t, 1)
	h := hosts[0]
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	const (
		uriMarker      = "uri-marker-5c1d"
		promMarker     = "prom-marker-77e2"
		userDataMarker = "userdata-marker-0b9f"
		ud, ka         = "secud", "secka"
	)
	conn := connectURI(t, h.qemuURI())
	for _, g := range []string{ud, ka} {
		purgeGroup(t, conn, guestPool, g)
		t.Cleanup(func() { purgeGroup(t, conn, guestPool, g) })
	}
	exp := startExporter(t, requireLibvirt(t, testDriverURI), ud) // only its constant gauges are used
	promAddr, _ := startPrometheus(t, exp.addr)
	udFile := filepath.Join(t.TempDir(), "user-data")
	if err := os.WriteFile(udFile, []byte("#cloud-config\nbootcmd: [echo "+userDataMarker+"]\nhostname: {{.NodeName}}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	kc := realKube(t)
	id := chartIdentity(t, ctx, kc, "ps-secrets")
	zero := time.Duration(0)
	dry := true
	group := func(name string, k config.GroupKubernetes) config.Group {
		k.ReadyTimeout, k.Drain = 2*time.Minute, config.Drain{Timeout: 30 * time.Second}
		return config.Group{
			Name: name, Hosts: []string{h.name}, Max: 2,
			Scaling:    config.Scaling{EvaluationInterval: time.Second},
			Template:   config.Template{DiskSize: "16MiB", Memory: "64MiB", DomainType: "qemu", ShutdownTimeout: &zero},
			Kubernetes: k,
		}
	}
	udGroup := group(ud, config.GroupKubernetes{Join: config.JoinUserData, UserDataFile: udFile})
	udGroup.Scaling.DryRun = dry
	udGroup.Scaling.Checks = []config.Check{{Name: "load", Query: "premiscale_test_high", Strategy: config.StrategyPassThrough}}
	cfg := &config.Config{
		Version: config.Version,
		Controller: config.Controller{
			Prometheus: config.Prometheus{Address: "http://" + promAddr, BasicAuth: config.BasicAuth{Username: "premiscale", Password: promMarker}},
			Kubernetes: config.Kubernetes{Kubeconfig: id.Kubeconfig, APIServerEndpoint: strings.TrimPrefix(kc.Server, "https://"), CACertHashes: []string{kc.CAHash}},
		},
		Autoscale: config.Autoscale{
			Hosts:  []config.Host{{Name: h.name, URI: fmt.Sprintf("qemu+tcp://%s@127.0.0.1:%d/system", uriMarker, h.port), Pool: guestPool, CPUOvercommit: 4}},
			Groups: []config.Group{udGroup, group(ka, config.GroupKubernetes{Join: config.JoinKubeadm})},
		},
	}
	// The file's user-data is read as the loader reads it.
	b, _ := os.ReadFile(udFile)
	cfg.Autoscale.Groups[0].Kubernetes.UserData, cfg.Autoscale.Groups[0].Kubernetes.UserDataFile = string(b), ""
	logs := &lockedBuffer{}
	s, c := startInProcessLogged(t, ctx, cfg, id.Client, slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})))

	var tokens []string
	var outputs []string
	show := func(what string, v any) {
		b, _ := json.Marshal(v)
		outputs = append(outputs, what+": "+string(b))
	}
	for _, g := range []string{ud, ka} {
		if _, err := s.Scale(ctx, g, 1); err != nil {
			t.Fatal(err)
		}
		m := waitSoleMember(t, ctx, s, g)
		if g == ka {
			// The token the VM's seed carries (create-only, its Secret
			// stays until it expires), which joins it.
			req := seedJoin(t, ctx, conn, m.Name)
			_, secret, _ := strings.Cut(req.Token, ".")
			l, err := kc.Admin.CoreV1().Secrets(metav1.NamespaceSystem).List(ctx, metav1.ListOptions{LabelSelector: activities.LabelGroup + "=" + ka})
			if err != nil {
				t.Fatal(err)
			}
			if len(l.Items) != 1 || string(l.Items[0].Data[bootstrapapi.BootstrapTokenSecretKey]) != secret {
				t.Fatalf("token Secrets of %s while it joins: %d, want one with the seed's token", m.Name, len(l.Items))
			}
			tokens = append(tokens, secret)
			if _, err := kc.Join(ctx, req); err != nil {
				t.Fatalf("join of %s: %v", m.Name, err)
			}
		} else {
			registerNode(t, ctx, kc, m.Name, m.ProviderID, true)
		}
		st, err := s.WaitSettled(ctx, g, 200*time.Millisecond)
		if err != nil {
			t.Fatal(err)
		}
		show("status "+g, st)
	}
	if len(tokens) == 0 {
		t.Fatal("no join token seen")
	}
	waitStatus(t, s, ud, time.Minute, "a dry-run decision from Prometheus", func(st workflows.GroupStatus) bool {
		return st.Decision != nil && len(st.Checks) == 1 && st.Checks[0].Error == ""
	})
	rep, err := s.Orphans(ctx)
	if err != nil {
		t.Fatal(err)
	}
	show("orphans", rep)
	for _, g := range []string{ud, ka} {
		if _, err := s.Scale(ctx, g, 0); err != nil {
			t.Fatal(err)
		}
		st, err := s.WaitSettled(ctx, g, 200*time.Millisecond)
		if err != nil {
			t.Fatal(err)
		}
		show("status "+g, st)
	}

	histories := allHistories(t, ctx, c)
	if !strings.Contains(histories, ud+"-1") || !strings.Contains(logs.String(), ka+"-1") {
		t.Fatal("the histories or the log miss the VMs: the check below would prove nothing")
	}
	secrets := append([]string{uriMarker, promMarker, userDataMarker}, tokens...)
	for _, sec := range secrets {
		if strings.Contains(histories, sec) {
			t.Errorf("workflow history holds %q", sec)
		}
		if strings.Contains(logs.String(), sec) {
			t.Errorf("the log holds %q", sec)
		}
		for _, o := range outputs {
			if strings.Contains(o, sec) {
				t.Errorf("%.40s... holds %q", o, sec)
			}
		}
	}
}

// TestStateDirDatabaseAndLogAreForTheControllersUserOnly starts the real
// binary on a fresh state dir and checks the modes of what it wrote.
func TestStateDirDatabaseAndLogAreForTheControllersUserOnly(t *testing.T) {
	requireLibvirt(t, testDriverURI)
	port := freePort(t)
	cfg, logPath := writeE2EConfig(t, "modes", port)
	c := &controller{t: t, config: cfg, log: logPath}
	c.start()
	t.Cleanup(func() { c.kill(syscall.SIGKILL) })
	state := filepath.Join(filepath.Dir(cfg), "state")
	want := map[string]os.FileMode{state: 0o700, logPath: 0o600}
	entries, err := os.ReadDir(state)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		want[filepath.Join(state, e.Name())] = 0o600
		if e.IsDir() { // tls/, the generated CA: its keys are checked below
			want[filepath.Join(state, e.Name())] = 0o700
		}
	}
	for _, f := range []string{mtls.CAKeyFile, mtls.ServerKeyFile, mtls.ClientKeyFile, mtls.UIKeyFile} {
		want[filepath.Join(state, config.GeneratedTLSDir, f)] = 0o600
	}
	for _, f := range []string{"temporal.db", "temporal.db-wal", config.InstallationFile} {
		if _, ok := want[filepath.Join(state, f)]; !ok {
			t.Errorf("state dir lacks %s (has %v)", f, entries)
		}
	}
	for path, mode := range want {
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != mode {
			t.Errorf("%s: mode %v, want %v", path, fi.Mode().Perm(), mode)
		}
	}
}
