package test

import (
	"bytes"
	"context"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/digitalocean/go-libvirt"
	"go.temporal.io/sdk/client"

	"github.com/premiscale/premiscale/config"
	"github.com/premiscale/premiscale/starter"
	"github.com/premiscale/premiscale/workflows"
)

// benchTick is the tiny guest's console tick in the warm-pool benchmark:
// the resolution with which a restored or resumed guest is seen to run.
const benchTick = "0.05"

// consoleDir is where the local libvirtd's virtlogd writes the consoles.
const consoleDir = "/var/log/libvirt/qemu"

// BenchmarkWarmPool measures, on real tiny QEMU/TCG guests on the local
// libvirtd, the time from the decision (the set-desired Update to 0 -> N)
// until every one of the N VMs has printed a console line after it: a
// cold group (clone, define, boot; its first line is the guest's
// PREMISCALE-GUEST-READY) against groups whose warm pool of N holds
// hibernated or paused guests (restored or resumed; their first line is
// the next tick, every 50 ms). Each mode runs on its own in-process
// controller, one after the other, in the same iteration. It reports the
// three times, the ratios cold/warm, and the memory and disk the pool
// holds while warm (paused: the guests' memory; hibernated: the managed
// save images; both: the overlay disks). BENCH_TRACE=1 prints the console
// lines as they arrive and each activation's history with its times.
func BenchmarkWarmPool(b *testing.B) {
	for _, n := range []int{1, 3, 10} {
		b.Run(fmt.Sprintf("N=%d", n), func(b *testing.B) {
			var cold, hib, paused warmSample
			// BENCH_WARM_MODES=hibernated,... measures only those (to look
			// into one; the ratios then are meaningless).
			only := os.Getenv("BENCH_WARM_MODES")
			measure := func(mode string, state string, i int) warmSample {
				if only != "" && !slices.Contains(strings.Split(only, ","), mode) {
					return warmSample{took: 1}
				}
				return measureWarm(b, n, state, i)
			}
			for i := range b.N {
				cold = measure("cold", "", i)
				hib = measure("hibernated", config.WarmHibernated, i)
				paused = measure("paused", config.WarmPaused, i)
			}
			b.ReportMetric(ms(cold.took), "cold-ms")
			b.ReportMetric(ms(hib.took), "hibernated-ms")
			b.ReportMetric(ms(paused.took), "paused-ms")
			b.ReportMetric(float64(cold.took)/float64(hib.took), "cold/hibernated")
			b.ReportMetric(float64(cold.took)/float64(paused.took), "cold/paused")
			if hib.floor > 0 {
				// What libvirt alone takes for the same restores, and the
				// best cold/hibernated any controller could reach here.
				b.ReportMetric(ms(hib.floor), "libvirt-restore-ms")
				b.ReportMetric(float64(hib.took)/float64(hib.floor), "hibernated/libvirt")
				b.ReportMetric(float64(cold.took)/float64(hib.floor), "cold/libvirt-restore")
			}
			b.ReportMetric(float64(hib.memory>>20), "hibernated-pool-mem-MiB")
			b.ReportMetric(float64(hib.disk>>20), "hibernated-pool-disk-MiB")
			b.ReportMetric(float64(paused.memory>>20), "paused-pool-mem-MiB")
			b.ReportMetric(float64(paused.disk>>20), "paused-pool-disk-MiB")
		})
	}
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

type warmSample struct {
	took         time.Duration
	memory, disk uint64
	// floor: hibernated only, libvirt alone restoring the same VMs.
	floor time.Duration
}

// upWatch reads the serial consoles of VMs (firstConsoleLine) and tells
// when each is up: a warm guest (it ran before) once it ticks past the
// last tick in its log, a cold one at its first line.
type upWatch struct {
	vms      []string
	results  chan seenLine
	attached chan struct{}
	stop     func(cause error)
}

type seenLine struct {
	vm  string
	at  time.Time
	err error
}

func watchUp(ctx context.Context, vms []string, warm bool) *upWatch {
	tctx, timeout := context.WithTimeout(ctx, 15*time.Minute)
	wctx, cancel := context.WithCancelCause(tctx)
	stop := func(cause error) { cancel(cause); timeout() }
	u := &upWatch{vms: vms, results: make(chan seenLine, len(vms)), attached: make(chan struct{}, len(vms)), stop: stop}
	kick := map[string]chan libvirt.Domain{}
	for _, vm := range vms {
		ok := func(line string) bool { return true }
		if warm {
			last := lastTick(consoleDir, vm)
			ok = func(line string) bool {
				m := tickRE.FindStringSubmatch(line)
				if m == nil {
					return false
				}
				v, _ := strconv.Atoi(m[1])
				return v > last
			}
		}
		kick[vm] = make(chan libvirt.Domain, 1)
		go func() {
			at, err := firstConsoleLine(wctx, vm, kick[vm], ok, u.attached)
			u.results <- seenLine{vm, at, err}
		}()
	}
	go pollActive(wctx, stop, kick)
	return u
}

// pollActive tells each VM's watcher when to try to attach its console:
// once its domain is listed as active (one listing of the host's active
// domains every 25 ms serves them all), when it is started or resumed,
// and once a second while it is active. A restored domain's pty
// is assigned only when the restore is done, just before libvirt sends
// "started" and resumes the guest: the event lets the watcher attach then,
// instead of asking libvirtd every few milliseconds throughout the
// restore. (Asking, for ten VMs, kept libvirtd busy with a thousand and
// more calls a second during the very restores timed here.)
func pollActive(ctx context.Context, fail func(error), kick map[string]chan libvirt.Domain) {
	u, _ := url.Parse(qemuURI)
	lv, err := libvirt.ConnectToURI(u)
	if err != nil {
		fail(fmt.Errorf("watching for active domains: %w", err))
		return
	}
	// As in activities.Watcher: the subscription ends only after the
	// connection is closed (libvirtd 9.0 can crash on a deregistration
	// racing the close).
	sctx, cancel := context.WithCancel(context.Background())
	defer func() { go func() { _ = lv.Disconnect(); cancel() }() }()
	events, err := lv.LifecycleEvents(sctx)
	if err != nil {
		fail(fmt.Errorf("subscribing to lifecycle events: %w", err))
		return
	}
	send := func(d libvirt.Domain) {
		if ch, ok := kick[d.Name]; ok {
			select {
			case ch <- d:
			default: // a kick is already pending
			}
		}
	}
	tick := time.NewTicker(25 * time.Millisecond)
	defer tick.Stop()
	seen := map[string]bool{}
	for n := 0; ; n++ {
		doms, _, err := lv.ConnectListAllDomains(1, libvirt.ConnectListDomainsActive)
		if err != nil {
			fail(fmt.Errorf("listing active domains: %w", err))
			return
		}
		for _, d := range doms {
			// Newly active; then once a second, should an event be missed.
			if !seen[d.Name] || n%40 == 0 {
				seen[d.Name] = true
				send(d)
			}
		}
	wait:
		for {
			select {
			case <-ctx.Done():
				return
			case ev, ok := <-events:
				if !ok {
					fail(fmt.Errorf("lifecycle events ended"))
					return
				}
				// Started or resumed: it runs, or is about to (a domain
				// only defined has no console to attach).
				if e := libvirt.DomainEventType(ev.Event); e == libvirt.DomainEventStarted || e == libvirt.DomainEventResumed {
					send(libvirt.Domain{Name: ev.Dom.Name, UUID: ev.Dom.UUID, ID: ev.Dom.ID})
				}
			case <-tick.C:
				break wait
			}
		}
	}
}

// waitAttached returns once every console is attached (the domains must
// be active).
func (u *upWatch) waitAttached() {
	for range u.vms {
		<-u.attached
	}
}

// wait returns how long after start each VM was up, and the longest.
func (u *upWatch) wait(start time.Time) (map[string]time.Duration, time.Duration, error) {
	defer u.stop(nil)
	first := map[string]time.Duration{}
	var longest time.Duration
	for range u.vms {
		r := <-u.results
		if r.err != nil {
			return first, 0, fmt.Errorf("console of %s: %v (up so far: %v)", r.vm, r.err, first)
		}
		first[r.vm] = r.at.Sub(start)
		longest = max(longest, first[r.vm])
	}
	return first, longest, nil
}

// restoreFloor is what libvirt alone takes for the restores the
// hibernated mode makes, on the same guests in the same run: with the
// group paused (so that it leaves its members alone), its running VMs are
// managed-saved, then all started at once, each from its own connection
// (as that many virsh processes would), and timed like the warm mode until
// each ticks; then the group resumes.
func restoreFloor(b *testing.B, ctx context.Context, s *starter.Starter, group string, vms []string) time.Duration {
	b.Helper()
	if err := s.Pause(ctx, group); err != nil {
		b.Fatal(err)
	}
	conns := make([]*libvirt.Libvirt, len(vms))
	doms := make([]libvirt.Domain, len(vms))
	for i, vm := range vms {
		conns[i] = connectURI(b, qemuURI)
		d, err := conns[i].DomainLookupByName(vm)
		if err != nil {
			b.Fatal(err)
		}
		doms[i] = d
	}
	defer func() {
		for _, lv := range conns {
			_ = lv.Disconnect()
		}
	}()
	all := func(call func(lv *libvirt.Libvirt, d libvirt.Domain) error) chan error {
		errs := make(chan error, len(vms))
		for i := range vms {
			go func() { errs <- call(conns[i], doms[i]) }()
		}
		return errs
	}
	saved := all(func(lv *libvirt.Libvirt, d libvirt.Domain) error { return lv.DomainManagedSave(d, 0) })
	for range vms {
		if err := <-saved; err != nil {
			b.Fatalf("managed save: %v", err)
		}
	}
	settle()
	up := watchUp(ctx, vms, true)
	start := time.Now()
	started := all(func(lv *libvirt.Libvirt, d libvirt.Domain) error { return lv.DomainCreate(d) })
	_, took, err := up.wait(start)
	if err != nil {
		b.Fatalf("%s: libvirt alone: %v", group, err)
	}
	for range vms {
		if err := <-started; err != nil {
			b.Fatalf("restore: %v", err)
		}
	}
	if os.Getenv("BENCH_TRACE") == "1" {
		fmt.Fprintf(os.Stderr, "%s: libvirt alone: restores returned after %s\n", group, time.Since(start))
	}
	if err := s.Resume(ctx, group); err != nil {
		b.Fatal(err)
	}
	return took
}

// settle writes back what is dirty and lets the host rest 15 s, as before
// any decision the benchmark times.
func settle() {
	syscall.Sync()
	time.Sleep(15 * time.Second)
}

// measureWarm runs one group of n tiny guests with a warm pool of n in
// state (none if empty), waits for the pool to fill, then times 0 -> n,
// and removes the group (deleting its VMs) before it returns.
func measureWarm(b *testing.B, n int, state string, iter int) warmSample {
	b.Helper()
	dir := os.Getenv("TINY_GUEST_DIR")
	if dir == "" {
		b.Skip("TINY_GUEST_DIR not set: run through make bench, which builds the tiny guest")
	}
	lv := requireLibvirt(b, qemuURI)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	mode := "cold"
	if state != "" {
		mode = state
	}
	group := fmt.Sprintf("bw%s%d-%d", mode[:1], n, iter)
	purgeGroup(b, lv, guestPool, group)
	g := config.Group{
		Name: group, Max: n,
		Scaling: config.Scaling{EvaluationInterval: time.Second},
		Template: config.Template{
			DiskSize: "16MiB", VCPUs: 1, Memory: "256MiB", DomainType: "qemu",
			Kernel: filepath.Join(dir, "vmlinuz"), Initrd: filepath.Join(dir, "initrd.img"),
			Cmdline: "console=ttyS0 quiet panic=-1 tick=" + benchTick, ConsoleLog: true,
			Network: config.Network{Type: config.NetworkNone}, ShutdownTimeout: new(time.Duration),
		},
	}
	if state != "" {
		g.WarmPool = &config.WarmPool{Size: &n, State: state, Ready: config.WarmReady{ConsoleLine: "PREMISCALE-GUEST-READY", Timeout: 10 * time.Minute}}
	}
	cfg := &config.Config{Version: config.Version, Autoscale: config.Autoscale{
		// Room for all of N=10's restores (or boots) at once: with the
		// default 8 the last two waited for the first eight.
		Hosts:  []config.Host{{Name: "local", URI: qemuURI, Pool: guestPool, CPUOvercommit: 16, MaxConcurrentCalls: 16}},
		Groups: []config.Group{g},
	}}
	s, c := startInProcessConfig(b, ctx, cfg, nil)
	defer removeAndPurge(b, ctx, c, lv, group)

	var out warmSample
	var warm []string
	if state != "" {
		st := waitWarmStatus(b, ctx, s, group, 15*time.Minute, func(st workflows.GroupStatus) bool { return st.Warm == n && st.Warming == 0 })
		warm = membersIn(st, workflows.MemberWarm)
		out.memory, out.disk = poolHolds(b, lv, warm, state)
	}
	// Each VM's serial console is read from the moment its domain is
	// active (a cold VM's once it is defined and started; a hibernated
	// one's once its restore starts; a paused one's before the decision):
	// QEMU's pty backend holds a guest's output for up to a second while
	// nobody has the console open, which would hide when the guest runs.
	// A warm guest has run before: it counts as up once it ticks past the
	// last tick it printed; a cold one, at its first line.
	var vms []string
	if state == "" {
		for j := 1; j <= n; j++ {
			vms = append(vms, fmt.Sprintf("%s-%d", group, j))
		}
	} else {
		vms = warm
	}
	// A pool waits long after it filled: nothing of its filling (the
	// last managed saves' writeback) is still under way at a decision.
	// Every mode settles alike.
	settle()
	up := watchUp(ctx, vms, state != "")
	if state == config.WarmPaused {
		up.waitAttached() // paused domains are active: attached before the decision
	}
	start := time.Now()
	if os.Getenv("BENCH_TRACE") == "1" {
		fmt.Fprintf(os.Stderr, "decision %s\n", start.Format("15:04:05.000"))
	}
	if _, err := s.Scale(ctx, group, n); err != nil {
		b.Fatal(err)
	}
	first, took, err := up.wait(start)
	if err != nil {
		b.Fatalf("%s: %v", group, err)
	}
	out.took = took
	st, err := s.Status(ctx, group)
	if err != nil {
		b.Fatal(err)
	}
	if state != "" {
		if got := membersIn(st, workflows.MemberRunning); !slices.Equal(got, warm) && st.Provisioning == 0 {
			b.Fatalf("%s: running %v, want the warm %v", group, got, warm)
		}
	}
	b.Logf("%s: %d VMs up in %s (each: %v)", group, n, out.took.Round(time.Millisecond), first)
	if state == config.WarmHibernated {
		// The pool refills (N cold boots) once the group is whole: libvirt
		// alone is timed on a quiet host, after that.
		waitWarmStatus(b, ctx, s, group, 15*time.Minute, func(st workflows.GroupStatus) bool { return st.Warm == n && st.Warming == 0 })
		out.floor = restoreFloor(b, ctx, s, group, warm)
		b.Logf("%s: libvirt alone restores the same %d VMs in %s", group, n, out.floor.Round(time.Millisecond))
	}
	if len(warm) > 0 && os.Getenv("BENCH_TRACE") == "1" {
		fmt.Fprintf(os.Stderr, "%s: up after %v; activation:\n", group, first)
		it := c.GetWorkflowHistory(ctx, workflows.ActivateWorkflowID(group, warm[0]), "", false, 0)
		for it.HasNext() {
			ev, err := it.Next()
			if err != nil {
				break
			}
			fmt.Fprintf(os.Stderr, "%s  +%s %s\n", group, ev.GetEventTime().AsTime().Sub(start).Round(time.Millisecond), ev.GetEventType())
		}
	}
	return out
}

// firstConsoleLine waits until vm's domain is active (pollActive kicks
// it), attaches to its serial console (signalling attached), and returns
// when the first complete line for which ok holds arrived. While the
// domain has no pty yet it tries again at the next kick.
func firstConsoleLine(ctx context.Context, vm string, kick <-chan libvirt.Domain, ok func(string) bool, attached chan<- struct{}) (time.Time, error) {
	u, _ := url.Parse(qemuURI)
	lv, err := libvirt.ConnectToURI(u)
	if err != nil {
		return time.Time{}, err
	}
	// A console stream holds the connection; Disconnect may wait on it.
	defer func() { go func() { _ = lv.Disconnect() }() }()
	var dom libvirt.Domain
	select {
	case dom = <-kick:
	case <-ctx.Done():
		return time.Time{}, fmt.Errorf("domain never active: %w", context.Cause(ctx))
	}
	lw := &lineWatch{ok: ok, found: make(chan time.Time, 1)}
	signalled := false
	for {
		done := make(chan error, 1)
		go func() { done <- lv.DomainOpenConsole(dom, nil, lw, uint32(libvirt.DomainConsoleForce)) }()
		if !signalled {
			attached <- struct{}{}
			signalled = true
		}
		select {
		case at := <-lw.found:
			return at, nil
		case err := <-done:
			// A domain being started or restored has no pty until that
			// is done; a stream can also end without error (a restore
			// replaces the QEMU process, or another session forced the
			// console): attach again at the next kick while the domain
			// is active.
			if err != nil && !strings.Contains(err.Error(), "not yet assigned") {
				return time.Time{}, fmt.Errorf("console ended: %v", err)
			}
			if active, aerr := lv.DomainIsActive(dom); aerr != nil || active != 1 {
				return time.Time{}, fmt.Errorf("console ended and the domain is not active (%v)", aerr)
			}
			select {
			case <-kick:
			case <-ctx.Done():
				return time.Time{}, context.Cause(ctx)
			}
		case <-ctx.Done():
			return time.Time{}, context.Cause(ctx)
		}
	}
}

// lineWatch is an io.Writer that sends the time of the first complete line
// for which ok holds.
type lineWatch struct {
	ok    func(string) bool
	buf   []byte
	found chan time.Time
	done  bool
}

func (w *lineWatch) Write(p []byte) (int, error) {
	now := time.Now()
	w.buf = append(w.buf, p...)
	for !w.done {
		i := bytes.IndexByte(w.buf, '\n')
		if i < 0 {
			break
		}
		line := string(w.buf[:i])
		w.buf = w.buf[i+1:]
		if os.Getenv("BENCH_TRACE") == "1" {
			fmt.Fprintf(os.Stderr, "console %s %q\n", now.Format("15:04:05.000"), line)
		}
		if w.ok(line) {
			w.done = true
			w.found <- now
		}
	}
	return len(p), nil
}

// poolHolds is the memory and disk the warm VMs hold on the host: the
// memory of paused guests, the managed save images of hibernated ones,
// and their overlay disks.
func poolHolds(b *testing.B, lv *libvirt.Libvirt, warm []string, state string) (memory, disk uint64) {
	p, err := lv.StoragePoolLookupByName(guestPool)
	if err != nil {
		b.Fatal(err)
	}
	for _, vm := range warm {
		if vol, err := lv.StorageVolLookupByName(p, "premiscale-"+vm+".qcow2"); err == nil {
			if _, _, alloc, err := lv.StorageVolGetInfo(vol); err == nil {
				disk += alloc
			}
		}
		switch state {
		case config.WarmPaused:
			d, err := lv.DomainLookupByName(vm)
			if err != nil {
				b.Fatal(err)
			}
			_, _, mem, _, _, err := lv.DomainGetInfo(d)
			if err != nil {
				b.Fatal(err)
			}
			memory += mem << 10
		case config.WarmHibernated:
			if fi, err := os.Stat("/var/lib/libvirt/qemu/save/" + vm + ".save"); err == nil {
				disk += uint64(fi.Size())
			}
		}
	}
	return memory, disk
}

// waitWarmStatus polls the group's status until ok or timeout.
func waitWarmStatus(b *testing.B, ctx context.Context, s *starter.Starter, group string, timeout time.Duration, ok func(workflows.GroupStatus) bool) workflows.GroupStatus {
	b.Helper()
	deadline := time.Now().Add(timeout)
	for {
		st, err := s.Status(ctx, group)
		if err == nil && ok(st) {
			return st
		}
		if time.Now().After(deadline) {
			b.Fatalf("%s: not there within %s: %+v (%v)", group, timeout, st, err)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// removeAndPurge removes the group through its workflow (every VM, warm
// ones too, decommissioned; the workflow ends), then clears whatever is
// left straight through libvirt.
func removeAndPurge(b *testing.B, ctx context.Context, c client.Client, lv *libvirt.Libvirt, group string) {
	id := workflows.GroupWorkflowID(group)
	if err := c.SignalWorkflow(ctx, id, "", workflows.SignalRemove, workflows.RemoveRequest{DeleteVMs: true}); err == nil {
		wctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
		if err := c.GetWorkflow(wctx, id, "").Get(wctx, nil); err != nil && !strings.Contains(err.Error(), "canceled") {
			b.Logf("%s: removal: %v", group, err)
		}
		cancel()
	}
	purgeGroup(b, lv, guestPool, group)
}
