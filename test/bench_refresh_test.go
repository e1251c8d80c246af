package test

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/digitalocean/go-libvirt"

	"github.com/premiscale/premiscale/workflows"
)

// BenchmarkRefresh measures a rolling refresh of 6 real tiny QEMU/TCG
// guests (the controller binary, one hosts.sh libvirtd) with min-healthy
// 66%: the group is scaled 0 -> 6 cold first (the baseline, timed until
// status shows 6 running), then its template changes (the guests' kernel
// command line) and `premiscale refresh --min-healthy 66% --wait` replaces
// all six. Meanwhile the group's status is sampled (`premiscale status -o
// json`, back to back) and the running domains on the host every 20 ms.
// It reports the refresh's time, its ratio to the cold scale-out, and the
// fewest running members (status) and domains (libvirt) seen while it ran:
// the goal is never below 4 (ceil(66% of 6)).
func BenchmarkRefresh(b *testing.B) {
	dir := os.Getenv("TINY_GUEST_DIR")
	if dir == "" {
		b.Skip("TINY_GUEST_DIR not set: run through make bench, which builds the tiny guest")
	}
	hosts := requireHosts(b, 1)
	lv := connectURI(b, hosts[0].qemuURI())
	conns := map[string]*libvirt.Libvirt{hosts[0].name: lv}
	for i := range b.N {
		group := fmt.Sprintf("brf%d", i)
		purgeGroup(b, lv, guestPool, group)
		port := freePort(b)
		groupYAML := func(cmdline string) string {
			return fmt.Sprintf(`    - name: %s
      max: 6
      scaling: {evaluationInterval: 1s}
      template: {diskSize: 16MiB, vcpus: 1, memory: 256MiB, domainType: qemu, shutdownTimeout: 0s,
                 kernel: %s, initrd: %s, cmdline: "%s",
                 consoleLog: true, network: {type: none}}
`, group, filepath.Join(dir, "vmlinuz"), filepath.Join(dir, "initrd.img"), cmdline)
		}
		cfg, logPath := multiHostConfig(b, port, hosts, libvirtHost.qemuURI, guestPool, ", cpuOvercommit: 8, memoryOvercommit: 4", groupYAML("console=ttyS0 quiet panic=-1"))
		c := &controller{t: b, config: cfg, log: logPath}
		c.start()
		start := time.Now()
		c.mustCLI("scale", group, "6", "--wait", "--timeout", "15m")
		cold := time.Since(start)

		body, err := os.ReadFile(cfg)
		if err != nil {
			b.Fatal(err)
		}
		body = []byte(strings.Replace(string(body), `cmdline: "console=ttyS0 quiet panic=-1"`, `cmdline: "console=ttyS0 quiet panic=-1 tick=2"`, 1))
		if err := os.WriteFile(cfg, body, 0o600); err != nil {
			b.Fatal(err)
		}
		c.kill(syscall.SIGTERM)
		c.start()
		for deadline := time.Now().Add(time.Minute); c.status(group).Outdated != 6; time.Sleep(200 * time.Millisecond) {
			if time.Now().After(deadline) {
				b.Fatalf("after the template change: %+v, want 6 running VMs outdated", c.status(group))
			}
		}

		libvirtSampler := sampleRunningDomains(b, conns, group)
		var mu sync.Mutex
		fewestStatus, statusSamples := 1<<30, 0
		stop := make(chan struct{})
		sampled := make(chan struct{})
		go func() {
			defer close(sampled)
			for {
				select {
				case <-stop:
					return
				default:
				}
				time.Sleep(250 * time.Millisecond)
				out, _, err := c.cli("status", group, "-o", "json")
				var st workflows.GroupStatus
				if err != nil || json.Unmarshal([]byte(out), &st) != nil {
					continue
				}
				if r := st.Refresh; r != nil && r.Status == workflows.RefreshRunning {
					mu.Lock()
					fewestStatus, statusSamples = min(fewestStatus, st.Running), statusSamples+1
					mu.Unlock()
				}
			}
		}()
		start = time.Now()
		out := c.mustCLI("refresh", group, "--min-healthy", "66%", "--wait", "--timeout", "20m")
		took := time.Since(start)
		close(stop)
		<-sampled
		fewestLibvirt, libvirtSamples := libvirtSampler.result()
		st := c.status(group)
		if r := st.Refresh; r == nil || r.Status != workflows.RefreshDone || r.Replaced != 6 || st.Outdated != 0 || st.Running != 6 {
			b.Fatalf("refresh not done with 6 replaced: %+v\n%s", st, out)
		}
		b.Logf("cold 0 -> 6 in %s; refresh of 6 in %s; fewest running: %d in %d status samples, %d in %d libvirt samples",
			cold.Round(time.Millisecond), took.Round(time.Millisecond), fewestStatus, statusSamples, fewestLibvirt, libvirtSamples)
		b.ReportMetric(float64(took.Milliseconds()), "refresh-ms")
		b.ReportMetric(float64(cold.Milliseconds()), "cold-scale-out-ms")
		b.ReportMetric(float64(took)/float64(cold), "refresh/scale-out")
		b.ReportMetric(float64(fewestStatus), "fewest-running-status")
		b.ReportMetric(float64(statusSamples), "status-samples")
		b.ReportMetric(float64(fewestLibvirt), "fewest-running-libvirt")
		b.ReportMetric(float64(libvirtSamples), "libvirt-samples")
		c.mustCLI("scale", group, "0", "--wait", "--timeout", "5m")
		c.kill(syscall.SIGKILL)
		purgeGroup(b, lv, guestPool, group)
	}
}
