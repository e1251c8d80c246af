package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/premiscale/premiscale/workflows"
	"github.com/premiscale/premiscale/workflows/policy"
)

func execute(t *testing.T, args ...string) (string, error) {
	t.Helper()
	cmd := newRootCmd()
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	cmd.SetArgs(args)
	err := cmd.Execute()
	return out.String(), err
}

func TestHelpShowsTheSeedsFlags(t *testing.T) {
	out, err := execute(t, "--help")
	if err != nil {
		t.Fatal(err)
	}
	for _, flag := range []string{"-c, --config", "--validate", "--version", "--log-level", "--log-file", "--log-stdout",
		"PREMISCALE_CONFIG_PATH", "PREMISCALE_LOG_LEVEL", "PREMISCALE_LOG_FILE", "PREMISCALE_TOKEN", "/etc/premiscale/config.yaml", "/opt/premiscale/config.yaml"} {
		if !strings.Contains(out, flag) {
			t.Errorf("--help lacks %q", flag)
		}
	}
}

func TestValidateAcceptsTheExamples(t *testing.T) {
	for _, f := range []string{"demo.yaml", "test-driver.yaml", "metrics.yaml"} {
		out, err := execute(t, "--validate", "-c", filepath.Join("..", "..", "deploy", "examples", f))
		if err != nil || !strings.Contains(out, "valid") {
			t.Errorf("--validate %s: %v %q", f, err, out)
		}
	}
}

func TestValidateListsEveryErrorWithItsPath(t *testing.T) {
	p := filepath.Join(t.TempDir(), "bad.yaml")
	body := "version: v1alpha1\nautoscale:\n  hosts: [{name: h, uri: 'qemu:///system'}]\n  groups:\n" +
		"    - {name: a, min: 3, max: 2, template: {diskSize: 1GiB}}\n    - {name: b, max: 1, template: {memory: 1, diskSize: 1GiB}}\n"
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := execute(t, "--validate", "-c", p)
	if err == nil {
		t.Fatal("--validate accepted a broken config")
	}
	for _, want := range []string{"autoscale.groups[0].max: must be >= min (3)", "autoscale.groups[1].template.memory"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q: %v", want, err)
		}
	}
}

func TestBadArgumentsAreNamed(t *testing.T) {
	demo := filepath.Join("..", "..", "deploy", "examples", "test-driver.yaml")
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"--log-level", "loud", "--validate", "-c", demo}, "--log-level"},
		{[]string{"scale", "demo", "three", "-c", demo}, "argument N"},
		{[]string{"status", "-o", "yaml", "-c", demo}, "-o/--output"},
		{[]string{"--log-file", "x", "--log-stdout", "--validate", "-c", demo}, "log-stdout"},
		{[]string{"--validate", "-c", "/nonexistent.yaml"}, "/nonexistent.yaml"},
		{[]string{"refresh", "demo", "--checkpoints", "50,20", "-c", demo}, "--checkpoints must be ascending"},
		{[]string{"refresh", "demo", "--checkpoints", "20,half", "-c", demo}, "--checkpoints must be a percentage"},
		{[]string{"refresh", "demo", "--checkpoint-delay", "soon", "-c", demo}, "--checkpoint-delay must be a duration"},
		{[]string{"refresh", "demo", "--checkpoint-delay", "72h", "-c", demo}, "--checkpoint-delay must be from 0s to 48h"},
		{[]string{"refresh", "demo", "--continue", "--batch", "2", "-c", demo}, "--continue takes no other flag"},
		{[]string{"refresh", "demo", "--continue", "--cancel", "-c", demo}, "one or the other"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			_, err := execute(t, tt.args...)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %v, want it to name %q", err, tt.want)
			}
		})
	}
}

func TestStatusShowsChecksAndDecisions(t *testing.T) {
	at := time.Date(2026, 11, 27, 12, 4, 10, 0, time.UTC)
	st := workflows.GroupStatus{
		Group: "web", Desired: 3, Running: 3, Min: 1, Max: 10, Mode: "on",
		Checks: []policy.CheckResult{
			{Name: "cpu", Value: 0.42, Recommendation: 2},
			{Name: "queue", Error: "query returned no data", OnError: "hold"},
		},
		Decision: &policy.Decision{At: at, From: 3, To: 3, Action: policy.ActionHeld, Reason: "held: check queue failed: query returned no data"},
		Decisions: []policy.Decision{
			{At: at.Add(-time.Minute), From: 1, To: 3, Action: policy.ActionScaleOut, Reason: "scale out 1 -> 3 (recommended 3)"},
		},
	}
	var out bytes.Buffer
	printStatus(&out, []workflows.GroupStatus{st}, true)
	for _, want := range []string{"cpu", "0.42", "queue", "query returned no data (onError hold)",
		"decision (12:04:10): held: check queue failed", "scale-out", "1 -> 3"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("status lacks %q:\n%s", want, out.String())
		}
	}
}

// TestGroupNamesCompleteFromTheConfig: `premiscale __complete` (what the
// shell completion scripts call) offers the config's group names for the
// commands that take one.
func TestGroupNamesCompleteFromTheConfig(t *testing.T) {
	cfg := filepath.Join("..", "..", "deploy", "examples", "test-driver.yaml")
	for _, cmd := range []string{"scale", "status", "pause", "resume", "protect"} {
		out, err := execute(t, "__complete", "-c", cfg, cmd, "")
		if err != nil {
			t.Fatal(err)
		}
		if lines := strings.Split(out, "\n"); lines[0] != "demo" {
			t.Errorf("%s: completions %q, want demo first", cmd, out)
		}
	}
}

func TestProgressLineNamesTheStepOfEachVMInFlight(t *testing.T) {
	st := workflows.GroupStatus{Group: "web", Desired: 3, Running: 1, Provisioning: 2, Members: []workflows.Member{
		{Name: "web-1", State: workflows.MemberRunning}, {Name: "web-2", State: workflows.MemberProvisioning}, {Name: "web-3", State: workflows.MemberProvisioning},
	}}
	got := progressLine(st, map[string]string{"web-2": "boot", "web-3": "clone"})
	if want := "group web: 1/3 running, 2 provisioning, 0 decommissioning (web-2: boot, web-3: clone)"; got != want {
		t.Errorf("progress line %q, want %q", got, want)
	}
	var b bytes.Buffer
	p := newProgress(&b) // not a terminal: one plain line per change
	p.show("a")
	p.show("a")
	p.show("b")
	p.done()
	if b.String() != "a\nb\n" {
		t.Errorf("progress off a terminal wrote %q", b.String())
	}
}

func TestStatusShowsTheWarmPool(t *testing.T) {
	since := time.Now().Add(-90 * time.Second)
	st := workflows.GroupStatus{
		Group: "web", Desired: 1, Running: 1, Max: 5, Warm: 1, Warming: 1, WarmTarget: 2, WarmState: "hibernated",
		Members: []workflows.Member{
			{Name: "web-1", State: workflows.MemberRunning},
			{Name: "web-2", State: workflows.MemberWarm, WarmState: "hibernated", WarmSince: since},
			{Name: "web-3", State: workflows.MemberWarming, WarmState: "hibernated"},
		},
	}
	var out bytes.Buffer
	printStatus(&out, []workflows.GroupStatus{st, {Group: "plain", Desired: 1, Running: 1}}, true)
	for _, want := range []string{"WARM", "1/2 (+1)", "warm (hibernated, 1m3", "warming (hibernated)", "warm pool: 1 of 2 hibernated, 1 warming"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("status lacks %q:\n%s", want, out.String())
		}
	}
	if line := strings.Split(out.String(), "\n")[2]; !strings.HasSuffix(strings.TrimSpace(line), "-") {
		t.Errorf("a group without a pool shows %q, want a WARM of -", line)
	}
}

func TestRefreshLineShowsTheCheckpointWait(t *testing.T) {
	until := time.Date(2026, 12, 2, 12, 0, 0, 0, time.UTC)
	r := &workflows.Refresh{ID: 3, Status: workflows.RefreshRunning, Replaced: 2, Total: 10, Target: "abcdef123456",
		MinHealthyPercent: 50, Checkpoints: []int{20, 100}, CheckpointDelay: 30 * time.Minute, WaitingUntil: until}
	got := refreshLine(workflows.GroupStatus{Refresh: r})
	for _, want := range []string{"refresh 3 running: 2 of 10 replaced", "checkpoints 20% 100% (30m0s each)",
		"waiting at a checkpoint until " + until.Local().Format(time.RFC3339), "--continue"} {
		if !strings.Contains(got, want) {
			t.Errorf("refresh line lacks %q:\n%s", want, got)
		}
	}
	r.Status, r.WaitingUntil, r.Stopped, r.Checkpoints = workflows.RefreshDone, time.Time{}, true, []int{50}
	if got := refreshLine(workflows.GroupStatus{Refresh: r}); strings.Contains(got, "waiting") || !strings.Contains(got, "stopped at its last checkpoint") {
		t.Errorf("a canary that stopped: %s", got)
	}
}
