// Domains: define, start, recover, wait until running, stop and undefine,
// each only for a domain that carries this installation's mark for the VM.

package activities

import (
	"context"
	"fmt"
	"time"

	"github.com/digitalocean/go-libvirt"
	"go.temporal.io/sdk/activity"
)

// DefineDomainInput asks for the persistent definition of one VM, from its
// group's template in the worker's catalog.
type DefineDomainInput struct {
	Domain DomainRef `json:"domain"`
	Volume string    `json:"volume"`
	// Revision is the group's configuration revision the workflow holds.
	Revision string `json:"revision"`
	// Epoch is written into the mark (Owner.Epoch).
	Epoch string `json:"epoch,omitempty"`
	// Extras fix the UUID and attach the seed, when the VM joins Kubernetes.
	Extras DomainExtras `json:"extras,omitzero"`
}

// DefineDomain defines (does not start) the VM's domain, marked with
// PremiScale's ownership metadata naming its group. Idempotent: a domain of
// that name already marked for this group and VM (and this installation and
// epoch) is accepted as is. A domain
// of that name that is not marked so is never touched: the activity fails
// without retry (ErrTypeNotOwned), as is a group, VM name, host or revision
// the catalog refuses. The volume must be the VM's own disk.
func (l *Libvirt) DefineDomain(ctx context.Context, in DefineDomainInput) error {
	defer keepAlive(ctx)()
	g, err := l.Catalog.Group(in.Domain.Group, in.Revision, in.Domain.VM, in.Domain.Host.Name)
	if err != nil {
		return err
	}
	if in.Volume != VolumeName(in.Domain.VM) {
		return nonRetryable(ErrTypeInvalidConfig, "domain %s: volume %q is not its disk %q; refusing", in.Domain.VM, in.Volume, VolumeName(in.Domain.VM))
	}
	if in.Extras.Seed != "" && in.Extras.Seed != SeedVolumeName(in.Domain.VM) {
		return nonRetryable(ErrTypeInvalidConfig, "domain %s: seed %q is not its seed %q; refusing", in.Domain.VM, in.Extras.Seed, SeedVolumeName(in.Domain.VM))
	}
	lv, release, err := l.conn(ctx, &in.Domain.Host)
	if err != nil {
		return err
	}
	defer release()
	if _, mark, found, err := l.ownedMark(lv, in.Domain); err != nil {
		return err
	} else if found {
		// Adopted only if this history of the group made it: a retry of
		// this provisioning. One of an earlier history (a lost state) is
		// not this VM, whatever its name.
		if mark.Epoch != "" && in.Epoch != "" && mark.Epoch != in.Epoch {
			return nonRetryable(ErrTypeNotOwned, "host %s: domain %s was made by an earlier history of group %s; not adopting it", in.Domain.Host.Name, in.Domain.VM, in.Domain.Group)
		}
		return nil
	}
	owner := Owner{Group: in.Domain.Group, VM: in.Domain.VM, Volume: in.Volume, Installation: l.Catalog.Installation, Epoch: in.Epoch}
	doc, err := DomainXMLWith(in.Domain.VM, owner, in.Domain.Host.Pool, g.Template, in.Extras)
	if err != nil {
		return nonRetryable(ErrTypeInvalidConfig, "domain %s: %w", in.Domain.VM, err)
	}
	if _, err := lv.DomainDefineXMLFlags(doc, libvirt.DomainDefineValidate); err != nil {
		if isLibvirtCode(err, libvirt.ErrXMLError) || isLibvirtCode(err, libvirt.ErrXMLDetail) || isLibvirtCode(err, libvirt.ErrConfigUnsupported) {
			return nonRetryable(ErrTypeInvalidConfig, "define domain %s on %s: %w", in.Domain.VM, in.Domain.Host.Name, err)
		}
		return fmt.Errorf("define domain %s: %w", in.Domain.VM, err)
	}
	return nil
}

// owned looks the domain up and checks PremiScale's mark on it. found is
// false if no domain has that name. A domain that exists without the mark for
// ref's group and VM yields a non-retryable ErrTypeNotOwned error.
func (l *Libvirt) owned(lv *libvirt.Libvirt, ref DomainRef) (libvirt.Domain, bool, error) {
	dom, _, found, err := l.ownedMark(lv, ref)
	return dom, found, err
}

// ownedMark is owned, also returning the domain's mark.
func (l *Libvirt) ownedMark(lv *libvirt.Libvirt, ref DomainRef) (libvirt.Domain, Owner, bool, error) {
	dom, err := lv.DomainLookupByName(ref.VM)
	if err != nil {
		if libvirt.IsNotFound(err) {
			return libvirt.Domain{}, Owner{}, false, nil
		}
		return libvirt.Domain{}, Owner{}, false, fmt.Errorf("lookup domain %s: %w", ref.VM, err)
	}
	doc, err := lv.DomainGetXMLDesc(dom, 0)
	if err != nil {
		if libvirt.IsNotFound(err) {
			return libvirt.Domain{}, Owner{}, false, nil
		}
		return libvirt.Domain{}, Owner{}, false, fmt.Errorf("domain %s xml: %w", ref.VM, err)
	}
	owner, ok, err := parseOwner(doc)
	if err != nil {
		return libvirt.Domain{}, Owner{}, false, err
	}
	if !ok || owner.Group != ref.Group || owner.VM != ref.VM {
		return libvirt.Domain{}, Owner{}, false, nonRetryable(ErrTypeNotOwned,
			"host %s: domain %s exists and is not PremiScale's VM of group %s; not touching it", ref.Host.Name, ref.VM, ref.Group)
	}
	if !l.Catalog.ours(owner) {
		return libvirt.Domain{}, Owner{}, false, nonRetryable(ErrTypeNotOwned,
			"host %s: domain %s belongs to another PremiScale installation (%s); not touching it", ref.Host.Name, ref.VM, owner.Installation)
	}
	return dom, owner, true, nil
}

// StartDomain boots the VM. Idempotent: a running domain is left running.
// Fails without retry if the domain is missing (ErrTypeMissing) or not
// PremiScale's.
func (l *Libvirt) StartDomain(ctx context.Context, ref DomainRef) error {
	defer keepAlive(ctx)()
	lv, release, err := l.conn(ctx, &ref.Host)
	if err != nil {
		return err
	}
	defer release()
	dom, found, err := l.owned(lv, ref)
	if err != nil {
		return err
	}
	if !found {
		return nonRetryable(ErrTypeMissing, "host %s: domain %s is not defined", ref.Host.Name, ref.VM)
	}
	state, _, err := lv.DomainGetState(dom, 0)
	if err != nil {
		return fmt.Errorf("domain %s state: %w", ref.VM, err)
	}
	if libvirt.DomainState(state) == libvirt.DomainRunning {
		return nil
	}
	if err := lv.DomainCreate(dom); err != nil {
		if isLibvirtCode(err, libvirt.ErrOperationInvalid) {
			// "domain is already running": a concurrent or earlier attempt won.
			if s, _, serr := lv.DomainGetState(dom, 0); serr == nil && libvirt.DomainState(s) == libvirt.DomainRunning {
				return nil
			}
		}
		return fmt.Errorf("start domain %s on %s: %w", ref.VM, ref.Host.Name, err)
	}
	return nil
}

// RecoverDomainOutput says what RecoverDomain found and did.
type RecoverDomainOutput struct {
	// State is the domain's state before: "paused", "shut-off", ...
	State string `json:"state"`
	// Action is what was done: "resumed", "woken", "started", "starting"
	// (nothing: it is being started or restored) or "" (the state is one
	// to wait out, e.g. shutting down, or it runs already).
	Action string `json:"action"`
}

// RecoverDomain tries to bring a VM that is not running back without
// replacing it: a paused domain (a full pool pauses guests on ENOSPC, or
// someone ran virsh suspend) is resumed, a pmsuspended one woken, a shut
// off or crashed one started again. It does nothing to a running domain or
// one that is shutting down. Idempotent; fails without retry if the domain
// is missing (ErrTypeMissing) or not PremiScale's.
func (l *Libvirt) RecoverDomain(ctx context.Context, ref DomainRef) (RecoverDomainOutput, error) {
	defer keepAlive(ctx)()
	lv, release, err := l.conn(ctx, &ref.Host)
	if err != nil {
		return RecoverDomainOutput{}, err
	}
	defer release()
	dom, found, err := l.owned(lv, ref)
	if err != nil {
		return RecoverDomainOutput{}, err
	}
	if !found {
		return RecoverDomainOutput{}, nonRetryable(ErrTypeMissing, "host %s: domain %s is not defined", ref.Host.Name, ref.VM)
	}
	state, reason, err := lv.DomainGetState(dom, 0)
	if err != nil {
		return RecoverDomainOutput{}, fmt.Errorf("domain %s state: %w", ref.VM, err)
	}
	out := RecoverDomainOutput{State: stateName(libvirt.DomainState(state))}
	switch libvirt.DomainState(state) {
	case libvirt.DomainPaused:
		if libvirt.DomainPausedReason(reason) == libvirt.DomainPausedStartingUp {
			// Being started or restored (by an earlier attempt of this
			// activity whose call libvirtd still serves): resuming it
			// fails with "already running"; it runs once that is done.
			out.Action = "starting"
			return out, nil
		}

		out.Action, err = "resumed", lv.DomainResume(dom)
	case libvirt.DomainPmsuspended:
		out.Action, err = "woken", lv.DomainPmWakeup(dom, 0)
	case libvirt.DomainShutoff, libvirt.DomainCrashed:
		out.Action, err = "started", lv.DomainCreate(dom)
	}
	if err != nil {
		return out, fmt.Errorf("%s: domain %s on %s: %w", out.Action, ref.VM, ref.Host.Name, err)
	}
	return out, nil
}

// WaitRunning blocks until the domain is running, heartbeating while it
// waits; the caller's StartToClose timeout bounds it. A domain that is shut
// off meanwhile fails without retry (ErrTypeBootFailed): it crashed or was
// stopped while booting.
func (l *Libvirt) WaitRunning(ctx context.Context, ref DomainRef) error {
	lv, release, err := l.conn(ctx, &ref.Host)
	if err != nil {
		return err
	}
	defer release()
	dom, found, err := l.owned(lv, ref)
	if err != nil {
		return err
	}
	if !found {
		return nonRetryable(ErrTypeMissing, "host %s: domain %s vanished while booting", ref.Host.Name, ref.VM)
	}
	for {
		state, _, err := lv.DomainGetState(dom, 0)
		if err != nil {
			return fmt.Errorf("domain %s state: %w", ref.VM, err)
		}
		switch libvirt.DomainState(state) {
		case libvirt.DomainRunning:
			return nil
		case libvirt.DomainShutoff, libvirt.DomainCrashed:
			return nonRetryable(ErrTypeBootFailed, "host %s: domain %s stopped while booting (state %d)", ref.Host.Name, ref.VM, state)
		}
		activity.RecordHeartbeat(ctx, state)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(l.poll()):
		}
	}
}

// StopDomainInput asks for a VM to be stopped.
type StopDomainInput struct {
	Domain DomainRef `json:"domain"`
	// GracePeriod is how long an ACPI shutdown may take before the domain is
	// destroyed; zero destroys at once.
	GracePeriod time.Duration `json:"gracePeriod"`
}

// StopDomain shuts the VM down: an ACPI shutdown bounded by GracePeriod,
// then a hard destroy. Idempotent: a missing or stopped domain is success.
// A domain that is not PremiScale's is never touched (ErrTypeNotOwned).
func (l *Libvirt) StopDomain(ctx context.Context, in StopDomainInput) error {
	defer keepAlive(ctx)()
	lv, release, err := l.conn(ctx, &in.Domain.Host)
	if err != nil {
		return err
	}
	defer release()
	dom, found, err := l.owned(lv, in.Domain)
	if err != nil || !found {
		return err
	}
	running := func() (bool, error) {
		s, _, err := lv.DomainGetState(dom, 0)
		if libvirt.IsNotFound(err) {
			return false, nil
		}
		if err != nil {
			return false, fmt.Errorf("domain %s state: %w", in.Domain.VM, err)
		}
		return libvirt.DomainState(s) != libvirt.DomainShutoff, nil
	}
	if up, err := running(); err != nil || !up {
		return err
	}
	if in.GracePeriod > 0 {
		if err := lv.DomainShutdown(dom); err == nil {
			deadline := time.Now().Add(in.GracePeriod)
			for time.Now().Before(deadline) {
				if up, err := running(); err != nil || !up {
					return err
				}
				activity.RecordHeartbeat(ctx)
				select {
				case <-ctx.Done():
					return ctx.Err()
				case <-time.After(l.poll()):
				}
			}
		}
	}
	if err := lv.DomainDestroy(dom); err != nil {
		if up, serr := running(); serr == nil && !up {
			return nil
		}
		return fmt.Errorf("destroy domain %s on %s: %w", in.Domain.VM, in.Domain.Host.Name, err)
	}
	return nil
}

// UndefineDomain removes the VM's definition, destroying it first if it
// still runs. Idempotent: a missing domain is success. A domain that is not
// PremiScale's is never touched (ErrTypeNotOwned).
func (l *Libvirt) UndefineDomain(ctx context.Context, ref DomainRef) error {
	defer keepAlive(ctx)()
	lv, release, err := l.conn(ctx, &ref.Host)
	if err != nil {
		return err
	}
	defer release()
	dom, found, err := l.owned(lv, ref)
	if err != nil || !found {
		return err
	}
	if s, _, err := lv.DomainGetState(dom, 0); err == nil && libvirt.DomainState(s) != libvirt.DomainShutoff {
		if err := lv.DomainDestroy(dom); err != nil && !libvirt.IsNotFound(err) && !isLibvirtCode(err, libvirt.ErrOperationInvalid) {
			return fmt.Errorf("destroy domain %s before undefine: %w", ref.VM, err)
		}
	}
	flags := libvirt.DomainUndefineManagedSave | libvirt.DomainUndefineSnapshotsMetadata |
		libvirt.DomainUndefineNvram | libvirt.DomainUndefineCheckpointsMetadata
	err = lv.DomainUndefineFlags(dom, flags)
	if err != nil && !libvirt.IsNotFound(err) {
		// Some drivers (the test driver among them) refuse the NVRAM flag.
		err = lv.DomainUndefine(dom)
	}
	if err != nil && !libvirt.IsNotFound(err) {
		return fmt.Errorf("undefine domain %s on %s: %w", ref.VM, ref.Host.Name, err)
	}
	return nil
}
