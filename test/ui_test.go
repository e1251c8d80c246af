package test

import (
	"context"
	"fmt"
	"log/slog"
	"net/url"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"go.temporal.io/sdk/client"
	sdklog "go.temporal.io/sdk/log"

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

	tc, err := client.Dial(client.Options{HostPort: fmt.Sprintf("127.0.0.1:%d", port), Logger: sdklog.NewStructuredLogger(slog.New(slog.DiscardHandler))})
	if err != nil {
		t.Fatal(err)
	}
	defer tc.Close()
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
