package activities

import (
	"bytes"
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/digitalocean/go-libvirt"
	"go.temporal.io/sdk/activity"

	"github.com/premiscale/premiscale/config"
	"github.com/premiscale/premiscale/internal/hostconn"
)

// ParkDomainInput asks for a booted VM to wait in a warm pool.
type ParkDomainInput struct {
	Domain DomainRef `json:"domain"`
	// State is config.WarmHibernated, WarmPaused or WarmStopped.
	State string `json:"state"`
	// GracePeriod bounds the ACPI shutdown of WarmStopped before the
	// domain is destroyed.
	GracePeriod time.Duration `json:"gracePeriod,omitempty"`
}

// ParkDomainOutput is the domain's state once parked.
type ParkDomainOutput struct {
	State string `json:"state"`
}

// ParkDomain puts a running VM into its warm state: a managed save
// (hibernated: memory to disk, domain shut off; the next start restores it
// running), a suspend (paused), or a shutdown (stopped). Idempotent: a
// domain already so is left as it is, so a retry after a crash of the
// worker mid-save finds the save done or does it again. Fails without
// retry if the domain is missing (ErrTypeMissing), not PremiScale's
// (ErrTypeNotOwned), or shut off without a save image when hibernation was
// asked (ErrTypeBootFailed: the guest stopped on its own).
func (l *Libvirt) ParkDomain(ctx context.Context, in ParkDomainInput) (ParkDomainOutput, error) {
	if in.State == config.WarmStopped {
		if err := l.StopDomain(ctx, StopDomainInput{Domain: in.Domain, GracePeriod: in.GracePeriod}); err != nil {
			return ParkDomainOutput{}, err
		}
		return ParkDomainOutput{State: "shut-off"}, nil
	}
	defer keepAlive(ctx)()
	ref := in.Domain
	lv, release, err := l.conn(ctx, &ref.Host)
	if err != nil {
		return ParkDomainOutput{}, err
	}
	defer release()
	dom, found, err := l.owned(lv, ref)
	if err != nil {
		return ParkDomainOutput{}, err
	}
	if !found {
		return ParkDomainOutput{}, nonRetryable(ErrTypeMissing, "host %s: domain %s is not defined", ref.Host.Name, ref.VM)
	}
	raw, _, err := lv.DomainGetState(dom, 0)
	if err != nil {
		return ParkDomainOutput{}, fmt.Errorf("domain %s state: %w", ref.VM, err)
	}
	state := libvirt.DomainState(raw)
	switch in.State {
	case config.WarmHibernated:
		if state == libvirt.DomainShutoff {
			saved, err := lv.DomainHasManagedSaveImage(dom, 0)
			if err != nil {
				return ParkDomainOutput{}, fmt.Errorf("domain %s save image: %w", ref.VM, err)
			}
			if saved == 1 {
				return ParkDomainOutput{State: "shut-off"}, nil
			}
			return ParkDomainOutput{}, nonRetryable(ErrTypeBootFailed, "host %s: domain %s shut off before it could be hibernated", ref.Host.Name, ref.VM)
		}
		// Restored running even if it was saved paused.
		if err := lv.DomainManagedSave(dom, uint32(libvirt.DomainSaveRunning)); err != nil {
			return ParkDomainOutput{}, fmt.Errorf("managed save of %s on %s: %w", ref.VM, ref.Host.Name, err)
		}
		return ParkDomainOutput{State: "shut-off"}, nil
	case config.WarmPaused:
		switch state {
		case libvirt.DomainPaused:
			return ParkDomainOutput{State: "paused"}, nil
		case libvirt.DomainShutoff, libvirt.DomainCrashed:
			return ParkDomainOutput{}, nonRetryable(ErrTypeBootFailed, "host %s: domain %s stopped before it could be paused", ref.Host.Name, ref.VM)
		}
		if err := lv.DomainSuspend(dom); err != nil {
			return ParkDomainOutput{}, fmt.Errorf("suspend %s on %s: %w", ref.VM, ref.Host.Name, err)
		}
		return ParkDomainOutput{State: "paused"}, nil
	}
	return ParkDomainOutput{}, nonRetryable(ErrTypeInvalidConfig, "warm state %q is not one of %s, %s, %s", in.State, config.WarmHibernated, config.WarmPaused, config.WarmStopped)
}

// WaitConsoleInput asks for a line of a VM's serial console.
type WaitConsoleInput struct {
	Domain DomainRef `json:"domain"`
	// Line is the text a console line must contain.
	Line string `json:"line"`
}

// WaitConsoleLine blocks until the VM's serial console prints Line (a
// warm VM's readiness signal), heartbeating while it waits; the caller's
// StartToClose timeout bounds it. It reads the console through a
// connection of its own (a stream holds its connection), taking the
// console over from any other session. A domain that stops meanwhile fails
// without retry (ErrTypeBootFailed).
//
// Output printed while nobody is attached is not seen: libvirt keeps no
// console history. So the line, once seen, is marked on the domain
// (metadata of consoleReadyURI), and an attempt that finds the mark
// succeeds at once; a retry that finds none fails without retry
// (ErrTypeReadyUnseen): between the attempts the console went unwatched,
// its line may have gone by, and the VM is removed and made again at once
// instead of being waited for in vain until the readiness timeout.
func (l *Libvirt) WaitConsoleLine(ctx context.Context, in WaitConsoleInput) error {
	ref := in.Domain
	h, err := l.Catalog.Host(ref.Host)
	if err != nil {
		return err
	}
	ref.Host = h
	lv, raw, err := hostconn.Dial(h.URI, hostconn.DefaultDialTimeout)
	if err != nil {
		return fmt.Errorf("host %s: %w", h.Name, err)
	}
	defer func() {
		if raw != nil {
			raw.Close()
		}
		go func() { _ = lv.Disconnect() }()
	}()
	dom, found, err := l.owned(lv, ref)
	if err != nil {
		return err
	}
	if !found {
		return nonRetryable(ErrTypeMissing, "host %s: domain %s is not defined", h.Name, ref.VM)
	}
	if consoleReady(lv, dom) {
		return nil
	}
	if activity.IsActivity(ctx) {
		if attempt := activity.GetInfo(ctx).Attempt; attempt > 1 {
			return nonRetryable(ErrTypeReadyUnseen, "host %s: the console of %s went unwatched before attempt %d (a worker was lost, or its stream ended); its line %q may have gone by unseen", h.Name, ref.VM, attempt, in.Line)
		}
	}
	m := newLineMatcher(in.Line)
	streamDone := make(chan error, 1)
	go func() {
		streamDone <- lv.DomainOpenConsole(dom, nil, m, uint32(libvirt.DomainConsoleForce))
	}()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-m.found:
			markConsoleReady(ctx, lv, dom)
			return nil
		case <-ctx.Done():
			return ctx.Err()
		case err := <-streamDone:
			s, _, serr := lv.DomainGetState(dom, 0)
			if serr == nil && libvirt.DomainState(s) != libvirt.DomainRunning {
				return nonRetryable(ErrTypeBootFailed, "host %s: domain %s stopped before its console printed %q", h.Name, ref.VM, in.Line)
			}
			select {
			case <-m.found:
				markConsoleReady(ctx, lv, dom)
				return nil
			default:
			}
			return fmt.Errorf("console of %s on %s ended: %v", ref.VM, h.Name, err)
		case <-tick.C:
			activity.RecordHeartbeat(ctx)
		}
	}
}

// consoleReadyURI is the namespace of the metadata WaitConsoleLine puts on
// a domain once its console printed the line; PremiScale's ownership mark
// is another element, left as it is.
const consoleReadyURI = "https://premiscale.com/xmlns/libvirt/console-ready/v1alpha1"

// consoleReady reports whether dom carries the mark of a seen ready line.
func consoleReady(lv *libvirt.Libvirt, dom libvirt.Domain) bool {
	_, err := lv.DomainGetMetadata(dom, int32(libvirt.DomainMetadataElement), libvirt.OptString{consoleReadyURI}, libvirt.DomainAffectCurrent)
	return err == nil
}

// markConsoleReady marks dom's ready line as seen, for a retry of the
// activity whose completion was lost. A failure is only logged: the line
// was seen, and without the mark a retry replaces the VM, which is safe.
func markConsoleReady(ctx context.Context, lv *libvirt.Libvirt, dom libvirt.Domain) {
	err := lv.DomainSetMetadata(dom, int32(libvirt.DomainMetadataElement), libvirt.OptString{"<seen/>"}, libvirt.OptString{"psready"}, libvirt.OptString{consoleReadyURI}, libvirt.DomainAffectLive|libvirt.DomainAffectConfig)
	if err != nil && activity.IsActivity(ctx) {
		activity.GetLogger(ctx).Warn("marking the console line seen", "domain", dom.Name, "error", err)
	}
}

// lineMatcher is an io.Writer that closes found once the text written to
// it contains want, however the writes split it.
type lineMatcher struct {
	want  []byte
	mu    sync.Mutex
	tail  []byte
	found chan struct{}
	once  sync.Once
}

func newLineMatcher(want string) *lineMatcher {
	m := &lineMatcher{want: []byte(want), found: make(chan struct{})}
	if want == "" {
		m.once.Do(func() { close(m.found) })
	}
	return m
}

func (m *lineMatcher) Write(p []byte) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.tail = append(m.tail, p...)
	if bytes.Contains(m.tail, m.want) {
		m.once.Do(func() { close(m.found) })
	}
	if keep := len(m.want) - 1; len(m.tail) > keep {
		m.tail = append(m.tail[:0], m.tail[len(m.tail)-keep:]...)
	}
	return len(p), nil
}
