package test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	enumspb "go.temporal.io/api/enums/v1"

	"github.com/premiscale/premiscale/config"
	"github.com/premiscale/premiscale/internal/mtls"
	"github.com/premiscale/premiscale/workflows"
)

// TestTemporalUIShowsTheGroupAndItsVMChildInABrowser: the controller
// serves the Temporal Web UI next to its embedded server; after `scale 1`,
// the group workflow's page, opened in a real headless Chromium, shows it
// running, and its history shows the child workflow that provisioned the VM.
func TestTemporalUIShowsTheGroupAndItsVMChildInABrowser(t *testing.T) {
	requireLibvirt(t, testDriverURI)
	browser, err := exec.LookPath("chromium")
	if err != nil {
		t.Fatal("chromium not installed (make test installs Debian's chromium)")
	}
	const group = "uitest"
	port, uiPort := freePort(t), freePort(t)
	cfgPath, logPath := writeE2EConfig(t, group, port)
	c := &controller{t: t, config: cfgPath, log: logPath, env: []string{
		"PREMISCALE_CONTROLLER_TEMPORAL_EMBEDDED_UI_ENABLED=true",
		fmt.Sprintf("PREMISCALE_CONTROLLER_TEMPORAL_EMBEDDED_UI_PORT=%d", uiPort),
	}}
	c.start()
	t.Cleanup(func() { c.kill(syscall.SIGKILL) })
	c.mustCLI("scale", group, "1")
	c.waitSettled(group, 1, time.Minute)

	tc := c.mustDial()
	id := workflows.GroupWorkflowID(group)
	desc, err := tc.DescribeWorkflowExecution(context.Background(), id, "")
	if err != nil {
		t.Fatal(err)
	}
	page := fmt.Sprintf("http://127.0.0.1:%d/namespaces/default/workflows/%s/%s",
		uiPort, url.PathEscape(id), desc.GetWorkflowExecutionInfo().GetExecution().GetRunId())

	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(browser), chromedp.NoSandbox, chromedp.Headless,
		chromedp.Flag("disable-gpu", true), chromedp.Flag("disable-dev-shm-usage", true))
	actx, cancel := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancel()
	bctx, cancel := chromedp.NewContext(actx)
	defer cancel()
	bctx, cancel = context.WithTimeout(bctx, 2*time.Minute)
	defer cancel()
	// The workflow's page shows it running; its Relationships tab lists the
	// child that provisioned the VM (the history, newest first, pages back
	// to it only after hundreds of polling events).
	child := workflows.ProvisionWorkflowID(group, group+"-1")
	waitPage(t, bctx, page+"/history", id, "running")
	waitPage(t, bctx, page+"/relationships", child)
	t.Logf("the UI at %s shows %s running and its child %s", page, id, child)

	// Read-only: the list shows the group; the UI's own API reads the
	// workflow but refuses to terminate or signal it, as its buttons would.
	waitPage(t, bctx, fmt.Sprintf("http://127.0.0.1:%d/namespaces/default/workflows", uiPort), id)
	api := "/api/v1/namespaces/default/workflows/" + url.PathEscape(id)
	statuses, err := chromedp.Run(bctx, chromedp.Evaluate[[]int](fmt.Sprintf(`(async () => {
		const csrf = decodeURIComponent((document.cookie.match(/_csrf=([^;]+)/) || [])[1] || "");
		const call = (method, path, body) => fetch(path, {method, credentials: "same-origin",
			headers: {"Content-Type": "application/json", "X-CSRF-TOKEN": csrf}, body}).then(r => r.status);
		return [
			await call("GET", %[1]q),
			await call("POST", %[1]q + "/terminate", JSON.stringify({reason: "ui test"})),
			await call("POST", %[1]q + "/signal/" + %[2]q, JSON.stringify({input: {payloads: []}})),
		];
	})()`, api, workflows.SignalScale), chromedp.EvalAwaitPromise))
	if err != nil {
		t.Fatalf("call the UI's API from the page: %v", err)
	}
	if len(statuses) != 3 || statuses[0] != 200 {
		t.Fatalf("the UI's API answered %v; want the read (first) to succeed", statuses)
	}
	for i, what := range []string{"terminate", "signal"} {
		if st := statuses[i+1]; st < 400 || st == 404 {
			t.Errorf("the UI's %s answered %d, want a refusal", what, st)
		}
	}
	desc, err = tc.DescribeWorkflowExecution(context.Background(), id, "")
	if err != nil || desc.GetWorkflowExecutionInfo().GetStatus() != enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING {
		t.Fatalf("the group workflow after the UI's refused calls: %v %v", desc.GetWorkflowExecutionInfo().GetStatus(), err)
	}
	// Behind the UI, its certificate may only read: the frontend refuses
	// the same calls made with it directly.
	state := filepath.Join(filepath.Dir(cfgPath), "state", config.GeneratedTLSDir)
	uiCert, err := tls.LoadX509KeyPair(filepath.Join(state, mtls.UICertFile), filepath.Join(state, mtls.UIKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	if ca, err := os.ReadFile(filepath.Join(state, mtls.CAFile)); err != nil || !roots.AppendCertsFromPEM(ca) {
		t.Fatalf("ca.crt: %v", err)
	}
	uc := dialWith(t, fmt.Sprintf("127.0.0.1:%d", port), &tls.Config{RootCAs: roots, Certificates: []tls.Certificate{uiCert}})
	wantDenied(t, "the UI's certificate terminates", uc.TerminateWorkflow(context.Background(), id, "", "ui test"))
	wantDenied(t, "the UI's certificate signals", uc.SignalWorkflow(context.Background(), id, "", workflows.SignalScale, workflows.DesiredRequest{Desired: 2}))
	if st := c.status(group); st.Desired != 1 {
		t.Errorf("desired %d after the UI's refused calls, want 1", st.Desired)
	}
}

// waitPage opens page in the browser and waits until its text holds every
// one of wants (case-insensitive), failing with the text otherwise.
func waitPage(t *testing.T, ctx context.Context, page string, wants ...string) {
	t.Helper()
	if _, err := chromedp.Run(ctx, chromedp.Navigate(page)); err != nil {
		t.Fatalf("open %s: %v", page, err)
	}
	deadline := time.Now().Add(time.Minute)
	for {
		text, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS("body")))
		if err != nil {
			t.Fatalf("read %s: %v", page, err)
		}
		missing := ""
		for _, w := range wants {
			if !strings.Contains(strings.ToLower(text), strings.ToLower(w)) {
				missing = w
			}
		}
		if missing == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s never showed %q; the page says:\n%.4000s", page, missing, text)
		}
		time.Sleep(500 * time.Millisecond)
	}
}
